/**
 * The generation API (Model.generate / Model.stream over lib/generate.ts and the native sampler)
 * on tiny random models and on stories260K. Expected values come from the independent float64
 * reference (test/reference/llama.ts), from @huggingface/tokenizers used directly, or from first
 * principles (the processed sampling distribution written out in test/helpers/stats.ts, and
 * context-length arithmetic) -- never from the code under test.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Model } from '../lib/model';
import { loadNative } from '../lib/native';
import type { GenerationResult } from '../lib/generate';
import type { GenerateOptions } from '../lib/options';
import { makeTinyModel } from './helpers/tiny-model';
import { chiSquareSf, chiSquareTest, maxAbsDiff, processedDistribution } from './helpers/stats';
import { ReferenceLlama } from './reference/llama';

const STORIES = path.resolve(__dirname, '../../shared/models/stories260K');
const HAVE_STORIES = fs.existsSync(path.join(STORIES, 'model.safetensors'));
if (!HAVE_STORIES) console.warn(`stories260K tests SKIPPED: ${STORIES} not found (the shared models folder is absent)`);
const describeStories = HAVE_STORIES ? describe : describe.skip;
const storiesTitle = (t: string) => t + (HAVE_STORIES ? '' : ' [SKIPPED: ../shared/models/stories260K absent]');

/** "<s>Hello" with the tiny models' byte-level tokenizer: BOS 256, then one id per byte. */
const HELLO = [256, 72, 101, 108, 108, 111];

let tmp: string;
let tinyDir: string;
let tiny: Model;
let tinyRef: ReferenceLlama;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-generate-'));
  tinyDir = path.join(tmp, 'tiny');
  makeTinyModel(tinyDir, { seed: 1 });
  tiny = Model.loadSync(tinyDir);
  tinyRef = ReferenceLlama.load(tinyDir);
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** An AbortError is what fetch() and friends reject with: a DOMException / Error named so. */
const isAbortError = (e: unknown) => e instanceof Error && e.name === 'AbortError';

async function collect(stream: AsyncIterable<string>): Promise<string[]> {
  const chunks: string[] = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

function hfTokenizer(dir: string): Tokenizer {
  const read = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as Record<string, unknown>;
  return new Tokenizer(read('tokenizer.json'), { ...read('tokenizer_config.json'), clean_up_tokenization_spaces: false });
}

describe('greedy', () => {
  test('tiny GQA model: generate equals the reference greedy ids, from text or ids', async () => {
    const want = tinyRef.greedy(HELLO, 20);
    const fromText = await tiny.generate('Hello', { maxNewTokens: 20, stopOnEos: false });
    expect(fromText.promptTokens).toEqual(HELLO);
    expect(fromText.tokens).toEqual(want);
    expect(fromText.finishReason).toBe('length');
    const fromIds = await tiny.generate(HELLO, { maxNewTokens: 20, stopOnEos: false });
    expect(fromIds.tokens).toEqual(want);
  });

  test('mistral with sliding_window 3 (decode far past the window) equals the reference', async () => {
    const dir = path.join(tmp, 'sw');
    makeTinyModel(dir, { architecture: 'MistralForCausalLM', slidingWindow: 3, seed: 8 });
    const r = await Model.loadSync(dir).generate(HELLO, { maxNewTokens: 16, stopOnEos: false });
    expect(r.tokens).toEqual(ReferenceLlama.load(dir).greedy(HELLO, 16));
  });
});

describe('sampling', () => {
  const N = 20;
  test('the same seed reproduces the ids; different seeds give different ids', async () => {
    const opts: GenerateOptions = { maxNewTokens: N, stopOnEos: false, temperature: 1 };
    const a = await tiny.generate(HELLO, { ...opts, seed: 123 });
    const b = await tiny.generate(HELLO, { ...opts, seed: 123 });
    expect(a.tokens.length).toBe(N);
    expect(b.tokens).toEqual(a.tokens);
    expect(b.text).toBe(a.text);
    expect(a.stats.seed).toBe(123);
    const runs = await Promise.all([1, 2, 3, 4, 5, 6].map((seed) => tiny.generate(HELLO, { ...opts, seed })));
    const distinct = new Set(runs.map((r) => r.tokens.join(',')));
    // 6 draws of 20 tokens at temperature 1 from a spread distribution: a repeat would mean the
    // seed is ignored (all equal) or barely used.
    expect(distinct.size).toBeGreaterThanOrEqual(5);
    expect(distinct.has(tinyRef.greedy(HELLO, N).join(','))).toBe(false);
  });

  test('an unseeded generation reports its seed, and that seed reproduces it', async () => {
    const opts: GenerateOptions = { maxNewTokens: N, stopOnEos: false, temperature: 1.2, topP: 0.95 };
    const a = await tiny.generate(HELLO, opts);
    expect(Number.isSafeInteger(a.stats.seed)).toBe(true);
    const b = await tiny.generate(HELLO, { ...opts, seed: a.stats.seed });
    expect(b.tokens).toEqual(a.tokens);
  });

  test.each([0.3, 1, 7])('topK 1 equals greedy at temperature %p', async (temperature) => {
    const r = await tiny.generate(HELLO, { maxNewTokens: N, stopOnEos: false, temperature, topK: 1, seed: 5 });
    expect(r.tokens).toEqual(tinyRef.greedy(HELLO, N));
  });
});

describe('the sampling distribution (chi-square against the processed distribution)', () => {
  test('chiSquareSf matches scipy.stats.chi2.sf', () => {
    const cases: Array<[number, number, number]> = [
      [10, 5, 0.07523524614651217], [20, 10, 0.029252688076961124], [3.5, 1, 0.0613688291394023],
      [50, 13, 2.981469787012831e-06], [1, 13, 0.9999961652652649], [37.7, 13, 0.00032153639470781004],
      [100, 40, 4.791357300338064e-07], [40.87065501383601, 13, 1e-4],
    ];
    for (const [x, df, p] of cases) expect(Math.abs(chiSquareSf(x, df) - p) / p).toBeLessThan(1e-9);
  });

  test('processedDistribution on a hand-computed example', () => {
    // logits ln(4), ln(3), ln(2), ln(1), T 1: probs .4 .3 .2 .1.
    const l = [Math.log(4), Math.log(3), Math.log(2), 0];
    const close = (a: ArrayLike<number>, b: number[]) => expect(maxAbsDiff(a, b)).toBeLessThan(1e-12);
    close(processedDistribution(l, 1, 0, 1), [0.4, 0.3, 0.2, 0.1]);
    close(processedDistribution(l, 1, 2, 1), [4 / 7, 3 / 7, 0, 0]);
    // top-p: the masses before each token are 0, .4, .7, .9; a token stays iff that is < topP.
    close(processedDistribution(l, 1, 0, 0.4), [1, 0, 0, 0]);
    close(processedDistribution(l, 1, 0, 0.65), [4 / 7, 3 / 7, 0, 0]);
    close(processedDistribution(l, 1, 0, 0.75), [4 / 9, 3 / 9, 2 / 9, 0]);
    // top-k 3 first (.4/.9 .3/.9 .2/.9), then top-p 0.5: masses before 0, .444 -> keep two.
    close(processedDistribution(l, 1, 3, 0.5), [4 / 7, 3 / 7, 0, 0]);
    // temperature 0.5 squares the odds: 16 9 4 1.
    close(processedDistribution(l, 0.5, 0, 1), [16 / 30, 9 / 30, 4 / 30, 1 / 30]);
    // min-p: a token stays iff p >= minP * .4: .2 stays at 0.49 and leaves at 0.51.
    close(processedDistribution(l, 1, 0, 1, 0.49), [4 / 9, 3 / 9, 2 / 9, 0]);
    close(processedDistribution(l, 1, 0, 1, 0.51), [4 / 7, 3 / 7, 0, 0]);
    close(processedDistribution(l, 1, 0, 1, 1), [1, 0, 0, 0]);
    // after top-p 0.75 (.4/.9 .3/.9 .2/.9): the ratios to the largest are unchanged, min-p 0.6 keeps two.
    close(processedDistribution(l, 1, 0, 0.75, 0.6), [4 / 7, 3 / 7, 0, 0]);
    // temperature first: at T 0.5 the ratios are 9/16, 4/16, 1/16; min-p 0.25 keeps three.
    close(processedDistribution(l, 0.5, 0, 1, 0.25), [16 / 29, 9 / 29, 4 / 29, 0]);
  });

  test('the native processed distribution equals processedDistribution, ties at the top-p and top-k edges included', () => {
    const native = loadNative().kernelTest;
    const close = (logits: number[], temperature: number, topK: number, topP: number, minP = 0) => {
      const got = native.processedProbs(Float32Array.from(logits), { temperature, topK, topP, minP });
      const want = processedDistribution(Float32Array.from(logits), temperature, topK, topP, minP);
      expect([temperature, topK, topP, minP, maxAbsDiff(got, want) < 2e-6]).toEqual([temperature, topK, topP, minP, true]);
      // The kept set exactly: a token in or out is not a rounding matter.
      expect(Array.from(got, (p) => p > 0)).toEqual(Array.from(want, (p) => p > 0));
    };
    // Random rows over a vocabulary of 4096 (the default family's) and one of 7 (a remainder
    // after the 16-wide vector loop), every filter combination.
    let s = 12345;
    const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (const V of [4096, 7]) {
      const logits = Array.from({ length: V }, () => (rand() - 0.5) * 12);
      for (const [t, k, p] of [[1, 0, 1], [0.7, 0, 1], [1.3, 40, 1], [0.8, 0, 0.9], [1, 50, 0.95], [0.6, 3, 0.5], [1, 0, 0.05]] as Array<[number, number, number]>)
        close(logits, t, k, p);
    }
    // Flat rows: hundreds to thousands of tokens above the surely-out threshold, so the top-p
    // cut falls inside a crowded bucket of the native search; top-k by a heap (small k) and by
    // selection (k of V / 8 or more).
    const flat = Array.from({ length: 4096 }, () => (rand() - 0.5) * 1.5);
    for (const [t, k, p] of [[1, 0, 0.5], [1.3, 0, 0.95], [0.9, 0, 0.99], [2, 0, 0.999], [1, 600, 0.9], [1, 1, 1], [1, 7, 0.6]] as Array<[number, number, number]>)
      close(flat, t, k, p);
    // Ties: probabilities .4 .2 .2 .1 .1 (logits ln 4, ln 2, ln 2, 0, 0). With topP 0.5 the mass
    // strictly above the tied .2 pair is .4 < .5, so both stay; with topP 0.9 both .1 tokens stay
    // (mass above them .8); a top-k of 2 keeps every token tied with the 2nd largest.
    const tied = [Math.log(4), Math.log(2), Math.log(2), 0, 0];
    close(tied, 1, 0, 0.5);
    close(tied, 1, 0, 0.9);
    close(tied, 1, 0, 0.4);
    close(tied, 1, 2, 1);
    close(tied, 1, 4, 1);
    // Many ties: logits from 6 values over 300 tokens, top-p at many levels.
    const coarse = Array.from({ length: 300 }, () => Math.floor(rand() * 6) * 0.7);
    for (const p of [0.01, 0.1, 0.3, 0.5, 0.62, 0.8, 0.9, 0.97, 0.999]) close(coarse, 1, 0, p);
    // Min-p alone and after top-k / top-p, on random, flat and tied rows (the coarse row's 6
    // levels each hold ~50 tied tokens, which stay or go together).
    for (const V of [4096, 7]) {
      const logits = Array.from({ length: V }, () => (rand() - 0.5) * 12);
      for (const [t, k, p, m] of [[1, 0, 1, 0.05], [0.7, 0, 1, 0.2], [1.3, 40, 1, 0.1], [0.8, 0, 0.9, 0.3], [1, 50, 0.95, 0.01], [1, 0, 1, 1]] as Array<[number, number, number, number]>)
        close(logits, t, k, p, m);
    }
    for (const m of [0.001, 0.02, 0.3, 0.9]) close(flat, 1, 0, 1, m);
    close(tied, 1, 0, 1, 0.45);
    close(tied, 1, 0, 1, 0.55);
    close(tied, 1, 0, 1, 0.2);
    close(tied, 1, 0, 0.9, 0.45);
    for (const m of [0.1, 0.3, 0.5, 0.8]) close(coarse, 1, 0, 1, m);
    // The tied pair (.2 each) stays at min-p 0.45 (cut .18), with both .1 tokens gone.
    expect(Array.from(native.processedProbs(Float32Array.from(tied), { temperature: 1, topK: 0, topP: 1, minP: 0.45 }), (p) => +p.toFixed(6))).toEqual([0.5, 0.25, 0.25, 0, 0]);
    expect(Array.from(native.processedProbs(Float32Array.from(tied), { temperature: 1, topK: 0, topP: 0.5 }), (p) => +p.toFixed(6))).toEqual([0.5, 0.25, 0.25, 0, 0]);
    // The test hook refuses what it cannot process, with a clear error.
    expect(() => native.processedProbs(Float32Array.of(1, 2), { temperature: 0, topK: 0, topP: 1 })).toThrow('processedProbs needs a temperature > 0');
    expect(() => native.processedProbs(new Float32Array(0), { temperature: 1, topK: 0, topP: 1 })).toThrow('processedProbs needs at least one logit');
    expect(() => native.processedProbs([1, 2] as unknown as Float32Array, { temperature: 1, topK: 0, topP: 1 })).toThrow('needs a Float32Array');
    expect(() => native.processedProbs(Float32Array.of(1, 2), { temperature: 1, topK: 0, topP: 0 })).toThrow('topP must be in (0, 1]');
    expect(() => native.processedProbs(Float32Array.of(1, 2), { temperature: 1, topK: 0, topP: 1, minP: 1.5 })).toThrow('minP must be in [0, 1]');
    expect(() => native.processedProbs(Float32Array.of(1, 2), { temperature: 1, topK: 0, topP: 1, minP: -0.1 })).toThrow('minP must be in [0, 1]');
    expect(() => native.processedProbs(Float32Array.of(1, 2), { temperature: 1, topK: 0, topP: 1, minP: NaN })).toThrow('minP must be in [0, 1]');
    // A -inf logit has probability exactly 0 (top-k masks with it).
    const masked = native.processedProbs(Float32Array.from([1, -Infinity, 0.5]), { temperature: 1, topK: 0, topP: 1 });
    expect(masked[1]).toBe(0);
  });

  const DRAWS = 3000;
  const ALPHA = 1e-4; // false-alarm rate per test; the seeds are fixed, so the outcome is deterministic
  const PROMPT = [256, 72, 105]; // "<s>Hi"

  test.each([
    { temperature: 0.7, topK: 20, topP: 0.9 },
    { temperature: 1.3, topK: 0, topP: 0.6 },
    { temperature: 1.0, topK: 8, topP: 1 },
  ])('first generated token over %j: %#', ({ temperature, topK, topP }) => {
    const dir = path.join(tmp, 'dist');
    if (!fs.existsSync(dir)) makeTinyModel(dir, { vocabSize: 260, seed: 5 });
    const model = Model.loadSync(dir);
    const V = model.config.vocabSize;
    const logits = model.createSequence().forwardSync(PROMPT);
    // The logits the distribution is computed from are themselves right (float32 tolerance).
    expect(maxAbsDiff(logits, ReferenceLlama.load(dir).forward(PROMPT)[PROMPT.length - 1])).toBeLessThan(2e-4);
    const probs = processedDistribution(logits, temperature, topK, topP);
    const kept = [...probs].filter((p) => p > 0).length;
    expect(kept).toBeGreaterThan(3);
    if (topK) expect(kept).toBeLessThanOrEqual(topK);
    if (topP < 1) expect(kept).toBeLessThan(topK || V); // top-p really removes tokens

    const sampling = { temperature, topK, topP };
    const seq = model.createSequence({ contextLength: PROMPT.length });
    seq.forwardSync(PROMPT.slice(0, -1));
    const counts = new Map<number, number>();
    for (let seed = 0; seed < DRAWS; seed++) {
      seq.truncate(PROMPT.length - 1);
      seq.reseed(seed);
      const t = seq.native.step([PROMPT[PROMPT.length - 1]], sampling);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    const fit = chiSquareTest(counts, probs);
    expect(fit.impossible).toBe(0); // no token outside the kept set, ever
    expect(fit.minExpected).toBeGreaterThanOrEqual(5); // the chi-square approximation is valid
    expect(fit.p).toBeGreaterThan(ALPHA);

    // Power: the same counts must reject each plausible wrong distribution that differs from the
    // right one (wrong filter order, a filter ignored, temperature ignored).
    const alternatives: Record<string, Float64Array> = {
      'no temperature': processedDistribution(logits, 1, topK, topP),
      'no top-k': processedDistribution(logits, temperature, 0, topP),
      'no top-p': processedDistribution(logits, temperature, topK, 1),
      'top-p before top-k': (() => {
        const pFirst = processedDistribution(logits, temperature, 0, topP);
        const masked = Array.from(logits, (l, i) => (pFirst[i] > 0 ? l : -Infinity));
        return processedDistribution(masked, temperature, topK, 1);
      })(),
      'uniform over the kept set': probs.map((p) => (p > 0 ? 1 / kept : 0)),
    };
    let rejected = 0;
    for (const [name, alt] of Object.entries(alternatives)) {
      let tv = 0;
      for (let i = 0; i < V; i++) tv += Math.abs(alt[i] - probs[i]) / 2;
      if (tv < 0.03) continue; // not distinguishable from the right one at this sample size
      const f = chiSquareTest(counts, alt);
      expect([name, f.impossible > 0 || f.p < ALPHA]).toEqual([name, true]);
      rejected++;
    }
    expect(rejected).toBeGreaterThanOrEqual(2); // at least 'uniform' and the filter that binds
  });
});

describe('finish reasons: EOS, maxNewTokens 0, context', () => {
  test('EOS stops the generation (the EOS id is the last token); stopOnEos false runs on', async () => {
    const n = 12;
    const greedy = tinyRef.greedy(HELLO, n);
    // Make the token that greedy emits at step j (first time, j >= 2) the EOS of a twin model
    // with identical weights (weights do not depend on the special-token ids).
    const j = greedy.findIndex((t, i) => i >= 2 && t !== 256 && !greedy.slice(0, i).includes(t));
    expect(j).toBeGreaterThanOrEqual(2);
    const dir = path.join(tmp, 'eos');
    makeTinyModel(dir, { seed: 1, eosTokenId: greedy[j], bosTokenId: 256 });
    const model = Model.loadSync(dir);
    expect(model.tokenizer.eosIds).toEqual([greedy[j]]);

    const r = await model.generate(HELLO, { maxNewTokens: n });
    expect(r.finishReason).toBe('eos');
    expect(r.tokens).toEqual(greedy.slice(0, j + 1));
    expect(model.tokenizer.eosIds).toContain(r.tokens[r.tokens.length - 1]);
    expect(r.text).not.toContain('</s>');
    expect(r.stats.targetForwards).toBe(r.tokens.length);

    const on = await model.generate(HELLO, { maxNewTokens: n, stopOnEos: false });
    expect(on.finishReason).toBe('length');
    expect(on.tokens).toEqual(greedy);

    // Streaming ends the same way.
    const s = model.stream(HELLO, { maxNewTokens: n });
    const chunks = await collect(s);
    const sr = await s.result;
    expect(sr.finishReason).toBe('eos');
    expect(chunks.join('')).toBe(sr.text);
  });

  test('maxNewTokens 0: empty, finishReason length, no forward pass', async () => {
    const r = await tiny.generate('Hello', { maxNewTokens: 0 });
    expect(r).toMatchObject({ text: '', tokens: [], finishReason: 'length', promptTokens: HELLO });
    expect(r.stats.targetForwards).toBe(0);
    const s = tiny.stream('Hello', { maxNewTokens: 0 });
    expect(await collect(s)).toEqual([]);
    expect((await s.result).finishReason).toBe('length');
  });

  test('a small contextLength ends with finishReason context, no error, every slot used', async () => {
    const C = 12;
    const model = Model.loadSync(tinyDir, { contextLength: C });
    // The prompt fills 6 slots; each generated token but the last is fed back and takes a slot,
    // so the cache holds prompt + (n - 1) tokens: n = C - 6 + 1 = 7.
    const r = await model.generate(HELLO, { maxNewTokens: 100, stopOnEos: false });
    expect(r.finishReason).toBe('context');
    expect(r.tokens).toEqual(tinyRef.greedy(HELLO, C - HELLO.length + 1));
    expect(r.stats.targetForwards).toBe(r.tokens.length);
    // Exactly enough room: maxNewTokens wins.
    const exact = await model.generate(HELLO, { maxNewTokens: C - HELLO.length + 1, stopOnEos: false });
    expect(exact.finishReason).toBe('length');
    expect(exact.tokens).toEqual(r.tokens);
    // A prompt that leaves no room is refused up front.
    await expect(model.generate(new Array(C).fill(65), { maxNewTokens: 1 })).rejects.toThrow(RangeError);
    // Streaming reaches the same end.
    const s = model.stream(HELLO, { maxNewTokens: 100, stopOnEos: false });
    const chunks = await collect(s);
    const sr = await s.result;
    expect(sr.finishReason).toBe('context');
    expect(chunks.join('')).toBe(sr.text);
  });
});

describe('AbortSignal', () => {
  test('an already-aborted signal rejects with an AbortError (generate and stream)', async () => {
    const c = new AbortController();
    c.abort();
    const err = await tiny.generate(HELLO, { maxNewTokens: 5, signal: c.signal }).then(() => undefined, (e: unknown) => e);
    expect(isAbortError(err)).toBe(true);
    const c2 = new AbortController();
    c2.abort('some non-Error reason');
    const err2 = await tiny.generate(HELLO, { maxNewTokens: 5, signal: c2.signal }).then(() => undefined, (e: unknown) => e);
    expect(isAbortError(err2)).toBe(true);
    const s = tiny.stream(HELLO, { maxNewTokens: 5, signal: c.signal });
    await expect(collect(s)).rejects.toMatchObject({ name: 'AbortError' });
    await expect(s.result).rejects.toMatchObject({ name: 'AbortError' });
  });

  test('aborting mid-stream stops the iteration with an AbortError', async () => {
    const model = HAVE_STORIES ? Model.loadSync(STORIES) : tiny;
    const prompt = HAVE_STORIES ? 'Once upon a time' : 'Hello';
    const full = await model.generate(prompt, { maxNewTokens: 100, stopOnEos: false });
    const c = new AbortController();
    const s = model.stream(prompt, { maxNewTokens: 100, stopOnEos: false, signal: c.signal });
    const chunks: string[] = [];
    let caught: unknown;
    try {
      for await (const chunk of s) {
        chunks.push(chunk);
        if (chunks.length === 3) c.abort();
      }
    } catch (e) {
      caught = e;
    }
    expect(isAbortError(caught)).toBe(true);
    await expect(s.result).rejects.toMatchObject({ name: 'AbortError' });
    const got = chunks.join('');
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    expect(full.text.startsWith(got)).toBe(true);
    expect(got.length).toBeLessThan(full.text.length / 2);
  });
});

describe('concurrency', () => {
  test('generations running concurrently on one Model equal the same generations run in turn', async () => {
    const jobs: Array<[Model, string | number[], GenerateOptions]> = [
      [tiny, HELLO, { maxNewTokens: 24, stopOnEos: false }],
      [tiny, 'Hi there', { maxNewTokens: 24, stopOnEos: false, temperature: 0.9, topK: 40, seed: 7 }],
      [tiny, HELLO, { maxNewTokens: 24, stopOnEos: false, temperature: 1.1, topP: 0.8, seed: 8 }],
    ];
    if (HAVE_STORIES) {
      const stories = Model.loadSync(STORIES);
      jobs.push([stories, 'Once upon a time', { maxNewTokens: 30, stopOnEos: false }]);
      jobs.push([stories, 'Once upon a time', { maxNewTokens: 30, temperature: 0.8, seed: 3, stopOnEos: false }]);
    }
    const strip = (r: GenerationResult) => ({ text: r.text, tokens: r.tokens, finishReason: r.finishReason });
    const sequential = [];
    for (const [m, p, o] of jobs) sequential.push(strip(await m.generate(p, o)));
    const concurrent = (await Promise.all(jobs.map(([m, p, o]) => m.generate(p, o)))).map(strip);
    expect(concurrent).toEqual(sequential);
    expect(sequential[0].tokens).toEqual(tinyRef.greedy(HELLO, 24)); // anchored to the reference
  });

  test('a second call on a busy Sequence is refused with a clear error, and does not disturb it', async () => {
    const seq = tiny.createSequence();
    const first = seq.forward(HELLO, { allLogits: true });
    await expect(seq.forward([65])).rejects.toThrow(/busy/);
    await expect(seq.step([65], { temperature: 0, topK: 0, topP: 1 })).rejects.toThrow(/busy/);
    expect(() => seq.forwardSync([65])).toThrow(/busy/);
    expect(() => seq.truncate(0)).toThrow(/busy/);
    const logits = await first;
    expect(seq.length).toBe(HELLO.length);
    expect(seq.forwards).toBe(1); // refused calls ran no pass
    expect(maxAbsDiff(logits, tinyRef.forward(HELLO).flat())).toBeLessThan(2e-4);
    // Idle again: it works.
    const next = await seq.forward([65]);
    expect(maxAbsDiff(next, tinyRef.forward([...HELLO, 65])[HELLO.length])).toBeLessThan(2e-4);
  });
});

describe('dispose', () => {
  test('Model.dispose: new sequences and generations are refused naming the folder; sequences made before keep working', async () => {
    const m = Model.loadSync(tinyDir);
    const params = m.numParams;
    const seq = m.createSequence();
    const before = seq.forwardSync(HELLO.slice(0, 3), { allLogits: true });
    m.dispose();
    m.dispose(); // twice is a no-op
    expect(m.disposed).toBe(true);
    expect(() => m.createSequence()).toThrow(`model ${m.dir} is disposed`);
    await expect(m.generate(HELLO, { maxNewTokens: 2 })).rejects.toThrow(`model ${m.dir} is disposed`);
    // The native object refuses too (a caller holding it directly).
    const { loadNative } = await import('../lib/native');
    expect(() => new (loadNative().Sequence)(m.native, 8, 0)).toThrow(/model is disposed/);
    // Facts about the weights stay readable; an existing sequence still computes, correctly.
    expect(m.numParams).toBe(params);
    expect(m.dtype).toBe('float32');
    const after = seq.forwardSync(HELLO.slice(3), { allLogits: true });
    const want = tinyRef.forward(HELLO).flat();
    expect(maxAbsDiff([...before, ...after], want)).toBeLessThan(2e-4);
    seq.dispose();
    // Drafts: a disposed draft model is named when a generation needs it.
    const draft = Model.loadSync(tinyDir);
    draft.dispose();
    await expect(tiny.generate(HELLO, { method: 'sd', draftModel: draft, maxNewTokens: 4 })).rejects.toThrow(`model ${draft.dir} is disposed`);
    // And the model the test suite shares is untouched.
    expect((await tiny.generate(HELLO, { maxNewTokens: 4, stopOnEos: false })).tokens).toEqual(tinyRef.greedy(HELLO, 4));
  });
});

describe('stats', () => {
  test('wallMs, promptMs, targetForwards = one pass per token, seed', async () => {
    const r = await tiny.generate(HELLO, { maxNewTokens: 25, stopOnEos: false, temperature: 0.8, seed: 42 });
    expect(r.tokens.length).toBe(25);
    expect(r.stats.wallMs).toBeGreaterThan(0);
    expect(r.stats.promptMs).toBeGreaterThan(0);
    expect(r.stats.promptMs).toBeLessThanOrEqual(r.stats.wallMs);
    expect(r.stats.targetForwards).toBe(25);
    expect(r.stats.tokensPerSecond).toBeGreaterThan(0);
    expect(r.stats.seed).toBe(42);
    const g = await tiny.generate(HELLO, { maxNewTokens: 9, stopOnEos: false });
    expect(g.stats.targetForwards).toBe(9);
  });
});

describe('stop strings on the byte-level tiny model', () => {
  test('stops spanning two byte tokens, and ending inside a multi-character token', async () => {
    const tok = hfTokenizer(tinyDir);
    const decode = (ids: number[]) => tok.decode(ids, { skip_special_tokens: true });
    const n = 40;
    const greedy = tinyRef.greedy(HELLO, n);
    const full = decode(greedy);
    const printable = (t: number) => t >= 0x21 && t <= 0x7e;
    const j1 = greedy.findIndex((t, i) => i >= 2 && printable(t) && printable(greedy[i + 1]));
    const j2 = greedy.findIndex((t, i) => i >= 2 && printable(t) && greedy[i + 1] >= 258); // "<extra_N>" text
    expect(j1).toBeGreaterThan(0);
    expect(j2).toBeGreaterThan(0);
    const stops = [
      String.fromCharCode(greedy[j1], greedy[j1 + 1]),
      String.fromCharCode(greedy[j2]) + '<extra_',
    ];
    for (const stop of stops) {
      const at = full.indexOf(stop);
      let k = 1;
      while (!decode(greedy.slice(0, k)).includes(stop)) k++;
      const r = await tiny.generate(HELLO, { maxNewTokens: n, stopOnEos: false, stop: [stop] });
      expect([stop, r.finishReason]).toEqual([stop, 'stop']);
      expect(r.text).toBe(full.slice(0, at));
      expect(r.tokens).toEqual(greedy.slice(0, k));
      const s = tiny.stream(HELLO, { maxNewTokens: n, stopOnEos: false, stop: [stop] });
      expect((await collect(s)).join('')).toBe(full.slice(0, at));
    }
  });
});

describe('streaming on the byte-level tiny model (partial UTF-8 sequences)', () => {
  test('chunks join to result.text for sampled byte soup; no chunk ends inside a character', async () => {
    const tok = hfTokenizer(tinyDir);
    let multiByte = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      // A multi-byte UTF-8 prompt, then random bytes at a high temperature.
      const s = tiny.stream('Zoë 🙂', { maxNewTokens: 40, stopOnEos: false, temperature: 1.5, seed });
      const chunks = await collect(s);
      const r = await s.result;
      expect(chunks.join('')).toBe(r.text);
      expect(r.text).toBe(tok.decode(r.tokens, { skip_special_tokens: true }));
      // Count generated characters that took 2+ bytes (valid sequences completed across tokens).
      multiByte += [...r.text].filter((ch) => ch.codePointAt(0)! >= 0x80 && ch !== '\ufffd').length;
    }
    expect(multiByte).toBeGreaterThan(0); // the path was exercised
  });
});

describeStories(storiesTitle('stop strings and streaming on stories260K'), () => {
  const N = 60;
  const PROMPT = 'Once upon a time';
  let model: Model;
  let tok: Tokenizer;
  let refGreedy: number[];
  let fullText: string;
  const decode = (ids: number[]) => tok.decode(ids, { skip_special_tokens: true });

  beforeAll(() => {
    model = Model.loadSync(STORIES);
    tok = hfTokenizer(STORIES);
    const prompt = tok.encode(PROMPT).ids;
    refGreedy = ReferenceLlama.load(STORIES).greedy(prompt, N);
    fullText = decode(refGreedy);
  });

  test('plain greedy generation: ids and text from the reference and the HF tokenizer', async () => {
    const r = await model.generate(PROMPT, { maxNewTokens: N, stopOnEos: false });
    expect(r.tokens).toEqual(refGreedy);
    expect(r.text).toBe(fullText);
  });

  // [stop strings, the one expected to cut]
  const cases: Array<[string[], string]> = [
    [['little girl'], 'little girl'], // several whole tokens
    [['ittle gi'], 'ittle gi'], // starts and ends inside tokens
    [['park', 'little'], 'little'], // the earliest occurrence wins
    [['.'], '.'], // a single character
  ];
  test.each(cases)('stop %j: text cut before it, finishReason stop, stream equals text', async (stop, cutAt) => {
    const at = fullText.indexOf(cutAt);
    expect(at).toBeGreaterThan(0); // the fixture text contains it (deterministic checkpoint)
    const want = fullText.slice(0, at);
    // The generation must end on the token that completes the stop string.
    let k = 1;
    while (!decode(refGreedy.slice(0, k)).includes(cutAt)) k++;

    const r = await model.generate(PROMPT, { maxNewTokens: N, stopOnEos: false, stop });
    expect(r.finishReason).toBe('stop');
    expect(r.text).toBe(want);
    expect(r.tokens).toEqual(refGreedy.slice(0, k));

    const s = model.stream(PROMPT, { maxNewTokens: N, stopOnEos: false, stop });
    const chunks = await collect(s);
    const joined = chunks.join('');
    expect(joined).toBe(want);
    for (const st of stop) expect(joined).not.toContain(st);
    expect((await s.result).text).toBe(want);
  });

  test('a stop string whose prefix occurs but which never completes: nothing lost, reason length', async () => {
    expect(fullText).toContain('little ');
    expect(fullText).not.toContain('little dragon');
    const s = model.stream(PROMPT, { maxNewTokens: N, stopOnEos: false, stop: ['little dragon'] });
    const chunks = await collect(s);
    const r = await s.result;
    expect(r.finishReason).toBe('length');
    expect(r.text).toBe(fullText);
    expect(chunks.join('')).toBe(fullText);
  });

  test.each(['Once upon a time', 'The cat', 'Lily and Ben were', 'Tom had a big red'])(
    'streaming %j: chunks join to result.text, which decodes result.tokens',
    async (prompt) => {
      const s = model.stream(prompt, { maxNewTokens: 40, stopOnEos: false, temperature: 0.8, seed: 11 });
      const chunks = await collect(s);
      const r = await s.result;
      expect(chunks.length).toBeGreaterThan(5); // it really streamed
      expect(chunks.join('')).toBe(r.text);
      expect(r.text).toBe(decode(r.tokens));
      const again = await model.generate(prompt, { maxNewTokens: 40, stopOnEos: false, temperature: 0.8, seed: 11 });
      expect(again.tokens).toEqual(r.tokens);
    },
  );
});
