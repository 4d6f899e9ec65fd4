/**
 * Max-Gram (lib/drafters/maxgram.ts) against a brute-force reference written here: an O(n^2)
 * scan for the longest suffix of the context that occurred earlier (most recent or earliest
 * occurrence), the continuation after it (reading its own proposal past the end of the
 * context, so periodic patterns extend), then the argmax bigram table. The incremental hashed
 * index, its lazy catch-up and its undo log (truncate) must be indistinguishable from that
 * scan. Expected values never come from the code under test.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { MaxGram, readBigramTable, type Occurrence } from '../lib/drafters/maxgram';
import { mulberry32 } from './helpers/tiny-model';

/** The reference proposal: first principles, no index. */
function refPropose(S: readonly number[], max: number, maxN: number, occurrence: Occurrence, bigram?: Int32Array): number[] {
  const L = S.length;
  const out: number[] = [];
  if (max <= 0 || L === 0) return out;
  let best = -1;
  // Longest suffix length n first; an occurrence ends at e <= L - 2 (a token must follow it).
  for (let n = Math.min(maxN, L - 1); n >= 1 && best < 0; n--) {
    const ends: number[] = [];
    for (let e = n - 1; e <= L - 2; e++) {
      let same = true;
      for (let i = 0; i < n; i++) if (S[e - i] !== S[L - 1 - i]) same = false;
      if (same) ends.push(e);
    }
    if (ends.length) best = occurrence === 'recent' ? Math.max(...ends) : Math.min(...ends);
  }
  if (best >= 0) {
    // The continuation reads the context followed by the proposal itself.
    const ext = [...S];
    while (out.length < max) {
      const t = ext[best + 1 + out.length];
      out.push(t);
      ext.push(t);
    }
  }
  if (bigram) {
    let last = out.length ? out[out.length - 1] : S[L - 1];
    while (out.length < max) {
      const next = last >= 0 && last < bigram.length ? bigram[last] : -1;
      if (next < 0) break;
      out.push(next);
      last = next;
    }
  }
  return out;
}

const randomSeq = (rand: () => number, n: number, alphabet: number) => Array.from({ length: n }, () => Math.floor(rand() * alphabet));

function expectAllMax(m: MaxGram, S: readonly number[], maxN: number, occ: Occurrence, bigram?: Int32Array, what = ''): void {
  for (let max = 0; max <= 8; max++) {
    const got = m.propose(max);
    const want = refPropose(S, max, maxN, occ, bigram);
    if (got.join(',') !== want.join(',')) throw new Error(`${what} max ${max} context [${S.join(' ')}]: got [${got.join(' ')}], want [${want.join(' ')}]`);
  }
}

describe('the brute-force reference itself (hand-worked cases)', () => {
  test('hand-computed proposals', () => {
    // "1 2 3 9 1 2 3 7 1 2": longest earlier suffix "1 2" (ends at 1 and 5); recent -> 3 7 1 2 ..
    const S = [1, 2, 3, 9, 1, 2, 3, 7, 1, 2];
    expect(refPropose(S, 4, 12, 'recent')).toEqual([3, 7, 1, 2]);
    expect(refPropose(S, 4, 12, 'earliest')).toEqual([3, 9, 1, 2]);
    // Periodic: "5 6 5 6 5": suffix "5 6 5" ends at 2, continuation 6 5 then reads itself.
    expect(refPropose([5, 6, 5, 6, 5], 7, 12, 'recent')).toEqual([6, 5, 6, 5, 6, 5, 6]);
    expect(refPropose([4, 4], 5, 12, 'recent')).toEqual([4, 4, 4, 4, 4]);
  });
});

describe.each(['recent', 'earliest'] as const)('MaxGram %s occurrence vs the brute-force reference', (occ) => {
  test('random sequences over small alphabets, every max in 0..8, maxN 12 and 3', () => {
    const rand = mulberry32(occ === 'recent' ? 11 : 12);
    let matched = 0;
    for (let trial = 0; trial < 400; trial++) {
      const maxN = trial % 2 ? 12 : 3;
      const S = randomSeq(rand, Math.floor(rand() * 40), 2 + Math.floor(rand() * 5));
      const m = new MaxGram({ maxN, occurrence: occ });
      m.begin([...S]);
      expectAllMax(m, S, maxN, occ, undefined, `trial ${trial}`);
      if (refPropose(S, 1, maxN, occ).length) matched++;
      // draft() returns the same tokens, with no probabilities (a deterministic proposal).
      const d = m.draft(5);
      expect(d.tokens).toEqual(refPropose(S, 5, maxN, occ));
      expect(d.probs).toBeUndefined();
    }
    expect(matched).toBeGreaterThan(200); // the test exercised matches, not just empties
  });

  test('recent and earliest differ where they should', () => {
    const S = [1, 2, 3, 9, 1, 2, 3, 7, 1, 2];
    const m = new MaxGram({ occurrence: occ });
    m.begin(S);
    expect(m.propose(4)).toEqual(occ === 'recent' ? [3, 7, 1, 2] : [3, 9, 1, 2]);
  });

  test('continuation past the end of the context extends periodic patterns', () => {
    const m = new MaxGram({ occurrence: occ });
    m.begin([8, 5, 6, 7, 5, 6, 7, 5]);
    // suffix "5 6 7 5" ends at 4 (the only occurrence): 6 7 5 then its own proposal.
    expect(m.propose(8)).toEqual([6, 7, 5, 6, 7, 5, 6, 7]);
    m.begin([3, 3]);
    expect(m.propose(6)).toEqual([3, 3, 3, 3, 3, 3]);
  });

  test('bigram fallback when nothing matches; a match continues by itself; -1 stops; empty with neither', () => {
    const V = 20;
    const bigram = new Int32Array(V).fill(-1);
    bigram[4] = 9;
    bigram[9] = 11;
    bigram[11] = 4;
    bigram[7] = 13; // 13 -> -1: the chain stops
    const m = new MaxGram({ occurrence: occ, bigram });
    // No earlier occurrence of the last token 4: bigram chain 9 11 4 9 ...
    m.begin([1, 2, 3, 4]);
    expect(m.propose(5)).toEqual([9, 11, 4, 9, 11]);
    m.begin([1, 2, 7]);
    expect(m.propose(5)).toEqual([13]);
    m.begin([1, 2, 5]); // bigram[5] = -1
    expect(m.propose(5)).toEqual([]);
    // A token beyond the table (or no table at all): nothing.
    m.begin([1, 2, 25]);
    expect(m.propose(3)).toEqual([]);
    const plain = new MaxGram({ occurrence: occ });
    plain.begin([1, 2, 3, 4]);
    expect(plain.propose(5)).toEqual([]);
    // With a match the continuation (periodic past the end) fills every slot; the bigram
    // table is not consulted.
    m.begin([4, 2, 4]);
    expect(m.propose(5)).toEqual([2, 4, 2, 4, 2]);
    // Random tables and sequences against the reference.
    const rand = mulberry32(occ === 'recent' ? 21 : 22);
    for (let trial = 0; trial < 300; trial++) {
      const alphabet = 3 + Math.floor(rand() * 8);
      const table = Int32Array.from({ length: alphabet }, () => (rand() < 0.25 ? -1 : Math.floor(rand() * alphabet)));
      const S = randomSeq(rand, Math.floor(rand() * 16), alphabet);
      const g = new MaxGram({ maxN: 4, occurrence: occ, bigram: table });
      g.begin(S);
      expectAllMax(g, S, 4, occ, table, `trial ${trial}`);
    }
  });

  test('max <= 0 or an empty context proposes nothing', () => {
    const m = new MaxGram({ occurrence: occ, bigram: Int32Array.from([1, 0]) });
    m.begin([]);
    expect(m.propose(4)).toEqual([]);
    m.begin([0, 1, 0]);
    expect(m.propose(0)).toEqual([]);
    expect(m.propose(-3)).toEqual([]);
  });

  test('incremental: pushing tokens one by one (proposals in between) equals begin() with all', () => {
    const rand = mulberry32(occ === 'recent' ? 31 : 32);
    for (let trial = 0; trial < 60; trial++) {
      const S = randomSeq(rand, 5 + Math.floor(rand() * 40), 2 + Math.floor(rand() * 4));
      const maxN = 1 + Math.floor(rand() * 6);
      const inc = new MaxGram({ maxN, occurrence: occ });
      inc.begin([]);
      for (let i = 0; i < S.length; ) {
        const n = 1 + Math.floor(rand() * 3);
        inc.push(S.slice(i, i + n));
        i += n;
        const prefix = S.slice(0, Math.min(i, S.length));
        // Propose at random moments (the lazy index catches up then).
        if (rand() < 0.6) {
          const max = 1 + Math.floor(rand() * 8);
          expect(inc.propose(max)).toEqual(refPropose(prefix, max, maxN, occ));
        }
      }
      expect([...inc.context]).toEqual(S);
      expectAllMax(inc, S, maxN, occ, undefined, `incremental trial ${trial}`);
      const whole = new MaxGram({ maxN, occurrence: occ });
      whole.begin([...S]);
      for (let max = 1; max <= 8; max++) expect(inc.propose(max)).toEqual(whole.propose(max));
    }
  });

  test('truncate then push equals never having pushed (random, many trials, all max 1..8)', () => {
    const rand = mulberry32(occ === 'recent' ? 41 : 42);
    for (let trial = 0; trial < 300; trial++) {
      const alphabet = 2 + Math.floor(rand() * 4);
      const maxN = 1 + Math.floor(rand() * 8);
      const m = new MaxGram({ maxN, occurrence: occ });
      let S = randomSeq(rand, Math.floor(rand() * 20), alphabet);
      m.begin([...S]);
      for (let round = 0; round < 4; round++) {
        // Grow (index built by proposing), then roll back part of it, then grow differently.
        const extra = randomSeq(rand, Math.floor(rand() * 12), alphabet);
        m.push(extra);
        S = [...S, ...extra];
        if (rand() < 0.8) m.propose(1 + Math.floor(rand() * 8));
        const n = Math.floor(rand() * (S.length + 1));
        m.truncate(n);
        S = S.slice(0, n);
        if (rand() < 0.5) expectAllMax(m, S, maxN, occ, undefined, `trial ${trial} after truncate(${n})`);
        const more = randomSeq(rand, Math.floor(rand() * 8), alphabet);
        m.push(more);
        S = [...S, ...more];
      }
      expect([...m.context]).toEqual(S);
      expectAllMax(m, S, maxN, occ, undefined, `trial ${trial}`);
      const fresh = new MaxGram({ maxN, occurrence: occ });
      fresh.begin([...S]);
      for (let max = 1; max <= 8; max++) expect(m.propose(max)).toEqual(fresh.propose(max));
    }
  });

  test('draft(max, sampling, prefix): proposes after context + prefix, leaves the context as it was', () => {
    const rand = mulberry32(occ === 'recent' ? 51 : 52);
    const sampling = { temperature: 0, topK: 0, topP: 1 };
    for (let trial = 0; trial < 100; trial++) {
      const S = randomSeq(rand, 1 + Math.floor(rand() * 25), 3);
      const prefix = randomSeq(rand, Math.floor(rand() * 6), 3);
      const m = new MaxGram({ maxN: 5, occurrence: occ });
      m.begin([...S]);
      if (rand() < 0.5) m.propose(3); // index built before the tentative tokens
      const max = 1 + Math.floor(rand() * 8);
      expect(m.draft(max, sampling, prefix).tokens).toEqual(refPropose([...S, ...prefix], max, 5, occ));
      expect([...m.context]).toEqual(S);
      expectAllMax(m, S, 5, occ, undefined, `after a tentative draft, trial ${trial}`);
    }
  });

  test('truncate(0), truncate to the full length, and out-of-range truncation', () => {
    const m = new MaxGram({ occurrence: occ });
    m.begin([1, 2, 1, 2, 1]);
    expect(m.propose(2)).toEqual([2, 1]);
    m.truncate(5);
    expect(m.propose(2)).toEqual([2, 1]);
    m.truncate(0);
    expect(m.propose(2)).toEqual([]);
    m.push([7, 8, 7]);
    expect(m.propose(3)).toEqual([8, 7, 8]);
    expect(() => m.truncate(4)).toThrow(RangeError);
    expect(() => m.truncate(-1)).toThrow(RangeError);
    expect(() => m.truncate(1.5)).toThrow(RangeError);
  });

  test('hashed n-gram keys that collide do not hide the longest match (large token ids)', () => {
    // The polynomial keys of these two 3-grams are equal modulo 2^32 (with multiplier
    // 1_000_003: 109·M² + 1321·M + 240 ≡ 0 mod 2^32); such pairs exist for any vocabulary of a
    // couple of thousand tokens. The longest earlier suffix of the context is A (ending at 2);
    // the colliding B and a later "v w" with a different continuation must not change that.
    const A = [500, 600, 700];
    const B = [740, 1921, 809];
    const S = [...A, 11, ...B, 12, 999, 600, 700, 13, ...A];
    const m = new MaxGram({ occurrence: occ });
    m.begin(S);
    expect(refPropose(S, 3, 12, occ)).toEqual([11, 740, 1921]);
    expect(m.propose(3)).toEqual([11, 740, 1921]);
    // B first (an 'earliest' index keeps B's slot for the shared key), and "600 700" earlier
    // still with another continuation.
    const S2 = [600, 700, 14, ...B, 12, ...A, 11, 999, ...A];
    m.begin(S2);
    expect(refPropose(S2, 2, 12, occ)).toEqual([11, 999]);
    expect(m.propose(2)).toEqual([11, 999]);
    // The same contexts split into committed tokens and a tentative prefix at every point:
    // matches and collisions then straddle the indexed part and the compared tail.
    const sampling = { temperature: 0, topK: 0, topP: 1 };
    for (const [seq, max] of [[S, 3], [S2, 2]] as const)
      for (let cut = 1; cut <= seq.length; cut++) {
        m.begin(seq.slice(0, cut));
        expect(m.draft(max, sampling, seq.slice(cut)).tokens).toEqual(refPropose([...seq], max, 12, occ));
      }
  });
});

describe('counters via accept(emitted)', () => {
  test('proposed / accepted / by position follow the matched prefix of each proposal', () => {
    const m = new MaxGram();
    m.begin([1, 2, 3, 1, 2]);
    expect(m.draft(4).tokens).toEqual([3, 1, 2, 3]);
    m.accept([3, 1, 9]); // two drafts confirmed, then a correction
    expect([...m.context]).toEqual([1, 2, 3, 1, 2, 3, 1, 9]);
    expect(m.counters.proposed).toBe(4);
    expect(m.counters.accepted).toBe(2);
    expect(m.counters.proposedAt).toEqual([1, 1, 1, 1]);
    expect(m.counters.acceptedAt).toEqual([1, 1, 0, 0]);
    // "9" never occurred before: no proposal; accept still extends the context.
    expect(m.draft(3).tokens).toEqual([]);
    m.accept([1]);
    expect(m.counters.proposed).toBe(4);
    // Context ... 3 1 9 1: suffix "1" recent end 6 -> 9 1 9 ...
    expect(m.draft(2).tokens).toEqual([9, 1]);
    m.accept([9, 1, 9]); // both accepted, then a bonus token
    expect(m.counters.proposed).toBe(6);
    expect(m.counters.accepted).toBe(4);
    expect(m.counters.proposedAt).toEqual([2, 2, 1, 1]);
    expect(m.counters.acceptedAt).toEqual([2, 2, 0, 0]);
    expect(m.counters.acceptanceByPosition()).toEqual([1, 1, 0, 0]);
    // Context 1 2 3 1 2 3 1 9 1 9 1 9: suffix "1 9 1 9" ends at 9 -> 1.
    expect(m.draft(1).tokens).toEqual([1]);
    m.accept([4]); // rejected at once
    expect(m.counters.acceptanceByPosition()).toEqual([2 / 3, 1, 0, 0]);
    expect([...m.context]).toEqual([1, 2, 3, 1, 2, 3, 1, 9, 1, 9, 1, 9, 4]);
    m.counters.reset();
    expect(m.counters.proposed + m.counters.accepted).toBe(0);
    expect(m.counters.acceptanceByPosition()).toEqual([]);
  });

  test('begin() forgets the previous context and the pending proposal', () => {
    const m = new MaxGram();
    m.begin([1, 1, 1]);
    m.draft(3);
    m.begin([2, 3]);
    m.accept([4]); // no proposal since begin: nothing recorded as proposed
    expect(m.counters.proposed).toBe(0);
    expect([...m.context]).toEqual([2, 3, 4]);
  });

  test('constructor validation', () => {
    expect(() => new MaxGram({ maxN: 0 })).toThrow(RangeError);
    expect(() => new MaxGram({ maxN: 2.5 })).toThrow(RangeError);
    expect(() => new MaxGram({ occurrence: 'latest' as Occurrence })).toThrow(/recent.*earliest/);
  });
});

describe('readBigramTable', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-maxgram-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const write = (name: string, values: number[]): string => {
    const buf = Buffer.alloc(values.length * 4);
    values.forEach((v, i) => buf.writeInt32LE(v, i * 4));
    const file = path.join(tmp, name);
    fs.writeFileSync(file, buf);
    return file;
  };

  test('reads little-endian int32 entries (-1 = none)', () => {
    const file = write('ok.i32', [3, -1, 0, 2]);
    expect(Array.from(readBigramTable(file, 4))).toEqual([3, -1, 0, 2]);
  });

  test('wrong size names the file and both sizes', () => {
    const file = write('short.i32', [1, 2, 3]);
    expect(() => readBigramTable(file, 4)).toThrow(file);
    expect(() => readBigramTable(file, 4)).toThrow(/16 bytes.*got 12/);
    const odd = path.join(tmp, 'odd.i32');
    fs.writeFileSync(odd, Buffer.alloc(17));
    expect(() => readBigramTable(odd, 4)).toThrow(odd);
  });

  test.each([[4], [-2], [1 << 30]])('an entry %p out of range names the file and the entry', (bad) => {
    const file = write(`bad${bad}.i32`, [0, 1, bad, 2]);
    expect(() => readBigramTable(file, 4)).toThrow(file);
    expect(() => readBigramTable(file, 4)).toThrow(new RegExp(`entry 2 = ${bad}`));
  });

  test('a missing file is an error naming it', () => {
    const file = path.join(tmp, 'absent.i32');
    expect(() => readBigramTable(file, 4)).toThrow(file);
  });
});
