// Max-Gram: the statistical drafter at the bottom of every cascade (no network, microseconds).
// It finds the longest suffix of the context that occurred before and proposes what followed
// that occurrence, then falls back to an argmax bigram table.
//
// Occurrence choice: the MOST RECENT earlier occurrence by default. Measured on GSM8K (see
// ../../../shared/docs/cs-drafting.md §9 and bench/), recent occurrences match local repetition
// better than the earliest (1.455 vs 1.414 tokens per target pass); 'earliest' is kept as an
// option so the benchmark can compare both.
import * as fs from 'fs';

import type { NativeSampling } from '../native';
import { DrafterCounters, matchedPrefix, type DraftBlock, type Drafter } from './drafter';

export type Occurrence = 'recent' | 'earliest';

export interface MaxGramOptions {
  /** Longest suffix length matched (n-gram orders 1..maxN are indexed). Default 12. */
  maxN?: number;
  occurrence?: Occurrence;
  /** bigram[t] = the most likely token after t, or -1. */
  bigram?: Int32Array;
}

// n-gram keys: a polynomial hash of the tokens, exact for short n-grams over small
// vocabularies; a collision is caught by comparing tokens on lookup.
const MUL = 1_000_003; // < 2^20, so key * MUL + token stays below 2^53 (exact in a double)
const MOD = 2 ** 32;

export class MaxGram implements Drafter {
  readonly name = 'maxgram';
  readonly counters = new DrafterCounters();
  private readonly maxN: number;
  private readonly occurrence: Occurrence;
  private readonly bigram?: Int32Array;
  private seq: number[] = [];
  /** index[n-1]: key of an n-gram -> end position of its chosen occurrence. */
  private readonly index: Map<number, number>[];
  /** Undo log per indexed end position, so truncate() restores the index exactly. */
  private readonly undo: Array<Array<[number, number, number | undefined]>> = [];
  private indexedUpTo = 0; // n-grams ending at positions < indexedUpTo are indexed
  private lastProposal: number[] = [];

  constructor(options: MaxGramOptions = {}) {
    this.maxN = options.maxN ?? 12;
    if (!Number.isInteger(this.maxN) || this.maxN < 1) throw new RangeError('maxN must be an integer >= 1');
    this.occurrence = options.occurrence ?? 'recent';
    if (this.occurrence !== 'recent' && this.occurrence !== 'earliest') throw new RangeError("occurrence must be 'recent' or 'earliest'");
    this.bigram = options.bigram;
    this.index = Array.from({ length: this.maxN }, () => new Map());
  }

  get context(): readonly number[] {
    return this.seq;
  }

  begin(context: number[]): void {
    this.seq = [];
    for (const m of this.index) m.clear();
    this.undo.length = 0;
    this.indexedUpTo = 0;
    this.lastProposal = [];
    this.push(context);
  }

  /** Appends tokens to the context; the index catches up lazily, O(maxN) per token. */
  push(tokens: readonly number[]): void {
    for (const t of tokens) this.seq.push(t);
  }

  /** Rolls the context back to its first n tokens (a cascade level's rejected tail). */
  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.seq.length) throw new RangeError(`cannot truncate ${this.seq.length} tokens to ${n}`);
    while (this.indexedUpTo > Math.max(0, n - 1)) {
      this.indexedUpTo--;
      const log = this.undo.pop()!;
      for (let i = log.length - 1; i >= 0; i--) {
        const [order, key, prev] = log[i];
        if (prev === undefined) this.index[order].delete(key);
        else this.index[order].set(key, prev);
      }
    }
    this.seq.length = n;
  }

  // Index the n-grams ending at every position but the last: an occurrence is only useful
  // when a token followed it.
  catchUp(): void {
    while (this.indexedUpTo < this.seq.length - 1) {
      const end = this.indexedUpTo;
      const log: Array<[number, number, number | undefined]> = [];
      let key = 0;
      for (let n = 1; n <= this.maxN && end - n + 1 >= 0; n++) {
        key = (key * MUL + this.seq[end - n + 1] + 1) % MOD;
        const map = this.index[n - 1];
        const prev = map.get(key);
        if (this.occurrence === 'recent' || prev === undefined) {
          log.push([n - 1, key, prev]);
          map.set(key, end);
        }
      }
      this.undo.push(log);
      this.indexedUpTo++;
    }
  }

  /** Proposes up to `max` tokens: suffix-match continuation, then bigram fallback. */
  propose(max: number): number[] {
    return this.proposeAfter([], max);
  }

  /**
   * propose() for the context followed by `tail` (tentative tokens a cascade drafted). The tail
   * is not indexed: occurrences ending in it (at most tail.length + 1 ends) are found by
   * comparing tokens, the rest through the index, which gives exactly the proposal of the
   * context with the tail pushed, without building and undoing index entries per call.
   */
  private proposeAfter(tail: readonly number[], max: number): number[] {
    this.catchUp();
    const seq = this.seq;
    const L0 = seq.length, L = L0 + tail.length;
    const out: number[] = [];
    if (max <= 0 || L === 0) return out;
    const at = (i: number): number => (i < L0 ? seq[i] : tail[i - L0]);
    const same = (endA: number, endB: number, n: number): boolean => {
      for (let i = 0; i < n; i++) if (at(endA - i) !== at(endB - i)) return false;
      return true;
    };
    // Indexed occurrence ends are < indexed; ends indexed..L-2 are compared directly.
    const indexed = this.indexedUpTo;
    const recent = this.occurrence === 'recent';
    /** The chosen end among ends in [lo, hi] of the context's last n tokens, by a linear scan. */
    const scan = (n: number, lo: number, hi: number): number | undefined => {
      lo = Math.max(lo, n - 1);
      if (recent) {
        for (let e = hi; e >= lo; e--) if (same(e, L - 1, n)) return e;
      } else {
        for (let e = lo; e <= hi; e++) if (same(e, L - 1, n)) return e;
      }
      return undefined;
    };
    const fromIndex = (n: number, key: number): number | undefined => {
      const end = this.index[n - 1].get(key);
      // A key collision (another n-gram with the same hash holds the slot): find the n-gram's
      // own chosen occurrence by a scan (rare; O(L n)).
      return end === undefined || same(end, L - 1, n) ? end : scan(n, 0, indexed - 1);
    };
    // Longest suffix with an earlier occurrence: grow n while the n-gram keeps occurring.
    let matchEnd = -1;
    let key = 0;
    for (let n = 1; n <= this.maxN && L - n >= 0; n++) {
      key = (key * MUL + at(L - n) + 1) % MOD;
      const end = recent ? (scan(n, indexed, L - 2) ?? fromIndex(n, key)) : (fromIndex(n, key) ?? scan(n, indexed, L - 2));
      if (end === undefined) break;
      matchEnd = end;
    }
    // Continue from the occurrence; past the end of the context it reads its own proposal,
    // which extends periodic patterns.
    if (matchEnd >= 0) {
      for (let i = matchEnd + 1; out.length < max; i++) out.push(i < L ? at(i) : out[i - L]);
    }
    if (this.bigram) {
      let last = out.length ? out[out.length - 1] : at(L - 1);
      while (out.length < max) {
        const next = last >= 0 && last < this.bigram.length ? this.bigram[last] : -1;
        if (next < 0) break;
        out.push(next);
        last = next;
      }
    }
    return out;
  }

  draft(max: number, _sampling?: NativeSampling, prefix: readonly number[] = []): DraftBlock {
    if (prefix.length === 0) {
      this.lastProposal = this.propose(max);
      return { tokens: this.lastProposal };
    }
    return { tokens: this.proposeAfter(prefix, max) };
  }

  accept(emitted: readonly number[]): void {
    this.counters.record(this.lastProposal.length, matchedPrefix(this.lastProposal, emitted));
    this.push(emitted);
    this.lastProposal = [];
  }
}

/** Reads a bigram table written by scripts/build-bigram.ts (little-endian int32 per token). */
export function readBigramTable(file: string, vocabSize: number): Int32Array {
  const buf = fs.readFileSync(file);
  if (buf.length !== vocabSize * 4) throw new Error(`${file}: expected ${vocabSize * 4} bytes (int32 per token for vocab ${vocabSize}), got ${buf.length}`);
  const table = new Int32Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) {
    const v = buf.readInt32LE(i * 4);
    if (v < -1 || v >= vocabSize) throw new Error(`${file}: entry ${i} = ${v} is not a token id or -1`);
    table[i] = v;
  }
  return table;
}
