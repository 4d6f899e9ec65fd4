// The paper's cost-model metrics. Both assume every forward pass of a model costs its parameter
// count whatever the number of tokens in it, and Max-Gram costs nothing; the measured
// wall-clock speedup is reported beside them because on a CPU those assumptions do not hold.

/** Standardized walltime improvement: tokens x target cost / the cost of every pass run. */
export function swi(tokens: number, targetParams: number, passes: Array<{ passes: number; params: number }>): number {
  const cost = passes.reduce((s, p) => s + p.passes * p.params, 0);
  return cost > 0 ? (tokens * targetParams) / cost : 0;
}

/**
 * Expected walltime improvement factor from per-position acceptance: acceptance[j] is the
 * probability that draft position j is accepted given that all before it were;
 * draftCostPerPass is the drafting cost of one target pass relative to the target's own.
 *   EWIF = (sum_{i=0..k} prod_{j<i} acceptance[j]) / (1 + draftCostPerPass)
 */
export function ewif(acceptance: number[], draftCostPerPass: number): number {
  let expected = 1;
  let reach = 1;
  for (const a of acceptance) {
    reach *= a;
    expected += reach;
  }
  return expected / (1 + draftCostPerPass);
}
