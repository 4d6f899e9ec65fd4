/**
 * Every bad input gives a JS Error whose message names the offending file (full path) and the
 * problem, and never takes the Node process down. Each case builds a copy of one valid tiny
 * model folder, breaks one thing, and checks the message with a regex that requires the path
 * first and then the words of the problem. The last test proves the model loaded before all the
 * failures (and a fresh load) still generate the same tokens.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { types } from 'util';

import { Model } from '../lib/model';
import type { Sequence } from '../lib/sequence';
import { readSafetensors, writeRawSafetensors, writeSafetensors } from './helpers/safetensors';
import { makeTinyModel } from './helpers/tiny-model';

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A regex requiring `file`, then each problem (string: literal; RegExp: its pattern) in order. */
function about(file: string, ...problems: Array<string | RegExp>): RegExp {
  return new RegExp([escape(file), ...problems.map((p) => (typeof p === 'string' ? escape(p) : p.source))].join('[^]*'));
}

let tmp: string;
let base: string; // a valid tiny Llama folder; never modified
let model: Model; // loaded once from `base`, reused after every failure
let baseline: number[]; // its greedy tokens for PROMPT
const PROMPT = 'hello';
let counter = 0;

/** A fresh copy of the valid model folder, with `mutate` applied to it. */
function variant(mutate: (dir: string) => void): string {
  const dir = path.join(tmp, `v${counter++}`);
  fs.cpSync(base, dir, { recursive: true });
  mutate(dir);
  return dir;
}

function editJson(file: string, edit: (obj: Record<string, unknown>) => void): void {
  const obj = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(obj);
  fs.writeFileSync(file, JSON.stringify(obj, null, 2));
}
const editConfig = (dir: string, edit: (c: Record<string, unknown>) => void) => editJson(path.join(dir, 'config.json'), edit);

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Rewrites a safetensors file's header (and optionally its data section) in place. */
function editHeader(file: string, edit: (header: Record<string, Entry>, data: Buffer) => Buffer | void): void {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, Entry>;
  const data = buf.subarray(8 + n);
  const newData = edit(header, data) ?? data;
  writeRawSafetensors(file, header, newData);
}

/** Loads `dir` expecting an Error (not a crash) whose message matches `re`; returns it. */
function loadError(dir: string, re: RegExp, options: Parameters<typeof Model.loadSync>[1] = {}): Error {
  let caught: unknown;
  try {
    Model.loadSync(dir, options);
  } catch (e) {
    caught = e;
  }
  // Not toBeInstanceOf(Error): errors made by the addon belong to Node's realm, not jest's sandbox.
  expect(types.isNativeError(caught)).toBe(true);
  expect((caught as Error).message).toMatch(re);
  return caught as Error;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-bad-'));
  base = path.join(tmp, 'base');
  makeTinyModel(base, { maxPositionEmbeddings: 64 });
  model = Model.loadSync(base, { contextLength: 32 });
  baseline = (await model.generate(PROMPT, { maxNewTokens: 6, stopOnEos: false })).tokens;
  expect(baseline).toHaveLength(6);
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('model folder and config.json', () => {
  test('model folder missing', async () => {
    const dir = path.join(tmp, 'no-such-model');
    loadError(dir, about(dir, 'does not exist'));
    await expect(Model.load(dir)).rejects.toThrow(about(dir, 'does not exist'));
  });

  test('relative model folder paths are reported absolute', () => {
    const rel = path.relative(process.cwd(), path.join(tmp, 'no-such-model'));
    loadError(rel, about(path.resolve(rel), 'does not exist'));
  });

  test('path is a file, not a folder', () => {
    const file = path.join(base, 'config.json');
    loadError(file, about(file, 'is not a directory'));
  });

  test('config.json missing', () => {
    const dir = variant((d) => fs.rmSync(path.join(d, 'config.json')));
    loadError(dir, about(path.join(dir, 'config.json'), 'file not found'));
  });

  test('config.json malformed JSON', () => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'config.json'), '{"hidden_size": 32,'));
    loadError(dir, about(path.join(dir, 'config.json'), 'malformed JSON'));
  });

  test.each([['an array', '[1, 2]'], ['a number', '42'], ['null', 'null']])('config.json is %s, not an object', (_what, text) => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'config.json'), text));
    loadError(dir, about(path.join(dir, 'config.json'), 'expected a JSON object'));
  });

  test.each(['hidden_size', 'num_attention_heads', 'intermediate_size', 'num_hidden_layers', 'vocab_size'])(
    'missing required field %s',
    (key) => {
      const dir = variant((d) => editConfig(d, (c) => delete c[key]));
      loadError(dir, about(path.join(dir, 'config.json'), `missing "${key}"`));
    },
  );

  test.each<[string, unknown]>([
    ['hidden_size', 32.5],
    ['num_hidden_layers', -1],
    ['intermediate_size', 0],
    ['vocab_size', '300'],
    ['max_position_embeddings', -64],
    ['num_key_value_heads', 1.5],
  ])('non-integer / non-positive %s = %p', (key, value) => {
    const dir = variant((d) => editConfig(d, (c) => (c[key] = value)));
    loadError(dir, about(path.join(dir, 'config.json'), `"${key}" must be an integer >= 1, got ${JSON.stringify(value)}`));
  });

  test('num_attention_heads not a multiple of num_key_value_heads', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.num_key_value_heads = 3)));
    loadError(dir, about(path.join(dir, 'config.json'), /num_attention_heads \(4\) must be a multiple of num_key_value_heads \(3\)/));
  });

  test('hidden_size not divisible by num_attention_heads without head_dim', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.hidden_size = 30)));
    loadError(dir, about(path.join(dir, 'config.json'), /hidden_size \(30\) is not divisible by num_attention_heads \(4\)/, 'head_dim'));
  });

  test('odd head_dim', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.head_dim = 7)));
    loadError(dir, about(path.join(dir, 'config.json'), /head_dim \(7\) must be even/));
  });

  test('unsupported architecture is named', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.architectures = ['GPT2LMHeadModel'])));
    loadError(dir, about(path.join(dir, 'config.json'), 'unsupported architecture "GPT2LMHeadModel"', 'LlamaForCausalLM'));
  });

  test('unsupported model_type (no architectures) is named', () => {
    const dir = variant((d) =>
      editConfig(d, (c) => {
        delete c.architectures;
        c.model_type = 'gpt2';
      }),
    );
    loadError(dir, about(path.join(dir, 'config.json'), /unsupported architecture .*gpt2/));
  });

  test('no architectures and no model_type', () => {
    const dir = variant((d) =>
      editConfig(d, (c) => {
        delete c.architectures;
        delete c.model_type;
      }),
    );
    loadError(dir, about(path.join(dir, 'config.json'), 'cannot tell the architecture'));
  });

  test('unsupported rope_scaling type', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.rope_scaling = { rope_type: 'yarn', factor: 4 })));
    loadError(dir, about(path.join(dir, 'config.json'), 'unsupported rope_scaling type "yarn"'));
  });

  test('llama3 rope_scaling with a bad factor', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.rope_scaling = { rope_type: 'llama3', factor: 0.5 })));
    loadError(dir, about(path.join(dir, 'config.json'), 'rope_scaling "factor"'));
  });

  test('hidden_act not silu', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.hidden_act = 'gelu')));
    loadError(dir, about(path.join(dir, 'config.json'), 'unsupported hidden_act "gelu"'));
  });
});

describe('weight files and the shard index', () => {
  test('no model.safetensors and no index', () => {
    const dir = variant((d) => fs.rmSync(path.join(d, 'model.safetensors')));
    loadError(dir, about(dir, 'no model.safetensors or model.safetensors.index.json'));
  });

  test('index.json malformed', () => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), '{"weight_map": {'));
    loadError(dir, about(path.join(dir, 'model.safetensors.index.json'), 'malformed JSON'));
  });

  test('index.json without a weight_map', () => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), '{"metadata": {}}'));
    loadError(dir, about(path.join(dir, 'model.safetensors.index.json'), '"weight_map"'));
  });

  test('index weight_map points to a missing shard', () => {
    const dir = variant((d) =>
      fs.writeFileSync(
        path.join(d, 'model.safetensors.index.json'),
        JSON.stringify({ weight_map: { 'model.norm.weight': 'model.safetensors', 'lm_head.weight': 'model-00002-of-00002.safetensors' } }),
      ),
    );
    loadError(dir, about(path.join(dir, 'model.safetensors.index.json'), path.join(dir, 'model-00002-of-00002.safetensors'), 'does not exist'));
  });

  test.each(['../base/model.safetensors', '/etc/passwd', '..'])('index with a path-traversal file name %p', (name) => {
    const dir = variant((d) =>
      fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'model.norm.weight': name } })),
    );
    loadError(dir, about(path.join(dir, 'model.safetensors.index.json'), 'invalid file name', JSON.stringify(name)));
  });
});

describe('safetensors files', () => {
  const st = (dir: string) => path.join(dir, 'model.safetensors');

  test.each([0, 5])('file of %i bytes (shorter than 8)', (n) => {
    const dir = variant((d) => fs.writeFileSync(st(d), Buffer.alloc(n)));
    loadError(dir, about(st(dir), 'too short'));
  });

  test('header length past the end of the file', () => {
    const dir = variant((d) => writeRawSafetensors(st(d), { a: 1 }, Buffer.alloc(16), { headerLenOverride: 1n << 40n }));
    loadError(dir, about(st(dir), /header length \d+ runs past the end of the file/));
  });

  test('header length 2^64 - 1', () => {
    const dir = variant((d) => writeRawSafetensors(st(d), '{}', Buffer.alloc(0), { headerLenOverride: (1n << 64n) - 1n }));
    loadError(dir, about(st(dir), 'past the end of the file'));
  });

  test('header not JSON', () => {
    const dir = variant((d) => writeRawSafetensors(st(d), '{"model.norm.weight": {"dtype": "F32",', Buffer.alloc(0)));
    loadError(dir, about(st(dir), 'invalid header'));
  });

  test('header JSON nested too deep', () => {
    const dir = variant((d) => writeRawSafetensors(st(d), '['.repeat(100000), Buffer.alloc(0)));
    loadError(dir, about(st(dir), 'invalid header', 'too deep'));
  });

  test('header JSON not an object', () => {
    const dir = variant((d) => writeRawSafetensors(st(d), '[1, 2, 3]', Buffer.alloc(0)));
    loadError(dir, about(st(dir), 'not a JSON object'));
  });

  test('tensor offsets out of bounds', () => {
    const dir = variant((d) =>
      editHeader(st(d), (h, data) => {
        const e = h['model.norm.weight'];
        const size = e.data_offsets[1] - e.data_offsets[0];
        e.data_offsets = [data.length - size / 2, data.length + size / 2];
      }),
    );
    loadError(dir, about(st(dir), 'tensor "model.norm.weight"', 'out of bounds'));
  });

  test('overlapping tensors', () => {
    const dir = variant((d) =>
      editHeader(st(d), (h) => {
        // Same size, and the second starts half-way into the first.
        const a = h['model.layers.0.input_layernorm.weight'];
        const half = (a.data_offsets[1] - a.data_offsets[0]) / 2;
        h['model.norm.weight'].data_offsets = [a.data_offsets[0] + half, a.data_offsets[1] + half];
      }),
    );
    loadError(dir, about(st(dir), /"model\.layers\.0\.input_layernorm\.weight" and "model\.norm\.weight" overlap/));
  });

  test('byte size not matching shape x dtype', () => {
    const dir = variant((d) => editHeader(st(d), (h) => void (h['model.norm.weight'].shape = [33])));
    loadError(dir, about(st(dir), 'tensor "model.norm.weight"', 'byte size 128 does not match shape and dtype', '132 bytes'));
  });

  test('unknown dtype', () => {
    const dir = variant((d) => editHeader(st(d), (h) => void (h['model.norm.weight'].dtype = 'F7')));
    loadError(dir, about(st(dir), 'tensor "model.norm.weight"', 'unknown dtype "F7"'));
  });

  test('negative shape', () => {
    const dir = variant((d) => editHeader(st(d), (h) => void (h['model.norm.weight'].shape = [-32])));
    loadError(dir, about(st(dir), 'tensor "model.norm.weight"', 'invalid shape'));
  });

  test('integer dtype for a weight (I32 embedding)', () => {
    const dir = variant((d) => editHeader(st(d), (h) => void (h['model.embed_tokens.weight'].dtype = 'I32')));
    loadError(dir, about(st(dir), 'tensor "model.embed_tokens.weight"', 'dtype I32', /weights must be F32, F16, BF16/));
  });

  test('tensor shape disagrees with config.json', () => {
    const dir = variant((d) => editHeader(st(d), (h) => void (h['model.norm.weight'].shape = [2, 16])));
    loadError(dir, about(st(dir), 'tensor "model.norm.weight" has shape [2, 16] but config.json implies [32]'));
  });

  test('config.json disagrees with the tensors (intermediate_size)', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.intermediate_size = 64)));
    loadError(dir, about(st(dir), /tensor "model\.layers\.0\.mlp\.\w+_proj\.weight" has shape .* but config\.json implies/));
  });

  test('missing tensor is named', () => {
    const dir = variant((d) => editHeader(st(d), (h) => void delete h['model.layers.1.mlp.down_proj.weight']));
    loadError(dir, about(st(dir), 'missing tensor "model.layers.1.mlp.down_proj.weight"'));
  });

  test('untied model without lm_head.weight', () => {
    const dir = variant((d) => editHeader(st(d), (h) => void delete h['lm_head.weight']));
    loadError(dir, about(st(dir), 'missing tensor "lm_head.weight"'));
  });

  test('missing tensor in a sharded model names the shards', () => {
    const dir = path.join(tmp, 'sharded-missing');
    makeTinyModel(dir, { shards: 2, maxPositionEmbeddings: 64 });
    const first = path.join(dir, 'model-00001-of-00002.safetensors');
    editHeader(first, (h) => void delete h['model.embed_tokens.weight']);
    loadError(dir, about(first, 'other shards', 'missing tensor "model.embed_tokens.weight"'));
  });

  test('tensor duplicated across two shards', () => {
    const dir = path.join(tmp, 'sharded-dup');
    makeTinyModel(dir, { shards: 2, maxPositionEmbeddings: 64 });
    const first = path.join(dir, 'model-00001-of-00002.safetensors');
    const second = path.join(dir, 'model-00002-of-00002.safetensors');
    const t1 = readSafetensors(first);
    const t2 = readSafetensors(second);
    expect(t1['model.embed_tokens.weight']).toBeDefined();
    writeSafetensors(second, { ...t2, 'model.embed_tokens.weight': t1['model.embed_tokens.weight'] });
    loadError(dir, about(second, 'tensor "model.embed_tokens.weight" also stored in', first));
  });

  test('model.safetensors is a directory', () => {
    const dir = variant((d) => {
      fs.rmSync(st(d));
      fs.mkdirSync(st(d));
    });
    loadError(dir, about(st(dir), /not a (regular )?file/));
  });
});

describe('tokenizer', () => {
  test('tokenizer.json missing', () => {
    const dir = variant((d) => fs.rmSync(path.join(d, 'tokenizer.json')));
    loadError(dir, about(path.join(dir, 'tokenizer.json'), 'file not found'));
  });

  test('tokenizer.json malformed', () => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'tokenizer.json'), '{"model": {"type": "BPE", '));
    loadError(dir, about(path.join(dir, 'tokenizer.json'), 'malformed JSON'));
  });

  test('tokenizer.json a valid JSON object the library cannot build from', () => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'tokenizer.json'), '{"model": {"type": "NoSuchModel"}}'));
    loadError(dir, about(path.join(dir, 'tokenizer.json'), 'cannot build the tokenizer'));
  });

  test('tokenizer_config.json malformed', () => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'tokenizer_config.json'), '{'));
    loadError(dir, about(path.join(dir, 'tokenizer_config.json'), 'malformed JSON'));
  });

  test('tokenizer with ids beyond vocab_size', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.vocab_size = 290)));
    loadError(dir, about(path.join(dir, 'tokenizer.json'), 'token ids up to 299', 'vocab_size 290'));
  });

  test('eos_token_id outside the vocabulary', () => {
    const dir = variant((d) => editConfig(d, (c) => (c.eos_token_id = 5000)));
    loadError(dir, about(dir, 'special token id 5000 is outside the vocabulary'));
  });
});

describe('load options', () => {
  test.each(['float64', 'fp16', ''])('bad dtype %p', (dtype) => {
    expect(() => Model.loadSync(base, { dtype: dtype as 'float32' })).toThrow(/dtype must be one of float32, bfloat16, float16/);
  });

  test.each([0, 1.5, 1000, -1, NaN])('bad threads %p', (threads) => {
    expect(() => Model.loadSync(base, { threads })).toThrow(new RegExp(`threads must be an integer in \\[1, 256\\], got ${threads}`));
  });

  test('contextLength > max_position_embeddings names config.json', () => {
    loadError(base, /contextLength must be an integer in \[1, 64\].*max_position_embeddings.*got 65/, { contextLength: 65 });
    loadError(base, about(path.join(base, 'config.json')), { contextLength: 65 });
  });

  test.each([0, 2.5, -3])('contextLength %p', (contextLength) => {
    loadError(base, /contextLength must be an integer in \[1, 64\]/, { contextLength });
  });

  test.each([0, -1, NaN, Infinity, 11, '1.5'])('bad draftTemperatureScale %p', (draftTemperatureScale) => {
    expect(() => Model.loadSync(base, { draftTemperatureScale: draftTemperatureScale as number })).toThrow(/draftTemperatureScale must be a number in \(0, 10\]/);
  });

  test.each([0, -2, 'hot', null, [1.5]])('a bad "draftTemperatureScale" %p in cascade-spec.json names the file', (value) => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'cascade-spec.json'), JSON.stringify({ draftTemperatureScale: value })));
    loadError(dir, about(path.join(dir, 'cascade-spec.json'), '"draftTemperatureScale" must be a number in (0, 10]'));
  });

  test('cascade-spec.json that is not JSON names the file', () => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'cascade-spec.json'), '{"draftTemperatureScale": '));
    loadError(dir, about(path.join(dir, 'cascade-spec.json'), 'malformed JSON'));
  });

  test("the folder's draftTemperatureScale is the default; the load option overrides it", () => {
    const dir = variant((d) => fs.writeFileSync(path.join(d, 'cascade-spec.json'), JSON.stringify({ promptTemplate: 'Q: {prompt}', draftTemperatureScale: 1.5 })));
    expect(Model.loadSync(dir).draftTemperatureScale).toBe(1.5);
    expect(Model.loadSync(dir, { draftTemperatureScale: 0.7 }).draftTemperatureScale).toBe(0.7);
    expect(Model.loadSync(base).draftTemperatureScale).toBe(1);
  });

  test('unknown option key', () => {
    expect(() => Model.loadSync(base, { dtpye: 'float32' } as never)).toThrow(/unknown load option "dtpye"/);
  });

  test('options not an object', () => {
    expect(() => Model.loadSync(base, 'float32' as never)).toThrow(/load options must be an object/);
  });
});

describe('prompts', () => {
  test('prompt longer than the context', async () => {
    const err = await model.generate('x'.repeat(40)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as Error).message).toMatch(/prompt is 41 tokens; the context length is 32/);
  });

  test('prompt filling the context exactly leaves no room', async () => {
    await expect(model.generate('x'.repeat(31))).rejects.toThrow(/prompt is 32 tokens; the context length is 32/);
  });

  test('empty prompt without BOS', async () => {
    await expect(model.generate('', { addBos: false })).rejects.toThrow(RangeError);
    await expect(model.generate('', { addBos: false })).rejects.toThrow(/prompt is empty/);
    await expect(model.generate([])).rejects.toThrow(/prompt is empty/);
  });

  test('empty prompt with BOS still generates (BOS alone)', async () => {
    const r = await model.generate('', { maxNewTokens: 2, stopOnEos: false });
    expect(r.promptTokens).toEqual([256]);
    expect(r.tokens).toHaveLength(2);
  });

  test.each([[[1, 300]], [[-1]], [[1.5]], [['a']]])('prompt ids out of range / not integers %p', async (ids) => {
    await expect(model.generate(ids as number[])).rejects.toThrow(/prompt must be a string or an array of token ids in \[0, 300\)/);
  });

  test('prompt of the wrong type', async () => {
    await expect(model.generate(42 as never)).rejects.toThrow(TypeError);
  });
});

describe('generate options', () => {
  test.each<[string, Record<string, unknown>, RegExp]>([
    ['negative maxNewTokens', { maxNewTokens: -1 }, /maxNewTokens must be an integer >= 0, got -1/],
    ['non-integer maxNewTokens', { maxNewTokens: 2.5 }, /maxNewTokens must be an integer >= 0, got 2.5/],
    ['non-integer topK', { topK: 1.5 }, /topK must be an integer >= 0, got 1.5/],
    ['negative topK', { topK: -2 }, /topK must be an integer >= 0, got -2/],
    ['topP 0', { topP: 0 }, /topP must be in \(0, 1\], got 0/],
    ['topP 1.5', { topP: 1.5 }, /topP must be in \(0, 1\], got 1.5/],
    ['topP NaN', { topP: NaN }, /topP must be in \(0, 1\], got NaN/],
    ['minP -0.1', { minP: -0.1 }, /minP must be in \[0, 1\], got -0.1/],
    ['minP 1.5', { minP: 1.5 }, /minP must be in \[0, 1\], got 1.5/],
    ['minP "0.1"', { minP: '0.1' }, /minP must be in \[0, 1\], got 0.1/],
    ['temperature -1', { temperature: -1 }, /temperature must be a finite number >= 0, got -1/],
    ['temperature NaN', { temperature: NaN }, /temperature must be a finite number >= 0, got NaN/],
    ['temperature Infinity', { temperature: Infinity }, /temperature must be a finite number >= 0, got Infinity/],
    ['temperature as string', { temperature: '0.5' }, /temperature must be a finite number >= 0, got 0.5/],
    ['stop not an array', { stop: 'END' }, /stop must be an array of non-empty strings/],
    ['stop with an empty string', { stop: ['ok', ''] }, /stop must be an array of non-empty strings/],
    ['unknown option key', { max_new_tokens: 5 }, /unknown generate option "max_new_tokens"/],
    ['seed -1', { seed: -1 }, /seed must be an integer >= 0, got -1/],
    ['seed 1.5', { seed: 1.5 }, /seed must be an integer >= 0, got 1.5/],
    ['signal not an AbortSignal', { signal: { aborted: false } }, /signal must be an AbortSignal/],
    ['stopOnEos not a boolean', { stopOnEos: 'yes' }, /stopOnEos must be a boolean/],
    ['addBos not a boolean', { addBos: 1 }, /addBos must be a boolean/],
    ['blockVerification not a boolean', { blockVerification: 'no' }, /blockVerification must be a boolean/],
    ['adaptive not a boolean', { adaptive: 1 }, /adaptive must be a boolean/],
  ])('%s', async (_name, options, re) => {
    const err = await model.generate(PROMPT, options as never).catch((e: unknown) => e);
    expect(types.isNativeError(err)).toBe(true);
    expect((err as Error).message).toMatch(re);
  });

  test('options not an object', async () => {
    await expect(model.generate(PROMPT, 5 as never)).rejects.toThrow(/generate options must be an object/);
  });

  test('stream() surfaces the same error through the iterator and .result', async () => {
    const s = model.stream(PROMPT, { topP: 2 });
    await expect(s.result).rejects.toThrow(/topP must be in \(0, 1\]/);
    const drain = async () => {
      for await (const chunk of s) void chunk;
    };
    await expect(drain()).rejects.toThrow(/topP must be in \(0, 1\]/);
  });

  test('an aborted signal rejects with an AbortError', async () => {
    const c = new AbortController();
    c.abort();
    const err = await model.generate(PROMPT, { signal: c.signal }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
  });
});

describe('Sequence', () => {
  let seq: Sequence;
  beforeEach(() => {
    seq = model.createSequence({ contextLength: 8 });
  });

  test.each([[[300]], [[1, 2, 1000]], [[-1]], [[2 ** 31]], [[2 ** 32 + 5]]])('forward with a token id out of range %p', async (ids) => {
    await expect(seq.forward(ids)).rejects.toThrow(new RegExp(`token id ${ids[ids.length - 1]} .*out of range \\[0, 300\\)`));
    expect(() => seq.forwardSync(ids)).toThrow(/out of range \[0, 300\)/);
    expect(seq.length).toBe(0);
  });

  test.each([[[1.5]], [[NaN]], [['3']]])('forward with a non-integer token id %p', async (ids) => {
    await expect(seq.forward(ids as number[])).rejects.toThrow(/token ids must be integers/);
    expect(seq.length).toBe(0);
  });

  test('forward of an empty array', async () => {
    await expect(seq.forward([])).rejects.toThrow(/forward needs at least one token/);
    expect(() => seq.forwardSync(new Int32Array(0))).toThrow(/forward needs at least one token/);
  });

  test('Int32Array with an out-of-range id', async () => {
    await expect(seq.forward(Int32Array.from([5, 300]))).rejects.toThrow(/token id 300 out of range \[0, 300\)/);
  });

  test('exceeding capacity, then the sequence still works', async () => {
    await expect(seq.forward([1, 2, 3, 4, 5, 6, 7, 8, 9])).rejects.toThrow(/cannot take 9 more: context length is 8/);
    await seq.forward([1, 2, 3, 4, 5, 6]);
    await expect(seq.forward([1, 2, 3])).rejects.toThrow(/sequence of 6 tokens cannot take 3 more: context length is 8/);
    expect(seq.length).toBe(6);
    const logits = await seq.forward([7, 8]);
    expect(logits).toHaveLength(300);
    expect(seq.length).toBe(8);
    await expect(seq.step([1], { temperature: 0, topK: 0, topP: 1 })).rejects.toThrow(/context length is 8/);
  });

  test('truncate beyond the length, negative, non-integer', async () => {
    await seq.forward([1, 2, 3]);
    expect(() => seq.truncate(4)).toThrow(/cannot truncate a sequence of 3 tokens to 4/);
    expect(() => seq.truncate(-1)).toThrow(/cannot truncate a sequence of 3 tokens to -1/);
    expect(() => seq.truncate(1.5)).toThrow(/truncate\(n\) needs an integer/);
    expect(() => seq.truncate(NaN)).toThrow(/truncate\(n\) needs an integer/);
    expect(() => seq.truncate('1' as never)).toThrow(/truncate\(n\) needs a number/);
    expect(seq.length).toBe(3);
    seq.truncate(1);
    expect(seq.length).toBe(1);
  });

  test.each<[string, Record<string, unknown>, RegExp]>([
    ['temperature -1', { temperature: -1, topK: 0, topP: 1 }, /temperature must be a finite number >= 0/],
    ['temperature NaN', { temperature: NaN, topK: 0, topP: 1 }, /temperature must be a finite number >= 0/],
    ['topP 0', { temperature: 1, topK: 0, topP: 0 }, /topP must be in \(0, 1\]/],
    ['minP 2', { temperature: 1, topK: 0, topP: 1, minP: 2 }, /minP must be in \[0, 1\]/],
    ['minP NaN', { temperature: 1, topK: 0, topP: 1, minP: NaN }, /minP must be in \[0, 1\]/],
    ['topP 1.5', { temperature: 1, topK: 0, topP: 1.5 }, /topP must be in \(0, 1\]/],
    ['topK -1', { temperature: 1, topK: -1, topP: 1 }, /topK must be >= 0/],
    ['topK 1.5', { temperature: 1, topK: 1.5, topP: 1 }, /"topK" must be an integer/],
    ['temperature a string', { temperature: 'hot', topK: 0, topP: 1 }, /"temperature" must be a number/],
  ])('step with bad sampling options: %s', async (_name, sampling, re) => {
    await expect(seq.step([1, 2], sampling as never)).rejects.toThrow(re);
    expect(seq.length).toBe(0); // rejected before the forward pass
  });

  test('step with sampling options that are not an object', async () => {
    await expect(seq.step([1], 'greedy' as never)).rejects.toThrow(/sampling options must be an object/);
  });

  test('a second call while one is in flight is refused, and the first completes', async () => {
    const first = seq.forward([1, 2]);
    await expect(seq.forward([3])).rejects.toThrow(/busy/);
    await first;
    expect(seq.length).toBe(2);
  });

  test('createSequence with a bad contextLength', () => {
    expect(() => model.createSequence({ contextLength: 0 })).toThrow(/contextLength must be an integer in \[1, 64\]/);
    expect(() => model.createSequence({ contextLength: 65 })).toThrow(/contextLength must be an integer in \[1, 64\]/);
    expect(() => model.createSequence({ contextLength: 2.5 })).toThrow(/contextLength must be an integer in \[1, 64\]/);
  });
});

describe('after all those errors', () => {
  test('the loaded model still generates the same tokens', async () => {
    const r = await model.generate(PROMPT, { maxNewTokens: 6, stopOnEos: false });
    expect(r.tokens).toEqual(baseline);
  });

  test('a fresh load of the same folder generates the same tokens', async () => {
    const again = await Model.load(base, { contextLength: 32 });
    const r = await again.generate(PROMPT, { maxNewTokens: 6, stopOnEos: false });
    expect(r.tokens).toEqual(baseline);
  });
});
