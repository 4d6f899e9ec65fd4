// Beyond the paper: an online scheduler for the target's draft. Before every draft it picks the
// band sizes of row 0 (how many positions each top-level drafter fills, possibly none) that
// maximise expected tokens per millisecond, from what it measured during this generation:
//   - per drafter and per position inside its band, the probability that the target accepts
//     the token given that everything before it was accepted (alpha);
//   - each drafter's cost per call and tokens per call;
//   - the target's verification cost as a function of block length.
// Expected tokens of a plan = 1 + sum_i prod_{j<=i} alpha(position j); expected time = verify
// cost of the block + the drafters' costs. An empty plan is plain decoding, so the scheduler
// proposes nothing when drafting is expected not to pay. A small share of steps explores a
// neighbouring plan so that estimates of unused options stay current.
import type { NativeSampling } from '../native';
import { DrafterCounters, type DraftBlock, type Drafter } from '../drafters/drafter';
import { matchedPrefix } from '../drafters/drafter';
import type { Cascade } from './cascade';
import { mulberry32 } from '../prng';

const MAX_POS = 12;
/** Steps between plan searches. */
const RESEARCH_EVERY = 8;

class Ema {
  constructor(
    public value: number,
    private readonly rate = 0.1,
  ) {}
  add(x: number): void {
    this.value += this.rate * (x - this.value);
  }
}

/**
 * What the scheduler has measured: per drafter and position, acceptance; per drafter, cost and
 * tokens per call; the target's verification cost by block length. Kept by the model between
 * generations with the same cascade, so a new generation starts from what earlier ones learnt
 * instead of exploring from scratch (a 128-token generation is only ~50 target passes).
 */
export class SchedulerState {
  readonly alpha: Ema[][];
  readonly callMs: Ema[];
  readonly tokensPerCall: Ema[];
  readonly verifyMs: Ema[] = [];

  constructor(readonly drafters: number) {
    // Optimistic start (acceptance 0.6, cheap drafting) so every option gets tried early.
    this.alpha = Array.from({ length: drafters }, () => Array.from({ length: MAX_POS }, () => new Ema(0.6)));
    this.callMs = Array.from({ length: drafters }, () => new Ema(0));
    this.tokensPerCall = Array.from({ length: drafters }, () => new Ema(1));
  }
}

export interface SchedulerOptions {
  /** Largest band per drafter. Default 8. */
  maxBand?: number;
  /** Largest total draft. Default 12. */
  maxDraft?: number;
  /** Share of steps that explore a neighbouring plan. Default 0.05. */
  explore?: number;
  /** Seed of the exploration choices (not of the sampling). */
  seed?: number;
  /** Measurements to start from and keep updating (shared between generations). */
  state?: SchedulerState;
}

export class AdaptiveScheduler implements Drafter {
  readonly name = 'adaptive-cascade';
  readonly counters = new DrafterCounters();
  readonly state: SchedulerState;
  private readonly alpha: Ema[][];
  private readonly callMs: Ema[];
  private readonly tokensPerCall: Ema[];
  private readonly verifyMs: Ema[];
  /** verifyCost(n) for the current draft's choice, n = 0.. (computed once per draft). */
  private verifyTable: number[] = [];
  private last: number[] = [];
  private rand: () => number;
  readonly maxBand: number;
  readonly maxDraft: number;
  readonly explore: number;
  /** How often each plan was chosen, for the stats. */
  readonly plans = new Map<string, number>();

  constructor(
    readonly cascade: Cascade,
    options: SchedulerOptions = {},
  ) {
    const n = cascade.top.drafters.length;
    this.maxBand = options.maxBand ?? 8;
    this.maxDraft = options.maxDraft ?? 12;
    this.explore = options.explore ?? 0.05;
    if (options.state && options.state.drafters !== n) throw new RangeError(`scheduler state is for ${options.state.drafters} drafters, the cascade has ${n}`);
    this.state = options.state ?? new SchedulerState(n);
    ({ alpha: this.alpha, callMs: this.callMs, tokensPerCall: this.tokensPerCall, verifyMs: this.verifyMs } = this.state);
    this.rand = mulberry32(options.seed ?? 1);
  }

  async begin(context: number[]): Promise<void> {
    await this.cascade.begin(context);
    this.last = [];
  }

  /** Verification cost of a block of n tokens: measured, else interpolated linearly. */
  private verifyCost(n: number): number {
    const known = this.verifyMs.map((e, i) => [i, e?.value] as const).filter(([, v]) => v !== undefined) as Array<readonly [number, number]>;
    if (this.verifyMs[n]) return this.verifyMs[n].value;
    if (known.length === 0) return 1;
    if (known.length === 1) return known[0][1] * (1 + 0.05 * (n - known[0][0]));
    const [a, b] = [known[0], known[known.length - 1]];
    const slope = Math.max(0, (b[1] - a[1]) / Math.max(1, b[0] - a[0]));
    return Math.max(known[0][1] * 0.5, a[1] + slope * (n - a[0]));
  }

  /** The last searched plan, the draft limit it was searched for, and steps since. */
  private searched?: { plan: number[]; limit: number; age: number };

  private choosePlan(max: number): number[] {
    const n = this.cascade.top.drafters.length;
    const limit = Math.min(max, this.maxDraft);
    // The estimates move slowly (moving averages): the search runs every few steps, or when
    // the room left for drafts changes, not before every target pass.
    const s = this.searched;
    const best = s && s.limit === limit && s.age < RESEARCH_EVERY ? (s.age++, [...s.plan]) : this.search(n, limit);
    // Exploration resizes a band of the plan (or Max-Gram's, which costs nothing to try). It
    // never switches on an unused draft model: that model's cache has fallen behind, and the
    // first call would re-feed everything since its last use, a cost far above what one step
    // of exploration can win. Unused models are priced by what they measured when last used.
    const explorable = [...Array(n).keys()].filter((d) => best[d] > 0 || this.cascade.top.drafters[d] === this.cascade.maxgram);
    if (explorable.length && this.rand() < this.explore) {
      const d = explorable[Math.floor(this.rand() * explorable.length)];
      best[d] = Math.max(0, Math.min(this.maxBand, best[d] + (this.rand() < 0.5 ? -1 : 1)));
      while (best.reduce((a, b) => a + b, 0) > limit) best[d]--;
    }
    return best;
  }

  /** The plan of band sizes with the most expected tokens per ms, by exhaustive search. */
  private search(n: number, limit: number): number[] {
    this.verifyTable = Array.from({ length: limit + 2 }, (_, i) => this.verifyCost(i));
    // Per drafter and band size s: the probability that all s tokens pass (given the band is
    // reached), the expected accepted tokens of the band, and its drafting cost. The search
    // then costs O(1) per plan (it runs before every target pass).
    const maxSize = Math.min(this.maxBand, limit);
    const pass: number[][] = [], gain: number[][] = [], cost: number[][] = [];
    for (let d = 0; d < n; d++) {
      pass.push([1]);
      gain.push([0]);
      cost.push([0]);
      const perToken = this.callMs[d].value / Math.max(0.5, this.tokensPerCall[d].value);
      for (let size = 1; size <= maxSize; size++) {
        pass[d].push(pass[d][size - 1] * this.alpha[d][Math.min(size - 1, MAX_POS - 1)].value);
        gain[d].push(gain[d][size - 1] + pass[d][size]);
        cost[d].push(perToken * size);
      }
    }
    let best: number[] = new Array(n).fill(0);
    let bestScore = 1 / this.verifyTable[1];
    const plan = new Array(n).fill(0);
    const visit = (d: number, left: number, expected: number, reach: number, spent: number, total: number): void => {
      if (d === n) {
        const sc = expected / (this.verifyTable[total + 1] + spent);
        if (sc > bestScore) {
          bestScore = sc;
          best = [...plan];
        }
        return;
      }
      for (let size = 0; size <= Math.min(maxSize, left); size++) {
        plan[d] = size;
        visit(d + 1, left - size, expected + reach * gain[d][size], reach * pass[d][size], spent + cost[d][size], total + size);
      }
      plan[d] = 0;
    };
    visit(0, limit, 1, 1, 0, 0);
    this.searched = { plan: [...best], limit, age: 0 };
    return best;
  }

  async draft(max: number, sampling: NativeSampling): Promise<DraftBlock> {
    const plan = this.choosePlan(max);
    const planKey = plan.join('/');
    this.plans.set(planKey, (this.plans.get(planKey) ?? 0) + 1);
    if (plan.every((s) => s === 0)) {
      this.last = [];
      this.cascade.top.lastSources = [];
      return { tokens: [] };
    }
    const top = this.cascade.top;
    top.setBands(plan);
    const block = await top.draft(max, sampling);
    top.lastCostMs.forEach((ms, d) => {
      if (top.lastCalls[d] > 0) {
        this.callMs[d].add(ms / top.lastCalls[d]);
        const produced = top.lastSources.filter(([src]) => src === d).length;
        this.tokensPerCall[d].add(produced / top.lastCalls[d]);
      }
    });
    this.last = block.tokens;
    return block;
  }

  /** Verification time of a block (called by the decoding loop). */
  observeVerify(blockLength: number, ms: number): void {
    if (!this.verifyMs[blockLength]) this.verifyMs[blockLength] = new Ema(ms, 0.2);
    else this.verifyMs[blockLength].add(ms);
  }

  accept(emitted: readonly number[]): void {
    const accepted = Math.min(matchedPrefix(this.last, emitted), this.last.length);
    this.counters.record(this.last.length, accepted);
    const sources = this.cascade.top.lastSources;
    for (let i = 0; i < this.last.length && i <= accepted; i++) {
      const [d, j] = sources[i];
      if (j < MAX_POS) this.alpha[d][j].add(i < accepted ? 1 : 0);
    }
    this.last = [];
    this.cascade.accept(emitted);
  }

  dispose(): void {
    this.cascade.dispose();
  }

  stats(): Record<string, unknown> {
    return {
      plans: Object.fromEntries([...this.plans.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8)),
      alpha: this.alpha.map((row) => row.slice(0, 6).map((e) => +e.value.toFixed(3))),
      drafterMsPerCall: this.callMs.map((e) => +e.value.toFixed(3)),
      verifyMs: this.verifyMs.map((e, i) => (e ? [i, +e.value.toFixed(3)] : null)).filter(Boolean),
    };
  }
}
