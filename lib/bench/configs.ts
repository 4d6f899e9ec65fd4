// Llama configurations used by the benchmarks: about 2M, 7M, 30M and 90M parameters with the
// default family's 4096-token vocabulary, and random weights written by the native Trainer.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { loadNative, type NativeConfig } from '../native';

export interface BenchConfig {
  name: string;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
}

export const BENCH_CONFIGS: BenchConfig[] = [
  { name: '2M', hidden: 160, layers: 4, heads: 4, kvHeads: 4, intermediate: 432 },
  { name: '7M', hidden: 288, layers: 6, heads: 6, kvHeads: 6, intermediate: 768 },
  { name: '30M', hidden: 512, layers: 8, heads: 8, kvHeads: 8, intermediate: 1536 },
  { name: '90M', hidden: 768, layers: 12, heads: 12, kvHeads: 12, intermediate: 2048 },
];

export const BENCH_VOCAB = 4096;

export function nativeConfig(c: BenchConfig, context = 512): NativeConfig {
  return {
    architecture: 'LlamaForCausalLM', vocabSize: BENCH_VOCAB, hiddenSize: c.hidden, intermediateSize: c.intermediate,
    numLayers: c.layers, numHeads: c.heads, numKvHeads: c.kvHeads, headDim: c.hidden / c.heads,
    maxPositionEmbeddings: context, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true,
    attentionBias: false, outputBias: false, slidingWindow: 0,
  };
}

/** Writes safetensors weights for `c` (random, seeded) into a temporary folder; returns the file. */
export function randomWeights(c: BenchConfig, dtype: 'F32' | 'BF16' = 'F32'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `cascade-bench-${c.name}-`));
  const file = path.join(dir, 'model.safetensors');
  const trainer = new (loadNative().Trainer)(nativeConfig(c), { seed: 7, bf16: false });
  trainer.saveWeights(file, dtype);
  return file;
}
