/**
 * Speculative decoding is lossless: whatever the drafter proposes, the output is the target's
 * own. Greedy: the ids equal the float64 reference's greedy ids (test/reference/llama.ts) for
 * every drafter (Max-Gram variants, another random model, the target itself, an adversary, a
 * perfect oracle, random tokens), every k, lengths that are not multiples of k and contexts
 * that run into the context limit; the acceptance counters follow from first principles for
 * the oracle and the adversary. Also here: the rule's math checked by exhaustive enumeration,
 * batched (ragged) verification against the reference, and the lenient review rule.
 * The sampling distribution of the native rule and of whole generations is in
 * speculative-sampling.test.ts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../lib/model';
import { loadNative } from '../lib/native';
import { runGeneration, type GenerationResult } from '../lib/generate';
import { resolveGenerateOptions, type GenerateOptions } from '../lib/options';
import { SpeculativeSource } from '../lib/speculative';
import { DrafterCounters, type DraftBlock, type Drafter } from '../lib/drafters/drafter';
import { makeTinyModel, mulberry32 } from './helpers/tiny-model';
import { argmax, maxAbsDiff, processedDistribution } from './helpers/stats';
import { ReferenceLlama } from './reference/llama';
import { ruleOutcome } from './helpers/spec-rule';

const V = 260;
const BIGRAM_FILE = 'maxgram-bigram.i32';

let tmp: string;
let target: Model; // seed 101
let targetBg: Model; // the same weights, with a Max-Gram bigram table beside them
let other: Model; // seed 202, same vocabulary: a drafter that is often wrong
let ref: ReferenceLlama;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-spec-exact-'));
  const dir = path.join(tmp, 'target');
  const dirBg = path.join(tmp, 'target-bigram');
  const dirOther = path.join(tmp, 'other');
  makeTinyModel(dir, { vocabSize: V, seed: 101 });
  makeTinyModel(dirBg, { vocabSize: V, seed: 101 });
  makeTinyModel(dirOther, { vocabSize: V, seed: 202 });
  target = Model.loadSync(dir);
  other = Model.loadSync(dirOther);
  ref = ReferenceLlama.load(dir);
  // An arbitrary but plausible table (an input, not an expected value): the target's argmax
  // after "<s>Hi" + t, with every fourth entry -1 so chains stop sometimes.
  const table = Buffer.alloc(V * 4);
  for (let t = 0; t < V; t++) {
    const s = target.createSequence({ contextLength: 8 });
    const next = t % 4 === 3 ? -1 : argmax(s.forwardSync([256, 72, 105, t]));
    table.writeInt32LE(next, t * 4);
  }
  fs.writeFileSync(path.join(dirBg, BIGRAM_FILE), table);
  targetBg = Model.loadSync(dirBg);
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Custom drafters, driven through the same SpeculativeSource + runGeneration as Model.generate.

/** Tracks where the context stands relative to the expected continuation `want`. */
abstract class ScriptedDrafter implements Drafter {
  abstract readonly name: string;
  readonly counters = new DrafterCounters();
  protected pos = 0; // tokens of the continuation already in the context
  proposals = 0;
  constructor(
    protected readonly promptLength: number,
    protected readonly want: readonly number[],
  ) {}
  begin(context: number[]): void {
    this.pos = context.length - this.promptLength; // the prompt plus the first generated token
  }
  abstract propose(max: number): number[];
  draft(max: number): DraftBlock {
    this.proposals++;
    return { tokens: this.propose(max) };
  }
  accept(emitted: readonly number[]): void {
    this.pos += emitted.length;
  }
}

/** Proposes the reference's greedy continuation: always right. */
class OracleDrafter extends ScriptedDrafter {
  readonly name = 'oracle';
  propose(max: number): number[] {
    return this.want.slice(this.pos, this.pos + max);
  }
}

/** Proposes (reference argmax + 1) mod V at every position: always wrong. */
class AdversarialDrafter extends ScriptedDrafter {
  readonly name = 'adversary';
  propose(max: number): number[] {
    return this.want.slice(this.pos, this.pos + max).map((t) => (t + 1) % V);
  }
}

/** The oracle's proposals, never more than `cap` tokens however many are allowed. */
class CappedOracle extends OracleDrafter {
  constructor(
    promptLength: number,
    want: number[],
    private readonly cap: number,
  ) {
    super(promptLength, want);
  }
  propose(max: number): number[] {
    return super.propose(Math.min(max, this.cap));
  }
}

/** Uniformly random tokens (deterministic seed). */
class RandomDrafter extends ScriptedDrafter {
  readonly name = 'random';
  private readonly rand = mulberry32(99);
  propose(max: number): number[] {
    return Array.from({ length: max }, () => Math.floor(this.rand() * V));
  }
}

/** What Model.generate does, with any Drafter. */
async function generateWith(model: Model, prompt: number[], drafter: Drafter | undefined, k: number, maxNewTokens: number, extra: GenerateOptions = {}): Promise<GenerationResult> {
  const o = resolveGenerateOptions({ maxNewTokens, stopOnEos: false, k, seed: 7, ...extra });
  const capacity = Math.min(model.contextLength, prompt.length + maxNewTokens);
  const seq = model.createSequence({ contextLength: capacity, seed: o.seed });
  const source = new SpeculativeSource(seq, drafter, k, o, maxNewTokens);
  return runGeneration(source, model.tokenizer, prompt, capacity, o);
}

// ---------------------------------------------------------------------------------------------
// Greedy exactness

interface Case {
  prompt: number[];
  n: number; // maxNewTokens
  want: number[]; // reference greedy ids (n of them, or up to the context limit)
}

const KS = [1, 2, 3, 5, 8];

function makeCases(): Case[] {
  const rand = mulberry32(2024);
  const prompts: number[][] = [];
  // Random ids, lengths 1..20; every other one periodic so Max-Gram finds matches.
  for (const len of [1, 2, 3, 5, 8, 11, 14, 17, 20]) {
    if (len > 3 && len % 2 === 0) {
      const motif = Array.from({ length: 2 + (len % 3) }, () => Math.floor(rand() * V));
      prompts.push(Array.from({ length: len }, (_, i) => motif[i % motif.length]));
    } else prompts.push(Array.from({ length: len }, () => Math.floor(rand() * V)));
  }
  for (const text of ['the cat sat on the mat. the cat', 'abcabcab', 'Hello']) prompts.push(target.tokenizer.encode(text));
  // Lengths 9..15: most are not multiples of most k.
  return prompts.map((prompt, i) => {
    const n = 9 + ((i * 5) % 7);
    return { prompt, n, want: ref.greedy(prompt, n) };
  });
}

let cases: Case[];
// The context-limit cases: a model whose contextLength C leaves room for C - P + 1 tokens
// (the last generated token never enters the cache).
const C = 16;
let small: Model;
let smallBg: Model;
let limitCases: Case[];

beforeAll(() => {
  cases = makeCases();
  small = Model.loadSync(target.dir, { contextLength: C });
  smallBg = Model.loadSync(targetBg.dir, { contextLength: C });
  limitCases = [1, 4, 9, 13, 15].map((P, i) => {
    const prompt = cases[i + 2].prompt.concat(cases[i + 6].prompt, cases[0].prompt, cases[1].prompt, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]).slice(0, P);
    return { prompt, n: 100, want: ref.greedy(prompt, C - P + 1) };
  });
});

type Runner = (model: Model, c: Case, k: number) => Promise<GenerationResult>;

const viaGenerate = (opts: (k: number) => GenerateOptions, bigram = false): Runner => (model, c, k) => {
  const m = bigram ? (model === small ? smallBg : targetBg) : model;
  return m.generate(c.prompt, { maxNewTokens: c.n, stopOnEos: false, k, ...opts(k) });
};

const DRAFTERS: Array<[string, Runner]> = [
  ['mag recent', viaGenerate(() => ({ method: 'mag', maxGramOccurrence: 'recent' }))],
  ['mag earliest', viaGenerate(() => ({ method: 'mag', maxGramOccurrence: 'earliest' }))],
  ['mag recent + bigram', viaGenerate(() => ({ method: 'mag', maxGramOccurrence: 'recent' }), true)],
  ['mag earliest + bigram', viaGenerate(() => ({ method: 'mag', maxGramOccurrence: 'earliest' }), true)],
  ['sd, another random model', viaGenerate(() => ({ method: 'sd', draftModel: other }))],
  ['sd, the target itself', viaGenerate(() => ({ method: 'sd', draftModel: target }))],
  ['adversary', (m, c, k) => generateWith(m, c.prompt, new AdversarialDrafter(c.prompt.length, c.want), k, c.n)],
  ['oracle', (m, c, k) => generateWith(m, c.prompt, new OracleDrafter(c.prompt.length, c.want), k, c.n)],
  ['random tokens', (m, c, k) => generateWith(m, c.prompt, new RandomDrafter(c.prompt.length, c.want), k, c.n)],
];

describe('greedy: every drafter, every k, gives exactly the target greedy ids', () => {
  test("the reference agrees with method 'ar' (the baseline every drafter is held to)", async () => {
    for (const c of cases) {
      const r = await target.generate(c.prompt, { maxNewTokens: c.n, stopOnEos: false });
      expect(r.tokens).toEqual(c.want);
      expect(r.stats.targetForwards).toBe(c.n);
    }
    for (const c of limitCases) {
      const r = await small.generate(c.prompt, { maxNewTokens: c.n, stopOnEos: false });
      expect(r.tokens).toEqual(c.want);
      expect(r.finishReason).toBe('context');
    }
  });

  test.each(DRAFTERS)('%s', async (name, run) => {
    const bad: string[] = [];
    let drafted = 0;
    for (const k of KS) {
      for (const c of cases) {
        const r = await run(target, c, k);
        drafted += r.stats.drafted as number;
        if (r.tokens.join(',') !== c.want.join(',') || r.finishReason !== 'length')
          bad.push(`k ${k} prompt [${c.prompt}] n ${c.n}: got [${r.tokens}] (${r.finishReason}), want [${c.want}]`);
      }
      for (const c of limitCases) {
        const r = await run(small, c, k);
        if (r.tokens.join(',') !== c.want.join(',') || r.finishReason !== 'context')
          bad.push(`context limit, k ${k} prompt [${c.prompt}]: got [${r.tokens}] (${r.finishReason}), want [${c.want}]`);
      }
    }
    expect(bad).toEqual([]);
    // Every drafter here proposes something (mag: the periodic and text prompts at least).
    expect(drafted).toBeGreaterThan(50);
  });
});

describe("the prompt's pass on the calling thread or on the pool", () => {
  test('short prompts (up to syncPromptTokens with the first draft) run synchronously, longer ones async; same tokens either way', async () => {
    const c = cases.find((x) => x.prompt.length >= 8)!;
    const used = (source: { sync: number; async: number }, seq: ReturnType<Model['createSequence']>) => {
      const native = seq.native;
      for (const [name, kind] of [['verify', 'sync'], ['step', 'sync'], ['verifyAsync', 'async'], ['stepAsync', 'async']] as const) {
        const f = (native as unknown as Record<string, (...a: unknown[]) => unknown>)[name].bind(native);
        // The addon's methods are read-only on its prototype: define an own property over them.
        Object.defineProperty(native, name, {
          value: (...a: unknown[]) => {
            source[kind]++;
            return f(...a);
          },
        });
      }
    };
    for (const drafter of [undefined, 'oracle'] as const) {
      const outputs: number[][] = [];
      for (const limit of [0, c.prompt.length + 3, 10_000]) {
        const o = resolveGenerateOptions({ maxNewTokens: c.n, stopOnEos: false, k: 3, seed: 7 });
        const capacity = Math.min(target.contextLength, c.prompt.length + c.n);
        const seq = target.createSequence({ contextLength: capacity, seed: o.seed });
        const calls = { sync: 0, async: 0 };
        used(calls, seq);
        const d = drafter ? new OracleDrafter(c.prompt.length, c.want) : undefined;
        const source = new SpeculativeSource(seq, d, 3, o, c.n, limit);
        const r = await runGeneration(source, target.tokenizer, c.prompt, capacity, o);
        outputs.push(r.tokens);
        // Only the prompt's pass may go to the pool: with a drafter it carries 3 drafts, so
        // a limit of prompt + 3 tokens is just enough for it to run here.
        expect({ drafter, limit, async: calls.async }).toEqual({ drafter, limit, async: limit === 0 ? 1 : 0 });
        expect(calls.sync).toBeGreaterThan(0);
      }
      expect(outputs[1]).toEqual(outputs[0]);
      expect(outputs[2]).toEqual(outputs[0]);
      expect(outputs[0]).toEqual(c.want);
    }
    // The size of the pass decides, not the most the source allows: k = 6 with a drafter that
    // proposes 3 stays on this thread at a limit of prompt + 3 (an adaptive scheduler allows 12
    // and usually drafts 7), and goes to the pool at prompt + 2.
    for (const limit of [c.prompt.length + 3, c.prompt.length + 2]) {
      const o = resolveGenerateOptions({ maxNewTokens: c.n, stopOnEos: false, k: 6, seed: 7 });
      const capacity = Math.min(target.contextLength, c.prompt.length + c.n);
      const seq = target.createSequence({ contextLength: capacity, seed: o.seed });
      const calls = { sync: 0, async: 0 };
      used(calls, seq);
      const source = new SpeculativeSource(seq, new CappedOracle(c.prompt.length, c.want, 3), 6, o, c.n, limit);
      const r = await runGeneration(source, target.tokenizer, c.prompt, capacity, o);
      expect(r.tokens).toEqual(c.want);
      expect({ limit, async: calls.async }).toEqual({ limit, async: limit === c.prompt.length + 3 ? 0 : 1 });
    }
  });
});

describe('greedy counters from first principles', () => {
  // The prompt's pass verifies the first draft; each pass emits min(k + 1, tokens left) tokens
  // when every draft is accepted, and exactly 1 when every draft is rejected.
  const perfectPasses = (n: number, k: number) => Math.ceil(n / (k + 1));

  test('oracle: every draft accepted at every position; ceil(n/(k+1)) passes', async () => {
    for (const k of KS)
      for (const [model, list] of [[target, cases], [small, limitCases]] as const)
        for (const c of list) {
          const d = new OracleDrafter(c.prompt.length, c.want);
          const r = await generateWith(model, c.prompt, d, k, c.n);
          const n = c.want.length;
          expect(r.tokens).toEqual(c.want);
          expect(r.stats.targetForwards).toBe(perfectPasses(n, k));
          expect(r.stats.accepted).toBe(r.stats.drafted);
          expect(r.stats.drafted).toBe(n - r.stats.targetForwards); // every token but the per-pass bonus was drafted
          expect((r.stats.acceptanceByPosition as number[]).every((a) => a === 1)).toBe(true);
          expect((r.stats.acceptanceByPosition as number[]).length).toBe(Math.max(0, Math.min(k, n - 1))); // the first pass drafts the most
          expect(r.stats.meanAcceptedLength).toBeCloseTo(n / r.stats.targetForwards, 12);
          // The prompt's pass carried the first draft: it emitted k + 1 tokens (or all n).
          expect(r.stats.firstTokens).toBe(Math.min(k + 1, n));
          expect(r.stats.verificationPasses).toBe(r.stats.targetForwards);
        }
  });

  test('oracle with n a multiple of k + 1: meanAcceptedLength is exactly k + 1', async () => {
    const c = cases[4];
    for (const k of [1, 2, 3]) {
      const n = 3 * (k + 1);
      const want = ref.greedy(c.prompt, n);
      const r = await generateWith(target, c.prompt, new OracleDrafter(c.prompt.length, want), k, n);
      expect(r.tokens).toEqual(want);
      expect(r.stats.meanAcceptedLength).toBe(k + 1);
      expect(r.stats.targetForwards).toBe(3);
    }
  });

  test('adversary: nothing accepted, one token per pass', async () => {
    for (const k of KS)
      for (const c of cases) {
        const r = await generateWith(target, c.prompt, new AdversarialDrafter(c.prompt.length, c.want), k, c.n);
        expect(r.tokens).toEqual(c.want);
        expect(r.stats.accepted).toBe(0);
        expect(r.stats.drafted).toBeGreaterThan(0);
        expect(r.stats.targetForwards).toBe(c.n);
        expect(r.stats.firstTokens).toBe(1);
        expect(r.stats.meanAcceptedLength).toBe(1);
        expect((r.stats.acceptanceByPosition as number[]).every((a) => a === 0)).toBe(true);
      }
  });

  test("the target drafting for itself (method 'sd'): every draft accepted", async () => {
    for (const k of KS)
      for (const c of cases) {
        const r = await target.generate(c.prompt, { maxNewTokens: c.n, stopOnEos: false, method: 'sd', draftModel: target, k });
        expect(r.tokens).toEqual(c.want);
        expect(r.stats.accepted).toBe(r.stats.drafted);
        expect(r.stats.targetForwards).toBe(perfectPasses(c.n, k));
      }
  });

  test('a random drafter accepts exactly the drafts that equal the reference greedy token', async () => {
    // Counted independently: replay each pass's proposal against the reference ids.
    for (const k of [2, 5])
      for (const c of cases.slice(0, 6)) {
        const d = new RandomDrafter(c.prompt.length, c.want);
        const log: number[][] = [];
        const orig = d.propose.bind(d);
        let at = 0;
        d.propose = (max: number) => {
          const p = orig(max);
          // Make some drafts right so acceptance is not always 0.
          for (let i = 0; i < p.length; i += 2) p[i] = c.want[at + i] ?? p[i];
          log.push([at, ...p]);
          return p;
        };
        const origAccept = d.accept.bind(d);
        d.accept = (emitted) => {
          at += emitted.length;
          origAccept(emitted);
        };
        const origBegin = d.begin.bind(d);
        d.begin = (context) => {
          at = context.length - c.prompt.length; // 0: the prompt's pass verifies the first draft
          origBegin(context);
        };
        const r = await generateWith(target, c.prompt, d, k, c.n);
        expect(r.tokens).toEqual(c.want);
        let accepted = 0;
        for (const [from, ...p] of log) {
          let a = 0;
          while (a < p.length && p[a] === c.want[from + a]) a++;
          accepted += a;
        }
        expect(r.stats.accepted).toBe(accepted);
      }
  });
});

// ---------------------------------------------------------------------------------------------
// The rule's math, by exhaustive enumeration (TS reference of the rule, native logits)

describe('speculative sampling rule: exhaustive enumeration of the first two emitted tokens', () => {
  const CTX = [256, 72, 105]; // "<s>Hi"; the pending token follows
  const T0 = 33;
  let pLogits: { first: Float32Array; after: Float32Array[] };
  let qLogits: { first: Float32Array; after: Float32Array[] };

  /** Logits after CTX + T0, and after CTX + T0 + z for every z (one cached pass each). */
  function rows(model: Model) {
    const seq = model.createSequence({ contextLength: 16 });
    const all = seq.native.forward(Int32Array.from([...CTX, T0]), true);
    const first = all.slice((CTX.length) * V, (CTX.length + 1) * V);
    const after: Float32Array[] = [];
    for (let z = 0; z < V; z++) {
      after.push(seq.native.forward(Int32Array.from([z]), false));
      seq.truncate(CTX.length + 1);
    }
    return { first, after };
  }

  beforeAll(() => {
    pLogits = rows(target);
    // The drafter: logits blended from the target's and the other model's, so that its
    // distribution overlaps the target's (partly right, partly wrong) even after top-k / top-p.
    const o = rows(other);
    const blend = (a: Float32Array, b: Float32Array) => a.map((v, i) => 0.6 * v + 0.4 * b[i]);
    qLogits = { first: blend(pLogits.first, o.first), after: pLogits.after.map((r, z) => blend(r, o.after[z])) };
    // The native logits are the model's (float32 tolerance against the float64 reference).
    expect(maxAbsDiff(pLogits.first, ref.forward([...CTX, T0])[CTX.length])).toBeLessThan(2e-4);
    expect(maxAbsDiff(pLogits.after[77], ref.forward([...CTX, T0, 77])[CTX.length + 1])).toBeLessThan(2e-4);
  });

  /**
   * The joint distribution of the first two emitted tokens when a pass verifies a k = 2 block:
   * every (x1, x2) the drafter can propose, weighted by its probability, through the TS
   * reference of the rule; a pass that rejects x1 emits one token, and the second then comes
   * from the next pass (its first emitted token, over its own drafts). When both drafts are
   * accepted the first two tokens are x1 x2 whatever the bonus, so the bonus row is arbitrary.
   */
  function enumerate(sampling: { temperature: number; topK: number; topP: number }, stochastic: boolean, variant?: 'resample-from-p') {
    const proc = (l: ArrayLike<number>) => processedDistribution(l, sampling.temperature, sampling.topK, sampling.topP);
    const p1 = proc(pLogits.first);
    const q1 = proc(qLogits.first);
    const P = pLogits.after.map(proc);
    const Q = qLogits.after.map(proc);
    const uniform = new Float64Array(V).fill(1 / V);
    // The drafter's proposals at a context: (token, probability) pairs.
    const proposals = (q: Float64Array): Array<[number, number]> =>
      stochastic ? [...q].map((w, x) => [x, w] as [number, number]).filter(([, w]) => w > 0) : [[argmax(q), 1]];
    const qArg = (q: Float64Array, x: number) => (stochastic ? q : oneHot(x));
    // First emitted token of a pass at CTX T0 y (one draft suffices for the first token).
    const firstOfPass = (y: number): Float64Array => {
      const f = new Float64Array(V);
      for (const [x, w] of proposals(Q[y])) {
        const o = ruleOutcome([P[y], uniform], [x], stochastic ? [Q[y]] : null, variant);
        for (let b = 0; b < V; b++) {
          f[b] += w * o[b]; // rejected: the correction
          f[x] += w * o[V + b]; // accepted: x itself
        }
      }
      return f;
    };
    const F = Array.from({ length: V }, (_, y) => firstOfPass(y));
    const joint = new Float64Array(V * V);
    const rejectMass = new Float64Array(V);
    for (const [x1, w1] of proposals(q1))
      for (const [x2, w2] of proposals(Q[x1])) {
        const w = w1 * w2;
        const o = ruleOutcome([p1, P[x1], uniform], [x1, x2], stochastic ? [q1, qArg(Q[x1], x2)] : null, variant);
        for (let y = 0; y < V; y++) {
          rejectMass[y] += w * o[y]; // n = 0: emits y, the next pass emits the second token
          joint[x1 * V + y] += w * o[V + y]; // n = 1: x1 then the correction y
          joint[x1 * V + x2] += w * o[2 * V + y]; // n = 2: x1 x2 (then the bonus)
        }
      }
    for (let y = 0; y < V; y++) if (rejectMass[y] > 0) for (let b = 0; b < V; b++) joint[y * V + b] += rejectMass[y] * F[y][b];
    // The autoregressive distribution: p(x1) p(x2 | x1).
    const ar = new Float64Array(V * V);
    for (let a = 0; a < V; a++) for (let b = 0; b < V; b++) ar[a * V + b] = p1[a] * P[a][b];
    return { joint, ar };
  }

  const oneHot = (x: number) => {
    const h = new Float64Array(V);
    h[x] = 1;
    return h;
  };

  test.each([
    { temperature: 1, topK: 0, topP: 1 },
    { temperature: 0.8, topK: 20, topP: 1 },
    { temperature: 1.3, topK: 0, topP: 0.9 },
    { temperature: 0.7, topK: 30, topP: 0.85 },
  ])('%j: stochastic and one-hot drafts give p(x1) p(x2|x1) to 1e-6', (sampling) => {
    for (const stochastic of [true, false]) {
      const { joint, ar } = enumerate(sampling, stochastic);
      expect(Math.abs(joint.reduce((s, v) => s + v, 0) - 1)).toBeLessThan(1e-9);
      expect(maxAbsDiff(joint, ar)).toBeLessThan(1e-6);
    }
  });

  test('negative control: a correction drawn from p (instead of the residual) is detected', () => {
    // (Exact agreement is ~1e-16; the wrong rule is off by far more than the 1e-6 tolerance.)
    const { joint, ar } = enumerate({ temperature: 0.8, topK: 20, topP: 1 }, true, 'resample-from-p');
    expect(maxAbsDiff(joint, ar)).toBeGreaterThan(1e-4);
    const det = enumerate({ temperature: 0.8, topK: 20, topP: 1 }, false, 'resample-from-p');
    expect(maxAbsDiff(det.joint, det.ar)).toBeGreaterThan(1e-4);
  });
});

// ---------------------------------------------------------------------------------------------
// Batched verification

describe('addon.verifyBatch: ragged blocks, different cache lengths', () => {
  test('same {accepted, next} as the reference and as verifying alone; same caches afterwards', async () => {
    const addon = loadNative();
    const rand = mulberry32(5);
    // Prefix lengths 3, 9, 14 (cache lengths); blocks of 4, 1 and 7 tokens.
    const specs = [
      { prefixLen: 3, block: (g: number[]) => [g[0], g[1], g[2], (g[3] + 5) % V] }, // 2 accepted, then wrong
      { prefixLen: 9, block: (g: number[]) => [g[0]] }, // nothing drafted
      { prefixLen: 14, block: (g: number[]) => g.slice(0, 7) }, // all 6 drafts right: bonus
      { prefixLen: 6, block: (g: number[]) => [g[0], (g[1] + 1) % V, g[2]] }, // first draft wrong
    ];
    const items = specs.map((s) => {
      const prefix = Array.from({ length: s.prefixLen }, () => Math.floor(rand() * V));
      const g = ref.greedy(prefix, 8); // g[0] plays the pending token
      const block = s.block(g);
      // Expected from the reference: greedy acceptance along the block.
      const logits = ref.forward([...prefix, ...block]);
      let accepted = 0;
      while (accepted < block.length - 1 && argmax(logits[prefix.length + accepted]) === block[accepted + 1]) accepted++;
      const next = argmax(logits[prefix.length + accepted]);
      return { prefix, block, accepted, next };
    });
    expect(items.map((i) => i.accepted)).toEqual([2, 0, 6, 0]);
    const fresh = () =>
      items.map((it) => {
        const seq = target.createSequence({ contextLength: 32 });
        seq.forwardSync(it.prefix);
        return seq;
      });
    const batched = fresh();
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const results = await addon.verifyBatch(batched.map((s, i) => ({ sequence: s.native, block: Int32Array.from(items[i].block), sampling: greedy })));
    const alone = fresh();
    const aloneResults = alone.map((s, i) => s.native.verify(Int32Array.from(items[i].block), { sampling: greedy }));
    const PROBE = 42;
    for (let i = 0; i < items.length; i++) {
      const it = items[i];
      expect({ accepted: results[i].accepted, next: results[i].next }).toEqual({ accepted: it.accepted, next: it.next });
      expect({ accepted: aloneResults[i].accepted, next: aloneResults[i].next }).toEqual({ accepted: it.accepted, next: it.next });
      // The cache holds prefix + pending + accepted drafts: probe it with one more token.
      const kept = [...it.prefix, ...it.block.slice(0, 1 + it.accepted)];
      expect(batched[i].length).toBe(kept.length);
      expect(alone[i].length).toBe(kept.length);
      const a = batched[i].forwardSync([PROBE]);
      const b = alone[i].forwardSync([PROBE]);
      expect(maxAbsDiff(a, b)).toBeLessThan(1e-4);
      expect(maxAbsDiff(a, ref.forward([...kept, PROBE])[kept.length])).toBeLessThan(2e-4);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Lenient review

describe('lenient review (greedy, lenience 2..4): argmax, or softmax p(x) >= q(x) / lenience', () => {
  test('accepted counts equal a TS reference of the rule, with and without draftProbs', () => {
    const rand = mulberry32(77);
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    let lenientOnly = 0; // acceptances of a non-argmax token
    let rejections = 0;
    let checked = 0;
    for (let trial = 0; trial < 40; trial++) {
      const prefix = Array.from({ length: 2 + Math.floor(rand() * 8) }, () => Math.floor(rand() * V));
      const k = 1 + Math.floor(rand() * 4);
      // Drafts: build left to right from the reference's ranking at each position (rank 0, 1,
      // 2 or a random token), so lenient acceptances and rejections both occur.
      const block = [Math.floor(rand() * V)];
      let logits: number[][] = [];
      for (let i = 0; i < k; i++) {
        logits = ref.forward([...prefix, ...block]);
        const row = logits[logits.length - 1];
        const order = row.map((_, t) => t).sort((a, b) => row[b] - row[a]);
        const r = rand();
        block.push(r < 0.3 ? order[0] : r < 0.65 ? order[1] : r < 0.85 ? order[2] : Math.floor(rand() * V));
      }
      logits = ref.forward([...prefix, ...block]);
      const softmax = (row: number[]) => processedDistribution(row, 1, 0, 1);
      const p = block.slice(1).map((_, i) => softmax(logits[prefix.length + i]));
      for (const lenience of [2, 3, 4]) {
        for (const withQ of [false, true]) {
          // q: 1 for deterministic drafts; otherwise q(x) set around lenience * p(x) (3% either
          // side of the threshold), the rest of the row spread evenly.
          let q: Float32Array | undefined;
          const qx: number[] = block.slice(1).map(() => 1);
          if (withQ) {
            q = new Float32Array(k * V);
            for (let i = 0; i < k; i++) {
              const x = block[i + 1];
              const side = rand() < 0.5 ? 0.97 : 1.03;
              qx[i] = Math.min(0.999, lenience * p[i][x] * side);
              q.fill((1 - qx[i]) / (V - 1), i * V, (i + 1) * V);
              q[i * V + x] = qx[i];
              qx[i] = q[i * V + x]; // what the native rule reads (float32)
            }
          }
          let want = 0;
          let tooClose = false; // p(x) within 1e-6 of the threshold: float32 may decide either way
          for (; want < k; want++) {
            const x = block[want + 1];
            const row = logits[prefix.length + want];
            if (argmax(row) !== x && Math.abs(p[want][x] - qx[want] / lenience) < 1e-6) tooClose = true;
            if (!(argmax(row) === x || p[want][x] >= qx[want] / lenience)) break;
          }
          if (tooClose) continue;
          const next = argmax(logits[prefix.length + want]);
          const seq = target.createSequence({ contextLength: 32 });
          seq.forwardSync(prefix);
          const r = seq.native.verify(Int32Array.from(block), { sampling: greedy, lenience, draftProbs: q });
          expect({ trial, lenience, withQ, accepted: r.accepted, next: r.next }).toEqual({ trial, lenience, withQ, accepted: want, next });
          expect(seq.length).toBe(prefix.length + 1 + want);
          for (let i = 0; i < want; i++) if (argmax(logits[prefix.length + i]) !== block[i + 1]) lenientOnly++;
          if (want < k) rejections++;
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(230);
    expect(lenientOnly).toBeGreaterThan(20);
    expect(rejections).toBeGreaterThan(20);
  });

  test('lenience 1 is the strict rule: only argmax drafts pass', () => {
    const prefix = [256, 10, 20, 30];
    const g = ref.greedy(prefix, 4);
    const logits = ref.forward([...prefix, g[0], g[1]]);
    const row = logits[prefix.length + 1];
    const second = row.map((_, t) => t).sort((a, b) => row[b] - row[a])[1];
    const seq = target.createSequence({ contextLength: 16 });
    seq.forwardSync(prefix);
    const r = seq.native.verify(Int32Array.from([g[0], g[1], second]), { sampling: { temperature: 0, topK: 0, topP: 1 }, lenience: 1 });
    expect(r).toMatchObject({ accepted: 1, next: g[2] });
  });
});
