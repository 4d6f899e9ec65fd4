// Keeps a model sequence's KV cache in step with a token list that may change anywhere: the
// cache is cut back to the longest common prefix and the rest is fed with the next pass, so a
// drafter or a cascade level never needs to be told about rollbacks explicitly.
import type { Sequence } from '../sequence';

export class CachedContext {
  /** The tokens whose keys and values are in the cache, in order. */
  private readonly inCache: number[] = [];

  constructor(readonly seq: Sequence) {}

  /**
   * Cuts the cache back to what it shares with `desired` (= `base` followed by `extra`, not
   * concatenated: `base` is the whole context) and returns the tokens of `desired` still to be
   * fed: at least the last one, whose logits the next pass needs.
   */
  sync(base: readonly number[], extra: readonly number[] = []): number[] {
    const B = base.length, total = B + extra.length;
    const cached = this.inCache;
    const limit = Math.min(cached.length, total - 1);
    let keep = 0;
    while (keep < limit && cached[keep] === (keep < B ? base[keep] : extra[keep - B])) keep++;
    if (keep < cached.length) {
      this.seq.truncate(keep);
      cached.length = keep;
    }
    const feed: number[] = [];
    for (let i = keep; i < total; i++) feed.push(i < B ? base[i] : extra[i - B]);
    return feed;
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
