/**
 * Sampling exactness of Cascade Speculative Drafting: whatever the lenient draft levels do,
 * the target's strict top-level review must make 'csd' output follow the target's own
 * (processed) distribution. Compared with plain AR sampling by a two-sample chi-square
 * homogeneity test over fixed seeds (deterministic), and the same test is shown to catch a
 * wrong sampler (AR at another temperature), so it has power.
 *
 * The prompt's pass verifies the cascade's first draft, so every generated token comes out of a
 * verification of cascade drafts. The compared statistic is the joint distribution of generated
 * tokens 2 and 3 (rare pairs lumped; `pair` 0 for tokens 1 and 2), with maxNewTokens 5: the
 * prompt's pass reviews a cascade draft of up to 4 tokens (mid reviews small, small reviews
 * Max-Gram, both leniently).
 * Kept apart from cascade.test.ts to keep each file under the time budget.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Model } from '../lib/model';
import type { GenerationResult } from '../lib/generate';
import type { GenerateOptions } from '../lib/options';
import { makeTinyModel, editHead } from './helpers/tiny-model';
import { argmax, chiSquareSf } from './helpers/stats';

const V = 260;
/** A prompt with a repeated pattern, so Max-Gram proposes at the bottom of the cascade. */
const PROMPT = [256, 72, 101, 108, 72, 101, 108, 72, 101];
const MAX_NEW = 5;
/** Seeds per sample: the main comparison, and the power check / top-k-top-p case. */
const N = 1500;
const N_SMALL = 1000;

/**
 * Two-sample chi-square homogeneity test on category counts. Categories with fewer than
 * `minPooled` observations in both samples together are lumped into one "other" cell (merged
 * into the rarest kept category when itself that rare).
 */
function homogeneity(a: Map<string, number>, b: Map<string, number>, minPooled = 10): { stat: number; df: number; p: number; cells: number; lumped: number } {
  const keys = new Set([...a.keys(), ...b.keys()]);
  const cells: Array<[number, number]> = [];
  let other: [number, number] = [0, 0];
  for (const k of keys) {
    const x = a.get(k) ?? 0, y = b.get(k) ?? 0;
    if (x + y >= minPooled) cells.push([x, y]);
    else other = [other[0] + x, other[1] + y];
  }
  const lumped = other[0] + other[1];
  if (lumped >= minPooled || cells.length === 0) cells.push(other);
  else if (lumped > 0) {
    cells.sort((p, q) => p[0] + p[1] - (q[0] + q[1]));
    cells[0] = [cells[0][0] + other[0], cells[0][1] + other[1]];
  }
  const na = cells.reduce((s, c) => s + c[0], 0), nb = cells.reduce((s, c) => s + c[1], 0);
  let stat = 0;
  for (const [x, y] of cells) {
    const ea = ((x + y) * na) / (na + nb), eb = ((x + y) * nb) / (na + nb);
    stat += (x - ea) ** 2 / ea + (y - eb) ** 2 / eb;
  }
  const df = cells.length - 1;
  return { stat, df, p: df > 0 ? chiSquareSf(stat, df) : 1, cells: cells.length, lumped };
}

let tmp: string;
let target: Model;
let mid: Model;
let small: Model;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-csd-sampling-'));
  const dir = (n: string) => path.join(tmp, n);
  // One random model, three heads: the target, a close drafter and a rougher one, so draft
  // levels sometimes accept and sometimes reject (and so does the target).
  for (const [name, sigma] of [['target', 0], ['mid', 0.5], ['small', 0.8]] as const) {
    makeTinyModel(dir(name), { vocabSize: V, seed: 11 });
    editHead(dir(name), 4, sigma, name.length);
  }
  // A Max-Gram bigram fallback table beside the target's weights (an input, not an expected
  // value: the target's argmax after PROMPT + t), so Max-Gram proposes at every step, often
  // plausibly, and the small level has proposals to review.
  const scratch = Model.loadSync(dir('target'));
  const table = Buffer.alloc(V * 4);
  for (let t = 0; t < V; t++) table.writeInt32LE(argmax(scratch.createSequence({ contextLength: 16 }).forwardSync([...PROMPT, t])), t * 4);
  fs.writeFileSync(path.join(dir('target'), 'maxgram-bigram.i32'), table);
  target = Model.loadSync(dir('target'));
  mid = Model.loadSync(dir('mid'));
  small = Model.loadSync(dir('small'));
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

interface Sample {
  counts: Map<string, number>;
  drafted: number;
  accepted: number;
  levels: Map<string, { proposed: number; accepted: number; passes: number }>;
}

async function sample(options: GenerateOptions, firstSeed: number, n = N, pair = 1): Promise<Sample> {
  const s: Sample = { counts: new Map(), drafted: 0, accepted: 0, levels: new Map() };
  for (let i = 0; i < n; i++) {
    const r: GenerationResult = await target.generate(PROMPT, { ...options, maxNewTokens: MAX_NEW, stopOnEos: false, seed: firstSeed + i });
    expect(r.tokens).toHaveLength(MAX_NEW);
    const key = `${r.tokens[pair]},${r.tokens[pair + 1]}`;
    s.counts.set(key, (s.counts.get(key) ?? 0) + 1);
    s.drafted += Number(r.stats.drafted ?? 0);
    s.accepted += Number(r.stats.accepted ?? 0);
    for (const l of (r.stats.levels as Array<{ level: string; proposed: number; accepted: number; passes: number }>) ?? []) {
      const acc = s.levels.get(l.level) ?? { proposed: 0, accepted: 0, passes: 0 };
      acc.proposed += l.proposed;
      acc.accepted += l.accepted;
      acc.passes += l.passes;
      s.levels.set(l.level, acc);
    }
  }
  return s;
}

const CASCADE = { drafters: ['mid', 'small'], K: [[3, 0, 1], [0, 2, 1], [0, 0, 2]], lenience: 3 };

/** The cascade really did work in the sample: the test would be vacuous otherwise. */
function expectCascadeActive(s: Sample): void {
  expect(s.accepted).toBeGreaterThan(0.05 * s.drafted);
  expect(s.drafted - s.accepted).toBeGreaterThan(0.05 * s.drafted);
  for (const name of ['mid', 'small']) {
    const l = s.levels.get(name)!;
    expect(l.passes).toBeGreaterThan(0);
    expect(l.accepted).toBeGreaterThan(0);
    expect(l.proposed - l.accepted).toBeGreaterThan(0);
  }
}

describe('csd sampling follows the target distribution', () => {
  let ar1: Sample;

  test(`temperature 1, lenience 3, two drafters: csd vs ar over ${N} seeds each`, async () => {
    ar1 = await sample({ method: 'ar', temperature: 1 }, 1);
    const csd = await sample({ method: 'csd', cascade: CASCADE, draftModels: { mid, small }, temperature: 1 }, 1_000_001);
    expectCascadeActive(csd);
    const h = homogeneity(ar1.counts, csd.counts);
    // Enough resolved categories for the test to mean something.
    expect(h.cells).toBeGreaterThanOrEqual(15);
    expect(h.lumped).toBeLessThan(0.5 * 2 * N);
    expect({ ...h, ok: h.p > 1e-4 }).toEqual({ ...h, ok: true });
  });

  test('the same test catches a wrong sampler: ar at temperature 1 vs 0.7', async () => {
    const cold = await sample({ method: 'ar', temperature: 0.7 }, 2_000_001, N_SMALL);
    const h = homogeneity(ar1.counts, cold.counts);
    expect({ ...h, caught: h.p < 1e-4 }).toEqual({ ...h, caught: true });
  });

  test(`a band that stops where its draft is unsure (confidence 0.4), Max-Gram after it: csd vs ar over ${N_SMALL} seeds each`, async () => {
    // The small drafts its band alone and may stop at its second position; the Max-Gram band
    // then starts there. Tokens 1 and 2 are the first draft's first two positions, so the
    // compared pair covers the stop and the band that moved up. This checks the cascade's
    // handling of a stopped band when sampling; the stop rule itself is tested with power in
    // speculative-sampling.test.ts (these tiny drafts are too flat at temperature 1 for this
    // test to tell the pre-stop-12 rule apart: p = 0.67 with it reinstated).
    const cascade = { drafters: ['small'], K: [[3, 1], [0, 0]], lenience: 1, confidence: 0.4 };
    const ar = await sample({ method: 'ar', temperature: 1 }, 5_000_001, N_SMALL, 0);
    const csd = await sample({ method: 'csd', cascade, draftModels: { small }, temperature: 1 }, 6_000_001, N_SMALL, 0);
    expect(csd.accepted).toBeGreaterThan(0);
    expect(csd.drafted - csd.accepted).toBeGreaterThan(0);
    const h = homogeneity(ar.counts, csd.counts);
    expect(h.cells).toBeGreaterThanOrEqual(8);
    expect({ ...h, ok: h.p > 1e-4 }).toEqual({ ...h, ok: true });
  });

  test(`drafts drawn hotter and colder than the target (draftTemperatureScale: mid 1.8, small 0.5): csd vs ar over ${N_SMALL} seeds each`, async () => {
    // Each level draws (and reviews) at its own temperature; the target's test uses the
    // distributions the proposals were really drawn from, so its output must not move.
    const hot = Model.loadSync(mid.dir, { draftTemperatureScale: 1.8 });
    const cold = Model.loadSync(small.dir, { draftTemperatureScale: 0.5 });
    const opts: GenerateOptions = { temperature: 0.9 };
    const ar = await sample({ ...opts, method: 'ar' }, 7_000_001, N_SMALL);
    const csd = await sample({ ...opts, method: 'csd', cascade: CASCADE, draftModels: { mid: hot, small: cold } }, 8_000_001, N_SMALL);
    expectCascadeActive(csd);
    const h = homogeneity(ar.counts, csd.counts);
    expect(h.cells).toBeGreaterThanOrEqual(8);
    expect({ ...h, ok: h.p > 1e-4 }).toEqual({ ...h, ok: true });
  });

  test(`strict levels (lenience 1) hand up their own distributions as q: csd vs ar over ${N_SMALL} seeds each`, async () => {
    // mid reviews small's sampled drafts, small reviews Max-Gram's, both strictly: each level's
    // output follows its own model's distribution, and those rows are the q the level above
    // (and the target) tests against. Tokens 1 and 2 are the prompt pass's first draft, the
    // mid's review output.
    const strict = { ...CASCADE, lenience: 1 };
    const opts: GenerateOptions = { temperature: 1 };
    const ar = await sample({ ...opts, method: 'ar' }, 9_000_001, N_SMALL, 0);
    const csd = await sample({ ...opts, method: 'csd', cascade: strict, draftModels: { mid, small } }, 10_000_001, N_SMALL, 0);
    expectCascadeActive(csd);
    const h = homogeneity(ar.counts, csd.counts);
    expect(h.cells).toBeGreaterThanOrEqual(8);
    expect({ ...h, ok: h.p > 1e-4 }).toEqual({ ...h, ok: true });
  });

  test(`the same strict cascade tested token by token (blockVerification: false): csd vs ar over ${N_SMALL} seeds each`, async () => {
    // Strict levels and the target verify jointly by default (block verification); this runs
    // the classic token-by-token test at every level instead.
    const strict = { ...CASCADE, lenience: 1 };
    const opts: GenerateOptions = { temperature: 1 };
    const ar = await sample({ ...opts, method: 'ar' }, 11_000_001, N_SMALL, 0);
    const csd = await sample({ ...opts, method: 'csd', cascade: strict, draftModels: { mid, small }, blockVerification: false }, 12_000_001, N_SMALL, 0);
    expectCascadeActive(csd);
    const h = homogeneity(ar.counts, csd.counts);
    expect(h.cells).toBeGreaterThanOrEqual(8);
    expect({ ...h, ok: h.p > 1e-4 }).toEqual({ ...h, ok: true });
  });

  test(`min-p 0.1, lenience 3, two drafters: csd vs ar over ${N_SMALL} seeds each`, async () => {
    // Every level draws and reviews from its min-p distribution; the target tests against it.
    const opts: GenerateOptions = { temperature: 1, minP: 0.1 };
    const ar = await sample({ ...opts, method: 'ar' }, 13_000_001, N_SMALL);
    const csd = await sample({ ...opts, method: 'csd', cascade: CASCADE, draftModels: { mid, small } }, 14_000_001, N_SMALL);
    expectCascadeActive(csd);
    const h = homogeneity(ar.counts, csd.counts);
    expect(h.cells).toBeGreaterThanOrEqual(8);
    expect({ ...h, ok: h.p > 1e-4 }).toEqual({ ...h, ok: true });
  });

  test(`top-k 20 and top-p 0.9, lenience 10, adaptive bands: csd vs ar over ${N_SMALL} seeds each`, async () => {
    const opts: GenerateOptions = { temperature: 1, topK: 20, topP: 0.9 };
    const ar = await sample({ ...opts, method: 'ar' }, 3_000_001, N_SMALL);
    const csd = await sample({ ...opts, method: 'csd', cascade: { ...CASCADE, lenience: 10 }, draftModels: { mid, small }, adaptive: true }, 4_000_001, N_SMALL);
    expect(csd.accepted).toBeGreaterThan(0);
    expect(csd.drafted - csd.accepted).toBeGreaterThan(0);
    const h = homogeneity(ar.counts, csd.counts);
    expect(h.cells).toBeGreaterThanOrEqual(8);
    expect({ ...h, ok: h.p > 1e-4 }).toEqual({ ...h, ok: true });
  });
});
