// A sequence over one model: its KV cache lives natively, allocated once for `capacity` tokens.
import type { NativeSampling, NativeSequence, NativeVerifyOptions, NativeVerifyResult } from './native';

/** A verification's options: the native ones, with the sampling required. */
export type VerifyOptions = NativeVerifyOptions & { sampling: NativeSampling };

/**
 * Token ids as the Int32Array native code takes. A plain array is checked first: Int32Array.from
 * would silently truncate 1.5 to 1 and wrap 2**32 + 5 to 5.
 */
function tokenIds(tokens: number[] | Int32Array, vocabSize: number): Int32Array {
  if (tokens instanceof Int32Array) return tokens;
  if (!Array.isArray(tokens)) throw new TypeError('tokens must be an Int32Array or an array of integer token ids');
  tokens.forEach((t, i) => {
    if (!Number.isInteger(t)) throw new TypeError(`token ids must be integers, got ${JSON.stringify(t) ?? String(t)} at index ${i}`);
    if (t < 0 || t >= vocabSize) throw new RangeError(`token id ${t} at index ${i} out of range [0, ${vocabSize})`);
  });
  return Int32Array.from(tokens);
}

export class Sequence {
  /** Native forward passes run on this sequence so far (each may carry many tokens). */
  forwards = 0;

  constructor(
    readonly native: NativeSequence,
    readonly vocabSize: number,
  ) {}

  get length(): number {
    return this.native.length;
  }
  get capacity(): number {
    return this.native.capacity;
  }

  /** Appends tokens; returns float32 logits, [T * V] for all positions or [V] for the last. */
  async forward(tokens: number[] | Int32Array, options: { allLogits?: boolean } = {}): Promise<Float32Array> {
    const ids = tokenIds(tokens, this.vocabSize);
    const out = await this.native.forwardAsync(ids, options.allLogits ?? false);
    this.forwards++; // counted once it ran: a refused or failed call is no pass
    return out;
  }

  forwardSync(tokens: number[] | Int32Array, options: { allLogits?: boolean } = {}): Float32Array {
    const ids = tokenIds(tokens, this.vocabSize);
    const out = this.native.forward(ids, options.allLogits ?? false);
    this.forwards++;
    return out;
  }

  /** Appends tokens and returns the next token under `sampling` (greedy when temperature is 0). */
  async step(tokens: number[] | Int32Array, sampling: NativeSampling): Promise<number> {
    const ids = tokenIds(tokens, this.vocabSize);
    const next = await this.native.stepAsync(ids, sampling);
    this.forwards++;
    return next;
  }

  /** step() on the calling thread (see verifySync). */
  stepSync(tokens: number[] | Int32Array, sampling: NativeSampling): number {
    const ids = tokenIds(tokens, this.vocabSize);
    const next = this.native.step(ids, sampling);
    this.forwards++;
    return next;
  }

  /**
   * The fused verification step. `block` = [pending token, ...drafts]; one native call runs
   * the forward over the block, applies the acceptance rule and rolls the cache back to the
   * pending token + accepted drafts. `next` is the correction (or bonus) token.
   */
  async verify(
    block: number[],
    options: VerifyOptions,
  ): Promise<NativeVerifyResult> {
    this.forwards++;
    return this.native.verifyAsync(Int32Array.from(block), options);
  }

  /**
   * verify() on the calling thread. The decoding loop uses it: a pass of a small model takes
   * well under a millisecond on the bf16 kernels, less than handing work to the libuv pool and
   * back costs; the loop yields to the event loop once per step instead.
   */
  verifySync(
    block: number[],
    options: VerifyOptions,
  ): NativeVerifyResult {
    const r = this.native.verify(Int32Array.from(block), options);
    this.forwards++;
    return r;
  }

  /** Rolls the cache back to its first n tokens. */
  truncate(n: number): void {
    this.native.truncate(n);
  }

  reseed(seed: number): void {
    this.native.reseed(seed);
  }

  /**
   * Frees the KV cache now instead of at garbage collection; its buffers go back to the model
   * for its next sequence. Any later call on this sequence throws. Safe to call twice.
   */
  dispose(): void {
    this.native.dispose();
  }
}
