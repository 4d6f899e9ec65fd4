/**
 * Small statistics and comparison helpers for tests, written from first principles (no code
 * from lib/ or native/): the chi-square survival function, and the processed sampling
 * distribution as Hugging Face's logits warpers define it.
 */

/** ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~15 significant digits). */
export function lnGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - lnGamma(1 - x);
  x -= 1;
  let a = c[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularized upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a) (series / Lentz continued fraction). */
export function gammaQ(a: number, x: number): number {
  if (x <= 0) return 1;
  const lnPre = -x + a * Math.log(x) - lnGamma(a);
  if (x < a + 1) {
    // P(a, x) = e^-x x^a / Γ(a+1) * Σ x^n / ((a+1)...(a+n))
    let sum = 1 / a;
    let term = sum;
    for (let n = 1; n < 1000; n++) {
      term *= x / (a + n);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-16) break;
    }
    return 1 - sum * Math.exp(lnPre);
  }
  const tiny = 1e-300;
  let b = x + 1 - a;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return Math.exp(lnPre) * h;
}

/** P(X >= x) for X ~ chi-square with `df` degrees of freedom. */
export function chiSquareSf(x: number, df: number): number {
  return gammaQ(df / 2, x / 2);
}

/**
 * Pearson's chi-square goodness of fit of `counts` (token -> count) against `probs` (a
 * distribution over token ids). Cells with zero expected probability must have zero counts
 * (reported separately as `impossible`); the others form the statistic with df = cells - 1.
 */
export function chiSquareTest(counts: Map<number, number>, probs: ArrayLike<number>): {
  stat: number; df: number; p: number; impossible: number; minExpected: number;
} {
  let n = 0;
  for (const c of counts.values()) n += c;
  let stat = 0;
  let cells = 0;
  let impossible = 0;
  let minExpected = Infinity;
  for (let i = 0; i < probs.length; i++) {
    const obs = counts.get(i) ?? 0;
    if (probs[i] <= 0) {
      impossible += obs;
      continue;
    }
    const e = n * probs[i];
    minExpected = Math.min(minExpected, e);
    stat += ((obs - e) * (obs - e)) / e;
    cells++;
  }
  const df = cells - 1;
  return { stat, df, p: df > 0 ? chiSquareSf(stat, df) : 1, impossible, minExpected };
}

/**
 * The processed next-token distribution in float64, in the order Hugging Face applies the
 * warpers: softmax(logits / T); top-k keeps the tokens whose scaled logit is >= the k-th largest;
 * top-p (on the top-k-renormalised distribution) keeps a token iff the mass of the tokens
 * strictly more probable than it is < topP; min-p (on the top-p distribution) keeps a token iff its
 * probability is >= minP times the largest; renormalised. topK 0 / topP 1 / minP 0 = off.
 */
export function processedDistribution(logits: ArrayLike<number>, temperature: number, topK: number, topP: number, minP = 0): Float64Array {
  const V = logits.length;
  const scaled = Float64Array.from({ length: V }, (_, i) => logits[i] / temperature);
  const keep = new Array<boolean>(V).fill(true);
  if (topK > 0 && topK < V) {
    const kth = [...scaled].sort((a, b) => b - a)[topK - 1];
    for (let i = 0; i < V; i++) if (scaled[i] < kth) keep[i] = false;
  }
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (keep[i]) max = Math.max(max, scaled[i]);
  const p = new Float64Array(V);
  let z = 0;
  for (let i = 0; i < V; i++) if (keep[i]) z += (p[i] = Math.exp(scaled[i] - max));
  for (let i = 0; i < V; i++) p[i] /= z;
  if (topP < 1) {
    const q = new Float64Array(V);
    let zq = 0;
    for (let i = 0; i < V; i++) {
      if (p[i] === 0) continue;
      let above = 0;
      for (let j = 0; j < V; j++) if (p[j] > p[i]) above += p[j];
      if (above < topP) zq += (q[i] = p[i]);
    }
    for (let i = 0; i < V; i++) p[i] = q[i] / zq;
  }
  if (minP > 0) {
    const floor = minP * Math.max(...p);
    let z2 = 0;
    for (let i = 0; i < V; i++) z2 += p[i] = p[i] >= floor ? p[i] : 0;
    for (let i = 0; i < V; i++) p[i] /= z2;
  }
  return p;
}

/** Largest |a[i] - b[i]|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    const x = Math.abs(a[i] - b[i]);
    if (!(x <= d)) d = Number.isNaN(x) ? Infinity : x;
  }
  return d;
}

export const argmax = (row: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
};
