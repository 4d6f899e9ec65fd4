// The cascade as drafters: a horizontal cascade (BandedDrafter) fills a draft in bands of
// positions from several drafters, larger first; a vertical cascade level (ReviewerLevel) is a
// draft model that never drafts alone: it reviews its own BandedDrafter's blocks with the fused
// verification step (lenient when configured), exactly as the target reviews, and its output
// (accepted tokens + its correction) is the draft it hands up. The target's level is the
// SpeculativeSource itself, whose review is always strict.
import type { Model } from '../model';
import type { NativeSampling } from '../native';
import { CachedContext } from '../drafters/cached-context';
import { DrafterCounters, draftSampling, matchedPrefix, resumeSync, type DraftBlock, type Drafter } from '../drafters/drafter';
import { MaxGram } from '../drafters/maxgram';
import { MAXGRAM, validateMatrix, type CascadeMatrix } from './config';

/** More new tokens than one step of drafting feeds a level (a scheduler's longest draft, 12,
 * plus the correction): a level this far behind sat unused and catches up separately. */
const CATCH_UP_LAG = 16;

export class BandedDrafter implements Drafter {
  readonly counters = new DrafterCounters();
  private last: number[] = [];
  /** Cumulative band ends. */
  private ends: number[] = [];
  /**
   * Whether every draft records where its tokens came from and what each drafter cost (the
   * last* fields below; the adaptive scheduler learns from them). Off, a band of a single level
   * drafting alone skips that bookkeeping (see draftSole), and the fields are left empty.
   */
  measure = false;
  /** For each position of the last top-level draft: [drafter index, position inside its band]. */
  lastSources: ReadonlyArray<readonly [number, number]> = [];
  /** Milliseconds each drafter spent on the last draft, and how many calls it took. */
  lastCostMs: readonly number[] = [];
  lastCalls: readonly number[] = [];
  private sizes: number[] = [];
  /** The band, if only one has positions and its drafter is a cascade level; else -1. */
  private sole = -1;

  constructor(
    readonly name: string,
    readonly drafters: Drafter[],
    bands: number[],
  ) {
    this.setBands(bands);
  }

  /** Band sizes, one per drafter. */
  get bands(): readonly number[] {
    return this.sizes;
  }

  /** Changes the band sizes (the adaptive scheduler does, between drafts). */
  setBands(bands: readonly number[]): void {
    if (bands.length !== this.drafters.length) throw new RangeError('one band size per drafter');
    if (bands.every((b, i) => b === this.sizes[i])) return; // the adaptive scheduler's usual case
    this.sizes = [...bands];
    let sum = 0;
    this.ends = bands.map((b) => (sum += b));
    const used = bands.flatMap((b, i) => (b > 0 ? [i] : []));
    this.sole = used.length === 1 && this.drafters[used[0]] instanceof ReviewerLevel ? used[0] : -1;
  }

  /** Whether a drafter of a band is a level drafting alone: a plan whose only band it fills
   * takes the one-band shortcut (draftSole). */
  static draftsAlone(d: Drafter): d is ReviewerLevel {
    return d instanceof ReviewerLevel && d.alone;
  }

  /** Whether a draft with the current bands takes the one-band shortcut (draftSole). */
  get direct(): boolean {
    return this.sole >= 0 && BandedDrafter.draftsAlone(this.drafters[this.sole]);
  }

  /** Positions this drafter fills at most. */
  get size(): number {
    return this.ends[this.ends.length - 1] ?? 0;
  }

  // The components of a cascade are shared between bands of several levels; Cascade starts
  // and informs each exactly once, so a band only keeps its own counters.
  begin(_context: number[]): void {
    this.last = [];
  }

  /** Synchronous when every drafter it calls answers synchronously (see resumeSync). */
  draft(max: number, sampling: NativeSampling, prefix: readonly number[] = []): DraftBlock | Promise<DraftBlock> {
    if (this.direct) return this.draftSole(this.drafters[this.sole] as ReviewerLevel, max, sampling, prefix);
    return resumeSync(this.fill(max, sampling, prefix));
  }

  /**
   * The draft when one band has positions and its drafter is a level drafting alone (`tune`'s
   * choice for the default family, `target[small:7]`, and the adaptive scheduler's usual plan):
   * the level's block as it is, with fill()'s bookkeeping when `measure` is on. fill() would
   * only relay that block, and right after a verification has evicted the caches its loop,
   * generator and proposal rows cost about 10 us a step (1%); the `measure` bookkeeping costs
   * about 5 us more (interleaved, caches evicted by a 24 MB write between drafts).
   * The level drafts its whole band in one call (a second call, as fill() would make after a
   * short block, finds no room or follows a confidence stop, and proposes nothing).
   */
  private draftSole(level: ReviewerLevel, max: number, sampling: NativeSampling, prefix: readonly number[]): DraftBlock {
    const i = this.sole;
    const size = Math.min(max, this.sizes[i]);
    if (size >= 1) level.catchUp();
    const t0 = this.measure ? performance.now() : 0;
    const block = size >= 1 ? level.draftAlone(size, sampling, prefix) : { tokens: [] };
    if (prefix.length === 0) {
      this.last = block.tokens;
      if (this.measure) {
        // Arrays kept between drafts: this runs every step, on caches the verification has
        // just evicted, and fresh arrays per draft showed in the scheduler's step time.
        const costMs = (this.soleCostMs ??= this.drafters.map(() => 0));
        const calls = (this.soleCalls ??= this.drafters.map(() => 0));
        costMs.fill(0);
        calls.fill(0);
        costMs[i] = size >= 1 ? performance.now() - t0 : 0;
        calls[i] = size >= 1 ? 1 : 0;
        this.lastSources = this.soleSources(i, block.tokens.length);
        this.lastCostMs = costMs;
        this.lastCalls = calls;
      } else {
        this.lastSources = [];
        this.lastCostMs = this.lastCalls = [];
      }
    }
    return { tokens: block.tokens, probs: block.probs };
  }

  private soleCostMs?: number[];
  private soleCalls?: number[];
  /** soleSourceLists[i][n]: the sources of an n-token draft of band i alone, built once. */
  private readonly soleSourceLists: Array<Array<ReadonlyArray<readonly [number, number]>>> = [];

  private soleSources(i: number, n: number): ReadonlyArray<readonly [number, number]> {
    const lists = (this.soleSourceLists[i] ??= []);
    return (lists[n] ??= Array.from({ length: n }, (_, j) => [i, j] as const));
  }

  /** The draft, yielding each drafter's result to be settled (resumeSync). */
  private *fill(max: number, sampling: NativeSampling, prefix: readonly number[]): Generator<DraftBlock | Promise<DraftBlock>, DraftBlock, DraftBlock> {
    const out: number[] = [];
    const sources: Array<[number, number]> = [];
    const costMs = this.drafters.map(() => 0);
    const calls = this.drafters.map(() => 0);
    // The pieces the block is made of, for its proposal distribution (ProposalRows).
    const rows = this.rows;
    rows.start();
    // After a band that ended where its drafter was unsure, the next bands keep their sizes
    // and start there (the tail moves up) instead of filling the positions left over.
    let shift = 0;
    for (let i = 0; i < this.drafters.length; i++) {
      const end = Math.min(max, this.ends[i] - shift);
      const bandStart = out.length;
      if (out.length < end) this.drafters[i].catchUp?.();
      while (out.length < end) {
        rows.keep(); // the next call may overwrite the rows of the pieces so far
        const t0 = performance.now();
        const b = yield this.drafters[i].draft(end - out.length, sampling, out.length ? [...prefix, ...out] : prefix);
        costMs[i] += performance.now() - t0;
        calls[i]++;
        if (b.tokens.length === 0) break;
        const taken = b.tokens.slice(0, end - out.length);
        rows.add(taken, b.probs, b.tokens.length);
        for (const t of taken) {
          sources.push([i, out.length - bandStart]);
          out.push(t);
        }
        if (b.stopped) {
          shift = this.ends[i] - out.length; // the band ends where its drafter was unsure
          break;
        }
      }
    }
    if (prefix.length === 0) {
      this.last = out;
      this.lastSources = sources;
      this.lastCostMs = costMs;
      this.lastCalls = calls;
    }
    return { tokens: out, probs: rows.finish() };
  }

  /** This band's proposal rows, reused between drafts. */
  private readonly rows = new ProposalRows();

  accept(emitted: readonly number[]): void {
    this.counters.record(this.last.length, matchedPrefix(this.last, emitted));
    this.last = [];
  }

  /** Catches up every drafter of the bands (see Drafter.catchUp). */
  catchUp(): void {
    for (const d of this.drafters) d.catchUp?.();
  }
}

/**
 * The proposal distribution of a block made of pieces: a piece drawn from a distribution (a
 * sampled draft model drafting alone, a strict review level's output) brings its rows, every
 * other piece (Max-Gram, a greedy draft, a lenient review level's output) a one-hot row at each
 * token. Exact either way: the verifier's rule with a one-hot q emits p whatever process chose
 * the token, and with the drawn-from q it accepts more. None when no piece brings rows (a
 * deterministic block).
 *
 * A drafter's rows are a view of its own buffer, which its next draft overwrites, and a level
 * may draft again within the same block (as a band of another level, or the same band's next
 * call): keep() copies the rows so far into this object's array before any further drafter
 * runs. A block of a single sampled piece is handed up as it is, with no copy. The array is
 * reused from draft to draft (allocating 100 KB or more per step showed in the step's time).
 */
export class ProposalRows {
  private pieces: Array<{ tokens: number[]; probs?: Float32Array; kept: boolean }> = [];
  private buffer = new Float32Array(0);
  private vocab = 0;

  start(): void {
    this.pieces = [];
  }

  /** A piece: the tokens taken from a drafter's proposal of `proposed` tokens, and its rows. */
  add(tokens: number[], probs: Float32Array | undefined, proposed: number): void {
    if (probs) this.vocab = probs.length / proposed;
    this.pieces.push({ tokens, probs: probs?.subarray(0, tokens.length * this.vocab), kept: false });
  }

  /** Copies every sampled piece's rows not yet copied into the array. */
  keep(): void {
    let row = 0;
    for (const p of this.pieces) {
      if (p.probs && !p.kept) {
        this.reserve((row + p.tokens.length) * this.vocab);
        this.buffer.set(p.probs, row * this.vocab);
        p.kept = true;
      }
      row += p.tokens.length;
    }
  }

  /** The block's rows [tokens x V], or undefined for a deterministic block. */
  finish(): Float32Array | undefined {
    const pieces = this.pieces;
    if (!pieces.some((p) => p.probs)) return undefined;
    const V = this.vocab;
    if (pieces.length === 1) return pieces[0].kept ? this.buffer.subarray(0, pieces[0].tokens.length * V) : pieces[0].probs;
    const total = pieces.reduce((n, p) => n + p.tokens.length, 0);
    this.reserve(total * V);
    let row = 0;
    for (const p of pieces) {
      if (p.probs) {
        if (!p.kept) this.buffer.set(p.probs, row * V);
      } else {
        this.buffer.fill(0, row * V, (row + p.tokens.length) * V);
        p.tokens.forEach((t, j) => (this.buffer[(row + j) * V + t] = 1));
      }
      row += p.tokens.length;
    }
    return this.buffer.subarray(0, total * V);
  }

  private reserve(n: number): void {
    if (this.buffer.length >= n) return;
    const grown = new Float32Array(Math.max(n, 2 * this.buffer.length));
    grown.set(this.buffer);
    this.buffer = grown;
  }
}

export class ReviewerLevel implements Drafter {
  readonly counters = new DrafterCounters();
  /** Review passes run by this level's model. */
  passes = 0;
  /** Tokens this level produced (accepted drafts + corrections). */
  produced = 0;
  private cached?: CachedContext;
  private committed: number[] = [];

  constructor(
    readonly name: string,
    readonly model: Model,
    readonly inner: BandedDrafter,
    readonly lenience: number,
    private readonly contextLength: number,
    /** Seeds this level's sampler: derived from the generation's seed, apart from the target's. */
    private readonly seed = 0,
    /** Drafting alone: stop where the model's most likely token has a lower probability (0: never). */
    private readonly confidence = 0,
  ) {}

  /**
   * prefill false: the cache is filled by the first catchUp() or draft (lazily), and its
   * sequence is taken from the model only then: a level the adaptive scheduler never uses costs
   * nothing (taking one cost about 0.04 ms a request).
   */
  async begin(context: number[], prefill = true): Promise<void> {
    this.cached?.dispose();
    this.cached = undefined;
    this.committed = [...context];
    if (prefill) this.ctx.prefill(context);
  }

  /** This level's cached context, created at its first use in a generation. */
  private get ctx(): CachedContext {
    return (this.cached ??= new CachedContext(this.model.createSequence({ contextLength: this.contextLength, seed: this.seed })));
  }

  /** Nothing below this level (an all-zero row of K): it drafts alone, synchronously. */
  get alone(): boolean {
    return this.inner.size === 0;
  }

  /** Feeds the committed context but its last token in one pass, if this level's cache has
   * fallen behind by more than a draft step feeds (and the same for the levels below). */
  catchUp(): void {
    this.ctx.catchUp(this.committed, CATCH_UP_LAG);
    this.inner.catchUp();
  }

  /** One review step: the inner drafters propose, this model verifies (lenient), and the
   * accepted tokens plus its own correction/bonus token form the draft handed up. Synchronous
   * when the drafters below are (see resumeSync); a level with nothing below it drafts alone. */
  draft(max: number, sampling: NativeSampling, prefix: readonly number[] = []): DraftBlock | Promise<DraftBlock> {
    if (this.alone) return this.draftAlone(max, sampling, prefix);
    const ctx = this.ctx;
    // The levels below draw at their own scales: they are handed the generation's sampling.
    const own = draftSampling(sampling, this.model.draftTemperatureScale);
    const fixed = ctx.sync(this.committed, prefix);
    const room = ctx.seq.capacity - ctx.length - fixed.length;
    if (max < 1 || room < 0) return { tokens: [] };
    return resumeSync(this.review(Math.min(this.inner.size, max - 1, room), fixed, sampling, own, prefix));
  }

  /** The review, yielding the inner draft to be settled (resumeSync). */
  private *review(budget: number, fixed: number[], sampling: NativeSampling, own: NativeSampling, prefix: readonly number[]): Generator<DraftBlock | Promise<DraftBlock>, DraftBlock, DraftBlock> {
    const ctx = this.ctx;
    const proposal = budget > 0 ? yield this.inner.draft(budget, sampling, prefix) : { tokens: [] as number[] };
    // A strict review samples exactly from this level's own distribution: each token it hands
    // up, given the ones before it, follows this model's processed distribution at that
    // position. Those rows are then the true q of its output, which the review above tests
    // against (a one-hot row would be exact too, but passes a token with probability p(x) only).
    // A lenient review hands up tokens from no distribution it could name: one-hot rows.
    const ownRows = own.temperature > 0 && this.lenience <= 1;
    const r = ctx.seq.verifySync([...fixed, ...proposal.tokens], {
      sampling: own,
      fixed: fixed.length,
      lenience: this.lenience,
      draftProbs: proposal.probs,
      returnProbs: ownRows,
      // A strict review tests its drafts jointly, as the target does (exact either way:
      // test/block-verification.test.ts), unless the generation asks for token by token.
      blockVerification: sampling.blockVerification !== false,
    });
    const tokens = [...proposal.tokens.slice(0, r.accepted), r.next];
    ctx.appended([...fixed, ...proposal.tokens.slice(0, r.accepted)]);
    this.passes++;
    this.produced += tokens.length;
    this.counters.record(proposal.tokens.length, r.accepted);
    // Row i of the verification is the distribution of the i-th token handed up.
    return ownRows && r.probs ? { tokens, probs: r.probs.subarray(0, tokens.length * this.model.config.vocabSize) } : { tokens };
  }

  /**
   * A level with nothing below it (an all-zero row of K) has no block to review: it drafts up
   * to `max` tokens alone, in one native call as a plain draft model does (a call per token
   * would cost more than the tokens). When sampling, the distributions the tokens were drawn
   * from go up with them, so the review above tests them against their true q (a one-hot q
   * would be exact too, but accepts a token only with probability p(x)). Synchronous.
   */
  draftAlone(max: number, sampling: NativeSampling, prefix: readonly number[] = []): DraftBlock {
    const { tokens, probs, asked: k } = this.ctx.draftFrom(this.committed, prefix, max, draftSampling(sampling, this.model.draftTemperatureScale), this.confidence);
    if (k === 0) return { tokens: [] };
    this.passes += Math.min(k, tokens.length + 1);
    this.produced += tokens.length;
    return { tokens, ...(probs ? { probs } : {}), ...(tokens.length < k ? { stopped: true } : {}) };
  }

  accept(emitted: readonly number[]): void {
    for (const t of emitted) this.committed.push(t);
  }

  dispose(): void {
    this.cached?.dispose();
    this.cached = undefined;
  }
}

/** A whole cascade as the one drafter the target reviews (row 0 of K). */
export class Cascade implements Drafter {
  readonly name = 'cascade';
  constructor(
    readonly top: BandedDrafter,
    readonly levels: ReviewerLevel[],
    readonly bands: BandedDrafter[],
    readonly maxgram: MaxGram,
  ) {}

  get counters(): DrafterCounters {
    return this.top.counters;
  }

  /**
   * prefill false leaves the levels' caches empty until a draft first needs them (the adaptive
   * scheduler may never use some): see Drafter.catchUp.
   */
  async begin(context: number[], prefill = true): Promise<void> {
    this.maxgram.begin(context);
    for (const l of this.levels) await l.begin(context, prefill);
    for (const b of this.bands) b.begin(context);
  }

  draft(max: number, sampling: NativeSampling, prefix?: readonly number[]): DraftBlock | Promise<DraftBlock> {
    return this.top.draft(max, sampling, prefix);
  }

  accept(emitted: readonly number[]): void {
    this.maxgram.accept(emitted);
    for (const l of this.levels) l.accept(emitted);
    for (const b of this.bands) b.accept(emitted);
  }

  dispose(): void {
    for (const l of this.levels) l.dispose();
  }

  /** Per-level counters for the stats. */
  levelStats(): Record<string, unknown>[] {
    return this.levels.map((l) => ({
      level: l.name,
      passes: l.passes,
      produced: l.produced,
      proposed: l.counters.proposed,
      accepted: l.counters.accepted,
      acceptanceByPosition: l.counters.acceptanceByPosition(),
    }));
  }
}

/**
 * Builds the drafter tree for `matrix`. `models[name]` is each drafter's loaded model;
 * `contextLength` sizes each level's cache.
 */
export function buildCascade(
  matrix: CascadeMatrix,
  models: Record<string, Model>,
  maxgram: MaxGram,
  contextLength: number,
  seed = 0,
): Cascade {
  const m = validateMatrix(matrix);
  const n = m.drafters.length;
  const levels = new Map<number, ReviewerLevel>();
  const bands: BandedDrafter[] = [];
  // Level r (reviewer D_r) is built from row r; column c is D_{c+1}'s level, or Max-Gram.
  const bandsOf = (r: number): BandedDrafter => {
    const drafters: Drafter[] = [];
    const sizes: number[] = [];
    m.K[r].forEach((size, c) => {
      if (size === 0) return;
      drafters.push(c === n ? maxgram : levelOf(c + 1));
      sizes.push(size);
    });
    const banded = new BandedDrafter(r === 0 ? 'target-draft' : `${m.drafters[r - 1]}-draft`, drafters, sizes);
    bands.push(banded);
    return banded;
  };
  const levelOf = (r: number): ReviewerLevel => {
    let level = levels.get(r);
    if (!level) {
      const name = m.drafters[r - 1];
      const model = models[name];
      if (!model) throw new Error(`cascade: no model loaded for drafter "${name}"`);
      level = new ReviewerLevel(name, model, bandsOf(r), m.lenience, contextLength, (seed + 1 + r) % 2 ** 53, m.confidence ?? 0);
      levels.set(r, level);
    }
    return level;
  };
  const top = bandsOf(0);
  return new Cascade(top, [...levels.values()], bands, maxgram);
}

export { MAXGRAM };
