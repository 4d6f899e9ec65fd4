// Keeps a model sequence's KV cache in step with a token list that may change anywhere: the
// cache is cut back to the longest common prefix and the rest is fed with the next pass, so a
// drafter or a cascade level never needs to be told about rollbacks explicitly.
import type { NativeSampling } from '../native';
import type { Sequence } from '../sequence';

export class CachedContext {
  /** The tokens whose keys and values are in the cache, in order. */
  private readonly inCache: number[] = [];
  /** Where sampled drafts' rows go; their `probs` are views of it, valid until the next draft. */
  private probsBuffer?: Float32Array;
  /**
   * The `base` array the cache was last compared with, and how many of its leading tokens the
   * cache is known to hold. Callers pass their committed context as `base` and only ever append
   * to it, so the next comparison with the same array starts there: a step compares the few
   * tokens since the last one, not the whole context (once or twice per level per step, on caches
   * the target's verification has just evicted).
   */
  private knownBase?: readonly number[];
  private knownAgreed = 0;

  constructor(readonly seq: Sequence) {}

  /**
   * Cuts the cache back to what it shares with `desired` (= `base` followed by `extra`, not
   * concatenated: `base` is the whole context) and returns the tokens of `desired` still to be
   * fed: at least the last one, whose logits the next pass needs.
   *
   * `base` must be append-only between calls with the same array (a caller's committed
   * context): tokens already in it must not change. A different array is compared in full.
   */
  sync(base: readonly number[], extra: readonly number[] = []): number[] {
    const B = base.length, total = B + extra.length;
    const cached = this.inCache;
    const keep = this.reusable(base, extra);
    if (keep < cached.length) {
      this.seq.truncate(keep);
      cached.length = keep;
    }
    const feed: number[] = [];
    for (let i = keep; i < total; i++) feed.push(i < B ? base[i] : extra[i - B]);
    return feed;
  }

  /**
   * Feeds all of `context` but its last token now (one pass), so that the first draft of a
   * generation costs what every later one does: the prompt's pass belongs to the prompt's time,
   * and a scheduler timing drafts would otherwise count it as the cost of one draft call.
   */
  prefill(context: readonly number[]): void {
    const feed = this.sync(context);
    // A drafter whose context is shorter than the prompt drafts nothing (its draft calls check
    // room); it has nothing to prefill either.
    if (feed.length > 1 && this.length + feed.length - 1 <= this.seq.capacity) {
      const known = feed.slice(0, -1);
      this.seq.forwardSync(known);
      this.appended(known);
    }
  }

  /** How many cached tokens `base` followed by `extra` shares (at most all but its last). */
  private reusable(base: readonly number[], extra: readonly number[]): number {
    const B = base.length;
    const cached = this.inCache;
    const limit = Math.min(cached.length, B + extra.length - 1);
    let keep = base === this.knownBase ? Math.min(this.knownAgreed, limit) : 0;
    while (keep < limit && cached[keep] === (keep < B ? base[keep] : extra[keep - B])) keep++;
    // The cache is only cut back to `keep` or beyond and appended to after this, so its first
    // min(keep, B) tokens stay base's.
    this.knownBase = base;
    this.knownAgreed = Math.min(keep, B);
    return keep;
  }

  /**
   * prefill(), only when the cache lags `context` by more than `lag` tokens: a drafter that sat
   * unused catches up in one pass of its own, while a drafter used at every step keeps feeding
   * its few new tokens inside its draft call (a separate pass for them would cost a forward).
   * Otherwise the cache is left as it is, tentative tokens included (a level called again
   * within one draft finds the prefix it already holds).
   */
  catchUp(context: readonly number[], lag: number): void {
    if (context.length - this.reusable(context, []) > lag) this.prefill(context);
  }

  /**
   * Feeds `feed` (from sync) and drafts k tokens autoregressively in ONE native call, on this
   * thread (see Sequence.verifySync). The cache keeps the feed and every proposal but the last,
   * which the next pass feeds if it is accepted. The caller checks room: feed + k - 1 tokens.
   * minConfidence > 0 may end the draft early (see Sequence::draft); the passes it ran count.
   * The probs returned are a view of this context's buffer: the next draft overwrites them.
   */
  draft(feed: readonly number[], k: number, sampling: NativeSampling, minConfidence = 0): { tokens: number[]; probs?: Float32Array } {
    // Sampled drafts write their rows into an array kept here (grown as k grows): a new one per
    // call allocated over 100 KB each time, and fresh pages showed up in the verification's time.
    if (sampling.temperature > 0 && (this.probsBuffer?.length ?? 0) < k * this.seq.vocabSize) this.probsBuffer = new Float32Array(k * this.seq.vocabSize);
    const r = this.seq.native.draft(Int32Array.from(feed), k, sampling, minConfidence, sampling.temperature > 0 ? this.probsBuffer : undefined);
    this.seq.forwards += Math.min(k, r.tokens.length + 1);
    const tokens = Array.from(r.tokens);
    this.appended(feed);
    this.appended(tokens.slice(0, -1));
    return { tokens, probs: r.probs };
  }

  /**
   * sync(base, extra), then draft(): up to `max` tokens following `base` + `extra`, as many as
   * the cache has room for (the feed and the proposals but the last). `asked` is the k drafted
   * for (0: no room, or max < 1), so a caller can tell a confidence stop from a full draft.
   */
  draftFrom(
    base: readonly number[],
    extra: readonly number[],
    max: number,
    sampling: NativeSampling,
    minConfidence = 0,
  ): { tokens: number[]; probs?: Float32Array; asked: number } {
    const feed = this.sync(base, extra);
    const k = Math.min(max, this.seq.capacity - this.length - feed.length + 1);
    if (k < 1) return { tokens: [], asked: 0 };
    return { ...this.draft(feed, k, sampling, minConfidence), asked: k };
  }

  /** Records tokens the last native call left in the cache. */
  appended(tokens: readonly number[]): void {
    for (const t of tokens) this.inCache.push(t);
  }

  get length(): number {
    return this.inCache.length;
  }

  dispose(): void {
    this.seq.dispose();
  }
}
