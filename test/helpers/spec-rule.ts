/**
 * A plain-TypeScript reference of the speculative acceptance rule (cs-drafting.md §1; Leviathan
 * et al. 2023, Chen et al. 2023), written from the papers, not from native/verify.cc.
 */

/**
 * Exact outcome probabilities of verifying drafts x_1..x_k: entry n * V + y is
 * P(accepted = n, next = y). `p` holds the k + 1 processed target rows (row i is the
 * distribution of the token at draft position i; row k gives the bonus token). `q` holds the
 * drafter's k processed rows, or null for a deterministic (one-hot) drafter.
 *   accept x_i with probability min(1, p_i(x_i) / q_i(x_i)) (one-hot q: p_i(x_i));
 *   at the first rejection the correction comes from norm(max(0, p_i - q_i)) (one-hot: p_i
 *   without x_i); after k acceptances the bonus comes from p_k.
 * `variant` 'resample-from-p' is a deliberately wrong rule (a correction drawn from p_i), used
 * as a negative control.
 */
export function ruleOutcome(
  p: ArrayLike<number>[],
  drafts: readonly number[],
  q: ArrayLike<number>[] | null,
  variant?: 'resample-from-p',
): Float64Array {
  const k = drafts.length;
  const V = p[0].length;
  const out = new Float64Array((k + 1) * V);
  let reach = 1; // probability that drafts 0..i-1 were all accepted
  for (let i = 0; i < k && reach > 0; i++) {
    const x = drafts[i];
    const qx = q ? q[i][x] : 1;
    const acc = qx > 0 ? Math.min(1, p[i][x] / qx) : 0;
    const rej = reach * (1 - acc);
    if (rej > 0) {
      // The correction's distribution, written in place then normalised.
      const pi = p[i];
      const qi = q ? q[i] : null;
      const base = i * V;
      let z = 0;
      for (let y = 0; y < V; y++) {
        // (No Math.max in this hot loop: it is very slow inside jest's sandbox.)
        const d = qi ? pi[y] - qi[y] : 0;
        const r = variant === 'resample-from-p' ? pi[y] : qi ? (d > 0 ? d : 0) : y === x ? 0 : pi[y];
        out[base + y] = r;
        z += r;
      }
      if (!(z > 0)) throw new Error(`rule: rejection with no residual mass at position ${i}`);
      const scale = rej / z;
      for (let y = 0; y < V; y++) out[base + y] *= scale;
    }
    reach *= acc;
  }
  if (reach > 0) for (let y = 0; y < V; y++) out[k * V + y] = reach * p[k][y];
  return out;
}

/**
 * Exact outcome probabilities (entry n * V + y: P(accepted = n, next = y)) of block
 * verification (Sun et al., "Block Verification Accelerates Speculative Decoding", 2024,
 * Algorithm 2), from the paper; same arguments as ruleOutcome. With weights w_0 = 1,
 * w_i = min(1, w_{i-1} p_{i-1}(x_i) / q_{i-1}(x_i)) (rows 0-based: row i - 1 is the
 * distribution x_i was drawn from), and for i < k h_i = r_i / (r_i + 1 - w_i) with
 * r_i = sum_y max(0, w_i p_i(y) - q_i(y)), h_k = w_k: the verifier keeps the drafts up to
 * tau = the last i whose independent uniform u_i <= h_i (0 if none), then draws the next token
 * from p_k when tau = k, else from norm(max(0, w_tau p_tau - q_tau)).
 * `variant` 'first-failure' is a deliberately wrong rule (tau = the first i with u_i > h_i,
 * minus one), used as a negative control.
 */
export function blockRuleOutcome(
  p: ArrayLike<number>[],
  drafts: readonly number[],
  q: ArrayLike<number>[] | null,
  variant?: 'first-failure',
): Float64Array {
  const k = drafts.length;
  const V = p[0].length;
  const qAt = (i: number, y: number) => (q ? q[i][y] : y === drafts[i] ? 1 : 0);
  const w = [1];
  const h = [1]; // h_0: tau = 0 when no later i is kept
  for (let i = 1; i <= k; i++) {
    const x = drafts[i - 1];
    const qx = qAt(i - 1, x);
    w.push(qx > 0 ? Math.min(1, (w[i - 1] * p[i - 1][x]) / qx) : 0);
    if (i === k) h.push(w[k]);
    else {
      let r = 0;
      for (let y = 0; y < V; y++) {
        const d = w[i] * p[i][y] - qAt(i, y);
        if (d > 0) r += d;
      }
      h.push(r > 0 ? r / (r + 1 - w[i]) : 0);
    }
  }
  // P(tau = j): the last kept i is j, so u_j <= h_j and every later u_i > h_i. (The wrong
  // variant: every earlier u_i <= h_i and u_{j+1} > h_{j+1}.)
  const tauProb = (j: number): number => {
    let pr = 1;
    if (variant === 'first-failure') {
      for (let i = 1; i <= j; i++) pr *= h[i];
      return j < k ? pr * (1 - h[j + 1]) : pr;
    }
    pr = h[j];
    for (let i = j + 1; i <= k; i++) pr *= 1 - h[i];
    return pr;
  };
  const out = new Float64Array((k + 1) * V);
  for (let j = 0; j <= k; j++) {
    const pj = tauProb(j);
    if (!(pj > 0)) continue;
    const base = j * V;
    if (j === k) {
      for (let y = 0; y < V; y++) out[base + y] = pj * p[k][y];
      continue;
    }
    let z = 0;
    for (let y = 0; y < V; y++) {
      const d = w[j] * p[j][y] - qAt(j, y);
      out[base + y] = d > 0 ? d : 0;
      z += out[base + y];
    }
    if (!(z > 0)) {
      if (pj > 1e-12) throw new Error(`block rule: tau = ${j} with no residual mass`);
      out.fill(0, base, base + V);
      continue;
    }
    for (let y = 0; y < V; y++) out[base + y] *= pj / z;
  }
  return out;
}
