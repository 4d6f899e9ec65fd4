// A draft model proposing k tokens autoregressively in ONE native call, with its own KV cache
// kept in step with the context (rolled back to what the verifier accepted).
import type { Model } from '../model';
import type { NativeSampling } from '../native';
import { CachedContext } from './cached-context';
import { DrafterCounters, draftSampling, matchedPrefix, type DraftBlock, type Drafter } from './drafter';

export class ModelDrafter implements Drafter {
  readonly counters = new DrafterCounters();
  readonly name: string;
  private ctx?: CachedContext;
  private committed: number[] = [];
  private last: number[] = [];

  /**
   * `seed` seeds the draft model's sampler. Sampled drafts verified against their q must be
   * fresh random draws in every generation: a generation seeded s should pass a seed derived
   * from s (and different from the target's), or the drafts repeat across seeds and the output
   * no longer follows the target's distribution.
   */
  constructor(
    readonly model: Model,
    private readonly contextLength: number,
    name?: string,
    private readonly seed = 0,
    /** Stop a draft where the draft model's most likely token has a lower probability (0: never). */
    private readonly minConfidence = 0,
  ) {
    this.name = name ?? `model:${model.dir.split('/').pop()}`;
  }

  /** Forward passes of the draft model so far (a k-token proposal costs k passes). */
  get forwards(): number {
    return this.ctx?.seq.forwards ?? 0;
  }

  begin(context: number[]): void {
    this.ctx = new CachedContext(this.model.createSequence({ contextLength: this.contextLength, seed: this.seed }));
    this.committed = [...context];
    this.ctx.prefill(context);
    this.last = [];
  }

  /** Synchronous: one native call (see isPending). */
  draft(max: number, sampling: NativeSampling, prefix: readonly number[] = []): DraftBlock {
    const { tokens, probs } = this.ctx!.draftFrom(this.committed, prefix, max, draftSampling(sampling, this.model.draftTemperatureScale), this.minConfidence);
    if (prefix.length === 0) this.last = tokens;
    return { tokens, probs };
  }

  dispose(): void {
    this.ctx?.dispose();
  }

  accept(emitted: readonly number[]): void {
    this.counters.record(this.last.length, matchedPrefix(this.last, emitted));
    for (const t of emitted) this.committed.push(t);
    this.last = [];
  }
}
