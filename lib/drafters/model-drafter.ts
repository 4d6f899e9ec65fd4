// A draft model proposing k tokens autoregressively in ONE native call, with its own KV cache
// rolled back to what the verifier accepted.
import type { Model } from '../model';
import type { NativeSampling } from '../native';
import type { Sequence } from '../sequence';
import { DrafterCounters, matchedPrefix, type DraftBlock, type Drafter } from './drafter';

export class ModelDrafter implements Drafter {
  readonly counters = new DrafterCounters();
  readonly name: string;
  private seq?: Sequence;
  /** Context tokens not yet in the draft model's cache (always at least the pending token). */
  private feed: number[] = [];
  private last: number[] = [];
  private cachedBefore = 0;

  constructor(
    readonly model: Model,
    private readonly contextLength: number,
    name?: string,
  ) {
    this.name = name ?? `model:${model.dir.split('/').pop()}`;
  }

  /** Forward passes of the draft model so far. */
  get forwards(): number {
    return this.seq?.forwards ?? 0;
  }

  begin(context: number[]): void {
    this.seq = this.model.createSequence({ contextLength: this.contextLength });
    this.feed = [...context];
    this.last = [];
  }

  async draft(max: number, sampling: NativeSampling): Promise<DraftBlock> {
    const seq = this.seq!;
    // Leave room for the feed and the proposals that get appended (all but the last).
    const k = Math.min(max, seq.capacity - seq.length - this.feed.length + 1);
    if (k < 1) return { tokens: [] };
    this.cachedBefore = seq.length;
    seq.forwards += k;
    const r = await seq.native.draftAsync(Int32Array.from(this.feed), k, sampling);
    this.cachedBefore += this.feed.length;
    this.feed = [];
    this.last = Array.from(r.tokens);
    return { tokens: this.last, probs: r.probs };
  }

  accept(emitted: readonly number[]): void {
    const seq = this.seq!;
    const matched = matchedPrefix(this.last, emitted);
    this.counters.record(this.last.length, matched);
    // The cache holds the proposals but the last; keep those the emitted tokens confirm and
    // feed the rest next time.
    const kept = this.last.length ? Math.min(matched, this.last.length - 1) : 0;
    if (this.last.length) seq.truncate(this.cachedBefore + kept);
    this.feed.push(...emitted.slice(kept));
    this.last = [];
  }
}
