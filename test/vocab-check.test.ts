/**
 * A draft model must tokenize exactly like the target: assertSameVocabulary (and so
 * generate with method 'sd') refuses a draft whose vocabulary size, special token ids or token
 * texts differ, naming both folders and the difference; the same vocabulary passes. Plus the
 * option errors of speculative generation and the float16 load refusal.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model, assertSameVocabulary } from '../lib/model';
import type { GenerateOptions } from '../lib/options';
import { makeTinyModel } from './helpers/tiny-model';
import { ReferenceLlama } from './reference/llama';

const V = 260;
let tmp: string;
let targetDir: string;
let target: Model;
const dirs: Record<string, string> = {};
const models: Record<string, Model> = {};

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-vocab-'));
  targetDir = path.join(tmp, 'target');
  makeTinyModel(targetDir, { vocabSize: V, seed: 1 });
  target = Model.loadSync(targetDir);
  const make = (name: string, opts: Parameters<typeof makeTinyModel>[1], edit?: (dir: string) => void) => {
    dirs[name] = path.join(tmp, name);
    makeTinyModel(dirs[name], opts);
    edit?.(dirs[name]);
    models[name] = Model.loadSync(dirs[name]);
  };
  // Same vocabulary, different weights and even a different shape: a valid drafter.
  make('same', { vocabSize: V, seed: 2, hiddenSize: 16, numHeads: 2, numKvHeads: 1, numLayers: 1 });
  make('bigger', { vocabSize: V + 40, seed: 3 });
  make('eos', { vocabSize: V, seed: 4, eosTokenId: 258 });
  make('bos', { vocabSize: V, seed: 5, bosTokenId: 259 });
  // Same sizes and special tokens, but two token texts swapped ("a" <-> "b", ids 97 and 98).
  make('swapped', { vocabSize: V, seed: 6 }, (dir) => {
    const file = path.join(dir, 'tokenizer.json');
    const tok = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect([tok.model.vocab.a, tok.model.vocab.b]).toEqual([97, 98]);
    tok.model.vocab.a = 98;
    tok.model.vocab.b = 97;
    fs.writeFileSync(file, JSON.stringify(tok));
  });
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('assertSameVocabulary and method sd', () => {
  test.each([
    ['bigger', /vocab_size 300 vs 260/],
    ['eos', /EOS ids \[258\] vs \[257\]/],
    ['bos', /BOS id 259 vs 256/],
    ['swapped', /token 97 is "b" vs "a"/],
  ])('a draft with a different vocabulary (%s) is refused, naming both folders and the difference', async (name, difference) => {
    const draft = models[name];
    const check = () => assertSameVocabulary(target, draft);
    expect(check).toThrow(difference);
    expect(check).toThrow(new RegExp(escape(dirs[name])));
    expect(check).toThrow(new RegExp(escape(targetDir)));
    // A refusal is not remembered as a pass.
    expect(check).toThrow(difference);
    // generate refuses before generating anything, with the same message.
    const gen = target.generate('Hi', { method: 'sd', draftModel: draft, maxNewTokens: 4 });
    await expect(gen).rejects.toThrow(difference);
    await expect(target.generate('Hi', { method: 'sd', draftModel: draft, maxNewTokens: 4 })).rejects.toThrow(new RegExp(escape(dirs[name])));
    // The stream surfaces the same error.
    const stream = target.stream('Hi', { method: 'sd', draftModel: draft, maxNewTokens: 4 });
    await expect((async () => {
      for await (const _ of stream) void _;
    })()).rejects.toThrow(difference);
  });

  test('the swapped vocabulary really tokenizes differently (the check is not pedantic)', () => {
    expect(target.tokenizer.encode('ab', { addBos: false })).toEqual([97, 98]);
    expect(models.swapped.tokenizer.encode('ab', { addBos: false })).toEqual([98, 97]);
  });

  test('the same vocabulary passes (different weights and shapes), and sd then generates the target greedy ids', async () => {
    expect(() => assertSameVocabulary(target, models.same)).not.toThrow();
    expect(() => assertSameVocabulary(target, target)).not.toThrow();
    const r = await target.generate('Hi', { method: 'sd', draftModel: models.same, maxNewTokens: 10, stopOnEos: false, k: 3 });
    expect(r.tokens).toEqual(ReferenceLlama.load(targetDir).greedy(r.promptTokens, 10));
  });
});

describe('speculative option errors', () => {
  const bad: Array<[string, GenerateOptions, RegExp]> = [
    ["method 'sd' without a draftModel", { method: 'sd' }, /method 'sd' needs a draftModel/],
    ['an unknown method', { method: 'medusa' as GenerateOptions['method'] }, /method must be one of .*ar.*mag.*sd.*got medusa/],
    ['k 0', { method: 'mag', k: 0 }, /k must be an integer >= 1, got 0/],
    ['k 2.5', { method: 'mag', k: 2.5 }, /k must be an integer >= 1, got 2.5/],
    ['an unknown Max-Gram occurrence', { method: 'mag', maxGramOccurrence: 'latest' as 'recent' }, /maxGramOccurrence must be 'recent' or 'earliest'/],
    ['a draftModel that is not a Model', { method: 'sd', draftModel: {} as Model }, /draftModel must be a loaded Model/],
  ];
  test.each(bad)('%s is a clear error', async (_what, options, message) => {
    await expect(target.generate('Hi', { maxNewTokens: 2, ...options })).rejects.toThrow(message);
  });
});

describe('load dtype', () => {
  test("dtype 'float16' computes on the half-precision kernels", async () => {
    const m = Model.loadSync(targetDir, { dtype: 'float16' });
    expect(m.dtype).toBe('float16');
    const r = await m.generate([1, 2, 3], { maxNewTokens: 4 });
    expect(r.tokens).toHaveLength(4);
  });

  test("dtype 'bfloat16' loads and generates", async () => {
    const m = Model.loadSync(targetDir, { dtype: 'bfloat16' });
    expect(m.dtype).toBe('bfloat16');
    const r = await m.generate('Hi', { maxNewTokens: 3, stopOnEos: false });
    expect(r.tokens).toHaveLength(3);
  });
});
