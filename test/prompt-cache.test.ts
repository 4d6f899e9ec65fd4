/**
 * The prompt cache (LoadOptions.promptCache): a generation whose prompt starts with tokens the
 * model's last generation left in the target's cache passes only the rest, and returns exactly
 * what a model without the cache returns (greedy: the same tokens; sampled: the same tokens for
 * the same seed), for every method, across sequences of prompts that extend, repeat or only
 * partly share earlier ones.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadFamily } from '../lib/cli/family';
import { Model } from '../lib/model';
import type { GenerateOptions } from '../lib/options';
import { makeTinyModel, mulberry32 } from './helpers/tiny-model';

const V = 260;
let tmp: string;
let cached: Model; // bfloat16 kernels: the cache is on by default
let plain: Model; // the same weights, cache off
let draft: Model;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-spec-prompt-cache-'));
  makeTinyModel(path.join(tmp, 'target'), { vocabSize: V, seed: 101, maxPositionEmbeddings: 160 });
  makeTinyModel(path.join(tmp, 'draft'), { vocabSize: V, seed: 101, numLayers: 1, maxPositionEmbeddings: 160 });
  cached = Model.loadSync(path.join(tmp, 'target'), { dtype: 'bfloat16' });
  plain = Model.loadSync(path.join(tmp, 'target'), { dtype: 'bfloat16', promptCache: false });
  draft = Model.loadSync(path.join(tmp, 'draft'), { dtype: 'bfloat16' });
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Longest common prefix of two token lists. */
const lcp = (a: readonly number[], b: readonly number[]) => {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
};

describe('prompt cache', () => {
  test('defaults: on with the kernels, off with libtorch float32; a bad value is refused', () => {
    expect(cached.promptCache).toBe(true);
    expect(plain.promptCache).toBe(false);
    expect(Model.loadSync(path.join(tmp, 'target')).promptCache).toBe(false);
    expect(Model.loadSync(path.join(tmp, 'target'), { promptCache: true }).promptCache).toBe(true);
    expect(() => Model.loadSync(path.join(tmp, 'target'), { promptCache: 1 as never })).toThrow('promptCache must be a boolean');
  });

  test('turning the cache off frees it: turned on again, the next prompt starts afresh', async () => {
    const model = Model.loadSync(path.join(tmp, 'target'), { dtype: 'bfloat16' });
    const p = [7, 8, 9, 10, 11];
    await model.generate(p, { maxNewTokens: 4 });
    expect((await model.generate([...p, 12], { maxNewTokens: 4 })).stats.cachedPromptTokens).toBe(p.length);
    model.promptCache = false;
    expect((await model.generate([...p, 13], { maxNewTokens: 4 })).stats.cachedPromptTokens).toBe(0);
    model.promptCache = true;
    expect((await model.generate([...p, 14], { maxNewTokens: 4 })).stats.cachedPromptTokens).toBe(0);
    expect((await model.generate([...p, 15], { maxNewTokens: 4 })).stats.cachedPromptTokens).toBe(p.length);
    expect(() => (model.promptCache = 'yes' as never)).toThrow('promptCache must be a boolean');
  });

  const methods: Array<[string, GenerateOptions]> = [
    ['ar greedy', {}],
    ['ar sampled', { temperature: 0.9, topK: 40 }],
    ['sd greedy', { method: 'sd', k: 3 }],
    ['sd sampled', { method: 'sd', k: 3, temperature: 1 }],
    ['mag greedy', { method: 'mag', k: 2 }],
    ['csd greedy', { method: 'csd', cascade: { drafters: ['d'], K: [[2, 1], [0, 0]], lenience: 1 } }],
    ['csd sampled', { method: 'csd', cascade: { drafters: ['d'], K: [[2, 1], [0, 0]], lenience: 1 }, temperature: 0.8 }],
  ];

  test.each(methods)('%s: chains of prompts return what the uncached model returns, and reuse what they share', async (name, extra) => {
    const model = Model.loadSync(path.join(tmp, 'target'), { dtype: 'bfloat16' }); // an empty cache
    const rand = mulberry32(7);
    const tok = () => 1 + Math.floor(rand() * (V - 5));
    const options = (seed: number): GenerateOptions => ({ ...extra, draftModel: draft, draftModels: { d: draft }, maxNewTokens: 12, stopOnEos: false, seed });
    let last: number[] = []; // the last prompt and its output
    let reusedTotal = 0, sharing = 0, reusing = 0;
    for (let turn = 0; turn < 12; turn++) {
      // Extend the last prompt with its whole output and new tokens (a chat turn), repeat part
      // of it, keep a little of it, or start afresh.
      const kind = turn % 4;
      const prompt =
        turn === 0 || kind === 3
          ? Array.from({ length: 6 + (turn % 5) }, tok)
          : kind === 0
            ? [...last, ...Array.from({ length: 3 }, tok)]
            : kind === 1
              ? last.slice(0, Math.max(2, last.length - 5))
              : [...last.slice(0, 4), ...Array.from({ length: 4 }, tok)];
      const a = await model.generate(prompt, options(100 + turn));
      const b = await plain.generate(prompt, options(100 + turn));
      expect({ turn, tokens: a.tokens }).toEqual({ turn, tokens: b.tokens });
      expect(b.stats.cachedPromptTokens).toBe(0);
      // What was reused: nothing when the cached sequence is too small for this generation (a
      // new one is made), else the prefix the prompt shares with the cache, which holds the last
      // prompt and every token its generation produced but the last (still to be passed),
      // leaving the prompt's own last token to pass. AR produces exactly the returned tokens; a
      // speculative step may produce more than the caller takes (a block accepted past
      // maxNewTokens), so there the cache may match further.
      const floor = turn === 0 ? 0 : Math.min(lcp(prompt, last.slice(0, -1)), prompt.length - 1);
      const reused = Number(a.stats.cachedPromptTokens);
      if (name.startsWith('ar')) expect({ turn, ok: reused === 0 || reused === floor }).toEqual({ turn, ok: true });
      else expect({ turn, ok: reused === 0 || (reused >= floor && reused <= prompt.length - 1) }).toEqual({ turn, ok: true });
      if (floor > 0) [sharing, reusing] = [sharing + 1, reusing + (reused > 0 ? 1 : 0)];
      reusedTotal += reused;
      last = [...prompt, ...a.tokens];
    }
    // Most turns that share a prefix reuse it (the others outgrew the cached sequence's room).
    expect(reusing).toBeGreaterThanOrEqual(sharing / 2);
    expect(reusedTotal).toBeGreaterThan(40);
  });

  test('a generation cut short (maxNewTokens inside an accepted block) leaves its extra tokens cached, correctly', async () => {
    const model = Model.loadSync(path.join(tmp, 'target'), { dtype: 'bfloat16' });
    const prompt = [5, 6, 7, 8, 9, 10];
    const o: GenerateOptions = { method: 'sd', draftModel: draft, k: 4, maxNewTokens: 3, stopOnEos: false };
    const a = await model.generate(prompt, o);
    expect(a.tokens).toEqual((await plain.generate(prompt, o)).tokens);
    // The next prompt extends the returned tokens only; whatever else the cache held must not
    // leak. (6 + 3 tokens: the cached sequence has room for 18, and this one needs 11 + 5.)
    const next = [...prompt, ...a.tokens, 11, 12];
    const b = await model.generate(next, { ...o, maxNewTokens: 5 });
    expect(b.tokens).toEqual((await plain.generate(next, { ...o, maxNewTokens: 5 })).tokens);
    expect(b.stats.cachedPromptTokens).toBeGreaterThanOrEqual(prompt.length + 2);
  });

  test('concurrent generations each get their own cache and their own tokens', async () => {
    const p = [3, 4, 5, 6, 7, 8, 9];
    await cached.generate(p, { maxNewTokens: 4 });
    const prompts = [[...p, 20, 21], [...p, 30], [40, 41, 42]];
    const got = await Promise.all(prompts.map((q) => cached.generate(q, { maxNewTokens: 8, stopOnEos: false })));
    const want = await Promise.all(prompts.map((q) => plain.generate(q, { maxNewTokens: 8, stopOnEos: false })));
    expect(got.map((r) => r.tokens)).toEqual(want.map((r) => r.tokens));
    // Only one of them could take the cached sequence.
    expect(got.filter((r) => Number(r.stats.cachedPromptTokens) > 0).length).toBeLessThanOrEqual(1);
  });

  test('an aborted generation is not cached; the next one is right', async () => {
    const p = [50, 51, 52, 53, 54, 55];
    const ctl = new AbortController();
    const s = cached.stream(p, { maxNewTokens: 40, stopOnEos: false, signal: ctl.signal });
    let chunks = 0;
    await expect(
      (async () => {
        for await (const _ of s) if (++chunks === 2) ctl.abort();
      })(),
    ).rejects.toThrow(/abort/i);
    const q = [...p, 60, 61];
    const r = await cached.generate(q, { maxNewTokens: 8, stopOnEos: false });
    expect(r.tokens).toEqual((await plain.generate(q, { maxNewTokens: 8, stopOnEos: false })).tokens);
    expect(r.stats.cachedPromptTokens).toBe(0); // the aborted run left nothing behind
  });

  test("the bench tooling's family loader keeps the cache off (methods share prompts there), unless asked", async () => {
    const fam = await loadFamily({ dtype: 'bfloat16', threads: 1, target: path.join(tmp, 'target'), drafts: {} });
    expect(fam.target.promptCache).toBe(false);
    const on = await loadFamily({ dtype: 'bfloat16', threads: 1, target: path.join(tmp, 'target'), drafts: {}, promptCache: true });
    expect(on.target.promptCache).toBe(true);
  });

  test('after dispose() the model refuses to generate, cached sequence or not', async () => {
    const m = Model.loadSync(path.join(tmp, 'target'), { dtype: 'bfloat16' });
    await m.generate([1, 2, 3], { maxNewTokens: 3 });
    m.dispose();
    await expect(m.generate([1, 2, 3, 4], { maxNewTokens: 3 })).rejects.toThrow(/disposed/);
  });
});
