/**
 * The linear kernels (native/kernels) on random data, through addon.kernelTest, on every
 * instruction set this CPU can run (AVX-512 bf16 / AVX2 / portable) and both weight types, over
 * awkward shapes (sizes not multiples of 8/16/32, M = 1..16, tiny and large). Then models whose
 * compute dtype selects the kernels: logits against the float64 reference, and speculative
 * greedy output equal to autoregressive greedy output computed with the same kernels.
 *
 * Tolerances (u = 2^-24, fp32's unit roundoff; S = sum over k of |w_k x_k| for one output):
 *  - against float64 on the kernel's own operands (the packed weights read back, and x rounded
 *    to bf16 on the AVX-512 bf16 path, which multiplies bf16 pairs): (2K + 4) u (S + |bias| + |y0|),
 *    the worst-case bound for K fp32 accumulations (each column adds at most two roundings). A
 *    layout bug or a wrong column is O(S).
 *  - against libtorch fp32 on the unrounded x and w: that plus the operands' rounding,
 *    (u_w + u_x + u_w u_x) S, with u_w = 2^-8 for bf16 (8 significant bits, round to nearest)
 *    and 2^-11 for f16, u_x = 2^-8 on the AVX-512 bf16 path and 0 elsewhere, plus libtorch's own
 *    fp32 error (the same K-term bound).
 *  - glu (silu(g) * u): the g and u bounds propagated, |silu'| <= 1.1, plus 1e-6 relative for
 *    the kernels' exp (a degree-6 polynomial, relative error < 2e-7).
 *  - argmax: exactly the first maximal index of the logits linear() writes for the same data,
 *    and the same maximal value; log-sum-exp within (N u + 1e-6)(1 + |lse|) of float64 on those
 *    logits.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../lib/model';
import { loadNative, type KernelIsa, type KernelTestOptions, type KernelTestResult } from '../lib/native';
import { makeTinyModel } from './helpers/tiny-model';
import { ReferenceLlama } from './reference/llama';

const U = 2 ** -24;
const native = loadNative();
const best = native.kernelTest.info();
const ORDER: KernelIsa[] = ['portable', 'avx2', 'avx512'];
const isasUpTo = (top: KernelIsa) => ORDER.slice(0, ORDER.indexOf(top) + 1);
const TYPES = ['bf16', 'f16'] as const;
type WType = (typeof TYPES)[number];
const CASES: Array<[WType, KernelIsa]> = TYPES.flatMap((t) => isasUpTo(best[t]).map((i) => [t, i] as [WType, KernelIsa]));
console.log(`kernels on this CPU: bf16 up to ${best.bf16}, f16 up to ${best.f16}`);

// Math's functions bound once: under jest's vm each `Math.f` in a hot loop is a slow global lookup.
const { sqrt, log, cos, PI, imul } = Math;

/** mulberry32 (as test/helpers/tiny-model.ts), with imul bound for speed in large arrays. */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(n: number, seed: number, scale = 1): Float32Array {
  const r = uniform(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * sqrt(-2 * log(1 - r())) * cos(2 * PI * r());
  return out;
}

/** fp32 -> bf16 -> fp32, round to nearest even (what vcvtne2ps2bf16 does for finite values). */
function roundBf16(a: Float32Array): Float32Array {
  const out = new Float32Array(a);
  const u = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; i++) u[i] = ((u[i] + 0x7fff + ((u[i] >>> 16) & 1)) & 0xffff0000) >>> 0;
  return out;
}

/** float64 x w^T on the given operands, with S = sum |w x| per output. */
function reference(x: ArrayLike<number>, w: ArrayLike<number>, M: number, N: number, K: number): { y: Float64Array; s: Float64Array } {
  const y = new Float64Array(M * N), s = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let acc = 0, mag = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k] * w[n * K + k];
        acc += p;
        mag += p < 0 ? -p : p;
      }
      y[m * N + n] = acc;
      s[m * N + n] = mag;
    }
  return { y, s };
}

const uW = (t: WType) => (t === 'bf16' ? 2 ** -8 : 2 ** -11);
const uX = (t: WType, isa: KernelIsa) => (t === 'bf16' && isa === 'avx512' ? 2 ** -8 : 0);

function run(o: KernelTestOptions): KernelTestResult {
  const r = native.kernelTest.run(o);
  expect(r.isa).toBe(o.isa);
  // Copies made in this realm: element reads of the addon's arrays (created in the outer realm
  // under jest) are many times slower in the reference loops.
  const local = <T extends Float32Array | Float64Array | undefined>(a: T): T =>
    (a instanceof Float64Array ? new Float64Array(a) : a ? new Float32Array(a) : a) as T;
  return {
    ...r, y: local(r.y), torch: local(r.torch), rounded: local(r.rounded), argmax: local(r.argmax),
    maxLogit: local(r.maxLogit), lse: local(r.lse),
  };
}

interface Shape {
  M: number;
  N: number;
  K: number;
}

/** Checks linear (with bias and accumulation into y0) against both references; returns y. */
function checkLinear(type: WType, isa: KernelIsa, { M, N, K }: Shape, seed: number, threads = 1): Float32Array {
  const x = gaussian(M * K, seed), w = gaussian(N * K, seed + 1, 0.5), bias = gaussian(N, seed + 2), y0 = gaussian(M * N, seed + 3);
  const r = run({ op: 'linear', type, isa, x, M, K, w, N, bias, y0, threads });
  expect(r.y.length).toBe(M * N);
  const xr = uX(type, isa) ? roundBf16(x) : x;
  const tight = reference(xr, r.rounded, M, N, K);
  const loose = reference(x, w, M, N, K);
  const bound = (2 * K + 4) * U;
  let worstTight = 0, worstTorch = 0;
  for (let i = 0; i < M * N; i++) {
    const extra = Math.abs(bias[i % N]) + Math.abs(y0[i]);
    const want = y0[i] + (tight.y[i] + bias[i % N]);
    const tolTight = bound * (tight.s[i] + extra) + 1e-30;
    worstTight = Math.max(worstTight, Math.abs(r.y[i] - want) / tolTight);
    const tolTorch = (uW(type) + uX(type, isa) + uW(type) * uX(type, isa)) * loose.s[i] + 2 * bound * (loose.s[i] + extra) + 1e-30;
    worstTorch = Math.max(worstTorch, Math.abs(r.y[i] - r.torch[i]) / tolTorch);
  }
  // Reported as the ratio error / tolerance: <= 1 passes.
  expect(worstTight).toBeLessThanOrEqual(1);
  expect(worstTorch).toBeLessThanOrEqual(1);
  return r.y;
}

const SMALL: Array<[number, number]> = [
  [1, 1], [7, 3], [16, 16], [17, 31], [33, 2], [48, 64], [100, 77], [301, 24], [5, 130],
];

describe.each(CASES)('%s weights on %s', (type, isa) => {
  test('linear: M = 1..16 over awkward N x K (tiny), with bias and residual accumulation', () => {
    let seed = 100;
    for (const [N, K] of SMALL) for (let M = 1; M <= 16; M++) checkLinear(type, isa, { M, N, K }, seed++);
  });

  test('linear: large shapes (lm_head- and MLP-sized, K not a multiple of 32; 4-12 rows take the next-tile prefetch and tall-tile paths)', () => {
    let seed = 900;
    const shapes = [{ M: 1, N: 4096, K: 288 }, { M: 8, N: 1030, K: 777 }, { M: 16, N: 768, K: 2050 }, { M: 3, N: 2304, K: 768 }];
    for (const M of [4, 7, 9, 12]) shapes.push({ M, N: 1100, K: 130 });
    for (const s of shapes)
      checkLinear(type, isa, s, seed++);
  });

  test('each row is independent of its block: an M-row call equals M one-row calls bit for bit; 2 threads equal 1', () => {
    const M = 11, N = 203, K = 95;
    const x = gaussian(M * K, 7), w = gaussian(N * K, 8);
    const all = run({ op: 'linear', type, isa, x, M, K, w, N }).y;
    for (let m = 0; m < M; m++) {
      const one = run({ op: 'linear', type, isa, x: x.slice(m * K, (m + 1) * K), M: 1, K, w, N }).y;
      expect(Array.from(one)).toEqual(Array.from(all.subarray(m * N, (m + 1) * N)));
    }
    // The same for glu and the argmax head: a one-row call over a matrix in cache runs a wider
    // tile (more blocks at once) than a block of rows does.
    const wGlu = w.slice(0, 2 * 101 * K);
    const allGlu = run({ op: 'glu', type, isa, x, M, K, w: wGlu, N: 2 * 101 }).y;
    const allArg = run({ op: 'argmax', type, isa, x, M, K, w, N });
    for (let m = 0; m < M; m++) {
      const xm = x.slice(m * K, (m + 1) * K);
      const glu = run({ op: 'glu', type, isa, x: xm, M: 1, K, w: wGlu, N: 2 * 101 }).y;
      expect(Array.from(glu)).toEqual(Array.from(allGlu.subarray(m * 101, (m + 1) * 101)));
      const arg = run({ op: 'argmax', type, isa, x: xm, M: 1, K, w, N });
      expect([arg.argmax![0], arg.maxLogit![0]]).toEqual([allArg.argmax![m], allArg.maxLogit![m]]);
      expect(Math.abs(arg.lse![0] - allArg.lse![m])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(allArg.lse![m])));
    }
    const two = run({ op: 'linear', type, isa, x, M, K, w, N, threads: 2 }).y;
    expect(Array.from(two)).toEqual(Array.from(all));
    const twoArg = run({ op: 'argmax', type, isa, x, M, K, w, N, threads: 2 });
    const oneArg = run({ op: 'argmax', type, isa, x, M, K, w, N, threads: 1 });
    expect(Array.from(twoArg.argmax!)).toEqual(Array.from(oneArg.argmax!));
    // The threads' partial sums of exponentials combine in another order: close, not equal.
    for (let m = 0; m < M; m++) expect(Math.abs(twoArg.lse![m] - oneArg.lse![m])).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(oneArg.lse![m])));
  });

  test('glu: silu(gate) * up in one kernel, M = 1..16, I not a multiple of 16', () => {
    let seed = 2000;
    for (const [I, K] of [[1, 5], [13, 40], [40, 33], [432, 160]] as Array<[number, number]>)
      for (const M of [1, 2, 3, 5, 8, 12, 16]) {
        const N = 2 * I;
        const x = gaussian(M * K, seed++), w = gaussian(N * K, seed++, 0.3);
        const r = run({ op: 'glu', type, isa, x, M, K, w, N });
        expect(r.y.length).toBe(M * I);
        const xr = uX(type, isa) ? roundBf16(x) : x;
        const ref = reference(xr, r.rounded, M, N, K);
        const refT = reference(x, w, M, N, K);
        let worst = 0, worstTorch = 0;
        for (let m = 0; m < M; m++)
          for (let i = 0; i < I; i++) {
            const gi = m * N + i, ui = m * N + I + i;
            const g = ref.y[gi], u = ref.y[ui];
            const silu = g / (1 + Math.exp(-g));
            const want = silu * u;
            const tg = (2 * K + 4) * U * ref.s[gi], tu = (2 * K + 4) * U * ref.s[ui];
            const tol = 1.1 * tg * Math.abs(u) + Math.abs(silu) * tu + tg * tu + 1e-6 * Math.abs(want) + 1e-30;
            worst = Math.max(worst, Math.abs(r.y[m * I + i] - want) / tol);
            const rel = uW(type) + uX(type, isa) + uW(type) * uX(type, isa);
            const tgT = rel * refT.s[gi] + 2 * tg, tuT = rel * refT.s[ui] + 2 * tu;
            const gT = refT.y[gi], uT = refT.y[ui], siluT = gT / (1 + Math.exp(-gT));
            const tolT = 1.1 * tgT * Math.abs(uT) + Math.abs(siluT) * tuT + tgT * tuT + 2e-6 * Math.abs(siluT * uT) + 1e-30;
            worstTorch = Math.max(worstTorch, Math.abs(r.y[m * I + i] - r.torch[m * I + i]) / tolT);
          }
        expect([I, K, M, worst <= 1]).toEqual([I, K, M, true]);
        expect([I, K, M, worstTorch <= 1]).toEqual([I, K, M, true]);
      }
  });

  test('lm_head argmax and log-sum-exp without logits: equal to argmax over linear() output', () => {
    let seed = 3000;
    for (const [N, K] of [[1, 4], [17, 9], [100, 64], [4096, 96], [1001, 130]] as Array<[number, number]>)
      for (const M of [1, 2, 4, 7, 8, 9, 12, 16]) {
        const x = gaussian(M * K, seed++), w = gaussian(N * K, seed++, 0.5);
        const r = run({ op: 'argmax', type, isa, x, M, K, w, N });
        for (let m = 0; m < M; m++) {
          const row = r.y.subarray(m * N, (m + 1) * N);
          let first = 0;
          for (let i = 1; i < N; i++) if (row[i] > row[first]) first = i;
          expect([N, M, m, r.argmax![m]]).toEqual([N, M, m, first]);
          expect(r.maxLogit![m]).toBe(row[first]);
          let sum = 0;
          for (let i = 0; i < N; i++) sum += Math.exp(row[i] - row[first]);
          const lse = row[first] + Math.log(sum);
          expect(Math.abs(r.lse![m] - lse)).toBeLessThanOrEqual((N * U + 1e-6) * (1 + Math.abs(lse)));
        }
      }
  });

  test('ties resolve to the first maximal column, across tiles and threads', () => {
    // Identical rows in the weight give identical logits: the argmax must be the first of them.
    const N = 300, K = 8, M = 2;
    const w = gaussian(N * K, 11, 0.01);
    const x = gaussian(M * K, 12);
    for (const dup of [5, 17, 150, 290]) for (let k = 0; k < K; k++) w[dup * K + k] = 10 + k;
    for (const threads of [1, 2]) {
      const r = run({ op: 'argmax', type, isa, x: x.map(Math.abs), M, K, w, N, threads });
      expect(Array.from(r.argmax!)).toEqual([5, 5]);
    }
  });
});

describe('models on the kernels', () => {
  let tmp: string;
  let dir: string;
  let draftDir: string;
  const HELLO = [256, 72, 101, 108, 108, 111];
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-kernels-'));
    dir = path.join(tmp, 'target');
    draftDir = path.join(tmp, 'draft');
    // Odd sizes (hidden 40, intermediate 37, vocab 301) so that every kernel runs its tails.
    const opts = { hiddenSize: 40, intermediateSize: 37, numHeads: 4, numKvHeads: 2, numLayers: 2, vocabSize: 301 };
    makeTinyModel(dir, { ...opts, seed: 3 });
    makeTinyModel(draftDir, { ...opts, seed: 4 });
  });
  afterAll(() => {
    native.kernelTest.setIsaCap('avx512');
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('dtype selects the kernels: bfloat16 and float16 report them, float32 and kernels: false do not', () => {
    expect(Model.loadSync(dir, { dtype: 'bfloat16' }).kernels).toBe(best.bf16);
    expect(Model.loadSync(dir, { dtype: 'float16' }).kernels).toBe(best.f16);
    expect(Model.loadSync(dir).kernels).toBeNull();
    expect(Model.loadSync(dir, { dtype: 'bfloat16', kernels: false }).kernels).toBeNull();
    expect(() => Model.loadSync(dir, { dtype: 'float16', kernels: false })).toThrow(/float16/);
  });

  test.each(CASES)('%s on %s: logits near the float64 reference; a block equals token-by-token decoding bit for bit', (type, isa) => {
    const prev = native.kernelTest.setIsaCap(isa);
    try {
      const m = Model.loadSync(dir, { dtype: type === 'bf16' ? 'bfloat16' : 'float16' });
      const tokens = [256, 5, 77, 300, 12, 140, 9, 33, 200, 1, 2, 3];
      const want = ReferenceLlama.load(dir).forward(tokens).flat();
      const got = m.createSequence().forwardSync(tokens, { allLogits: true });
      // Same bounds as native-forward.test.ts's bfloat16 block (6% of max |logit| worst case,
      // 4% RMS), which hold with room here: the activations stay fp32.
      let scale = 0, worst = 0, se = 0, ss = 0;
      for (let i = 0; i < want.length; i++) {
        scale = Math.max(scale, Math.abs(want[i]));
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
        se += (got[i] - want[i]) ** 2;
        ss += want[i] ** 2;
      }
      expect(worst).toBeLessThanOrEqual(0.06 * scale);
      expect(Math.sqrt(se)).toBeLessThanOrEqual(0.04 * Math.sqrt(ss));
      const seq = m.createSequence();
      const steps: number[] = [];
      for (const t of tokens) steps.push(...seq.forwardSync([t]));
      expect(Array.from(steps).every((v, i) => v === got[i])).toBe(true);
    } finally {
      native.kernelTest.setIsaCap(prev);
    }
  });

  test.each(([
    ['GQA, head_dim 10', {}],
    ['sliding window 5', { architecture: 'MistralForCausalLM', slidingWindow: 5 }],
    ['head_dim 64 (vector paths), qwen2 biases', { hiddenSize: 128, numHeads: 2, numKvHeads: 1, attentionBias: true }],
    // Attention tails: a 16-dimension chunk plus 8 scalar dimensions, three query heads per kv
    // head, a window that starts mid-block and spans two blocks.
    ['group 3, head_dim 24, sliding window 21', { hiddenSize: 72, numHeads: 3, numKvHeads: 1, architecture: 'MistralForCausalLM', slidingWindow: 21 }],
    ['group 6, head_dim 48', { hiddenSize: 288, numHeads: 6, numKvHeads: 1 }],
  ] as Array<[string, Record<string, unknown>]>).flatMap(([name, extra]) =>
    // Attention has its own code per level (AVX-512 tiles, AVX2 tiles, the per-row loop): each.
    isasUpTo(best.f16).map((isa) => [name, isa, extra] as [string, KernelIsa, Record<string, unknown>]),
  ))('%s, attention on %s: 37 positions over several 16-position key blocks, in uneven chunks', (name, isa, extra) => {
    const d = path.join(tmp, 'long_' + name.replace(/[^a-z0-9]+/gi, '_') + '_' + isa);
    makeTinyModel(d, { hiddenSize: 40, intermediateSize: 37, numHeads: 4, numKvHeads: 2, numLayers: 2, vocabSize: 301, seed: 9, ...extra });
    const tokens = Array.from({ length: 37 }, (_, i) => (i * 89 + 7) % 301);
    const want = ReferenceLlama.load(d).forward(tokens).flat();
    const prev = native.kernelTest.setIsaCap(isa);
    try {
      const m = Model.loadSync(d, { dtype: 'bfloat16' });
      const seq = m.createSequence({ contextLength: 37 }); // capacity not a multiple of 16
      const got: number[] = [];
      let at = 0;
      for (const n of [1, 16, 3, 1, 9, 7]) {
        got.push(...seq.forwardSync(tokens.slice(at, at + n), { allLogits: true }));
        at += n;
      }
      expect(at).toBe(37);
      let scale = 0, worst = 0;
      for (let i = 0; i < want.length; i++) {
        scale = Math.max(scale, Math.abs(want[i]));
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
      }
      expect(worst).toBeLessThanOrEqual(0.06 * scale);
      // The same positions in one block, bit for bit.
      const block = m.createSequence({ contextLength: 37 }).forwardSync(tokens, { allLogits: true });
      expect(Array.from(block).every((v, i) => v === got[i])).toBe(true);
      // AVX2 against the portable level, whose attention is an independent implementation (the
      // per-row loop): both keep x in fp32 and compute the same sums in other orders, so their
      // logits agree to rounding (about 1e-6 of the scale, measured); a dropped position or a
      // wrong head would be orders of magnitude more. (AVX-512 rounds x to bf16: the reference
      // bound above is its check.)
      if (isa === 'avx2') {
        native.kernelTest.setIsaCap('portable');
        const plain = Model.loadSync(d, { dtype: 'bfloat16' }).createSequence({ contextLength: 37 }).forwardSync(tokens, { allLogits: true });
        let far = 0;
        for (let i = 0; i < plain.length; i++) far = Math.max(far, Math.abs(plain[i] - block[i]));
        expect(far).toBeLessThanOrEqual(1e-4 * scale);
      }
    } finally {
      native.kernelTest.setIsaCap(prev);
    }
  });

  test.each(CASES)('%s on %s: greedy sd and mag output equals greedy ar output', async (type, isa) => {
    const prev = native.kernelTest.setIsaCap(isa);
    try {
      const dtype = type === 'bf16' ? 'bfloat16' : 'float16';
      const target = Model.loadSync(dir, { dtype });
      const other = Model.loadSync(draftDir, { dtype });
      const same = Model.loadSync(dir, { dtype });
      const opts = { maxNewTokens: 40, stopOnEos: false };
      const ar = await target.generate(HELLO, { ...opts, method: 'ar' });
      expect(ar.tokens.length).toBe(40);
      for (const k of [1, 3, 8]) {
        const mag = await target.generate(HELLO, { ...opts, method: 'mag', k });
        expect(mag.tokens).toEqual(ar.tokens);
        const sdOther = await target.generate(HELLO, { ...opts, method: 'sd', draftModel: other, k });
        expect(sdOther.tokens).toEqual(ar.tokens);
        // A drafter with the target's own weights: every draft accepted, bonus tokens each pass.
        const sdSame = await target.generate(HELLO, { ...opts, method: 'sd', draftModel: same, k });
        expect(sdSame.tokens).toEqual(ar.tokens);
        expect(sdSame.stats.targetForwards).toBeLessThan(ar.stats.targetForwards);
      }
    } finally {
      native.kernelTest.setIsaCap(prev);
    }
  });
});
