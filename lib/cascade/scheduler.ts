// Beyond the paper: an online scheduler for the target's draft. Every RESEARCH_EVERY drafts
// (and whenever the room for drafts changes) it searches the band sizes of row 0 (how many
// positions each top-level drafter fills, possibly none) that maximise expected tokens per
// millisecond, from what it measured in this generation and earlier ones:
//   - per drafter, the probability that the target accepts a token of its band given that
//     everything before it was accepted (alpha): one estimate for the band's first position
//     and one pooled over the later ones;
//   - each drafter's cost per token it drafts;
//   - the target's verification cost as a function of block length.
// Expected tokens of a plan = 1 + sum_i prod_{j<=i} alpha(position j); expected time = verify
// cost of the block + the drafters' costs. An empty plan is plain decoding, so the scheduler
// proposes nothing when drafting is expected not to pay. A small share of steps explores a
// neighbouring plan so that estimates of unused options stay current.
//
// The plan in use changes only for one expected to be clearly faster (`switchMargin`): online
// estimates from a few hundred target passes cannot resolve a few percent (one draft token more
// or less), and a plan chosen on such noise cost more than it won. A plan whose block length
// has been timed fewer than MEASURED_MIN times is priced by extrapolation, which ran optimistic
// (the 11M target's 9-token block costs ~8% more than its 8-token one, where the neighbours'
// slope said ~3%), so it must promise UNMEASURED_MARGIN more; exploration measures it meanwhile.
// The first plan is the configuration's own (`initialPlan`: what `tune` measured offline, in
// interleaved comparisons the online estimates cannot match). It is kept until the estimates
// say otherwise, and taken back, with no margin, as soon as it scores highest again: a switch
// made on noise does not stick.
import type { NativeSampling } from '../native';
import { DrafterCounters, isPending, matchedPrefix, type DraftBlock, type Drafter } from '../drafters/drafter';
import { BandedDrafter, ReviewerLevel, type Cascade } from './cascade';
import { mulberry32 } from '../prng';

/**
 * Steps between plan searches. The estimates move over windows of about 50 passes, and with
 * the plan in use kept unless another is clearly faster, a search every 16 steps changed nothing
 * more than one every 32 did; each one costs about 0.1 ms on caches a verification has evicted.
 */
export const RESEARCH_EVERY = 32;
/** Averaging rate of the band's own time per draft (SchedulerState.overheadMs). */
const OVERHEAD_RATE = 0.05;
/** Timings of a block length before its cost counts as measured rather than extrapolated. */
const MEASURED_MIN = 10;
/** How much faster a plan of an unmeasured block length must look to replace the plan in use. */
const UNMEASURED_MARGIN = 0.1;
// Averaging windows (about 1 / rate observations). An acceptance is one Bernoulli outcome: a
// window of 10 (rate 0.1) per position left each alpha with a standard error near 0.09, so
// plans swung between k = 3 and 8 from noise alone, and a position past the band, measured
// only by exploration, could stay at one unlucky value (measured: 6-12% slower than the best
// fixed band). Past its first position a drafter's acceptance hardly depends on the position
// (the small draft's, on GSM8K: 0.81, then 0.85-0.88 for positions 2-7), so those pool.
// Windows of about 50 target passes: the first position gets one observation per pass, the
// pooled later ones about five.
const ALPHA_FIRST_RATE = 0.02;
const ALPHA_LATER_RATE = 0.004;

/**
 * A running mean that turns into an exponential moving average (weight `rate` on the newest
 * observation) once it has seen 1 / rate observations: it leaves its prior quickly, then
 * follows drift without jumping at every Bernoulli outcome.
 */
export class Ema {
  /** Observations so far (the initial value counts as one). */
  count = 1;
  constructor(
    public value: number,
    private readonly rate = 0.1,
  ) {}
  add(x: number): void {
    this.count++;
    this.value += Math.max(this.rate, 1 / this.count) * (x - this.value);
  }
}

/**
 * Costs in milliseconds as the machine's current speed (a scale shared by every item) times each
 * item's cost relative to it. This machine's speed drifts by 20% and more over minutes. Measured
 * on its own, each block length's (or drafter's) cost was only as fresh as that item's last use:
 * one measured in a slow phase looked expensive long after, so the scheduler avoided it and
 * never measured it again; one measured in a fast phase looked cheap. Here every observation
 * moves the shared scale, and an item keeps only its relative cost, which does not drift.
 */
export class CostModel {
  private scale?: Ema;
  private readonly relative = new Map<string, Ema>();
  // The scale follows the machine within a few passes; an item's relative cost is an average
  // over its first 100 observations, then moves slowly: a change seen in one item alone is far
  // more often the machine's than that item's.
  constructor(
    private readonly scaleRate = 0.2,
    private readonly itemRate = 0.01,
  ) {}

  observe(item: string, ms: number): void {
    if (!(ms > 0) || !Number.isFinite(ms)) return;
    if (!this.scale) this.scale = new Ema(ms, this.scaleRate);
    const rel = this.relative.get(item);
    if (!rel) {
      this.relative.set(item, new Ema(ms / this.scale.value, this.itemRate));
      return;
    }
    this.scale.add(ms / rel.value);
    rel.add(ms / this.scale.value);
  }

  /** Observations of the item so far (0: never measured). */
  count(item: string): number {
    return this.relative.get(item)?.count ?? 0;
  }

  /** The item's cost now, in ms (undefined if never measured). */
  ms(item: string): number | undefined {
    const rel = this.relative.get(item);
    return rel && this.scale ? rel.value * this.scale.value : undefined;
  }
}

/**
 * Non-decreasing least-squares fit (pool adjacent violators) of ys with weights ws. A longer
 * block never costs less to verify; fitting that shape keeps one noisy average (say, 8 tokens
 * measured below 7) from steering every plan towards it.
 */
export function isotonic(ys: readonly number[], ws: readonly number[]): number[] {
  const blocks: Array<{ sum: number; w: number; n: number }> = [];
  ys.forEach((y, i) => {
    blocks.push({ sum: y * ws[i], w: ws[i], n: 1 });
    while (blocks.length > 1) {
      const b = blocks[blocks.length - 1], a = blocks[blocks.length - 2];
      if (a.sum / a.w <= b.sum / b.w) break;
      blocks.splice(blocks.length - 2, 2, { sum: a.sum + b.sum, w: a.w + b.w, n: a.n + b.n });
    }
  });
  return blocks.flatMap((b) => new Array(b.n).fill(b.sum / b.w));
}

/**
 * What the scheduler has measured: per drafter, acceptance at its band's first position and
 * at the later ones ([first, later]); per drafter, cost per drafted token; the target's
 * verification cost by block length. Kept by the model between
 * generations with the same cascade, so a new generation starts from what earlier ones learnt
 * instead of exploring from scratch (a 128-token generation is only ~50 target passes).
 */
export class SchedulerState {
  readonly alpha: Ema[][];
  /** Verification by block length (items "verify:N") and each drafter's drafted token ("draft:D"). */
  readonly costs = new CostModel();
  /** The plan in use (band sizes of row 0), carried into the next generation. */
  plan?: number[];
  /** The configured plan (SchedulerOptions.initialPlan): taken back without a margin. */
  home?: number[];
  /**
   * Per draft, the band's time beyond its drafters' calls (catching up, bookkeeping, and for a
   * block of several pieces the band's loop and, when sampling, assembling their rows: about
   * 0.05 ms a step there, which made a Max-Gram tail look free when it was not). `sole`: a
   * plan whose only band is a level drafting alone (BandedDrafter's shortcut); `pieces`: any
   * other plan that drafts. Milliseconds, measured from the first draft of each kind.
   */
  readonly overheadMs: { sole?: Ema; pieces?: Ema } = {};

  constructor(readonly drafters: number) {
    // Start: acceptance 0.6 everywhere; costs from the parameter counts until measured.
    this.alpha = Array.from({ length: drafters }, () => [new Ema(0.6, ALPHA_FIRST_RATE), new Ema(0.6, ALPHA_LATER_RATE)]);
  }
}

// The cost items' names, built once: a name built per step is a new string to hash at every
// lookup (the scheduler's per-step work runs on caches a verification has just evicted).
const itemNames = (prefix: string) => Array.from({ length: 64 }, (_, i) => `${prefix}:${i}`);
const VERIFY_NAMES = itemNames('verify'), DRAFT_NAMES = itemNames('draft');
const VERIFY = (n: number) => VERIFY_NAMES[n] ?? `verify:${n}`;
const DRAFT = (d: number) => DRAFT_NAMES[d] ?? `draft:${d}`;

/** A plan cut to `limit` drafts in all, the last bands giving way first. */
function cutToTotal(plan: readonly number[], limit: number): number[] {
  const cut = [...plan];
  for (let d = cut.length - 1, over = cut.reduce((a, b) => a + b, 0) - limit; d >= 0 && over > 0; d--) {
    const less = Math.min(cut[d], over);
    cut[d] -= less;
    over -= less;
  }
  return cut;
}

export interface SchedulerOptions {
  /** Largest band per drafter. Default 8. */
  maxBand?: number;
  /** Largest total draft. Default 12. */
  maxDraft?: number;
  /**
   * Share of steps that explore a neighbouring plan. Default 0.02: an explored plan is usually
   * a dearer one (a longer draft, a Max-Gram tail), and at 0.05 exploring cost about 3% when
   * sampling, where the configured plan was already the best.
   */
  explore?: number;
  /** Seed of the exploration choices (not of the sampling). */
  seed?: number;
  /** Measurements to start from and keep updating (shared between generations). */
  state?: SchedulerState;
  /**
   * The plan to start from while the state has none, one band size per top-level drafter (the
   * configuration's row 0 of K, as `tune` chose it). Sizes above maxBand are cut to it, and the
   * total to maxDraft. Default: the first plan is searched from the prior estimates.
   */
  initialPlan?: readonly number[];
  /**
   * A searched plan replaces the one in use only when its expected tokens per ms are higher by
   * more than this fraction (than both the plan in use and initialPlan). Default 0.03.
   */
  switchMargin?: number;
  /**
   * The target's parameter count. A drafter not yet measured is priced by the paper's cost
   * model: its parameters over the target's, times a target decode. Without it unmeasured
   * drafters count as free, so the first plans try every one of them.
   */
  targetParams?: number;
}

export class AdaptiveScheduler implements Drafter {
  readonly name = 'adaptive-cascade';
  readonly counters = new DrafterCounters();
  readonly state: SchedulerState;
  private readonly alpha: Ema[][];
  private readonly costs: CostModel;
  /** verifyCost(n) for the current draft's choice, n = 0.. (computed once per draft). */
  private verifyTable: number[] = [];
  private last: number[] = [];
  private rand: () => number;
  readonly maxBand: number;
  readonly maxDraft: number;
  readonly explore: number;
  readonly switchMargin: number;
  private readonly planCounts = new Map<string, number>();
  /** How often each plan was chosen, for the stats. */
  get plans(): ReadonlyMap<string, number> {
    this.countPlan();
    return this.planCounts;
  }

  constructor(
    readonly cascade: Cascade,
    options: SchedulerOptions = {},
  ) {
    const n = cascade.top.drafters.length;
    this.maxBand = options.maxBand ?? 8;
    this.maxDraft = options.maxDraft ?? 12;
    this.explore = options.explore ?? 0.02;
    this.switchMargin = options.switchMargin ?? 0.03;
    if (!(this.switchMargin >= 0)) throw new RangeError(`switchMargin must be >= 0, got ${options.switchMargin}`);
    if (options.state && options.state.drafters !== n) throw new RangeError(`scheduler state is for ${options.state.drafters} drafters, the cascade has ${n}`);
    this.state = options.state ?? new SchedulerState(n);
    if (options.initialPlan && !this.state.home) this.state.home = this.fitPlan(options.initialPlan);
    if (this.state.home && !this.state.plan) this.state.plan = [...this.state.home];
    ({ alpha: this.alpha, costs: this.costs } = this.state);
    this.rand = mulberry32(options.seed ?? 1);
    cascade.top.measure = true; // what each drafter costs and yields, to learn from
    this.soleCapable = cascade.top.drafters.map((d) => BandedDrafter.draftsAlone(d));
    this.costRatio = cascade.top.drafters.map((d) =>
      options.targetParams && d instanceof ReviewerLevel ? d.model.numParams / options.targetParams : 0,
    );
  }

  /** Per drafter: parameters over the target's (0 for Max-Gram, or without targetParams). */
  private readonly costRatio: number[];
  /** Per drafter: a level drafting alone, which a plan of that band alone calls directly. */
  private readonly soleCapable: boolean[];

  /** A plan cut to maxBand per band and maxDraft in all (the last bands give way first). */
  private fitPlan(plan: readonly number[]): number[] {
    const n = this.cascade.top.drafters.length;
    if (plan.length !== n || !plan.every((v) => Number.isInteger(v) && v >= 0))
      throw new RangeError(`initialPlan must hold ${n} non-negative integers (one band size per top-level drafter), got [${plan.join(', ')}]`);
    return cutToTotal(plan.map((v) => Math.min(v, this.maxBand)), this.maxDraft);
  }

  async begin(context: number[]): Promise<void> {
    // Only the draft models that the current plan uses are prefilled now (their pass belongs
    // to the prompt's time); one a later plan takes catches up then (BandedDrafter.draft),
    // outside the cost it is charged per token.
    await this.cascade.begin(context, false);
    const top = this.cascade.top;
    // The plan in use carries over from the last generation (or is the configured one); the
    // next search is due after RESEARCH_EVERY steps. Searching here, on cold caches, cost about
    // 0.1 ms a request.
    const plan = this.state.plan ? [...this.state.plan] : this.search(top.drafters.length, this.maxDraft);
    this.searched = { plan, age: 0 };
    plan.forEach((size, d) => size > 0 && top.drafters[d].catchUp?.());
    this.last = [];
  }

  /**
   * Verification cost of blocks of 0..limit+1 tokens: the measured averages made non-decreasing
   * in the block length (weighted by how often each length was measured, up to 20), and
   * lengths never measured interpolated linearly between their measured neighbours (beyond the
   * ends: along the outer pair's slope, or +5% a token from a single measurement).
   */
  private verifyCosts(limit: number): number[] {
    const lengths: number[] = [];
    for (let n = 0; n <= Math.max(limit + 1, this.maxDraft + 1); n++) if (this.costs.count(VERIFY(n)) > 0) lengths.push(n);
    const fitted = isotonic(
      lengths.map((n) => this.costs.ms(VERIFY(n))!),
      lengths.map((n) => Math.min(20, this.costs.count(VERIFY(n)))),
    );
    const known = lengths.map((i, j) => [i, fitted[j]] as const);
    const at = (n: number): number => {
      if (known.length === 0) return 1;
      if (known.length === 1) return known[0][1] * (1 + 0.05 * (n - known[0][0]));
      let j = known.findIndex(([i]) => i >= n);
      if (j >= 0 && known[j][0] === n) return known[j][1];
      // Between known[j-1] and known[j]; before the first or after the last pair: extrapolate.
      if (j <= 0) j = j === 0 ? 1 : known.length - 1;
      const [a, b] = [known[j - 1], known[j]];
      const slope = Math.max(0, (b[1] - a[1]) / (b[0] - a[0]));
      return Math.max(known[0][1] * 0.5, a[1] + slope * (n - a[0]));
    };
    return Array.from({ length: limit + 2 }, (_, n) => at(n));
  }

  /** The last searched plan (searched for maxDraft drafts) and steps since. */
  private searched?: { plan: readonly number[]; age: number };
  /** The searched plan cut to a smaller room for drafts, kept while both stay the same. */
  private cut?: { from: readonly number[]; limit: number; plan: readonly number[] };

  private choosePlan(max: number): readonly number[] {
    const n = this.cascade.top.drafters.length;
    const limit = Math.min(max, this.maxDraft);
    // The estimates move slowly (moving averages): the search runs every few steps, not before
    // every target pass, and always for the most the scheduler drafts. When the room for drafts
    // is smaller (a generation's last tokens, a context nearly full) the plan is cut to it, the
    // last bands giving way first: searching again for each such room cost about 0.1 ms (caches
    // evicted by the verification) at each of a generation's last steps.
    const s = this.searched;
    let best = s && s.age < RESEARCH_EVERY ? (s.age++, s.plan) : this.search(n, this.maxDraft);
    if (best.reduce((a, b) => a + b, 0) > limit) {
      const c = this.cut;
      best = c && c.from === best && c.limit === limit ? c.plan : (this.cut = { from: best, limit, plan: cutToTotal(best, limit) }).plan;
    }
    if (!(this.explore > 0 && this.rand() < this.explore)) return best; // the searched plan itself: not to be changed
    // Exploration resizes a band of the plan (or Max-Gram's, which costs nothing to try). It
    // never switches on an unused draft model: that model's cache has fallen behind, and the
    // first call would re-feed everything since its last use, a cost far above what one step
    // of exploration can win. Unused models are priced by what they measured when last used.
    const explorable = [...Array(n).keys()].filter((d) => best[d] > 0 || this.cascade.top.drafters[d] === this.cascade.maxgram);
    if (!explorable.length) return best;
    const explored = [...best];
    const d = explorable[Math.floor(this.rand() * explorable.length)];
    explored[d] = Math.max(0, Math.min(this.maxBand, explored[d] + (this.rand() < 0.5 ? -1 : 1)));
    while (explored.reduce((a, b) => a + b, 0) > limit) explored[d]--;
    return explored;
  }

  /** The plan of band sizes with the most expected tokens per ms, by exhaustive search. */
  private search(n: number, limit: number): readonly number[] {
    this.verifyTable = this.verifyCosts(limit);
    // Per drafter and band size s: the probability that all s tokens pass (given the band is
    // reached), the expected accepted tokens of the band, and its drafting cost. The search
    // then costs O(1) per plan (it runs before every target pass).
    const maxSize = Math.min(this.maxBand, limit);
    const pass: number[][] = [], gain: number[][] = [], cost: number[][] = [];
    for (let d = 0; d < n; d++) {
      pass.push([1]);
      gain.push([0]);
      cost.push([0]);
      const perToken = this.costs.ms(DRAFT(d)) ?? this.costRatio[d] * this.verifyTable[1];
      // Later positions never measured take the first position's acceptance.
      const [first, later] = this.alpha[d];
      const laterAlpha = later.count > 1 ? later.value : first.value;
      for (let size = 1; size <= maxSize; size++) {
        pass[d].push(pass[d][size - 1] * (size === 1 ? first.value : laterAlpha));
        gain[d].push(gain[d][size - 1] + pass[d][size]);
        cost[d].push(perToken * size);
      }
    }
    // The band's own time: none for the empty plan, one figure for a sole level drafting
    // alone, another for everything else (see SchedulerState.overheadMs).
    const soleMs = this.state.overheadMs.sole?.value ?? 0, piecesMs = this.state.overheadMs.pieces?.value ?? 0;
    const overhead = (pieces: number, lastPiece: number) => (pieces === 0 ? 0 : pieces === 1 && this.soleCapable[lastPiece] ? soleMs : piecesMs);
    let best: number[] = new Array(n).fill(0);
    let bestScore = 1 / this.verifyTable[1];
    // The plan in use and the configured one, scored the same way (-1: none, or not within
    // this search's limits): any other plan must beat both by its margin.
    const scoreOf = (p: readonly number[] | undefined): number => {
      if (!p || p.length !== n || !p.every((v) => v <= maxSize) || p.reduce((a, b) => a + b, 0) > limit) return -1;
      let expected = 1, reach = 1, spent = 0, total = 0, pieces = 0, lastPiece = -1;
      p.forEach((size, d) => {
        expected += reach * gain[d][size];
        reach *= pass[d][size];
        spent += cost[d][size];
        total += size;
        if (size > 0) [pieces, lastPiece] = [pieces + 1, d];
      });
      return expected / (this.verifyTable[total + 1] + spent + overhead(pieces, lastPiece));
    };
    const current = this.state.plan, home = this.state.home;
    const currentScore = scoreOf(current), homeScore = scoreOf(home);
    // The best plan to switch to: the most expected tokens per ms discounted by the margin its
    // block length needs (measured or not).
    const discount = Array.from({ length: limit + 1 }, (_, total) =>
      1 + (this.costs.count(VERIFY(total + 1)) >= MEASURED_MIN ? this.switchMargin : Math.max(this.switchMargin, UNMEASURED_MARGIN)),
    );
    let switchTo: number[] = best;
    let switchScore = -1;
    const plan = new Array(n).fill(0);
    const visit = (d: number, left: number, expected: number, reach: number, spent: number, total: number, pieces: number, lastPiece: number): void => {
      if (d === n) {
        const sc = expected / (this.verifyTable[total + 1] + spent + overhead(pieces, lastPiece));
        if (sc > bestScore) {
          bestScore = sc;
          best = [...plan];
        }
        if (sc / discount[total] > switchScore) {
          switchScore = sc / discount[total];
          switchTo = [...plan];
        }
        return;
      }
      for (let size = 0; size <= Math.min(maxSize, left); size++) {
        plan[d] = size;
        visit(d + 1, left - size, expected + reach * gain[d][size], reach * pass[d][size], spent + cost[d][size], total + size, size > 0 ? pieces + 1 : pieces, size > 0 ? d : lastPiece);
      }
      plan[d] = 0;
    };
    visit(0, limit, 1, 1, 0, 0, 0, -1);
    if (currentScore >= 0 || homeScore >= 0) {
      // The plan in use wins ties; the configured plan is taken back as soon as it scores
      // higher (no margin: tune measured it offline, interleaved, which the online estimates
      // cannot match); any other plan needs its margin.
      let pick = switchTo, pickScore = switchScore;
      if (currentScore >= pickScore) [pick, pickScore] = [[...current!], currentScore];
      if (homeScore > pickScore) pick = [...home!];
      best = pick;
    }
    this.state.plan = [...best];
    const chosen: readonly number[] = [...best];
    this.searched = { plan: chosen, age: 0 };
    return chosen;
  }

  /**
   * The last draft's plan, its key in `plans`, whether it drafts nothing, and how many drafts it
   * made that `plans` does not count yet. Most steps repeat the plan (the same array until the
   * next search), so that work is done when the plan changes, not at every step.
   */
  private lastPlan?: readonly number[];
  private lastPlanKey = '';
  private lastPlanEmpty = false;
  private lastPlanDrafts = 0;

  /** Adds the drafts of the last plan to `plans`. */
  private countPlan(): void {
    if (this.lastPlanDrafts === 0) return;
    this.planCounts.set(this.lastPlanKey, (this.planCounts.get(this.lastPlanKey) ?? 0) + this.lastPlanDrafts);
    this.lastPlanDrafts = 0;
  }

  /** Synchronous when the cascade's drafters are (see resumeSync). */
  draft(max: number, sampling: NativeSampling): DraftBlock | Promise<DraftBlock> {
    const plan = this.choosePlan(max);
    const top = this.cascade.top;
    if (plan !== this.lastPlan) {
      this.countPlan();
      this.lastPlan = plan;
      this.lastPlanKey = plan.join('/');
      this.lastPlanEmpty = plan.every((s) => s === 0);
      // Only this scheduler sets the top level's bands.
      if (!this.lastPlanEmpty) top.setBands(plan);
    }
    this.lastPlanDrafts++;
    if (this.lastPlanEmpty) {
      this.last = [];
      top.lastSources = [];
      return { tokens: [] };
    }
    const t0 = performance.now();
    const block = top.draft(max, sampling);
    return isPending(block) ? block.then((b) => this.drafted(b, t0)) : this.drafted(block, t0);
  }

  /** Learns the costs of the draft just made (started at t0). */
  private drafted(block: DraftBlock, t0: number): DraftBlock {
    const wallMs = performance.now() - t0;
    const top = this.cascade.top;
    const { lastCostMs, lastCalls, lastSources } = top;
    const direct = top.direct;
    let callsMs = 0;
    for (let d = 0; d < lastCalls.length; d++) {
      if (lastCalls[d] === 0) continue;
      callsMs += lastCostMs[d];
      // The one-band shortcut: every token came from this drafter's one call.
      let produced = direct ? block.tokens.length : 0;
      if (!direct) for (const [src] of lastSources) if (src === d) produced++;
      // Priced per token, not per call: a call's cost grows with its band, and an item whose
      // cost moved with the plan moved the speed scale every item shares (CostModel). After a
      // switch to a longer band the scale rose with the dearer calls, every block length not in
      // use looked dearer at it, and the scheduler kept the longer band: sampling on an AVX2 CPU
      // it priced a 4-token verification at 4.2-5.1 ms (measured: 2.4) and ran k = 7, 18%
      // slower than the configured k = 3.
      if (produced > 0) this.costs.observe(DRAFT(d), lastCostMs[d] / produced);
    }
    // The band's own time, by the path the draft took. Kept in ms apart from the CostModel: a
    // figure this small and noisy would jolt the speed scale every item shares.
    const kind = direct ? 'sole' : 'pieces';
    const own = wallMs - callsMs;
    const ema = this.state.overheadMs[kind];
    if (ema) ema.add(own);
    else this.state.overheadMs[kind] = new Ema(own, OVERHEAD_RATE);
    this.last = block.tokens;
    return block;
  }

  /** Verification time of a block (called by the decoding loop). */
  observeVerify(blockLength: number, ms: number): void {
    this.costs.observe(VERIFY(blockLength), ms);
  }

  accept(emitted: readonly number[]): void {
    const accepted = Math.min(matchedPrefix(this.last, emitted), this.last.length);
    this.counters.record(this.last.length, accepted);
    const sources = this.cascade.top.lastSources;
    for (let i = 0; i < this.last.length && i <= accepted; i++) {
      const [d, j] = sources[i];
      this.alpha[d][j === 0 ? 0 : 1].add(i < accepted ? 1 : 0);
    }
    this.last = [];
    this.cascade.accept(emitted);
  }

  dispose(): void {
    this.cascade.dispose();
  }

  stats(): Record<string, unknown> {
    return {
      plans: Object.fromEntries([...this.plans.entries()].sort((a, b) => b[1] - a[1])),
      alpha: this.alpha.map((row) => row.map((e) => +e.value.toFixed(3))),
      drafterMsPerToken: this.alpha.map((_, d) => +(this.costs.ms(DRAFT(d)) ?? 0).toFixed(3)),
      bandOverheadMs: Object.fromEntries(Object.entries(this.state.overheadMs).map(([k, e]) => [k, +e.value.toFixed(4)])),
      verifyMs: Array.from({ length: this.maxDraft + 2 }, (_, n) => n)
        .filter((n) => this.costs.count(VERIFY(n)) > 0)
        .map((n) => [n, +this.costs.ms(VERIFY(n))!.toFixed(3)]),
    };
  }
}
