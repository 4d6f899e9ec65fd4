// The one interface every token proposer implements (a TokenPredictor-like lifecycle, as in
// node-llama-cpp; begin/draft/accept as in llama.cpp's common/speculative), with counters.
import type { NativeSampling } from '../native';

/** A proposal: tokens following the context, and (for a stochastic drafter) the processed
 * distribution each was drawn from, [tokens.length * vocab]. Without `probs` the proposal is
 * deterministic (one-hot q) and verification uses the matching exact rule. `probs` may be a
 * view of the drafter's own buffer: valid until that drafter drafts again. */
export interface DraftBlock {
  tokens: number[];
  probs?: Float32Array;
  /** The drafter ended its draft early where it was unsure (a confidence stop). */
  stopped?: boolean;
}

export class DrafterCounters {
  proposed = 0;
  accepted = 0;
  /** proposedAt[i] / acceptedAt[i]: proposals and acceptances at draft position i. */
  readonly proposedAt: number[] = [];
  readonly acceptedAt: number[] = [];

  record(proposed: number, accepted: number): void {
    this.proposed += proposed;
    this.accepted += accepted;
    for (let i = 0; i < proposed; i++) {
      this.proposedAt[i] = (this.proposedAt[i] ?? 0) + 1;
      if (i < accepted) this.acceptedAt[i] = (this.acceptedAt[i] ?? 0) + 1;
      else this.acceptedAt[i] = this.acceptedAt[i] ?? 0;
    }
  }

  /** Fraction accepted at each position, among proposals that reached it. */
  acceptanceByPosition(): number[] {
    return this.proposedAt.map((p, i) => (p ? this.acceptedAt[i] / p : 0));
  }

  reset(): void {
    this.proposed = this.accepted = 0;
    this.proposedAt.length = 0;
    this.acceptedAt.length = 0;
  }
}

/**
 * The sampling a draft model proposes with: the generation's, at its temperature times the
 * model's draftTemperatureScale (LoadOptions). Greedy stays greedy; the verifier is given the
 * distributions the proposals were drawn from, so any scale keeps the output exact.
 */
export function draftSampling(sampling: NativeSampling, scale: number): NativeSampling {
  return sampling.temperature > 0 && scale !== 1 ? { ...sampling, temperature: sampling.temperature * scale } : sampling;
}

/**
 * Whether a drafter's result is still to be awaited. A draft model drafting alone answers
 * synchronously, and its callers take the result as it is: a step runs right after the target's
 * verification, on caches that pass evicted, where each promise and microtask turn of an async
 * call costs microseconds.
 */
export function isPending<T>(r: T | Promise<T>): r is Promise<T> {
  return typeof (r as { then?: unknown }).then === 'function';
}

/**
 * Runs `steps`, a generator that yields drafters' results (blocks or promises of blocks) and
 * gets each back settled: synchronously for as long as every result is at hand, and as an async
 * continuation from the first pending one. A cascade whose drafters all answer synchronously
 * then answers synchronously too (see isPending), with one loop written once for both cases.
 */
export function resumeSync<Y, R>(steps: Generator<Y | Promise<Y>, R, Y>): R | Promise<R> {
  let r = steps.next();
  while (!r.done) {
    if (isPending(r.value)) return finishAsync(steps, r.value);
    r = steps.next(r.value);
  }
  return r.value;
}

async function finishAsync<Y, R>(steps: Generator<Y | Promise<Y>, R, Y>, pending: Promise<Y>): Promise<R> {
  let r = steps.next(await pending);
  while (!r.done) r = steps.next(isPending(r.value) ? await r.value : r.value);
  return r.value;
}

/** Length of the common prefix of a proposal and the emitted tokens. */
export function matchedPrefix(proposal: readonly number[], emitted: readonly number[]): number {
  let n = 0;
  while (n < proposal.length && n < emitted.length && proposal[n] === emitted[n]) n++;
  return n;
}

export interface Drafter {
  readonly name: string;
  readonly counters: DrafterCounters;
  /** Starts a sequence: `context` is the prompt, or the prompt and the first generated token. */
  begin(context: number[]): void | Promise<void>;
  /**
   * Proposes up to `max` tokens following the current context extended by `prefix` (tentative
   * tokens a cascade has drafted but nobody verified yet). May propose fewer, or none.
   */
  draft(max: number, sampling: NativeSampling, prefix?: readonly number[]): DraftBlock | Promise<DraftBlock>;
  /** The context grew by `emitted` (accepted drafts, whoever proposed them, then the
   * verifier's correction or bonus token). A drafter counts how much of its last proposal
   * `emitted` confirms and rolls its own state back to match. */
  accept(emitted: readonly number[]): void;
  /**
   * Brings the drafter's own state (a model's KV cache, Max-Gram's index) up to the committed
   * context without proposing anything, so that the next draft call costs only its own work.
   * A cascade calls it before timing a drafter: catching up after the drafter sat unused is a
   * one-off cost that a scheduler must not read as the drafter's cost per call.
   */
  catchUp?(): void;
  /** The target's verification of a block of `blockLength` tokens took `ms` (for schedulers). */
  observeVerify?(blockLength: number, ms: number): void;
  /** Drafter-specific statistics for the result. */
  stats?(): Record<string, unknown>;
  /** Releases native resources (sequences' KV caches) now rather than at garbage collection. */
  dispose?(): void;
}
