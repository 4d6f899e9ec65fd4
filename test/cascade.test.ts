/**
 * Cascade Speculative Drafting (method 'csd'): the K matrix and its readable form
 * (lib/cascade/config.ts), greedy exactness of random cascades (vertical + horizontal,
 * lenient draft levels, adaptive row-0 bands) against plain AR and the float64 reference
 * (test/reference/llama.ts), and the cost-model metrics (SWI, EWIF, per-level counters).
 * Expected values come from the reference, from AR output, from hand computation, or from a
 * brute-force simulation of the decoding loop — never from the code under test.
 * The sampling distribution of 'csd' is in cascade-sampling.test.ts (kept apart for time).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import {
  CascadeConfigError,
  describeCascade,
  matrixToReadable,
  parseCascade,
  readableToMatrix,
  validateMatrix,
  type CascadeMatrix,
  type ReadableCascade,
} from '../lib/cascade/config';
import { BandedDrafter, buildCascade, ProposalRows } from '../lib/cascade/cascade';
import { CachedContext } from '../lib/drafters/cached-context';
import { AdaptiveScheduler, CostModel, Ema, isotonic, RESEARCH_EVERY, SchedulerState } from '../lib/cascade/scheduler';
import { MaxGram } from '../lib/drafters/maxgram';
import { ModelDrafter } from '../lib/drafters/model-drafter';
import { DrafterCounters, isPending, resumeSync, type DraftBlock, type Drafter } from '../lib/drafters/drafter';
import { ewif, swi } from '../lib/metrics';
import { greedyWithProbabilities } from './helpers/greedy-reference';
import { maxAbsDiff } from './helpers/stats';
import { Model } from '../lib/model';
import type { GenerateOptions } from '../lib/options';
import { makeTinyModel, mulberry32, perturbedCopy, type TinyModelConfig } from './helpers/tiny-model';
import { ReferenceLlama } from './reference/llama';

const V = 260;
const BOS = 256;
const EOS = 257;

// ---------------------------------------------------------------------------------------------
// Independent helpers (no lib/ code).

/** The readable form of K written out from the definition (§5 of cs-drafting.md). */
function readableOf(drafters: string[], K: number[][], lenience: number): ReadableCascade {
  const col = (c: number) => (c < drafters.length ? drafters[c] : 'maxgram');
  const levels = K.map((row, r) => ({
    reviewer: r === 0 ? 'target' : drafters[r - 1],
    bands: row.map((size, c) => ({ drafter: col(c), size })).filter((b) => b.size > 0),
  })).filter((l, r) => r === 0 || l.bands.length > 0);
  return { drafters: [...drafters], levels, lenience };
}

/** A random valid K for n drafters: upper triangular, entries 0..maxEntry, row 0 non-zero. */
function randomK(rand: () => number, n: number, maxEntry: number): number[][] {
  const K: number[][] = Array.from({ length: n + 1 }, (_, r) => Array.from({ length: n + 1 }, (_, c) => (c < r ? 0 : Math.floor(rand() * (maxEntry + 1)))));
  while (!K[0].some((v) => v > 0)) K[0][Math.floor(rand() * (n + 1))] = 1 + Math.floor(rand() * maxEntry);
  return K;
}

/** Parameter count of a tiny Llama from its config.json (untied, no biases). */
function paramsOf(c: TinyModelConfig): number {
  const H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim ?? H / c.num_attention_heads;
  const attn = c.num_attention_heads * hd * H * 2 + c.num_key_value_heads * hd * H * 2;
  const layer = 2 * H + attn + 3 * I * H;
  return c.vocab_size * H * 2 + c.num_hidden_layers * layer + H;
}

const expectConfigError = (f: () => unknown, message: string | RegExp): void => {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(CascadeConfigError);
  if (typeof message === 'string') expect((caught as Error).message).toBe(message);
  else expect((caught as Error).message).toMatch(message);
};

// ---------------------------------------------------------------------------------------------

describe('config: K matrix and readable form', () => {
  test('random valid K (0..3 drafters) round-trip matrix -> readable -> matrix, and the readable form is the definition', () => {
    const rand = mulberry32(2024);
    const pool = ['alpha', 'beta', 'gamma', 'delta'];
    for (let i = 0; i < 200; i++) {
      const n = i % 4;
      const drafters = pool.slice(0, n);
      const K = randomK(rand, n, 6);
      const lenience = [1, 1.5, 2, 3, 10][i % 5];
      const m: CascadeMatrix = { drafters, K, lenience };
      const readable = matrixToReadable(m);
      expect(readable).toEqual(readableOf(drafters, K, lenience));
      const back = readableToMatrix(readable);
      expect(back).toEqual({ drafters, K, lenience });
      // parseCascade takes either form.
      expect(parseCascade(readable)).toEqual(back);
      expect(parseCascade(m)).toEqual(back);
      // Through JSON too (what cascade.json files hold).
      expect(parseCascade(JSON.parse(JSON.stringify(readable)))).toEqual(back);
      // Normalisation copies: mutating the input does not change the parsed result.
      const parsed = validateMatrix(m);
      K[0][0] += 1;
      expect(parsed.K[0][0]).toBe(K[0][0] - 1);
    }
  });

  test('confidence: kept by both forms, shown by describeCascade, absent when 0', () => {
    const m = validateMatrix({ drafters: ['d'], K: [[6, 0], [0, 0]], confidence: 0.3 });
    expect(m).toEqual({ drafters: ['d'], K: [[6, 0], [0, 0]], lenience: 1, confidence: 0.3 });
    expect(readableToMatrix(matrixToReadable(m))).toEqual(m);
    expect(describeCascade(m)).toBe('target[d:6] ~0.3');
    expect(validateMatrix({ drafters: ['d'], K: [[6, 0], [0, 0]], confidence: 0 })).not.toHaveProperty('confidence');
  });

  test('lenience defaults to 1 in both forms', () => {
    expect(validateMatrix({ drafters: [], K: [[4]] })).toEqual({ drafters: [], K: [[4]], lenience: 1 });
    expect(readableToMatrix({ drafters: ['d'], levels: [{ reviewer: 'target', bands: [{ drafter: 'd', size: 2 }] }] })).toEqual({ drafters: ['d'], K: [[2, 0], [0, 0]], lenience: 1 });
  });

  test("the paper's two configurations parse and read as documented", () => {
    const t5 = parseCascade({ drafters: ['base', 'small'], K: [[5, 14, 10], [0, 1, 10], [0, 0, 10]], lenience: 2 });
    expect(t5).toEqual({ drafters: ['base', 'small'], K: [[5, 14, 10], [0, 1, 10], [0, 0, 10]], lenience: 2 });
    expect(matrixToReadable(t5)).toEqual({
      drafters: ['base', 'small'],
      lenience: 2,
      levels: [
        { reviewer: 'target', bands: [{ drafter: 'base', size: 5 }, { drafter: 'small', size: 14 }, { drafter: 'maxgram', size: 10 }] },
        { reviewer: 'base', bands: [{ drafter: 'small', size: 1 }, { drafter: 'maxgram', size: 10 }] },
        { reviewer: 'small', bands: [{ drafter: 'maxgram', size: 10 }] },
      ],
    });
    expect(describeCascade(t5)).toBe('target[base:5 small:14 maxgram:10] base(l=2)[small:1 maxgram:10] small(l=2)[maxgram:10]');

    const llama = parseCascade({ drafters: ['llama-160m'], K: [[13, 10], [0, 10]], lenience: 3 });
    expect(llama.K).toEqual([[13, 10], [0, 10]]);
    expect(llama.lenience).toBe(3);
    expect(describeCascade(llama)).toBe('target[llama-160m:13 maxgram:10] llama-160m(l=3)[maxgram:10]');
    // The readable form of the same thing gives the same matrix.
    expect(
      parseCascade({
        drafters: ['llama-160m'],
        lenience: 3,
        levels: [
          { reviewer: 'target', bands: [{ drafter: 'llama-160m', size: 13 }, { drafter: 'maxgram', size: 10 }] },
          { reviewer: 'llama-160m', bands: [{ drafter: 'maxgram', size: 10 }] },
        ],
      }),
    ).toEqual(llama);
    // Strict reviews carry no lenience mark; a MaG-only cascade is just the target's row.
    expect(describeCascade({ drafters: ['d'], K: [[2, 1], [0, 3]], lenience: 1 })).toBe('target[d:2 maxgram:1] d[maxgram:3]');
    expect(describeCascade({ drafters: [], K: [[4]], lenience: 1 })).toBe('target[maxgram:4]');
  });

  test('invalid matrices give clear errors', () => {
    const two = ['mid', 'small'];
    // Wrong number of rows.
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, 1, 1], [0, 1, 1]] }), 'invalid cascade: K must have 3 rows (one per reviewer: target + 2 drafters), got 2');
    expectConfigError(() => validateMatrix({ drafters: [], K: [[1], [0]] }), /K must have 1 rows .* got 2/);
    expectConfigError(() => validateMatrix({ drafters: two } as unknown as CascadeMatrix), /K must have 3 rows .* got none/);
    // Not square.
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, 1, 1], [0, 1], [0, 0, 1]] }), 'invalid cascade: K row 1 must have 3 entries');
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, 1, 1, 1], [0, 1, 1], [0, 0, 1]] }), 'invalid cascade: K row 0 must have 3 entries');
    // Below the diagonal: a reviewer using a larger drafter (or itself).
    expectConfigError(
      () => validateMatrix({ drafters: two, K: [[1, 1, 1], [2, 1, 1], [0, 0, 1]] }),
      'invalid cascade: K must be upper triangular: K[1][0] = 2 (a reviewer can only use smaller drafters)',
    );
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, 1, 1], [0, 1, 1], [0, 3, 1]] }), /upper triangular: K\[2\]\[1\] = 3/);
    // Negative, fractional, non-number, too large.
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, -1, 1], [0, 1, 1], [0, 0, 1]] }), 'invalid cascade: K[0][1] must be an integer in [0, 256], got -1');
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, 1, 1], [0, 1.5, 1], [0, 0, 1]] }), 'invalid cascade: K[1][1] must be an integer in [0, 256], got 1.5');
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, 1, '2' as unknown as number], [0, 1, 1], [0, 0, 1]] }), /K\[0\]\[2\] must be an integer in \[0, 256\], got 2/);
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, NaN, 1], [0, 1, 1], [0, 0, 1]] }), /K\[0\]\[1\] must be an integer .* got NaN/);
    expectConfigError(() => validateMatrix({ drafters: two, K: [[1, 1, 1], [0, 1, 1], [0, 0, 257]] }), /K\[2\]\[2\] must be an integer in \[0, 256\], got 257/);
    // Row 0 all zeros: nothing to draft.
    expectConfigError(() => validateMatrix({ drafters: two, K: [[0, 0, 0], [0, 1, 1], [0, 0, 1]] }), "invalid cascade: K row 0 (the target's draft) is all zeros: nothing would be drafted");
    expectConfigError(() => validateMatrix({ drafters: [], K: [[0]] }), /row 0 .* all zeros/);
    // Names.
    expectConfigError(() => validateMatrix({ drafters: ['a', 'a'], K: [[1, 1, 1], [0, 1, 1], [0, 0, 1]] }), 'invalid cascade: drafter names must be unique');
    expectConfigError(() => validateMatrix({ drafters: ['maxgram'], K: [[1, 1], [0, 1]] }), 'invalid cascade: "maxgram" and "target" are reserved names');
    expectConfigError(() => validateMatrix({ drafters: ['target'], K: [[1, 1], [0, 1]] }), 'invalid cascade: "maxgram" and "target" are reserved names');
    expectConfigError(() => validateMatrix({ drafters: [''], K: [[1, 1], [0, 1]] }), 'invalid cascade: drafters must be an array of names');
    expectConfigError(() => validateMatrix({ drafters: 'mid' as unknown as string[], K: [[1, 1], [0, 1]] }), 'invalid cascade: drafters must be an array of names');
    // Lenience.
    expectConfigError(() => validateMatrix({ drafters: [], K: [[1]], lenience: 0.5 }), 'invalid cascade: lenience must be a number >= 1, got 0.5');
    expectConfigError(() => validateMatrix({ drafters: [], K: [[1]], lenience: 0 }), /lenience must be a number >= 1, got 0/);
    expectConfigError(() => validateMatrix({ drafters: [], K: [[1]], lenience: NaN }), /lenience must be a number >= 1, got NaN/);
    expectConfigError(() => validateMatrix({ drafters: [], K: [[1]], lenience: Infinity }), /lenience must be a number >= 1, got Infinity/);
    expectConfigError(() => validateMatrix({ drafters: [], K: [[1]], lenience: '2' as unknown as number }), /lenience must be a number >= 1, got 2/);
    for (const bad of [-0.1, 1, 1.5, NaN])
      expectConfigError(() => validateMatrix({ drafters: [], K: [[1]], confidence: bad }), `invalid cascade: confidence must be a number in [0, 1), got ${bad}`);
    expectConfigError(() => parseCascade({ drafters: [], K: [[1]], confidence: '0.3' }), /confidence must be a number in \[0, 1\), got 0.3/);
  });

  test('invalid readable forms give clear errors', () => {
    const lvl = (reviewer: string, ...bands: Array<[string, number]>) => ({ reviewer, bands: bands.map(([drafter, size]) => ({ drafter, size })) });
    const drafters = ['mid', 'small'];
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target', ['tiny', 2])] }), 'invalid cascade: unknown drafter "tiny" in level "target"');
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target', ['mid', 2]), lvl('huge', ['maxgram', 2])] }), 'invalid cascade: unknown reviewer "huge"');
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target', ['mid', 2]), lvl('maxgram', ['maxgram', 2])] }), 'invalid cascade: unknown reviewer "maxgram"');
    // Bands out of order (smaller drafter first), or the same drafter twice.
    expectConfigError(
      () => readableToMatrix({ drafters, levels: [lvl('target', ['small', 2], ['mid', 1])] }),
      'invalid cascade: level "target": bands must go from larger to smaller drafters, each drafter once',
    );
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target', ['maxgram', 2], ['small', 1])] }), /level "target": bands must go from larger to smaller/);
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target', ['mid', 2], ['mid', 1])] }), /level "target": bands must go from larger to smaller drafters, each drafter once/);
    // A reviewer using a larger drafter, or itself.
    expectConfigError(
      () => readableToMatrix({ drafters, levels: [lvl('target', ['mid', 2]), lvl('small', ['mid', 1])] }),
      'invalid cascade: level "small" cannot use "mid": a reviewer only uses drafters smaller than itself',
    );
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target', ['mid', 2]), lvl('mid', ['mid', 1])] }), /level "mid" cannot use "mid"/);
    // A level configured twice.
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target', ['mid', 2]), lvl('target', ['small', 1])] }), 'invalid cascade: reviewer "target" configured twice');
    // No target level, or a target level with nothing in it.
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('mid', ['maxgram', 2])] }), /row 0 .* all zeros/);
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target')] }), /row 0 .* all zeros/);
    // Band sizes are checked as K entries.
    expectConfigError(() => readableToMatrix({ drafters, levels: [lvl('target', ['mid', -2])] }), /K\[0\]\[0\] must be an integer in \[0, 256\], got -2/);
    // Shape errors.
    expectConfigError(() => readableToMatrix({ drafters, levels: [{ reviewer: 'target' } as unknown as ReadableCascade['levels'][0]] }), 'invalid cascade: level "target" needs a bands array');
    expectConfigError(() => parseCascade({ drafters }), 'invalid cascade: expected "K" (matrix form) or "levels" (readable form)');
    expectConfigError(() => parseCascade(null), 'invalid cascade: expected an object');
    expectConfigError(() => parseCascade('[[1]]'), 'invalid cascade: expected an object');
    expectConfigError(() => parseCascade({ levels: [] }), 'invalid cascade: expected { drafters, levels }');
  });
});

// ---------------------------------------------------------------------------------------------

let tmp: string;
let target: Model;
let targetCfg: TinyModelConfig;
let ref: ReferenceLlama;
/** Drafters: `same` = the target's weights (always right), `near` = the target with a noisy
 * head (often right), `w1`/`w2` = other random models (almost always wrong). */
const drafts: Record<string, Model> = {};
const draftCfg: Record<string, TinyModelConfig> = {};

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-csd-'));
  const dir = (n: string) => path.join(tmp, n);
  targetCfg = makeTinyModel(dir('target'), { vocabSize: V, seed: 101 });
  draftCfg.same = makeTinyModel(dir('same'), { vocabSize: V, seed: 101 });
  perturbedCopy(dir('target'), dir('near'), 0.25, 7);
  draftCfg.near = targetCfg;
  draftCfg.w1 = makeTinyModel(dir('w1'), { vocabSize: V, seed: 202 });
  draftCfg.w2 = makeTinyModel(dir('w2'), { vocabSize: V, seed: 303, numLayers: 1, intermediateSize: 32 });
  // The target's weights with a shorter context (64 positions vs the target's 128).
  draftCfg.short = makeTinyModel(dir('short'), { vocabSize: V, seed: 101, maxPositionEmbeddings: 64 });
  target = Model.loadSync(dir('target'));
  for (const n of ['same', 'near', 'w1', 'w2', 'short']) drafts[n] = Model.loadSync(dir(n));
  ref = ReferenceLlama.load(dir('target'));
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

const STRINGS = ['Hello', 'abcabcabc', 'the cat and the cat and the', 'x', 'To be or not to be'];

/** Token ids of a string prompt under the tiny byte-level tokenizer: BOS, then one id per byte. */
const idsOf = (s: string) => [BOS, ...Buffer.from(s, 'utf8')];

describe('greedy exactness of random cascades', () => {
  interface Case {
    drafters: string[];
    K: number[][];
    lenience: number;
    /** 0, or a confidence stop for levels drafting alone (from a separate stream, so adding it
     * left the other fields' draws as they were). */
    confidence: number;
    prompt: string | number[];
    maxNewTokens: number;
    adaptive: boolean;
    stopOnEos: boolean;
    readable: boolean;
  }

  function makeCase(rand: () => number, i: number): Case {
    const pool = ['same', 'near', 'w1', 'w2'];
    const depth = 1 + Math.floor(rand() * 2);
    const drafters: string[] = [];
    while (drafters.length < depth) {
      const d = pool[Math.floor(rand() * pool.length)];
      if (!drafters.includes(d)) drafters.push(d);
    }
    let prompt: string | number[];
    if (i % 2 === 0) prompt = STRINGS[Math.floor(rand() * STRINGS.length)];
    else {
      // Token ids, often with a repeated pattern so Max-Gram has something to propose.
      const unit = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => Math.floor(rand() * V));
      const reps = 1 + Math.floor(rand() * 3);
      prompt = [...(rand() < 0.5 ? [BOS] : []), ...Array.from({ length: reps }, () => unit).flat()];
    }
    const crand = mulberry32(5000 + i);
    return {
      drafters,
      K: randomK(rand, depth, 4),
      lenience: [1, 1.5, 2, 3, 10][Math.floor(rand() * 5)],
      confidence: crand() < 0.75 ? [0.1, 0.3, 0.6, 0.9][Math.floor(crand() * 4)] : 0,
      prompt,
      maxNewTokens: 1 + Math.floor(rand() * 40),
      adaptive: rand() < 0.35,
      stopOnEos: rand() < 0.3,
      readable: rand() < 0.3,
    };
  }

  const CASES = 64;
  test(`${CASES} random cascades: csd ids == ar ids == reference greedy (subset)`, async () => {
    const rand = mulberry32(77);
    let referenceChecked = 0;
    let levelPasses = 0;
    let topAccepted = 0;
    let topRejected = 0;
    let adaptiveCases = 0;
    let confidenceCases = 0;
    for (let i = 0; i < CASES; i++) {
      const c = makeCase(rand, i);
      const label = JSON.stringify({ i, ...c });
      const base: GenerateOptions = { maxNewTokens: c.maxNewTokens, stopOnEos: c.stopOnEos, temperature: 0 };
      const ar = await target.generate(c.prompt, { ...base, method: 'ar' });
      const conf = c.confidence ? { confidence: c.confidence } : {};
      const cascade = c.readable ? { ...readableOf(c.drafters, c.K, c.lenience), ...conf } : { drafters: c.drafters, K: c.K, lenience: c.lenience, ...conf };
      const draftModels = Object.fromEntries(c.drafters.map((d) => [d, drafts[d]]));
      const csd = await target.generate(c.prompt, { ...base, method: 'csd', cascade, draftModels, adaptive: c.adaptive, seed: 1000 + i });
      expect({ label, tokens: csd.tokens }).toEqual({ label, tokens: ar.tokens });
      expect({ label, text: csd.text, finishReason: csd.finishReason }).toEqual({ label, text: ar.text, finishReason: ar.finishReason });
      const promptIds = typeof c.prompt === 'string' ? idsOf(c.prompt) : c.prompt;
      expect(csd.promptTokens).toEqual(promptIds);
      if (i % 4 === 0) {
        let want = ref.greedy(promptIds, c.maxNewTokens);
        if (c.stopOnEos && want.includes(EOS)) want = want.slice(0, want.indexOf(EOS) + 1);
        expect({ label, tokens: ar.tokens }).toEqual({ label, tokens: want });
        referenceChecked++;
      }
      const levels = (csd.stats.levels as Array<{ passes: number }>) ?? [];
      levelPasses += levels.reduce((s, l) => s + l.passes, 0);
      topAccepted += Number(csd.stats.accepted);
      topRejected += Number(csd.stats.drafted) - Number(csd.stats.accepted);
      if (c.adaptive) adaptiveCases++;
      if (c.confidence && c.K.some((row, r) => r > 0 && row.every((v) => v === 0))) confidenceCases++;
    }
    expect(confidenceCases).toBeGreaterThan(5);
    // The property test exercised what it claims to.
    expect(referenceChecked).toBe(CASES / 4);
    expect(adaptiveCases).toBeGreaterThan(5);
    expect(levelPasses).toBeGreaterThan(0);
    expect(topAccepted).toBeGreaterThan(0);
    expect(topRejected).toBeGreaterThan(0);
  });

  test('a level with an empty K row drafts its band alone in one call per draft; output equals the reference', async () => {
    // target[near:4] with near's row empty: near drafts 4 tokens per native call (4 passes),
    // like a plain draft model, instead of one reviewed token per call.
    const cascade = { drafters: ['near'], K: [[4, 0], [0, 0]], lenience: 1 };
    const prompt = idsOf('the cat and the cat');
    // Count the level's native calls: wrap the sequence its model creates.
    const calls = { draft: 0, verify: 0 };
    const create = drafts.near.createSequence.bind(drafts.near);
    const spy = jest.spyOn(drafts.near, 'createSequence').mockImplementation((o) => {
      const seq = create(o);
      const native = seq.native;
      (seq as { native: unknown }).native = new Proxy(native, {
        get: (t, p) => {
          const v = (t as unknown as Record<string | symbol, unknown>)[p];
          if (p === 'draft' || p === 'verify') calls[p]++;
          return typeof v === 'function' ? v.bind(t) : v;
        },
      });
      return seq;
    });
    try {
      const r = await target.generate(prompt, { method: 'csd', cascade, draftModels: { near: drafts.near }, maxNewTokens: 30, stopOnEos: false });
      expect(r.tokens).toEqual(ref.greedy(prompt, 30));
      const [level] = r.stats.levels as Array<{ passes: number; produced: number; proposed: number }>;
      expect(level.proposed).toBe(0); // it reviewed nothing
      expect(level.produced).toBe(Number(r.stats.drafted));
      expect(level.passes).toBe(level.produced); // one forward per drafted token
      expect(calls.verify).toBe(0);
      // One call per target pass after the prompt's (but the last, when nothing is left to draft).
      expect(calls.draft).toBeGreaterThanOrEqual(r.stats.targetForwards - 2);
      expect(calls.draft).toBeLessThanOrEqual(r.stats.targetForwards - 1);
      expect(Number(r.stats.drafted)).toBeGreaterThan(3 * calls.draft); // up to 4 tokens each
    } finally {
      spy.mockRestore();
    }
  });

  test('drafters prefill the prompt in begin(): a draft call then feeds only what is new', async () => {
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const context = idsOf('the cat and the');
    const d = new ModelDrafter(drafts.near, 128);
    d.begin(context);
    expect(d.forwards).toBe(1); // one pass over all of the context but its last token
    const block = await d.draft(3, greedy);
    expect(d.forwards).toBe(1 + 3);
    // The same proposal as a drafter that feeds everything in its first call.
    const seq = drafts.near.createSequence({ contextLength: 128 });
    const want = Array.from(seq.native.draft(Int32Array.from(context), 3, greedy).tokens);
    expect(block.tokens).toEqual(want);
    // A drafter whose context cannot hold the prompt prefills nothing and drafts nothing.
    const short = new ModelDrafter(drafts.near, 8);
    short.begin(context);
    expect(short.forwards).toBe(0);
    expect((await short.draft(3, greedy)).tokens).toEqual([]);
    d.dispose();
    short.dispose();
    seq.dispose();
  });

  test('resumeSync runs a generator synchronously until a yielded value is pending, then as a promise', async () => {
    function* sum(values: Array<number | Promise<number>>): Generator<number | Promise<number>, number, number> {
      let total = 0;
      for (const v of values) total += yield v;
      return total;
    }
    expect(resumeSync(sum([1, 2, 3]))).toBe(6);
    const later = resumeSync(sum([1, Promise.resolve(2), 3, Promise.resolve(4)]));
    expect(isPending(later)).toBe(true);
    await expect(later).resolves.toBe(10);
    await expect(resumeSync(sum([1, Promise.reject(new Error('drafter failed'))]))).rejects.toThrow('drafter failed');
    function* failing(): Generator<number, number, number> {
      yield 1;
      throw new Error('at once');
    }
    expect(() => resumeSync(failing())).toThrow('at once');
  });

  test('a cascade of model levels answers synchronously; a band after a pending drafter continues as a promise with the same block', async () => {
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const context = idsOf('the cat and the');
    const d = new ModelDrafter(drafts.near, 128);
    d.begin(context);
    const plain = d.draft(3, greedy);
    expect(isPending(plain)).toBe(false);
    expect((plain as DraftBlock).tokens).toHaveLength(3);
    d.dispose();
    // target[w1:3] w1[near:2]: w1 reviews near's blocks (a promise); near drafts alone (none).
    const cascade = buildCascade({ drafters: ['w1', 'near'], K: [[3, 0, 0], [0, 2, 0], [0, 0, 0]], lenience: 1 }, { near: drafts.near, w1: drafts.w1 }, new MaxGram(), 128);
    await cascade.begin(context);
    const level = (name: string) => cascade.levels.find((l) => l.name === name)!;
    const [w1, near] = [level('w1'), level('near')];
    const alone = near.draft(2, greedy);
    expect(isPending(alone)).toBe(false);
    expect((alone as DraftBlock).tokens).toHaveLength(2);
    // w1 reviews near's block, both synchronously, and so does the target's band over w1.
    const reviewed = w1.draft(3, greedy);
    expect(isPending(reviewed)).toBe(false);
    expect((reviewed as DraftBlock).tokens.length).toBeGreaterThan(0);
    const whole = cascade.draft(3, greedy);
    expect(isPending(whole)).toBe(false);
    expect((whole as DraftBlock).tokens.length).toBeGreaterThan(0);
    cascade.dispose();
    // A band of [a fixed two-token drafter, the model]: the model continues after the two tokens.
    // The fixed drafter answers at once in one band and through a promise in the other; the
    // blocks, sources and call counts must be the same.
    const fixed = idsOf(' ca').slice(1);
    const fixedDrafter = (pending: boolean): Drafter => ({
      name: pending ? 'pending' : 'at-once',
      counters: new DrafterCounters(),
      begin: () => undefined,
      accept: () => undefined,
      draft: (max: number) => {
        const block = { tokens: fixed.slice(0, max) };
        return pending ? Promise.resolve(block) : block;
      },
    });
    const results = [];
    for (const pending of [false, true]) {
      const model = new ModelDrafter(drafts.near, 128);
      model.begin(context);
      model.accept([]);
      const band = new BandedDrafter('band', [fixedDrafter(pending), model], [fixed.length, 3]);
      const r = band.draft(fixed.length + 3, greedy);
      expect(isPending(r)).toBe(pending);
      results.push({ tokens: (await r).tokens, sources: band.lastSources, calls: band.lastCalls });
      model.dispose();
    }
    expect(results[1]).toEqual(results[0]);
    const continued = greedyWithProbabilities(drafts.near, [...context, ...fixed], 3).map((r) => r.token);
    expect(results[0].tokens).toEqual([...fixed, ...continued]);
    expect(results[0].calls).toEqual([1, 1]);
  });

  test("a band whose only positions are a level's drafting alone returns the level's block with the band's bookkeeping", async () => {
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const context = idsOf('the cat and the');
    // target[near:3 maxgram:1]; the scheduler-style resize to [3, 0] leaves one band.
    const cascade = buildCascade({ drafters: ['near'], K: [[3, 1], [0, 0]], lenience: 1 }, { near: drafts.near }, new MaxGram(), 128);
    await cascade.begin(context);
    const top = cascade.top;
    top.setBands([3, 0]);
    const want = greedyWithProbabilities(drafts.near, context, 3).map((r) => r.token);
    const plain = cascade.draft(5, greedy);
    expect(isPending(plain)).toBe(false);
    expect((plain as DraftBlock).tokens).toEqual(want);
    expect([top.lastSources, top.lastCalls]).toEqual([[], []]); // not measured: nothing recorded
    // The same draft again (nothing was accepted in between), measured, as the adaptive
    // scheduler has it.
    top.measure = true;
    const block = cascade.draft(5, greedy);
    expect((block as DraftBlock).tokens).toEqual(want);
    expect(top.lastSources).toEqual([[0, 0], [0, 1], [0, 2]]);
    expect(top.lastCalls).toEqual([1, 0]);
    expect(top.lastCostMs[1]).toBe(0);
    // The target accepts the first token and corrects the second; the next draft (2 allowed)
    // continues from the committed text, and the counters saw 3 proposed, 1 accepted.
    const correction = want[1] === 99 ? 100 : 99;
    cascade.accept([want[0], correction]);
    expect([top.counters.proposed, top.counters.accepted]).toEqual([3, 1]);
    const next = cascade.draft(2, greedy) as DraftBlock;
    expect(next.tokens).toEqual(greedyWithProbabilities(drafts.near, [...context, want[0], correction], 2).map((r) => r.token));
    // Both bands again: the band's loop runs, and Max-Gram is asked for the last position.
    cascade.accept([next.tokens[0], correction]);
    top.setBands([3, 1]);
    expect((cascade.draft(4, greedy) as DraftBlock).tokens.length).toBeGreaterThanOrEqual(3);
    expect(top.lastSources.slice(0, 3).map(([d]) => d)).toEqual([0, 0, 0]);
    expect(top.lastCalls).toEqual([1, 1]);
    cascade.dispose();
  });

  test('confidence: a band of a level drafting alone ends where its model is unsure, and the next band starts there', async () => {
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const context = idsOf('the cat and the cat and the cat and the cat and the');
    const models = { near: drafts.near };
    // The reference: the level's model drafting 4 greedy tokens, with each one's probability.
    const ref = greedyWithProbabilities(drafts.near, context, 4);
    const tokens = ref.map((r) => r.token), probs = ref.map((r) => r.p);
    // A threshold just above the second token's probability: the band stops after one token.
    const confidence = Math.min(0.999, probs[1] * 1.001);
    expect(probs[1] < confidence).toBe(true);
    // A bigram fallback that always has a next token, so Max-Gram could fill every position.
    const bigram = Int32Array.from({ length: V }, (_, t) => (t + 1) % V);
    for (const [conf, wantFromModel] of [[0, 4], [confidence, 1]] as const) {
      const mg = new MaxGram({ bigram });
      const cascade = buildCascade({ drafters: ['near'], K: [[4, 2], [0, 0]], lenience: 1, confidence: conf }, models, mg, 64);
      await cascade.begin(context);
      const block = await cascade.draft(6, greedy);
      const fromModel = cascade.top.lastSources.filter(([d]) => d === 0).length;
      expect({ conf, fromModel }).toEqual({ conf, fromModel: wantFromModel });
      expect(block.tokens.slice(0, fromModel)).toEqual(tokens.slice(0, fromModel));
      // Max-Gram's band follows right after, with its own size (2), though it could propose
      // more and positions up to 6 are left.
      const mgWant = new MaxGram({ bigram });
      mgWant.begin([...context, ...tokens.slice(0, fromModel)]);
      expect(mgWant.propose(5).length).toBeGreaterThan(2);
      expect(block.tokens.slice(fromModel)).toEqual(mgWant.propose(2));
      cascade.dispose();
    }
  });

  test('sampling: a model band hands up the distributions its tokens were drawn from, Max-Gram one-hot rows', async () => {
    const sampling = { temperature: 1, topK: 0, topP: 1 };
    const context = idsOf('the cat and the cat and the cat and the cat and the');
    const bigram = Int32Array.from({ length: V }, (_, t) => (t + 1) % V);
    const mg = new MaxGram({ bigram });
    const cascade = buildCascade({ drafters: ['near'], K: [[3, 2], [0, 0]], lenience: 1 }, { near: drafts.near }, mg, 64, 7);
    await cascade.begin(context);
    const block = await cascade.draft(5, sampling);
    expect(block.tokens).toHaveLength(5);
    expect(cascade.top.lastSources.map(([d]) => d)).toEqual([0, 0, 0, 1, 1]);
    const probs = block.probs!;
    expect(probs).toBeInstanceOf(Float32Array);
    expect(probs.length).toBe(5 * V);
    // The model's rows: the processed distribution of the draft model at each prefix (the float64
    // reference's softmax at temperature 1), each drawn token inside it.
    const ref = ReferenceLlama.load(drafts.near.dir);
    for (let i = 0; i < 3; i++) {
      const row = probs.subarray(i * V, (i + 1) * V);
      const logits = ref.forward([...context, ...block.tokens.slice(0, i)]).at(-1)!;
      const max = Math.max(...logits);
      const z = logits.reduce((a, l) => a + Math.exp(l - max), 0);
      expect(maxAbsDiff(row, logits.map((l) => Math.exp(l - max) / z))).toBeLessThan(1e-4);
      expect(row[block.tokens[i]]).toBeGreaterThan(0);
    }
    // Max-Gram's rows: one-hot at its tokens.
    for (let i = 3; i < 5; i++) {
      const row = probs.subarray(i * V, (i + 1) * V);
      expect(row[block.tokens[i]]).toBe(1);
      expect(row.reduce((a, b) => a + b, 0)).toBe(1);
    }
    // Greedy drafts are deterministic: no rows at all.
    const greedyBlock = await cascade.draft(5, { temperature: 0, topK: 0, topP: 1 });
    expect(greedyBlock.probs).toBeUndefined();
    cascade.dispose();
    // A band of one draft model alone, cut short by max: its first rows, one per token.
    const single = buildCascade({ drafters: ['near'], K: [[4, 0], [0, 0]], lenience: 1 }, { near: drafts.near }, new MaxGram(), 64, 7);
    await single.begin(context);
    const short = await single.draft(2, sampling);
    expect(short.tokens).toHaveLength(2);
    expect(short.probs!.length).toBe(2 * V);
    for (let i = 0; i < 2; i++) expect(short.probs![i * V + short.tokens[i]]).toBeGreaterThan(0);
    single.dispose();
  });

  test('sampling: a strict review level hands up its own distributions; a lenient one hands up none', async () => {
    const sampling = { temperature: 1, topK: 0, topP: 1 };
    const context = idsOf('the cat and the cat and the');
    const ref = ReferenceLlama.load(drafts.near.dir);
    for (let seed = 1; seed <= 3; seed++) {
      // near reviews w1's 2-token drafts; the top band takes 4 of near's tokens (two reviews or more).
      const strict = buildCascade({ drafters: ['near', 'w1'], K: [[4, 0, 0], [0, 2, 0], [0, 0, 0]], lenience: 1 }, { near: drafts.near, w1: drafts.w1 }, new MaxGram(), 64, seed);
      await strict.begin(context);
      const block = await strict.draft(4, sampling);
      expect(block.tokens).toHaveLength(4);
      for (let i = 0; i < 4; i++) {
        const row = block.probs!.subarray(i * V, (i + 1) * V);
        const logits = ref.forward([...context, ...block.tokens.slice(0, i)]).at(-1)!;
        const max = Math.max(...logits);
        const z = logits.reduce((a, l) => a + Math.exp(l - max), 0);
        expect(maxAbsDiff(row, logits.map((l) => Math.exp(l - max) / z))).toBeLessThan(1e-4);
      }
      strict.dispose();
      const lenient = buildCascade({ drafters: ['near', 'w1'], K: [[4, 0, 0], [0, 2, 0], [0, 0, 0]], lenience: 2 }, { near: drafts.near, w1: drafts.w1 }, new MaxGram(), 64, seed);
      await lenient.begin(context);
      expect((await lenient.draft(4, sampling)).probs).toBeUndefined();
      lenient.dispose();
    }
  });

  test("ProposalRows: one sampled piece passes as it is; mixed pieces are assembled, sampled rows copied before a drafter's next call can overwrite them", () => {
    const V4 = 4;
    const rows = new ProposalRows();
    // Deterministic pieces only: no rows.
    rows.start();
    rows.add([1, 2], undefined, 2);
    expect(rows.finish()).toBeUndefined();
    // One sampled piece: its own view, trimmed to the tokens taken (3 proposed, 2 taken).
    const source = Float32Array.of(0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0, 0, 0.25, 0.25, 0.25, 0.25);
    rows.start();
    rows.add([3, 0], source, 3);
    const single = rows.finish()!;
    expect(single.buffer).toBe(source.buffer);
    expect(Array.from(single)).toEqual(Array.from(source.subarray(0, 2 * V4)));
    // A sampled piece, kept before the next call; the drafter's buffer is then overwritten
    // (as its next draft would); a one-hot piece follows.
    rows.start();
    rows.add([3, 0], source, 3);
    rows.keep();
    const before = Array.from(source.subarray(0, 2 * V4));
    source.fill(9);
    rows.add([2], undefined, 1);
    const mixed = rows.finish()!;
    expect(Array.from(mixed)).toEqual([...before, 0, 0, 1, 0]);
    // The next block reuses the array: a one-hot piece first, then sampled rows; nothing stale.
    const fresh = Float32Array.of(0.7, 0.1, 0.1, 0.1);
    rows.start();
    rows.add([1], undefined, 1);
    rows.add([0], fresh, 1);
    expect(Array.from(rows.finish()!)).toEqual([0, 1, 0, 0, ...Array.from(fresh)]);
    // A single sampled piece kept (a later drafter ran and proposed nothing): the kept copy.
    const lone = Float32Array.of(0.5, 0.5, 0, 0);
    rows.start();
    rows.add([1], lone, 1);
    rows.keep();
    lone.fill(3);
    expect(Array.from(rows.finish()!)).toEqual([0.5, 0.5, 0, 0]);
  });

  test('draftTemperatureScale: a draft model draws at the temperature times its scale, alone and in a band; greedy drafts do not change', async () => {
    const hot = Model.loadSync(drafts.near.dir, { draftTemperatureScale: 1.7 });
    expect(hot.draftTemperatureScale).toBe(1.7);
    expect(drafts.near.draftTemperatureScale).toBe(1);
    const sampling = { temperature: 0.8, topK: 0, topP: 1 };
    const context = idsOf('the cat and the cat and the');
    const ref = ReferenceLlama.load(hot.dir);
    // Each row: the reference's softmax at 0.8 x 1.7 at its prefix, the drawn token inside it.
    const expectRowsAt = (block: { tokens: number[]; probs?: Float32Array }, temperature: number) => {
      expect(block.tokens).toHaveLength(3);
      for (let i = 0; i < 3; i++) {
        const row = block.probs!.subarray(i * V, (i + 1) * V);
        const logits = ref.forward([...context, ...block.tokens.slice(0, i)]).at(-1)!;
        const max = Math.max(...logits);
        const z = logits.reduce((a, l) => a + Math.exp((l - max) / temperature), 0);
        expect(maxAbsDiff(row, logits.map((l) => Math.exp((l - max) / temperature) / z))).toBeLessThan(1e-4);
        expect(row[block.tokens[i]]).toBeGreaterThan(0);
      }
    };
    const alone = new ModelDrafter(hot, 64, undefined, 5);
    alone.begin(context);
    expectRowsAt(await alone.draft(3, sampling), 0.8 * 1.7);
    alone.dispose();
    const band = buildCascade({ drafters: ['near'], K: [[3, 0], [0, 0]], lenience: 1 }, { near: hot }, new MaxGram(), 64, 7);
    await band.begin(context);
    expectRowsAt(await band.draft(3, sampling), 0.8 * 1.7);
    band.dispose();
    // The unscaled model's rows are the softmax at 0.8 itself (what the check above tells apart).
    const plain = new ModelDrafter(drafts.near, 64, undefined, 5);
    plain.begin(context);
    expectRowsAt(await plain.draft(3, sampling), 0.8);
    // Greedy: the same tokens at any scale.
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const hotGreedy = new ModelDrafter(hot, 64);
    hotGreedy.begin(context);
    plain.begin(context);
    expect((await hotGreedy.draft(4, greedy)).tokens).toEqual((await plain.draft(4, greedy)).tokens);
    hotGreedy.dispose();
    plain.dispose();
  });

  test('adaptive bands: measurements carry over to the next generation with the same cascade', async () => {
    const cascade = { drafters: ['near', 'w1'], K: [[2, 1, 1], [0, 0, 1], [0, 0, 1]], lenience: 1 };
    const models = { near: drafts.near, w1: drafts.w1 };
    const states = (target as unknown as { schedulerStates: Map<string, SchedulerState> }).schedulerStates;
    states.clear();
    const prompt = idsOf('the cat and the cat');
    const first = await target.generate(prompt, { method: 'csd', cascade, draftModels: models, adaptive: true, maxNewTokens: 30, stopOnEos: false });
    expect(states.size).toBe(1);
    const [state] = states.values();
    expect(Array.from({ length: 8 }, (_, n) => state.costs.count(`verify:${n}`)).some((c) => c > 0)).toBe(true);
    const learnt = state.alpha.map((row) => row.map((e) => e.value));
    expect(learnt.flat().some((v) => v !== 0.6)).toBe(true); // moved off the optimistic start
    const second = await target.generate(prompt, { method: 'csd', cascade, draftModels: models, adaptive: true, maxNewTokens: 30, stopOnEos: false });
    expect(second.tokens).toEqual(first.tokens);
    expect(states.size).toBe(1);
    expect([...states.values()][0]).toBe(state); // the same measurements, updated in place
    // Measurements for another number of drafters are refused, naming both counts.
    const three = buildCascade(cascade, models, new MaxGram(), 64);
    expect(() => new AdaptiveScheduler(three, { state: new SchedulerState(2) })).toThrow('scheduler state is for 2 drafters, the cascade has 3');
    // Another cascade gets its own, starting from its row 0 of K as the plan in use (a
    // generation this short searches only for its shorter limits, which the state does not keep).
    await target.generate(prompt, { method: 'csd', cascade: { ...cascade, K: [[1, 0, 2], [0, 0, 1], [0, 0, 1]] }, draftModels: models, adaptive: true, maxNewTokens: 5 });
    expect(states.size).toBe(2);
    expect([...states.values()][1].plan).toEqual([1, 0, 2]);
  });

  test('adaptive bands: a draft model the plan leaves out is not prefilled; one a later plan takes catches up first', async () => {
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const models = { near: drafts.near, w1: drafts.w1 };
    const cascade = buildCascade({ drafters: ['near', 'w1'], K: [[1, 1, 1], [0, 0, 1], [0, 0, 1]], lenience: 1 }, models, new MaxGram(), 128);
    const state = new SchedulerState(3);
    // Measurements that rule 'near' out: it never gets a token accepted.
    for (const e of state.alpha[0]) for (let i = 0; i < 50; i++) e.add(0);
    for (const e of state.alpha[1]) for (let i = 0; i < 50; i++) e.add(1);
    // Drafting priced at 1% of a target pass (the tiny drafts are the target's size).
    const scheduler = new AdaptiveScheduler(cascade, { state, targetParams: target.numParams * 100, explore: 0 });
    const context = idsOf('the cat and the cat and the cat and the');
    await scheduler.begin(context);
    // The level left out has not even taken a sequence from its model.
    const levelOf = (name: string) => cascade.levels.find((l) => l.name === name) as unknown as { cached?: unknown; ctx: { length: number } };
    expect({ near: levelOf('near').cached === undefined, w1: levelOf('w1').cached === undefined }).toEqual({ near: true, w1: false });
    const cacheOf = (name: string) => levelOf(name).ctx.length;
    expect({ near: cacheOf('near'), w1: cacheOf('w1') }).toEqual({ near: 0, w1: context.length - 1 });
    // A plan that takes 'near' (band of 2): it catches up on the whole context, then proposes
    // its own greedy continuation (it reviews Max-Gram's token, leniency 1).
    cascade.top.setBands([2, 0, 0]);
    const block = await cascade.top.draft(2, greedy);
    expect(block.tokens).toEqual(greedyWithProbabilities(drafts.near, context, 2).map((t) => t.token));
    expect(cacheOf('near')).toBeGreaterThanOrEqual(context.length);
    scheduler.dispose();
  });

  test('adaptive bands: a drafter is priced per token it drafts, whatever its band', async () => {
    // Priced per call, a longer band's dearer calls moved the speed scale every cost shares, and
    // every block length not in use then looked dearer than it is (bench/README.md, stop 20).
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const models = { near: drafts.near, w1: drafts.w1 };
    const matrix = { drafters: ['near', 'w1'], K: [[1, 1, 1], [0, 0, 0], [0, 0, 0]], lenience: 1 };
    const context = idsOf('the cat and the cat and the');
    for (const band of [2, 5]) {
      // A fresh state: its first cost observation is the figure itself (relative 1 x scale).
      const state = new SchedulerState(3);
      const scheduler = new AdaptiveScheduler(buildCascade(matrix, models, new MaxGram(), 128), { state, explore: 0, initialPlan: [0, band, 0] });
      await scheduler.begin(context);
      const block = await scheduler.draft(12, greedy);
      expect(block.tokens.length).toBe(band); // w1 alone, one call for the whole band
      const top = scheduler.cascade.top;
      expect(top.lastCalls[1]).toBe(1);
      expect(state.costs.count('draft:1')).toBe(1);
      expect(state.costs.ms('draft:1')).toBeCloseTo(top.lastCostMs[1] / band, 9);
      scheduler.dispose();
    }
  });

  test('adaptive bands: the plan starts from initialPlan, changes only for one faster by more than switchMargin, and carries over', async () => {
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const models = { near: drafts.near, w1: drafts.w1 };
    const matrix = { drafters: ['near', 'w1'], K: [[1, 1, 1], [0, 0, 0], [0, 0, 0]], lenience: 1 };
    const context = idsOf('the cat and the cat and the');
    // Measured: 'near' and Max-Gram never get a token accepted, 'w1' always does (500
    // outcomes each: the estimates end within 0.001 of 0 and 1), and a verification of n tokens
    // costs 10 + 0.05 n units (5 timings per length unless said). A unit is 100 ms: the tiny
    // drafts' calls, timed for real, can take a millisecond in a cold test process, and must
    // stay negligible beside a verification. Expected tokens per pass: 1 + the w1 band's size.
    // The best plan is w1's largest band, [0, 8, 0] (maxBand 8): 9 tokens in 10.45 units
    // against 8 in 10.40 for [0, 7, 0], 12% more.
    const UNIT = 100;
    const measured = (timings = 5, perToken = 0.05, base = 10) => {
      const state = new SchedulerState(3);
      for (const d of [0, 2]) for (const e of state.alpha[d]) for (let i = 0; i < 500; i++) e.add(0);
      for (const e of state.alpha[1]) for (let i = 0; i < 500; i++) e.add(1);
      for (let n = 1; n <= 13; n++) for (let i = 0; i < timings; i++) state.costs.observe(`verify:${n}`, UNIT * (base + perToken * n));
      return state;
    };
    // RESEARCH_EVERY + 1 drafts: all but the last use the plan begin() set, the last searches.
    const plansOf = async (state: SchedulerState, options: { initialPlan?: number[]; switchMargin?: number }) => {
      const scheduler = new AdaptiveScheduler(buildCascade(matrix, models, new MaxGram(), 128), { state, explore: 0, ...options });
      await scheduler.begin(context);
      const plans: string[] = [];
      for (let i = 0; i <= RESEARCH_EVERY; i++) {
        const before = new Map(scheduler.plans);
        await scheduler.draft(12, greedy);
        // The plan of this draft: the one whose count went up.
        plans.push([...scheduler.plans.keys()].find((key) => scheduler.plans.get(key) !== before.get(key)) ?? '');
      }
      scheduler.dispose();
      return { first: plans[0], beforeSearch: plans[RESEARCH_EVERY - 1], searched: plans[RESEARCH_EVERY] };
    };
    // No initial plan: begin() searches, and every draft takes the best plan.
    expect(await plansOf(measured(), {})).toEqual({ first: '0/8/0', beforeSearch: '0/8/0', searched: '0/8/0' });
    // The initial plan holds until the search; 12.5% faster beats a 10% margin, not a 20% one.
    const kept = measured();
    expect(await plansOf(kept, { initialPlan: [0, 7, 0], switchMargin: 0.2 })).toEqual({ first: '0/7/0', beforeSearch: '0/7/0', searched: '0/7/0' });
    expect(kept.plan).toEqual([0, 7, 0]);
    const moved = measured();
    expect(await plansOf(moved, { initialPlan: [0, 7, 0], switchMargin: 0.1 })).toEqual({ first: '0/7/0', beforeSearch: '0/7/0', searched: '0/8/0' });
    // The state carries the plan in use into the next generation, over the initial plan.
    expect(moved.plan).toEqual([0, 8, 0]);
    expect((await plansOf(moved, { initialPlan: [0, 7, 0], switchMargin: 0.1 })).first).toBe('0/8/0');
    // A block length timed fewer than 10 times is priced by extrapolation: a plan that needs
    // one must promise 10% more, whatever switchMargin says. Here a verification of n tokens
    // costs 10 + 1.2 n units, and [0, 8, 0] promises 6% more than [0, 7, 0] (9 / 20.8 against
    // 8 / 19.6): enough for a 3% margin once every length has 20 timings, not with 5.
    expect((await plansOf(measured(5, 1.2), { initialPlan: [0, 7, 0], switchMargin: 0.03 })).searched).toBe('0/7/0');
    expect((await plansOf(measured(20, 1.2), { initialPlan: [0, 7, 0], switchMargin: 0.03 })).searched).toBe('0/8/0');
    // The band's own time counts: a Max-Gram tail that passes 3 times in 4 adds 2.05 tokens
    // for 4 rows (0.2 units) and wins at no other cost ([0, 8, 4]: 11.05 tokens in 10.65 units,
    // 1.04 a unit, against 9 in 10.45, 0.86), but not when a block of several pieces costs the
    // band 3 units more (11.05 in 13.65, 0.81 a unit).
    const withTail = (piecesMs?: number) => {
      const state = measured();
      for (const e of state.alpha[2]) for (let i = 0; i < 500; i++) e.add(i % 4 === 0 ? 0 : 1);
      if (piecesMs !== undefined) [state.overheadMs.sole, state.overheadMs.pieces] = [new Ema(0), new Ema(UNIT * piecesMs)];
      return state;
    };
    expect((await plansOf(withTail(), {})).first).toBe('0/8/4');
    expect((await plansOf(withTail(3), {})).first).toBe('0/8/0');
    // The overheads are learnt from the drafts: each kind of plan measured its own.
    const learnt = withTail();
    await plansOf(learnt, { initialPlan: [0, 7, 0] });
    expect(learnt.overheadMs.sole?.count).toBe(RESEARCH_EVERY); // the initial plan's drafts
    expect(learnt.overheadMs.pieces?.count).toBe(1); // the search's [0, 8, 4]
    // The configured plan is taken back as soon as it scores highest, with no margin. Here 'w1'
    // passes 8 tokens in 10 and a verification of n tokens costs 10 + 0.7 n units: [0, 7, 0]
    // scores 0.4% above [0, 8, 0], the plan in use. Any other plan would need 3% for that.
    const drifted = () => {
      const state = measured(20, 0.7);
      for (const e of state.alpha[1]) [e.value, e.count] = [0.8, 1000];
      state.plan = [0, 8, 0];
      return state;
    };
    expect(await plansOf(drifted(), { initialPlan: [0, 7, 0] })).toEqual({ first: '0/8/0', beforeSearch: '0/8/0', searched: '0/7/0' });
    expect(await plansOf(drifted(), {})).toEqual({ first: '0/8/0', beforeSearch: '0/8/0', searched: '0/8/0' });
    // However bad the plan in use, an unreachable margin keeps it.
    expect(await plansOf(measured(), { initialPlan: [1, 0, 0], switchMargin: 1e9 })).toEqual({ first: '1/0/0', beforeSearch: '1/0/0', searched: '1/0/0' });
    // Initial plans are cut to maxBand per band and maxDraft in all (the last bands first), and
    // checked.
    const make = (options: object) => new AdaptiveScheduler(buildCascade(matrix, models, new MaxGram(), 128), options);
    expect(make({ initialPlan: [0, 20, 9] }).state.plan).toEqual([0, 8, 4]);
    expect(make({ initialPlan: [3, 2, 1], maxDraft: 4 }).state.plan).toEqual([3, 1, 0]);
    expect(() => make({ initialPlan: [0, 7] })).toThrow('initialPlan must hold 3 non-negative integers (one band size per top-level drafter), got [0, 7]');
    expect(() => make({ initialPlan: [0, -1, 0] })).toThrow('initialPlan must hold 3 non-negative integers');
    expect(() => make({ initialPlan: [0, 1.5, 0] })).toThrow('initialPlan must hold 3 non-negative integers');
    expect(() => make({ switchMargin: -0.1 })).toThrow('switchMargin must be >= 0, got -0.1');
    // Less room for drafts than the plan in use (a generation's last tokens): the plan is cut
    // to the room, the last bands first, without a search, and the plan in use stays whole.
    const roomy = measured();
    roomy.plan = [1, 5, 3];
    const cutting = new AdaptiveScheduler(buildCascade(matrix, models, new MaxGram(), 128), { state: roomy, explore: 0 });
    const searches = jest.spyOn(cutting as unknown as { search: () => number[] }, 'search');
    await cutting.begin(context);
    const drafted: Array<[number, number]> = [];
    for (const room of [12, 7, 7, 4, 9]) drafted.push([room, (await cutting.draft(room, greedy)).tokens.length]);
    expect(drafted).toEqual([[12, 9], [7, 7], [7, 7], [4, 4], [9, 9]]);
    expect(Object.keys(cutting.stats().plans as object).sort()).toEqual(['1/3/0', '1/5/1', '1/5/3']);
    expect(searches).not.toHaveBeenCalled();
    expect(roomy.plan).toEqual([1, 5, 3]);
    cutting.dispose();
  });

  test('a cached context catches up in a pass of its own only when it lags by more than a step feeds', () => {
    const ctx = new CachedContext(drafts.w1.createSequence({ contextLength: 128 }));
    const context = idsOf('abcabcabc');
    ctx.prefill(context);
    expect(ctx.length).toBe(context.length - 1);
    const forwards = ctx.seq.forwards;
    const few = [...context, ...idsOf('abc').slice(1)];
    ctx.catchUp(few, 16); // 3 new tokens: left for the next draft call to feed
    expect({ length: ctx.length, forwards: ctx.seq.forwards }).toEqual({ length: context.length - 1, forwards });
    expect(ctx.sync(few)).toEqual(few.slice(context.length - 1));
    const many = [...few, ...idsOf('the cat and the cat').slice(1)];
    ctx.catchUp(many, 16); // 22 new: one pass over all but the last
    expect({ length: ctx.length, forwards: ctx.seq.forwards }).toEqual({ length: many.length - 1, forwards: forwards + 1 });
    // A draft leaves tentative tokens in the cache; catching up on the committed text keeps them
    // (the level may be called again in the same draft, with them as its prefix).
    const { tokens } = ctx.draft(ctx.sync(many), 3, { temperature: 0, topK: 0, topP: 1 });
    expect(ctx.length).toBe(many.length + 2);
    ctx.catchUp(many, 16);
    expect(ctx.length).toBe(many.length + 2);
    expect(ctx.sync(many, tokens.slice(0, 2))).toEqual(tokens.slice(1, 2));
    ctx.dispose();
  });

  test('a cached context compares only what an append-only base gained; a different array in full', () => {
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const ctx = new CachedContext(drafts.w1.createSequence({ contextLength: 128 }));
    const committed = idsOf('the cat and the');
    ctx.prefill(committed);
    const { tokens } = ctx.draft(ctx.sync(committed), 3, greedy);
    expect(ctx.length).toBe(committed.length + 2); // the context and two tentative tokens
    // The verifier accepts the first token and corrects the second: the same array grows.
    const correction = tokens[1] === 99 ? 100 : 99;
    committed.push(tokens[0], correction);
    expect(ctx.sync(committed)).toEqual([correction]);
    expect(ctx.length).toBe(committed.length - 1);
    // Another array, equal but for its third token: the cache is cut back to two tokens.
    const other = [...committed];
    other[2] ^= 1;
    expect(ctx.sync(other)).toEqual(other.slice(2));
    expect(ctx.length).toBe(2);
    ctx.dispose();
  });

  test("adaptive bands: a cost not measured lately follows the machine's speed through the others", () => {
    // Two block lengths, B twice A's cost, measured in turn while the machine runs at speed 1;
    // then the machine slows to half speed (every pass takes twice as long) and only A is used.
    const costs = new CostModel();
    for (let i = 0; i < 60; i++) {
      costs.observe('A', 1);
      costs.observe('B', 2);
    }
    expect(costs.ms('B')! / costs.ms('A')!).toBeCloseTo(2, 6);
    for (let i = 0; i < 60; i++) costs.observe('A', 2);
    // B was last measured at 2 ms; now it would take 4. Its estimate follows (A's own relative
    // cost takes a few percent of the change: one item alone cannot tell the two apart), where
    // a per-item average would still say 2 and make B look half as costly as it is.
    expect(costs.ms('A')).toBeCloseTo(2, 2);
    expect(costs.ms('B')).toBeGreaterThan(3.7);
    expect(costs.ms('B')).toBeLessThan(4.05);
    expect(costs.ms('C')).toBeUndefined();
    expect(costs.count('B')).toBe(60);
    // Nonsense observations are ignored.
    costs.observe('A', NaN);
    costs.observe('A', -1);
    expect(costs.count('A')).toBe(120);
  });

  test('adaptive bands: verification costs are fitted non-decreasing in the block length', () => {
    // Pool adjacent violators, worked by hand: 3 then 2 pool to 2.5; 5, 4, 4 (weights 1, 2, 1) to 4.25.
    expect(isotonic([1, 3, 2, 6], [1, 1, 1, 1])).toEqual([1, 2.5, 2.5, 6]);
    expect(isotonic([5, 4, 4], [1, 2, 1])).toEqual([4.25, 4.25, 4.25]);
    const rand = mulberry32(77);
    for (let t = 0; t < 200; t++) {
      const n = 1 + Math.floor(rand() * 8);
      const ys = Array.from({ length: n }, () => rand());
      const ws = Array.from({ length: n }, () => 0.5 + rand() * 3);
      const fit = isotonic(ys, ws);
      expect(fit.length).toBe(n);
      for (let i = 1; i < n; i++) expect(fit[i]).toBeGreaterThanOrEqual(fit[i - 1] - 1e-12);
      // Pooling keeps the weighted sum; an already sorted input comes back unchanged.
      const sum = (v: number[]) => v.reduce((a, y, i) => a + y * ws[i], 0);
      expect(sum(fit)).toBeCloseTo(sum(ys), 9);
      const sorted = [...ys].sort((a, b) => a - b);
      isotonic(sorted, ws).forEach((y, i) => expect(y).toBeCloseTo(sorted[i], 12));
    }
  });

  test("the paper's configurations (lenience 2 and 3) on the tiny models equal the reference", async () => {
    const configs: Array<{ cascade: CascadeMatrix; models: Record<string, Model> }> = [
      { cascade: { drafters: ['near', 'w1'], K: [[5, 14, 10], [0, 1, 10], [0, 0, 10]], lenience: 2 }, models: { near: drafts.near, w1: drafts.w1 } },
      { cascade: { drafters: ['near'], K: [[13, 10], [0, 10]], lenience: 3 }, models: { near: drafts.near } },
    ];
    const prompt = idsOf('the cat and the cat');
    const want = ref.greedy(prompt, 40);
    for (const { cascade, models } of configs) {
      const r = await target.generate(prompt, { method: 'csd', cascade, draftModels: models, maxNewTokens: 40, stopOnEos: false });
      expect(r.tokens).toEqual(want);
    }
  });

  test('lenience lets a level pass on wrong tokens; the strict top review still rejects them', async () => {
    // `same` (the target's weights) reviews `near`'s drafts. Strict (l = 1) it hands up only the
    // target's own greedy tokens, so the target accepts every draft; lenient (l = 10) it also
    // accepts near's tokens it finds >= 1/10 likely, some of them wrong, which the target
    // must reject. Either way the output is the reference's.
    const totals = { strict: { drafted: 0, accepted: 0, levelAccepted: 0 }, lenient: { drafted: 0, accepted: 0, levelAccepted: 0 } };
    for (const s of STRINGS) {
      const prompt = idsOf(s);
      const want = ref.greedy(prompt, 40);
      for (const [mode, lenience] of [['strict', 1], ['lenient', 10]] as const) {
        const r = await target.generate(prompt, {
          method: 'csd', cascade: { drafters: ['same', 'near'], K: [[4, 0, 0], [0, 3, 1], [0, 0, 2]], lenience }, draftModels: { same: drafts.same, near: drafts.near }, maxNewTokens: 40, stopOnEos: false,
        });
        expect({ s, mode, tokens: r.tokens }).toEqual({ s, mode, tokens: want });
        totals[mode].drafted += Number(r.stats.drafted);
        totals[mode].accepted += Number(r.stats.accepted);
        totals[mode].levelAccepted += (r.stats.levels as Array<{ level: string; accepted: number }>).find((l) => l.level === 'same')!.accepted;
      }
    }
    expect(totals.strict.accepted).toBe(totals.strict.drafted);
    expect(totals.lenient.levelAccepted).toBeGreaterThan(totals.strict.levelAccepted);
    expect(totals.lenient.accepted).toBeLessThan(totals.lenient.drafted);
  });

  test('stop strings end csd (and mag, sd) at the same token as AR, though they emit several tokens per pass', async () => {
    const cascade: CascadeMatrix = { drafters: ['same', 'near'], K: [[4, 1, 1], [0, 2, 1], [0, 0, 2]], lenience: 1 };
    let checked = 0;
    for (const s of STRINGS) {
      const full = (await target.generate(s, { maxNewTokens: 40, stopOnEos: false })).text;
      // Stop strings taken from the output itself at a few places (skipping U+FFFD, the
      // decoder's placeholder for an incomplete byte sequence).
      for (const at of [3, 7, 11, 17, 24, 31]) {
        const stop = full.slice(at, at + 2);
        if (stop.length < 2 || stop.includes('\ufffd')) continue;
        const base: GenerateOptions = { maxNewTokens: 40, stopOnEos: false, stop: [stop] };
        const ar = await target.generate(s, base);
        expect(ar.finishReason).toBe('stop');
        expect(ar.text).toBe(full.slice(0, full.indexOf(stop)));
        for (const opts of [
          { method: 'csd', cascade, draftModels: { same: drafts.same, near: drafts.near } },
          { method: 'sd', draftModel: drafts.same, k: 5 },
          { method: 'mag', k: 6 },
        ] as GenerateOptions[]) {
          const r = await target.generate(s, { ...base, ...opts });
          expect({ s, stop, method: opts.method, tokens: r.tokens, text: r.text, finishReason: r.finishReason }).toEqual({ s, stop, method: opts.method, tokens: ar.tokens, text: ar.text, finishReason: 'stop' });
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(4);
  });

  test('running into the context limit (and a drafter with a shorter context) stays exact', async () => {
    const rand = mulberry32(9);
    // 40: the short drafter's context (64) fills up mid-generation; the others: the target's (128).
    for (const promptLength of [40, 90, 110, 120, 126]) {
      const prompt = [BOS, ...Array.from({ length: promptLength - 1 }, (_, i) => (i % 7 === 0 ? Math.floor(rand() * V) : 65 + (i % 5)))];
      const ar = await target.generate(prompt, { maxNewTokens: 60, stopOnEos: false });
      const finishReason = promptLength + 60 > 128 ? 'context' : 'length';
      expect(ar.finishReason).toBe(finishReason);
      // At the limit the cache holds the prompt and every generated token but the last.
      expect(ar.tokens).toHaveLength(Math.min(60, 128 - promptLength + 1));
      for (const [drafters, K] of [
        [['same', 'near'], [[6, 2, 3], [0, 3, 2], [0, 0, 4]]],
        [['short', 'w1'], [[3, 1, 2], [0, 2, 2], [0, 0, 3]]],
        [['short'], [[8, 0], [0, 5]]],
      ] as Array<[string[], number[][]]>) {
        for (const adaptive of [false, true]) {
          const r = await target.generate(prompt, {
            method: 'csd', cascade: { drafters, K, lenience: 2 }, draftModels: Object.fromEntries(drafters.map((d) => [d, drafts[d]])), maxNewTokens: 60, stopOnEos: false, adaptive,
          });
          expect({ promptLength, drafters, adaptive, tokens: r.tokens, finishReason: r.finishReason }).toEqual({ promptLength, drafters, adaptive, tokens: ar.tokens, finishReason });
        }
      }
    }
    // The reference agrees with AR at the limit (one length; the reference is slow).
    const prompt = [BOS, ...Array.from({ length: 109 }, (_, i) => 65 + (i % 5))];
    expect((await target.generate(prompt, { maxNewTokens: 60, stopOnEos: false })).tokens).toEqual(ref.greedy(prompt, 19));
  });

  test('a cascade whose levels are always right drafts the whole block: target passes follow from k', async () => {
    // `same` reviews Max-Gram proposals and corrects them, so its drafts are the target's own
    // tokens: every top-level draft is accepted. With row 0 = [k, 0] each verification pass
    // (the prompt's included: it verifies the first draft) emits min(k + 1, remaining) tokens.
    const k = 5;
    for (const n of [1, 2, 6, 7, 20, 33]) {
      const r = await target.generate(idsOf('Hello'), {
        method: 'csd', cascade: { drafters: ['same'], K: [[k, 0], [0, 3]], lenience: 2 }, draftModels: { same: drafts.same }, maxNewTokens: n, stopOnEos: false,
      });
      expect(r.tokens).toEqual(ref.greedy(idsOf('Hello'), n));
      expect(r.stats.targetForwards).toBe(Math.ceil(n / (k + 1)));
      expect(r.stats.accepted).toBe(r.stats.drafted);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('metrics', () => {
  test('SWI against hand-computed values', () => {
    // 10 tokens, target 100 params: 4 target passes + 6 drafter passes of 10 params.
    expect(swi(10, 100, [{ passes: 4, params: 100 }, { passes: 6, params: 10 }])).toBeCloseTo(1000 / 460, 12);
    // Autoregressive: one target pass per token.
    expect(swi(7, 50, [{ passes: 7, params: 50 }])).toBe(1);
    // Perfect drafting with a free drafter: 5 tokens per pass.
    expect(swi(20, 3, [{ passes: 4, params: 3 }, { passes: 100, params: 0 }])).toBe(5);
    // Three models.
    expect(swi(12, 1000, [{ passes: 5, params: 1000 }, { passes: 8, params: 100 }, { passes: 20, params: 10 }])).toBeCloseTo(12000 / 6000, 12);
    // Nothing run: no improvement measurable.
    expect(swi(0, 100, [])).toBe(0);
  });

  test('EWIF for known acceptance vectors', () => {
    // All accepted, free drafting: k + 1 tokens per pass.
    for (const k of [0, 1, 4, 9]) expect(ewif(new Array(k).fill(1), 0)).toBe(k + 1);
    // Nothing accepted: one token per pass, paid 1 + c.
    for (const c of [0, 0.25, 3]) expect(ewif([0, 0, 0, 0], c)).toBeCloseTo(1 / (1 + c), 12);
    // i.i.d. acceptance alpha with k drafts at cost c each: (1 - a^(k+1)) / ((1 - a)(1 + k c)).
    for (const [a, k, c] of [[0.7, 4, 0.1], [0.5, 2, 0], [0.9, 8, 0.05], [0.3, 1, 0.5]] as const)
      expect(ewif(new Array(k).fill(a), k * c)).toBeCloseTo((1 - a ** (k + 1)) / ((1 - a) * (1 + k * c)), 12);
    // Position-dependent acceptance: 1 + a1 + a1 a2 + a1 a2 a3.
    expect(ewif([0.8, 0.5, 0.25], 0.5)).toBeCloseTo((1 + 0.8 + 0.4 + 0.1) / 1.5, 12);
  });

  test('numParams is the parameter count of the config (the SWI cost unit)', () => {
    expect(target.numParams).toBe(paramsOf(targetCfg));
    expect(drafts.w2.numParams).toBe(paramsOf(draftCfg.w2));
    expect(drafts.w2.numParams).toBeLessThan(target.numParams);
  });

  test('an always-right autoregressive level: target passes, level passes, SWI and EWIF by hand', async () => {
    // Row 0 = [3, 0]: the `same` level fills 3 positions; its own row is empty, so it adds one
    // token per pass (autoregressive). Each target pass accepts all drafts.
    const n = 20;
    const r = await target.generate(idsOf('Hello'), {
      method: 'csd', cascade: { drafters: ['same'], K: [[3, 0], [0, 0]], lenience: 1 }, draftModels: { same: drafts.same }, maxNewTokens: n, stopOnEos: false,
    });
    expect(r.tokens).toEqual(ref.greedy(idsOf('Hello'), n));
    const verifies = Math.ceil(n / 4); // 5 verification passes of 4 tokens, the prompt's first
    const levelPasses = n - verifies; // 15 drafted tokens, one level pass each
    expect(r.stats.targetForwards).toBe(verifies);
    expect(r.stats.meanAcceptedLength).toBe(4);
    expect(r.stats.acceptanceByPosition).toEqual([1, 1, 1]);
    expect(r.stats.levels).toEqual([
      { level: 'same', passes: levelPasses, produced: levelPasses, proposed: 0, accepted: 0, acceptanceByPosition: [] },
    ]);
    // Every pass costs the same (same parameter count): 20 tokens for 5 + 15 passes.
    expect(r.stats.swi).toBeCloseTo(n / (verifies + levelPasses), 12);
    // 4 tokens per verification pass, paid with 1 target pass + 3 drafter passes of equal cost.
    expect(r.stats.ewif).toBeCloseTo(4 / (1 + levelPasses / verifies), 12);
  });

  test('a partly-right autoregressive level: counters and EWIF match a brute-force simulation of the decoding loop', async () => {
    // Row 0 = [k, 0] with the `near` model as an autoregressive drafter: the draft after each
    // verified prefix is near's own greedy continuation (computed here with AR on near), and the
    // target accepts its longest prefix that agrees with the target's greedy output.
    const k = 4;
    for (const [prompt, n] of [[idsOf('the cat and the'), 30], [[BOS, 5, 9, 5, 9], 25], [idsOf('To be or'), 17]] as const) {
      const want = ref.greedy([...prompt], n);
      // The prompt's pass verifies the first draft (emitted starts at 0).
      let emitted = 0, verifies = 0, levelPasses = 0;
      const proposedAt: number[] = [], acceptedAt: number[] = [], reachedAt: number[] = [], condAcceptedAt: number[] = [];
      while (emitted < n) {
        const m = Math.min(k, n - emitted - 1);
        let a = 0;
        if (m > 0) {
          const d = await drafts.near.generate([...prompt, ...want.slice(0, emitted)], { maxNewTokens: m, stopOnEos: false });
          while (a < m && d.tokens[a] === want[emitted + a]) a++;
          levelPasses += m;
          for (let j = 0; j < m; j++) {
            proposedAt[j] = (proposedAt[j] ?? 0) + 1;
            acceptedAt[j] = (acceptedAt[j] ?? 0) + (j < a ? 1 : 0);
            if (j <= a) reachedAt[j] = (reachedAt[j] ?? 0) + 1;
            if (j < a) condAcceptedAt[j] = (condAcceptedAt[j] ?? 0) + 1;
          }
        }
        emitted += a + 1;
        verifies++;
      }
      const accepted = acceptedAt.reduce((s, x) => s + x, 0);
      // The simulation covers partial acceptance, or this test would not discriminate.
      expect(accepted).toBeGreaterThan(0);
      expect(accepted).toBeLessThan(levelPasses);

      const r = await target.generate([...prompt], {
        method: 'csd', cascade: { drafters: ['near'], K: [[k, 0], [0, 0]], lenience: 1 }, draftModels: { near: drafts.near }, maxNewTokens: n, stopOnEos: false,
      });
      expect(r.tokens).toEqual(want);
      expect(r.stats.targetForwards).toBe(verifies);
      expect(r.stats.drafted).toBe(levelPasses);
      expect(r.stats.accepted).toBe(accepted);
      expect(r.stats.meanAcceptedLength).toBeCloseTo(n / verifies, 12);
      const byPos = r.stats.acceptanceByPosition as number[];
      expect(byPos.length).toBe(proposedAt.length);
      byPos.forEach((v, j) => expect(v).toBeCloseTo(acceptedAt[j] / proposedAt[j], 12));
      expect(r.stats.levels).toEqual([
        { level: 'near', passes: levelPasses, produced: levelPasses, proposed: 0, accepted: 0, acceptanceByPosition: [] },
      ]);
      expect(r.stats.swi).toBeCloseTo(n / (verifies + levelPasses), 12);
      // EWIF (§7): position acceptances alpha_j = P(j accepted | all before accepted), drafting
      // cost per verification pass = level passes / verification passes (equal parameter counts).
      const alpha = reachedAt.map((reached, j) => (condAcceptedAt[j] ?? 0) / reached);
      let expected = 1, reach = 1;
      for (const a of alpha) expected += reach *= a;
      expect(r.stats.ewif).toBeCloseTo(expected / (1 + levelPasses / verifies), 12);
    }
  });

  test('csd stats: swi, ewif and per-level counters are consistent', async () => {
    const rand = mulberry32(5);
    for (let i = 0; i < 10; i++) {
      const drafters = i % 2 === 0 ? ['near', 'w2'] : ['same', 'w1'];
      const K = randomK(rand, 2, 4);
      if (K[0][0] === 0) K[0][0] = 1 + (i % 3); // a neural drafter fills part of the target's draft
      const n = 10 + i * 3;
      const r = await target.generate(idsOf(STRINGS[i % STRINGS.length]), {
        method: 'csd', cascade: { drafters, K, lenience: [1, 2, 3][i % 3] }, draftModels: { [drafters[0]]: drafts[drafters[0]], [drafters[1]]: drafts[drafters[1]] },
        maxNewTokens: n, stopOnEos: false,
      });
      const label = JSON.stringify({ i, drafters, K });
      const levels = r.stats.levels as Array<{ level: string; passes: number; produced: number; proposed: number; accepted: number; acceptanceByPosition: number[] }>;
      expect(Array.isArray(levels)).toBe(true);
      // One entry per neural drafter the cascade reaches; every drafter here is reachable from
      // row 0 only through column 0 or 1, so at least the first is there.
      expect(levels.map((l) => l.level)).toContain(drafters[0]);
      for (const l of levels) {
        expect({ label, ok: l.accepted <= l.proposed }).toEqual({ label, ok: true });
        expect({ label, ok: l.passes >= 0 && Number.isInteger(l.passes) }).toEqual({ label, ok: true });
        // Each review pass produces its accepted drafts plus one correction or bonus token.
        expect({ label, produced: l.produced }).toEqual({ label, produced: l.accepted + l.passes });
        for (const a of l.acceptanceByPosition) expect(a >= 0 && a <= 1).toBe(true);
      }
      expect({ label, passes: levels.reduce((s, l) => s + l.passes, 0) > 0 }).toEqual({ label, passes: true });
      // SWI recomputed from the counters and the parameter counts.
      const cost = Number(r.stats.targetForwards) * target.numParams + levels.reduce((s, l) => s + l.passes * drafts[l.level].numParams, 0);
      expect(r.stats.swi).toBeCloseTo((r.tokens.length * target.numParams) / cost, 10);
      expect(Number(r.stats.ewif)).toBeGreaterThan(0);
      expect(Number(r.stats.accepted)).toBeLessThanOrEqual(Number(r.stats.drafted));
    }
  });

  test('ar and mag stats carry swi (1 for ar) and ewif but no levels', async () => {
    const ar = await target.generate(idsOf('Hello'), { maxNewTokens: 12, stopOnEos: false });
    expect(ar.stats.swi).toBe(1);
    expect(ar.stats.levels).toBeUndefined();
    const mag = await target.generate(idsOf('abcabcabc'), { method: 'mag', maxNewTokens: 12, stopOnEos: false });
    // Max-Gram is free: SWI = tokens / target passes.
    expect(mag.stats.swi).toBeCloseTo(12 / Number(mag.stats.targetForwards), 12);
    expect(mag.stats.levels).toBeUndefined();
  });
});
