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
