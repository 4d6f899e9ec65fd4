// Speculative decoding as a TokenSource: a drafter proposes, ONE native call verifies the
// block (forward + acceptance + rollback), the accepted tokens and the correction/bonus token
// go out. Autoregressive decoding is the same loop with no drafter.
//
// The prompt's pass verifies the first draft: the drafter proposes the first tokens from the
// prompt alone, and the target's pass over the prompt carries them as a block whose fixed part
// is the prompt. That pass is bound by arithmetic, so a few more rows add little to it
// (bench/README.md), while a separate first verification would stream the weights once more.
import { isPending, type Drafter } from './drafters/drafter';
import type { TokenSource } from './generate';
import type { NativeSampling } from './native';
import type { Sequence } from './sequence';

export class SpeculativeSource implements TokenSource {
  private pending = -1;
  private emitted = 0;
  /** Verification passes (the prompt's included when it carried a draft). */
  private passes = 0;
  /** Steps after the prompt's pass: the ones `timing` covers. */
  private timedSteps = 0;
  private drafted = 0;
  private acceptedDrafts = 0;
  /** Wall time of the drafter's calls and of the target's verification calls, ms. */
  private draftMs = 0;
  private verifyMs = 0;
  /** Wall time of whole steps (yield to the event loop excluded), ms. */
  private stepMs = 0;
  private readonly proposedAt: number[] = [];
  private readonly acceptedAt: number[] = [];
  /** reachedAt[i]: passes that proposed position i with every earlier draft accepted. */
  private readonly reachedAt: number[] = [];

  constructor(
    private readonly target: Sequence,
    private readonly drafter: Drafter | undefined,
    private readonly k: number,
    private readonly sampling: NativeSampling,
    private readonly maxNewTokens: number,
    /**
     * Prompts of up to this many tokens get their pass on the calling thread, as every step
     * does; longer ones run on the libuv pool, so that a long prompt does not hold the event
     * loop. Handing a pass to the pool and back cost 0.3-0.6 ms (on a 5 ms prompt pass of the
     * default target), 2% of a speculative request there. Default 0: always the pool.
     */
    private readonly syncPromptTokens = 0,
    /**
     * The prompt's first tokens already in the target's cache (Model's prompt cache): the
     * prompt's pass carries only the rest.
     */
    private readonly cachedPromptTokens = 0,
  ) {}

  /** Every token returned so far, in order (the caller may have used fewer). */
  readonly emittedTokens: number[] = [];

  /** When sampling: block verification (NativeSampling.blockVerification), else token by token. */
  private get joint(): boolean {
    return this.sampling.blockVerification !== false;
  }

  get targetForwards(): number {
    return this.target.forwards;
  }

  /** Target passes that verified a block (the prompt's counts when it carried a draft). */
  get verificationPasses(): number {
    return this.passes;
  }

  async start(promptTokens: number[]): Promise<number[]> {
    // Room for the prompt and the drafts in the cache, and for the drafts and the token after
    // them in the caller's budget.
    const max = this.drafter ? Math.max(0, Math.min(this.k, this.target.capacity - promptTokens.length, this.maxNewTokens - 1)) : 0;
    const fresh = promptTokens.slice(this.cachedPromptTokens);
    if (this.target.length !== this.cachedPromptTokens || fresh.length === 0)
      throw new Error(`internal: the target's cache holds ${this.target.length} tokens, expected ${this.cachedPromptTokens} of a ${promptTokens.length}-token prompt`);
    if (max === 0) {
      const sync = fresh.length <= this.syncPromptTokens;
      this.pending = sync ? this.target.stepSync(fresh, this.sampling) : await this.target.step(fresh, this.sampling);
      this.emitted = 1;
      this.emittedTokens.push(this.pending);
      await this.drafter?.begin([...promptTokens, this.pending]);
      return [this.pending];
    }
    await this.drafter!.begin(promptTokens);
    const drafted = this.drafter!.draft(max, this.sampling);
    const block = isPending(drafted) ? await drafted : drafted;
    const options = { sampling: this.sampling, draftProbs: block.probs, fixed: fresh.length, blockVerification: this.joint };
    const blockTokens = [...fresh, ...block.tokens];
    // The pass's size is the block drafted, not the most it might have been (an adaptive
    // scheduler's limit of 12 sent prompts to the pool that a 7-token draft kept here).
    const sync = blockTokens.length <= this.syncPromptTokens;
    const r = sync ? this.target.verifySync(blockTokens, options) : await this.target.verify(blockTokens, options);
    return this.commit(block.tokens, r);
  }

  /** Records a verification's outcome and hands the emitted tokens to the drafter. */
  private commit(drafts: number[], r: { accepted: number; next: number }): number[] {
    const out = [...drafts.slice(0, r.accepted), r.next];
    this.passes++;
    this.drafted += drafts.length;
    this.acceptedDrafts += r.accepted;
    for (let i = 0; i < drafts.length; i++) {
      this.proposedAt[i] = (this.proposedAt[i] ?? 0) + 1;
      this.acceptedAt[i] = (this.acceptedAt[i] ?? 0) + (i < r.accepted ? 1 : 0);
      if (i <= r.accepted) this.reachedAt[i] = (this.reachedAt[i] ?? 0) + 1;
    }
    this.drafter?.accept(out);
    this.pending = r.next;
    this.emitted += out.length;
    this.emittedTokens.push(...out);
    return out;
  }

  async next(): Promise<number[]> {
    // One step runs its native calls on this thread (see Sequence.verifySync), then lets the
    // event loop run: a step blocks for about one target pass plus its drafts.
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Draft no further than the cache has room for and the caller will take.
    const room = this.target.capacity - this.target.length - 1;
    const wanted = this.maxNewTokens - this.emitted - 1;
    const max = Math.max(0, Math.min(this.k, room, wanted));
    const t0 = performance.now();
    const drafted = this.drafter && max > 0 ? this.drafter.draft(max, this.sampling) : { tokens: [] as number[], probs: undefined };
    const block = isPending(drafted) ? await drafted : drafted;
    const t1 = performance.now();
    const r = this.target.verifySync([this.pending, ...block.tokens], { sampling: this.sampling, draftProbs: block.probs, blockVerification: this.joint });
    const t2 = performance.now();
    this.draftMs += t1 - t0;
    this.verifyMs += t2 - t1;
    this.drafter?.observeVerify?.(block.tokens.length + 1, t2 - t1);
    this.timedSteps++;
    const out = this.commit(block.tokens, r);
    this.stepMs += performance.now() - t0;
    return out;
  }

  /** Per draft position i: P(accepted | proposed and every earlier draft accepted), the
   * alpha_i of the EWIF formula (acceptanceByPosition is not conditioned on earlier ones). */
  conditionalAcceptance(): number[] {
    return this.reachedAt.map((n, i) => (n ? this.acceptedAt[i] / n : 0));
  }

  stats(): Record<string, unknown> {
    return {
      cachedPromptTokens: this.cachedPromptTokens,
      drafted: this.drafted,
      accepted: this.acceptedDrafts,
      // Tokens emitted per verification pass (accepted drafts + the correction/bonus token).
      meanAcceptedLength: this.passes ? (this.acceptedDrafts + this.passes) / this.passes : 1,
      verificationPasses: this.passes,
      acceptanceByPosition: this.proposedAt.map((p, i) => (p ? this.acceptedAt[i] / p : 0)),
      // Where the time of the verification steps went (the prompt's pass excluded): drafting,
      // and the target's fused verification calls; the rest of a step is bookkeeping.
      timing: { steps: this.timedSteps, stepMs: this.stepMs, draftMs: this.draftMs, verifyMs: this.verifyMs },
      ...(this.drafter?.stats ? { drafter: this.drafter.stats() } : {}),
    };
  }
}
