/**
 * Tests of the test infrastructure itself: the safetensors writer/reader, the tiny-model
 * generator, and the plain-TS reference forward. The native addon is checked against these, so
 * they must be right on their own: the reference is validated on a real pretrained checkpoint
 * (stories260K must continue a prompt with coherent English), the rest by exact invariants.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer } from '@huggingface/tokenizers';
import {
  f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, readSafetensors, writeRawSafetensors, writeSafetensors,
} from './helpers/safetensors';
import { makeTinyModel, TinyModelOptions } from './helpers/tiny-model';
import { ReferenceLlama, ropeInvFreq } from './reference/llama';

const STORIES = path.resolve(__dirname, '../../shared/models/stories260K');

let tmp: string;
beforeAll(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-ref-')); });
afterAll(() => { fs.rmSync(tmp, { recursive: true, force: true }); });

function loadTokenizer(dir: string): Tokenizer {
  const read = (f: string): object => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as object;
  return new Tokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
}

const maxAbsDiff = (a: number[][], b: number[][]) =>
  Math.max(...a.flatMap((row, i) => row.map((v, j) => Math.abs(v - b[i][j]))));

describe('safetensors helper', () => {
  test('known F16 / BF16 bit patterns (checked against numpy / IEEE tables)', () => {
    const f16: Array<[number, number]> = [
      [1, 0x3c00], [-2, 0xc000], [0.1, 0x2e66], [65504, 0x7bff], [1e-8, 0x0000],
      [65520, 0x7c00], // halfway to 65536 rounds to even = overflow -> inf
      [6e-8, 0x0001], // smallest subnormal 2^-24
      [2 ** -24 / 2, 0x0000], // exact tie between 0 and 2^-24 -> even (0)
      [6.097555160522461e-5, 0x03ff], // largest subnormal
      [-0, 0x8000], [1 / 3, 0x3555], [Infinity, 0x7c00],
    ];
    for (const [v, bits] of f16) expect([v, f32ToF16Bits(v)]).toEqual([v, bits]);
    const bf16: Array<[number, number]> = [
      [1, 0x3f80], [-2, 0xc000], [0.1, 0x3dcd], [65504, 0x4780], [1e-8, 0x322c],
      [1 + 2 ** -8, 0x3f80], // tie, lsb even -> down
      [1 + 3 * 2 ** -8, 0x3f82], // tie, lsb odd -> up
      [-Infinity, 0xff80],
    ];
    for (const [v, bits] of bf16) expect([v, f32ToBf16Bits(v)]).toEqual([v, bits]);
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN)))).toBe(true);
  });

  test('round-trips F32 exactly and F16/BF16 within half an ulp', () => {
    const n = 2000;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = Math.sin(i * 12.9898) * 10 ** ((i % 9) - 5); // 1e-5..1e3
    const file = path.join(tmp, 'rt.safetensors');
    writeSafetensors(file, {
      a: { dtype: 'F32', shape: [40, 50], data },
      b: { dtype: 'F16', shape: [n], data },
      c: { dtype: 'BF16', shape: [2, 1000], data },
    }, { format: 'pt' });
    const buf = fs.readFileSync(file);
    const hlen = Number(buf.readBigUInt64LE(0));
    expect(hlen % 8).toBe(0);
    expect(buf.length).toBe(8 + hlen + n * (4 + 2 + 2));
    expect(JSON.parse(buf.subarray(8, 8 + hlen).toString()).__metadata__).toEqual({ format: 'pt' });

    const r = readSafetensors(file);
    expect(r.a).toEqual({ dtype: 'F32', shape: [40, 50], data });
    expect(r.b.shape).toEqual([n]);
    expect(r.c.shape).toEqual([2, 1000]);
    for (let i = 0; i < n; i++) {
      const v = data[i];
      const a = Math.abs(v);
      // Half ulp: F16 has 10 mantissa bits (absolute 2^-25 floor in the subnormal range),
      // BF16 has 7.
      expect(Math.abs(r.b.data[i] - v)).toBeLessThanOrEqual(Math.max(a * 2 ** -11, 2 ** -25));
      expect(Math.abs(r.c.data[i] - v)).toBeLessThanOrEqual(a * 2 ** -8);
    }
  });

  test('raw writer crafts corrupt files the reader rejects', () => {
    const f = (name: string) => path.join(tmp, name);
    const hdr = { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    writeRawSafetensors(f('ok.st'), hdr, new Uint8Array(new Float32Array([1, 2]).buffer));
    expect(Array.from(readSafetensors(f('ok.st')).x.data)).toEqual([1, 2]);
    writeRawSafetensors(f('hlen.st'), hdr, new Uint8Array(8), { headerLenOverride: 1n << 40n });
    expect(() => readSafetensors(f('hlen.st'))).toThrow(/past end/);
    writeRawSafetensors(f('oob.st'), { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4));
    expect(() => readSafetensors(f('oob.st'))).toThrow(/data_offsets/);
    writeRawSafetensors(f('dt.st'), { x: { dtype: 'Q4', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(8));
    expect(() => readSafetensors(f('dt.st'))).toThrow(/dtype/);
    writeRawSafetensors(f('json.st'), '{"x": ', new Uint8Array(0));
    expect(() => readSafetensors(f('json.st'))).toThrow();
  });
});

describe('reference forward on stories260K (real pretrained Llama)', () => {
  test('greedy continuation of "Once upon a time" is coherent English', () => {
    const tok = loadTokenizer(STORIES);
    const prompt = tok.encode('Once upon a time').ids;
    expect(prompt[0]).toBe(1); // BOS from the template post-processor
    const model = ReferenceLlama.load(STORIES);
    expect(model.headDim).toBe(8);
    expect(model.numKvHeads).toBe(4);
    const out = model.greedy(prompt, 40);
    const text = tok.decode(out, { skip_special_tokens: true });
    console.log(`stories260K greedy: "Once upon a time${text}"`);

    // Garbage (a wrong RoPE layout or GQA mapping) shows up as non-words and no common words.
    const words = text.replace(/[.,!?;:"']/g, ' ').split(/\s+/).filter((w) => w.length > 0);
    expect(words.length).toBeGreaterThan(15);
    for (const w of words) expect(w).toMatch(/^[A-Za-z]+$/);
    const common = ['the', 'a', 'was', 'she', 'he', 'to', 'and', 'her', 'little', 'day'];
    const lower = new Set(words.map((w) => w.toLowerCase()));
    expect(common.filter((c) => lower.has(c)).length).toBeGreaterThanOrEqual(3);

    // forward() must agree with the lastOnly path greedy() uses.
    const seq = [...prompt, ...out.slice(0, 5)];
    const all = model.forward(seq);
    expect(all.length).toBe(seq.length);
    const argmax = (r: number[]) => r.indexOf(Math.max(...r));
    expect(all.slice(prompt.length - 1, -1).map(argmax)).toEqual(out.slice(0, 5));
  });
});

describe('tiny models', () => {
  const toks = [256, 72, 101, 108, 108, 111, 44, 32]; // "<s>Hello, "
  const variants: Array<[string, TinyModelOptions]> = [
    ['default (GQA 4/2)', {}],
    ['head_dim 16 != hidden/heads', { headDim: 16, numHeads: 4, numKvHeads: 1 }],
    ['MHA, 3 layers, odd sizes', { numKvHeads: 4, numLayers: 3, intermediateSize: 37, vocabSize: 333 }],
    ['tied', { tieWordEmbeddings: true }],
    ['qwen2 q/k/v bias', { attentionBias: true }],
    ['llama attention_bias (q/k/v/o bias)', { attentionBias: true, architecture: 'LlamaForCausalLM' }],
    ['llama3 rope scaling', {
      ropeTheta: 500000,
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 32 },
    }],
    ['F16', { dtype: 'F16' }],
    ['BF16', { dtype: 'BF16' }],
    ['3 shards', { shards: 3 }],
    ['mistral sliding window', { architecture: 'MistralForCausalLM', slidingWindow: 3 }],
    ['custom bos/eos ids', { bosTokenId: 1, eosTokenId: 2, vocabSize: 258 }],
  ];

  test.each(variants)('%s: loads, finite logits of the right shape', (name, opts) => {
    const dir = path.join(tmp, name.replace(/[^a-z0-9]+/gi, '_'));
    const cfg = makeTinyModel(dir, opts);
    const model = ReferenceLlama.load(dir);
    const ids = toks.map((t) => Math.min(t, cfg.vocab_size - 1));
    const logits = model.forward(ids);
    expect(logits.length).toBe(ids.length);
    let sum = 0, sq = 0, count = 0;
    for (const row of logits) {
      expect(row.length).toBe(cfg.vocab_size);
      for (const v of row) { expect(Number.isFinite(v)).toBe(true); sum += v; sq += v * v; count++; }
    }
    // Not degenerate: logits spread enough that greedy comparisons have clear margins.
    const std = Math.sqrt(sq / count - (sum / count) ** 2);
    expect(std).toBeGreaterThan(0.5);
    expect(std).toBeLessThan(20);
    if (opts.shards) {
      const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
      expect(new Set(Object.values(index.weight_map)).size).toBe(opts.shards);
      expect(fs.existsSync(path.join(dir, 'model-00003-of-00003.safetensors'))).toBe(true);
    }
  });

  test('config.json fields follow HF conventions', () => {
    const c1 = makeTinyModel(path.join(tmp, 'cfg1'), { headDim: 16 });
    expect(c1.head_dim).toBe(16);
    expect(makeTinyModel(path.join(tmp, 'cfg2'), {}).head_dim).toBeUndefined();
    const q = makeTinyModel(path.join(tmp, 'cfg3'), { attentionBias: true });
    expect([q.architectures[0], q.model_type]).toEqual(['Qwen2ForCausalLM', 'qwen2']);
    const onDisk = JSON.parse(fs.readFileSync(path.join(tmp, 'cfg3', 'config.json'), 'utf8'));
    expect(onDisk).toEqual(q);
    const st = readSafetensors(path.join(tmp, 'cfg3', 'model.safetensors'));
    expect(st['model.layers.0.self_attn.k_proj.bias'].shape).toEqual([16]);
    expect(st['model.layers.0.self_attn.o_proj.bias']).toBeUndefined();
    expect(st['lm_head.weight'].shape).toEqual([300, 32]);
    const norm = st['model.norm.weight'].data;
    expect(Math.abs(norm.reduce((s, v) => s + v, 0) / norm.length - 1)).toBeLessThan(0.1);
  });

  test('byte-level tokenizer round-trips ASCII with @huggingface/tokenizers', () => {
    for (const [name, opts] of [['tokA', {}], ['tokB', { bosTokenId: 0, eosTokenId: 5, vocabSize: 260 }]] as const) {
      const dir = path.join(tmp, name);
      const cfg = makeTinyModel(dir, opts);
      const tok = loadTokenizer(dir);
      const text = 'Hello, world! The quick brown fox: 42 % done ... "quoted"\n\ttab ~{}';
      const ids = tok.encode(text).ids;
      expect(ids[0]).toBe(cfg.bos_token_id);
      expect(ids.length).toBe(text.length + 1); // one token per byte, no merges
      expect(Math.max(...ids)).toBeLessThan(cfg.vocab_size);
      expect(tok.decode(ids, { skip_special_tokens: true })).toBe(text);
      expect(tok.decode([cfg.eos_token_id])).toBe('</s>');
      expect(tok.get_vocab(true).size).toBe(cfg.vocab_size);
    }
    // Default layout: token id == byte value, specials at 256/257.
    expect(loadTokenizer(path.join(tmp, 'tokA')).encode('Hi').ids).toEqual([256, 72, 105]);
  });

  test('tied embeddings use embed_tokens even when a different lm_head is stored', () => {
    const seed = 7;
    const mk = (name: string, o: TinyModelOptions) => {
      makeTinyModel(path.join(tmp, name), { seed, ...o });
      return ReferenceLlama.load(path.join(tmp, name)).forward(toks);
    };
    // lm_head is generated last, so all three share every other weight.
    const tiedStored = mk('tied-stored', { tieWordEmbeddings: true, storeLmHeadEvenIfTied: true });
    const tiedPlain = mk('tied-plain', { tieWordEmbeddings: true });
    const untied = mk('untied', { tieWordEmbeddings: false });
    const stored = readSafetensors(path.join(tmp, 'tied-stored', 'model.safetensors'));
    expect(stored['lm_head.weight']).toBeDefined();
    expect(tiedStored).toEqual(tiedPlain);
    expect(maxAbsDiff(tiedStored, untied)).toBeGreaterThan(0.1);
  });

  test('sharded and single-file models give identical logits; BF16/F16 close to F32', () => {
    const mk = (name: string, o: TinyModelOptions) => {
      makeTinyModel(path.join(tmp, name), { seed: 11, ...o });
      return ReferenceLlama.load(path.join(tmp, name)).forward(toks);
    };
    const f32 = mk('s1', {});
    expect(mk('s4', { shards: 4 })).toEqual(f32);
    const bf = mk('sbf', { dtype: 'BF16' });
    const d = maxAbsDiff(bf, f32);
    expect(d).toBeGreaterThan(0); // the reference really used the rounded stored values
    expect(d).toBeLessThan(0.5);
    expect(maxAbsDiff(mk('sf16', { dtype: 'F16' }), f32)).toBeLessThan(0.05);
  });

  test('sliding window masks exactly keys with i - j >= window', () => {
    const mk = (name: string, w?: number) => {
      makeTinyModel(path.join(tmp, name), { seed: 3, architecture: 'MistralForCausalLM', slidingWindow: w });
      return ReferenceLlama.load(path.join(tmp, name)).forward(toks);
    };
    const full = mk('sw-none');
    expect(mk('sw-big', toks.length)).toEqual(full); // window >= T: nothing masked
    const w2 = mk('sw-2', 2);
    expect(w2.slice(0, 2)).toEqual(full.slice(0, 2)); // positions 0,1 see all their keys
    expect(maxAbsDiff(w2.slice(2), full.slice(2))).toBeGreaterThan(1e-3);
  });

  test('llama3 rope scaling matches _compute_llama3_parameters by hand', () => {
    // hd 8, theta 1e4: inv_freq 1, 0.1, 0.01, 0.001 -> wavelengths 2π, 20π, 200π, 2000π.
    // orig 128, low 1, high 4: high_freq_wavelen 32, low_freq_wavelen 128.
    const inv = ropeInvFreq({
      vocab_size: 1, hidden_size: 8, intermediate_size: 1, num_hidden_layers: 1, num_attention_heads: 1,
      rope_theta: 10000,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 128 },
    }, 8);
    const smooth = (128 / (20 * Math.PI) - 1) / (4 - 1);
    expect(inv[0]).toBeCloseTo(1, 12); // 2π < 32: unchanged
    expect(inv[1]).toBeCloseTo((1 - smooth) * 0.1 / 8 + smooth * 0.1, 12); // medium band
    expect(inv[2]).toBeCloseTo(0.01 / 8, 12); // 200π > 128: divided by factor
    expect(inv[3]).toBeCloseTo(0.001 / 8, 12);
  });
});
