/**
 * scripts/export-gguf.ts: a Hugging Face Llama folder as GGUF for llama.cpp. Checked with an
 * independent GGUF reader (helpers/gguf.ts) against the safetensors values the test helper
 * reads: every tensor's name, dims, type and values (f32, bf16 and f16 exports; the f16 bits
 * against the helper's own float -> half rounding), the metadata llama.cpp needs, the Q/K row
 * order (the attention scores of HF's rotate-half RoPE equal those of llama.cpp's adjacent-pair
 * RoPE on the exported rows), and bad folders.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { ggufBytes, permuteRopeRows, toF16Bits } from '../scripts/export-gguf';
import { readGguf, type GgufFile } from './helpers/gguf';
import { bf16BitsToF32, f32ToBf16Bits, f32ToF16Bits, readSafetensors, writeSafetensors } from './helpers/safetensors';
import { makeTinyModel, mulberry32 } from './helpers/tiny-model';
import { applyRope } from './reference/llama';

let tmp = '';
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-gguf-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const SHAPE = { vocabSize: 300, hiddenSize: 32, intermediateSize: 40, numLayers: 2, numHeads: 4, numKvHeads: 2 };

function exportTo(dir: string, type: 'bf16' | 'f16' | 'f32'): GgufFile {
  const file = path.join(dir, `model-${type}.gguf`);
  fs.writeFileSync(file, ggufBytes(dir, type));
  return readGguf(file);
}

/** Row r of the exported Q (or K) comes from source row origin(r) within its head. */
function ropeRowOrigin(r: number, headDim: number): number {
  const h = Math.floor(r / headDim), i = r % headDim;
  return h * headDim + (i % 2) * (headDim / 2) + Math.floor(i / 2);
}

const NAMES: Array<[string, string]> = [
  ['attn_norm', 'input_layernorm'],
  ['attn_q', 'self_attn.q_proj'],
  ['attn_k', 'self_attn.k_proj'],
  ['attn_v', 'self_attn.v_proj'],
  ['attn_output', 'self_attn.o_proj'],
  ['ffn_norm', 'post_attention_layernorm'],
  ['ffn_gate', 'mlp.gate_proj'],
  ['ffn_up', 'mlp.up_proj'],
  ['ffn_down', 'mlp.down_proj'],
];

describe('GGUF export', () => {
  test.each([
    ['BF16', 'f32', false],
    ['BF16', 'bf16', true],
    ['F32', 'f16', false],
  ] as const)('%s checkpoint as %s (tied %s): every tensor, dims, type and value', (dtype, type, tied) => {
    const dir = path.join(tmp, `m-${dtype}-${type}`);
    makeTinyModel(dir, { ...SHAPE, dtype, tieWordEmbeddings: tied, seed: 11 });
    const src = readSafetensors(path.join(dir, 'model.safetensors'));
    const g = exportTo(dir, type);
    const headDim = SHAPE.hiddenSize / SHAPE.numHeads;
    const expected = new Map<string, { from: string; rope: boolean }>([['token_embd.weight', { from: 'model.embed_tokens.weight', rope: false }]]);
    for (let i = 0; i < SHAPE.numLayers; ++i)
      for (const [to, from] of NAMES) expected.set(`blk.${i}.${to}.weight`, { from: `model.layers.${i}.${from}.weight`, rope: to === 'attn_q' || to === 'attn_k' });
    expected.set('output_norm.weight', { from: 'model.norm.weight', rope: false });
    if (!tied) expected.set('output.weight', { from: 'lm_head.weight', rope: false });
    expect([...g.tensors.keys()].sort()).toEqual([...expected.keys()].sort());

    for (const [name, { from, rope }] of expected) {
      const t = g.tensors.get(name)!;
      const s = src[from];
      expect(t.dims).toEqual([...s.shape].reverse());
      const vector = s.shape.length === 1;
      expect(t.type).toBe(vector || type === 'f32' ? 0 : type === 'f16' ? 1 : 30);
      const cols = vector ? s.shape[0] : s.shape[1];
      for (let r = 0; r < (vector ? 1 : s.shape[0]); ++r) {
        const origin = rope ? ropeRowOrigin(r, headDim) : r;
        for (let c = 0; c < cols; ++c) {
          const want = s.data[origin * cols + c];
          const at = r * cols + c;
          if (t.type === 0) expect(t.data.readFloatLE(4 * at)).toBe(want);
          else if (t.type === 30) expect(t.data.readUInt16LE(2 * at)).toBe(f32ToBf16Bits(want));
          else expect(t.data.readUInt16LE(2 * at)).toBe(f32ToF16Bits(want));
        }
      }
    }
    // A bf16 checkpoint exported as bf16 keeps its bits: the stored values round-trip.
    if (dtype === 'BF16' && type === 'bf16') {
      const t = g.tensors.get('blk.0.ffn_up.weight')!;
      expect(bf16BitsToF32(t.data.readUInt16LE(2 * 7))).toBe(src['model.layers.0.mlp.up_proj.weight'].data[7]);
    }
  });

  test('metadata: architecture, shapes, RoPE, norm epsilon, tokenizer and special tokens', () => {
    const dir = path.join(tmp, 'meta');
    const cfg = makeTinyModel(dir, { ...SHAPE, headDim: 12, ropeTheta: 5000, rmsNormEps: 1e-6, seed: 3 });
    const g = exportTo(dir, 'bf16');
    const m = g.meta;
    expect(g.version).toBe(3);
    expect(m.get('general.architecture')).toBe('llama');
    expect(m.get('general.file_type')).toBe(32);
    expect(m.get('llama.block_count')).toBe(SHAPE.numLayers);
    expect(m.get('llama.embedding_length')).toBe(SHAPE.hiddenSize);
    expect(m.get('llama.feed_forward_length')).toBe(SHAPE.intermediateSize);
    expect(m.get('llama.attention.head_count')).toBe(SHAPE.numHeads);
    expect(m.get('llama.attention.head_count_kv')).toBe(SHAPE.numKvHeads);
    expect(m.get('llama.attention.key_length')).toBe(12);
    expect(m.get('llama.rope.dimension_count')).toBe(12);
    expect(m.get('llama.rope.freq_base')).toBe(5000);
    expect(m.get('llama.attention.layer_norm_rms_epsilon')).toBe(Math.fround(1e-6));
    expect(m.get('llama.context_length')).toBe(cfg.max_position_embeddings);
    expect(g.tensors.get('blk.0.attn_q.weight')!.dims).toEqual([SHAPE.hiddenSize, SHAPE.numHeads * 12]);
    expect(m.get('tokenizer.ggml.model')).toBe('gpt2');
    const tok = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const tokens = m.get('tokenizer.ggml.tokens') as string[];
    const types = m.get('tokenizer.ggml.token_type') as number[];
    expect(tokens).toHaveLength(SHAPE.vocabSize);
    for (const [text, id] of Object.entries(tok.model.vocab as Record<string, number>)) expect(tokens[id]).toBe(text);
    expect(types[cfg.bos_token_id]).toBe(3);
    expect(types[cfg.eos_token_id]).toBe(3);
    expect(types[5]).toBe(1);
    expect(m.get('tokenizer.ggml.bos_token_id')).toBe(cfg.bos_token_id);
    expect(m.get('tokenizer.ggml.eos_token_id')).toBe(cfg.eos_token_id);
    expect(m.get('tokenizer.ggml.add_bos_token')).toBe(true);
    expect(m.get('tokenizer.ggml.merges')).toEqual([]);
  });

  test("Q/K rows in llama.cpp's order: adjacent-pair RoPE on them gives HF's rotate-half scores", () => {
    const rand = mulberry32(5);
    const hd = 8, heads = 3, d = 10;
    const w = Float64Array.from({ length: heads * hd * d }, () => rand() * 2 - 1);
    const permuted = new Float64Array(w.length);
    permuteRopeRows(w, heads * hd, hd, (dst, src) => permuted.set(src, dst));
    const inv = Float64Array.from({ length: hd / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / hd));
    const project = (m: Float64Array, x: Float64Array): Float64Array =>
      Float64Array.from({ length: heads * hd }, (_, r) => x.reduce((a, v, c) => a + v * m[r * d + c], 0));
    const adjacentRope = (v: Float64Array, pos: number): void => {
      for (let h = 0; h < heads; ++h)
        for (let i = 0; i < hd / 2; ++i) {
          const a = pos * inv[i], c = Math.cos(a), s = Math.sin(a);
          const x1 = v[h * hd + 2 * i], x2 = v[h * hd + 2 * i + 1];
          v[h * hd + 2 * i] = x1 * c - x2 * s;
          v[h * hd + 2 * i + 1] = x2 * c + x1 * s;
        }
    };
    const scores = (m: Float64Array, rope: (v: Float64Array, pos: number) => void, x: Float64Array, y: Float64Array, px: number, py: number): number[] => {
      const q = project(m, x), k = project(m, y);
      rope(q, px);
      rope(k, py);
      return [...Array(heads).keys()].map((h) => q.subarray(h * hd, (h + 1) * hd).reduce((a, v, i) => a + v * k[h * hd + i], 0));
    };
    const hfRope = (v: Float64Array, pos: number): void => {
      for (let h = 0; h < heads; ++h) applyRope(v, h * hd, hd, pos, inv);
    };
    let unpermutedDiffers = false;
    for (let trial = 0; trial < 20; ++trial) {
      const x = Float64Array.from({ length: d }, () => rand() * 2 - 1), y = Float64Array.from({ length: d }, () => rand() * 2 - 1);
      const px = Math.floor(rand() * 200), py = Math.floor(rand() * 200);
      const want = scores(w, hfRope, x, y, px, py);
      const got = scores(permuted, adjacentRope, x, y, px, py);
      got.forEach((v, h) => expect(v).toBeCloseTo(want[h], 10));
      // The same RoPE on the rows as stored would not do (the test can tell the orders apart).
      const wrong = scores(w, adjacentRope, x, y, px, py);
      if (wrong.some((v, h) => Math.abs(v - want[h]) > 1e-6)) unpermutedDiffers = true;
    }
    expect(unpermutedDiffers).toBe(true);
  });

  test('float -> half rounding equals the test helper on normal, subnormal, tie and overflow values', () => {
    const rand = mulberry32(9);
    const values = [0, -0, 1, -1, 65504, 65519.99, 65520, -70000, 2 ** -14, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -26, 1 + 2 ** -11, 1 + 3 * 2 ** -11, Infinity, -Infinity, 1e-40];
    for (let i = 0; i < 3000; ++i) values.push(Math.fround((rand() * 2 - 1) * 2 ** Math.floor(rand() * 44 - 28)));
    for (const v of values) expect([v, toF16Bits(v)]).toEqual([v, f32ToF16Bits(v)]);
    expect(toF16Bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(toF16Bits(NaN) & 0x3ff).not.toBe(0);
  });

  test('bad folders fail naming the file and the problem', () => {
    const dir = path.join(tmp, 'bad');
    makeTinyModel(dir, { ...SHAPE, seed: 4 });
    const configFile = path.join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    const withConfig = (patch: Record<string, unknown>, fn: () => void): void => {
      fs.writeFileSync(configFile, JSON.stringify({ ...config, ...patch }));
      try {
        fn();
      } finally {
        fs.writeFileSync(configFile, JSON.stringify(config));
      }
    };
    withConfig({ attention_bias: true }, () => expect(() => ggufBytes(dir, 'bf16')).toThrow(`${configFile}: attention or output biases`));
    withConfig({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 } }, () =>
      expect(() => ggufBytes(dir, 'bf16')).toThrow(`${configFile}: rope scaling`),
    );

    const tokFile = path.join(dir, 'tokenizer.json');
    const tok = fs.readFileSync(tokFile, 'utf8');
    const wordLevel = JSON.parse(tok);
    wordLevel.pre_tokenizer = null;
    wordLevel.decoder = null;
    fs.writeFileSync(tokFile, JSON.stringify(wordLevel));
    expect(() => ggufBytes(dir, 'bf16')).toThrow(`${tokFile}: only byte-level BPE tokenizers`);
    fs.writeFileSync(tokFile, tok);

    const weights = path.join(dir, 'model.safetensors');
    const tensors = readSafetensors(weights);
    const { ['model.layers.1.mlp.up_proj.weight']: _dropped, ...rest } = tensors;
    writeSafetensors(weights, rest);
    expect(() => ggufBytes(dir, 'bf16')).toThrow('tensor "model.layers.1.mlp.up_proj.weight" is missing');
    writeSafetensors(weights, { ...rest, 'model.layers.1.mlp.up_proj.weight': { ...tensors['model.layers.0.mlp.down_proj.weight'] } });
    expect(() => ggufBytes(dir, 'bf16')).toThrow(`${weights}: tensor "model.layers.1.mlp.up_proj.weight" has shape`);
    const bytes = fs.readFileSync(weights);
    fs.writeFileSync(weights, bytes.subarray(0, bytes.length - 10));
    expect(() => ggufBytes(dir, 'bf16')).toThrow(`${weights}: tensor`);
    fs.writeFileSync(weights, Buffer.from([1, 2, 3]));
    expect(() => ggufBytes(dir, 'bf16')).toThrow(`${weights}: too short`);
  });

  test('command line: writes the file; missing or bad flags and a missing folder are usage errors (exit 2)', () => {
    const root = path.resolve(__dirname, '..');
    const script = path.join(root, 'dist', 'scripts', 'export-gguf.js');
    const bench = path.join(root, 'bench', 'vs-node-llama-cpp.mjs');
    if (!fs.existsSync(script)) {
      console.warn('dist/ not built: skipping the command-line checks (npm ci builds it)');
      return;
    }
    const run = (file: string, ...args: string[]) => spawnSync(process.execPath, [file, ...args], { encoding: 'utf8' });
    const dir = path.join(tmp, 'cli');
    makeTinyModel(dir, { ...SHAPE, seed: 8 });
    const out = path.join(tmp, 'cli-out', 'm.gguf');
    const ok = run(script, '--model', dir, '--out', out, '--type', 'f16');
    expect(ok.status).toBe(0);
    expect(readGguf(out).tensors.get('blk.0.attn_v.weight')!.type).toBe(1);
    for (const [args, message] of [
      [['--out', out], /--model is required/],
      [['--model', dir], /--out is required/],
      [['--model', dir, '--out', out, '--type', 'q4'], /--type must be one of bf16, f16, f32, got "q4"/],
      [['--model', path.join(tmp, 'nowhere'), '--out', out], /--model .*nowhere: not a folder/],
    ] as Array<[string[], RegExp]>) {
      const r = run(script, ...args);
      expect({ args, status: r.status }).toEqual({ args, status: 2 });
      expect(r.stderr).toMatch(message);
    }
    // The node-llama-cpp comparison checks its flags before it needs node-llama-cpp.
    for (const [args, message] of [
      [['--bogus', '1'], /unknown option --bogus/],
      [['--dataset', 'x.jsonl'], /--gguf is required/],
      [['--dataset', 'x.jsonl', '--gguf', 'g', '--limit', '0'], /--limit must be in \[1, inf\], got 0/],
    ] as Array<[string[], RegExp]>) {
      const r = run(bench, ...args);
      expect({ args, status: r.status }).toEqual({ args, status: 2 });
      expect(r.stderr).toMatch(message);
    }
  });
});
