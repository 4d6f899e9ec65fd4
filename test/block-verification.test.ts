// Block verification (Sun et al., 2024), the test speculative sampling runs by default: its
// reference (test/helpers/spec-rule.ts) against exact enumeration. Over every draft a drafter
// can make (with the probability it makes it), the emitted tokens, continued by sampling the
// target, must follow the target's own distribution over sequences, as the token-by-token test's
// do. The native rule is checked against this reference by frequencies in
// speculative-sampling.test.ts, and whole generations by distribution there and in
// cascade-sampling.test.ts.
import { blockRuleOutcome, ruleOutcome } from './helpers/spec-rule';
import { mulberry32 } from './helpers/tiny-model';

const V = 3;
type Table = Map<string, number[]>;

/** Context-dependent distributions over V tokens for every prefix up to `depth` tokens. */
function table(rand: () => number, depth: number, opts: { zeros?: boolean; oneHot?: boolean } = {}): Table {
  const t: Table = new Map();
  const visit = (prefix: number[]) => {
    let row = Array.from({ length: V }, () => rand() ** 3 + 1e-3);
    if (opts.zeros && rand() < 0.3) row[Math.floor(rand() * V)] = 0; // a token the target's top-k / top-p drops
    if (opts.oneHot && rand() < 0.4) row = row.map((_, i) => (i === Math.floor(rand() * V) ? 1 : 0)); // may leave all 0
    if (!row.some((v) => v > 0)) row[0] = 1;
    const z = row.reduce((a, b) => a + b, 0);
    t.set(prefix.join(','), row.map((v) => v / z));
    if (prefix.length < depth) for (let y = 0; y < V; y++) visit([...prefix, y]);
  };
  visit([]);
  return t;
}
const row = (t: Table, prefix: readonly number[]) => t.get(prefix.join(','))!;

type Rule = (p: number[][], drafts: number[], q: number[][] | null) => Float64Array;

/**
 * The distribution of what one verification emits (accepted drafts + the next token), over the
 * drafter's drafts: it draws x_{i+1} from q(. | x_1..x_i) and, after each draw but the k-th,
 * stops with probability stop(x_1..x_i) (a draft length that depends on what was drawn, as a
 * confidence stop or a cascade's pieces make it). deterministic: each x_{i+1} is q's argmax.
 */
function emitted(p: Table, q: Table, k: number, rule: Rule, stop: (prefix: number[]) => number, deterministic: boolean) {
  const out = new Map<string, number>();
  let expectedTokens = 0;
  const visit = (drafts: number[], prob: number) => {
    if (drafts.length > 0) {
      const s = drafts.length === k ? 1 : stop(drafts);
      if (s > 0) {
        const pRows = Array.from({ length: drafts.length + 1 }, (_, i) => row(p, drafts.slice(0, i)));
        const qRows = deterministic ? null : drafts.map((_, i) => row(q, drafts.slice(0, i)));
        const o = rule(pRows, drafts, qRows);
        for (let n = 0; n <= drafts.length; n++)
          for (let y = 0; y < V; y++) {
            const pr = prob * s * o[n * V + y];
            if (!(pr > 0)) continue;
            const key = [...drafts.slice(0, n), y].join(',');
            out.set(key, (out.get(key) ?? 0) + pr);
            expectedTokens += pr * (n + 1);
          }
      }
      if (drafts.length === k) return;
      prob *= 1 - s;
      if (!(prob > 0)) return;
    }
    const qr = row(q, drafts);
    if (deterministic) visit([...drafts, qr.indexOf(Math.max(...qr))], prob);
    else for (let y = 0; y < V; y++) if (qr[y] > 0) visit([...drafts, y], prob * qr[y]);
  };
  visit([], 1);
  return { out, expectedTokens };
}

/** Largest gap, over sequences of length k + 1, between emitted-then-continued and p itself. */
function gapToTarget(p: Table, emittedDist: Map<string, number>, k: number): number {
  const seqProb = (s: number[], from: number) => {
    let pr = 1;
    for (let i = from; i < s.length; i++) pr *= row(p, s.slice(0, i))[s[i]];
    return pr;
  };
  let worst = 0;
  const visit = (s: number[]) => {
    if (s.length === k + 1) {
      let got = 0;
      for (let n = 1; n <= k + 1; n++) got += (emittedDist.get(s.slice(0, n).join(',')) ?? 0) * seqProb(s, n);
      worst = Math.max(worst, Math.abs(got - seqProb(s, 0)));
      return;
    }
    for (let y = 0; y < V; y++) visit([...s, y]);
  };
  visit([]);
  return worst;
}

describe('block verification against exact enumeration', () => {
  const CASES = Array.from({ length: 60 }, (_, i) => ({
    seed: 1000 + i,
    k: 1 + (i % 3),
    zeros: i % 2 === 0,
    deterministic: i % 5 === 0,
    stopping: i % 3 === 1,
  }));

  test('its output, continued by sampling the target, follows the target; never fewer tokens than token by token', () => {
    let gain = 0;
    for (const c of CASES) {
      const rand = mulberry32(c.seed);
      const p = table(rand, c.k + 1, { zeros: c.zeros });
      const q = table(rand, c.k, { oneHot: !c.deterministic });
      const stops = table(rand, c.k); // stop probability: the first entry of a row
      const stop = (prefix: number[]) => (c.stopping ? row(stops, prefix)[0] : 0);
      const block = emitted(p, q, c.k, blockRuleOutcome, stop, c.deterministic);
      const token = emitted(p, q, c.k, ruleOutcome, stop, c.deterministic);
      expect({ case: c, gap: gapToTarget(p, block.out, c.k) < 1e-12 }).toEqual({ case: c, gap: true });
      expect({ case: c, gap: gapToTarget(p, token.out, c.k) < 1e-12 }).toEqual({ case: c, gap: true });
      expect(block.expectedTokens).toBeGreaterThanOrEqual(token.expectedTokens - 1e-12);
      gain = Math.max(gain, block.expectedTokens / token.expectedTokens);
    }
    // Some drafts gain: joint verification keeps more than the token-by-token test here.
    expect(gain).toBeGreaterThan(1.02);
  });

  test('the check has power: a wrong block rule (stop at the first failure) is caught', () => {
    let worst = 0;
    for (const c of CASES.slice(0, 20)) {
      const rand = mulberry32(c.seed);
      const p = table(rand, c.k + 1, { zeros: c.zeros });
      const q = table(rand, c.k, { oneHot: !c.deterministic });
      const wrong = emitted(p, q, c.k, (pr, d, qr) => blockRuleOutcome(pr, d, qr, 'first-failure'), () => 0, c.deterministic);
      worst = Math.max(worst, gapToTarget(p, wrong.out, c.k));
    }
    expect(worst).toBeGreaterThan(1e-3);
  });

  test('one draft: the block rule is the token-by-token rule', () => {
    const rand = mulberry32(7);
    for (let i = 0; i < 20; i++) {
      const p = [table(rand, 0).get('')!, table(rand, 0).get('')!];
      const q = [table(rand, 0).get('')!];
      const x = i % V;
      const a = blockRuleOutcome(p, [x], q);
      const b = ruleOutcome(p, [x], q);
      for (let j = 0; j < a.length; j++) expect(a[j]).toBeCloseTo(b[j], 14);
    }
  });
});
