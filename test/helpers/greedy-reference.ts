// A model's greedy continuation of `context`, k tokens, each with its softmax probability,
// computed from full logits token by token (the reference for drafts that stop where unsure).
// `allowed`: the argmax and the softmax over those token ids only (a draft vocabulary).
import type { Model } from '../../lib/model';

export function greedyWithProbabilities(
  model: Model,
  context: number[],
  k: number,
  allowed?: ReadonlySet<number>,
): Array<{ token: number; p: number }> {
  const V = model.config.vocabSize;
  const seq = model.createSequence({ contextLength: context.length + k });
  const out: Array<{ token: number; p: number }> = [];
  try {
    let logits = seq.forwardSync(context);
    for (let i = 0; i < k; i++) {
      const ok = (v: number) => !allowed || allowed.has(v);
      let best = -1;
      for (let v = 0; v < V; v++) if (ok(v) && (best < 0 || logits[v] > logits[best])) best = v;
      let sum = 0;
      for (let v = 0; v < V; v++) if (ok(v)) sum += Math.exp(logits[v] - logits[best]);
      out.push({ token: best, p: 1 / sum });
      if (i + 1 < k) logits = seq.forwardSync([best]);
    }
  } finally {
    seq.dispose();
  }
  return out;
}
