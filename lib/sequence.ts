// A sequence over one model: its KV cache lives natively, allocated once for `capacity` tokens.
import type { NativeSampling, NativeSequence } from './native';

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
    this.forwards++;
    return this.native.forwardAsync(Int32Array.from(tokens), options.allLogits ?? false);
  }

  forwardSync(tokens: number[] | Int32Array, options: { allLogits?: boolean } = {}): Float32Array {
    this.forwards++;
    return this.native.forward(Int32Array.from(tokens), options.allLogits ?? false);
  }

  /** Appends tokens and returns the next token under `sampling` (greedy when temperature is 0). */
  async step(tokens: number[] | Int32Array, sampling: NativeSampling): Promise<number> {
    this.forwards++;
    return this.native.stepAsync(Int32Array.from(tokens), sampling);
  }

  /** Rolls the cache back to its first n tokens. */
  truncate(n: number): void {
    this.native.truncate(n);
  }

  reseed(seed: number): void {
    this.native.reseed(seed);
  }
}
