// Keeps a model sequence's KV cache in step with a token list that may change anywhere: the
// cache is cut back to the longest common prefix and the rest is fed with the next pass, so a
// drafter or a cascade level never needs to be told about rollbacks explicitly.
import type { Sequence } from '../sequence';
import { matchedPrefix } from './drafter';

export class CachedContext {
  /** The tokens whose keys and values are in the cache, in order. */
  private readonly inCache: number[] = [];

  constructor(readonly seq: Sequence) {}

  /**
   * Cuts the cache back to what it shares with `desired` and returns the tokens of `desired`
   * still to be fed: at least the last one, whose logits the next pass needs.
   */
  sync(desired: readonly number[]): number[] {
    const keep = Math.min(matchedPrefix(this.inCache, desired), desired.length - 1);
    if (keep < this.inCache.length) {
      this.seq.truncate(keep);
      this.inCache.length = keep;
    }
    return desired.slice(keep);
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
