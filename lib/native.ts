// Finds and loads the native addon, and declares the typed surface of native/.
// Lookup order (as better-sqlite3 / sharp): CASCADE_SPEC_NATIVE (an explicit .node path), then
// node-gyp-build's prebuilds/ for this platform, then build/Release from a local compile.
import * as fs from 'fs';
import * as path from 'path';

export interface NativeConfig {
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  tieWordEmbeddings: boolean;
  attentionBias: boolean;
  outputBias: boolean;
  slidingWindow: number;
  ropeScaling?: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };
}

export type Dtype = 'float32' | 'bfloat16' | 'float16';

export interface NativeSampling {
  temperature: number;
  topK: number;
  topP: number;
  /** Min-p: keep a token iff its probability is >= minP times the largest (after top-p); 0 = off (the default when absent). */
  minP?: number;
  /** Speculative verification when sampling: test a block's drafts jointly (default), or
   * token by token when false (GenerateOptions.blockVerification). Not read by native code. */
  blockVerification?: boolean;
}

export interface NativeModel {
  readonly numParams: number;
  readonly vocabSize: number;
  /** Tokens this model's drafts propose from (its draft vocabulary's size, else vocabSize). */
  readonly draftVocabularySize: number;
  readonly dtype: Dtype;
  /** The kernels' instruction set, or null when libtorch computes (float32, or kernels: false). */
  readonly kernels: string | null;
  threads: number;
  /** Drops the weights (freed once this model's sequences are gone too); new sequences are refused. */
  dispose(): void;
}

export type KernelIsa = 'avx512' | 'avx2' | 'portable';

export interface KernelTestOptions {
  op: 'linear' | 'glu' | 'argmax';
  type: 'bf16' | 'f16';
  isa: KernelIsa;
  threads?: number;
  x: Float32Array;
  M: number;
  K: number;
  w: Float32Array;
  N: number;
  bias?: Float32Array;
  y0?: Float32Array;
}

export interface KernelTestResult {
  /** linear: [M, N]; glu: [M, N / 2]; argmax: the logits from linear(), [M, N]. */
  y: Float32Array;
  argmax?: Float64Array;
  maxLogit?: Float32Array;
  lse?: Float32Array;
  /** libtorch fp32 on the unrounded x and w (glu: silu(gate) * up; linear: with bias and y0). */
  torch: Float32Array;
  /** The packed weights read back as fp32, [N, K]. */
  rounded: Float32Array;
  isa: KernelIsa;
}

export interface NativeVerifyOptions {
  sampling?: NativeSampling;
  /** [k * V] processed draft distributions; omitted for deterministic drafts. */
  draftProbs?: Float32Array;
  /** > 1 only for draft-level reviewers. Default 1 (exact). */
  lenience?: number;
  returnProbs?: boolean;
  /** Sampling with lenience 1: test the drafts jointly (block verification). Default true;
   * false: the token-by-token test. Same output distribution either way. */
  blockVerification?: boolean;
  /** Leading block tokens that are known, not under test (at least the pending token). Default 1. */
  fixed?: number;
}

export interface NativeVerifyResult {
  accepted: number;
  next: number;
  probs?: Float32Array;
}

export interface NativeSequence {
  verify(block: Int32Array, options?: NativeVerifyOptions): NativeVerifyResult;
  verifyAsync(block: Int32Array, options?: NativeVerifyOptions): Promise<NativeVerifyResult>;
  /** minConfidence: stop at a position (after the first) where the draft's most likely token has a lower probability. */
  /** probsOut: an array the caller keeps for the rows; when it is large enough, `probs` is a view of it (valid until it is reused). */
  draft(feed: Int32Array, k: number, sampling?: NativeSampling, minConfidence?: number, probsOut?: Float32Array): { tokens: Int32Array; probs?: Float32Array };
  draftAsync(feed: Int32Array, k: number, sampling?: NativeSampling): Promise<{ tokens: Int32Array; probs?: Float32Array }>;
  readonly length: number;
  readonly capacity: number;
  forward(tokens: Int32Array | number[], allLogits: boolean): Float32Array;
  forwardAsync(tokens: Int32Array | number[], allLogits: boolean): Promise<Float32Array>;
  step(tokens: Int32Array | number[], sampling?: NativeSampling): number;
  stepAsync(tokens: Int32Array | number[], sampling?: NativeSampling): Promise<number>;
  truncate(n: number): void;
  reseed(seed: number): void;
  /** Frees the KV cache now (its buffers are reused by the model's next sequence). */
  dispose(): void;
}

export interface NativeTrainer {
  readonly stepsDone: number;
  readonly numParams: number;
  /** lossMask: batch * T flags (T = tokens per row - 1), 1 where the target counts. */
  step(tokens: Int32Array, batch: number, lr: number, lossMask?: Uint8Array): number;
  /** Distils from `teacher` (a loaded model with this vocabulary): each step's objective
   *  becomes (1 - weight) * cross-entropy + weight * the teacher's term: KL(teacher || model)
   *  ('kl', the default) or the cross-entropy of the teacher's argmax ('argmax'); null clears it. */
  setTeacher(teacher: NativeModel | null, weight?: number, term?: 'kl' | 'argmax'): void;
  evalLoss(tokens: Int32Array, batch: number): number;
  saveWeights(path: string, dtype: 'F32' | 'F16' | 'BF16'): void;
  /** Replaces the weights by a Hugging Face checkpoint's (safetensors file or shards); throws
   *  naming the file and tensor on any mismatch, leaving the weights unchanged. */
  loadWeights(files: string | string[]): void;
  saveState(path: string): void;
  loadState(path: string): void;
}

export interface NativeTrainOptions {
  seed: number;
  bf16: boolean;
  weightDecay: number;
  beta1: number;
  beta2: number;
  gradClip: number;
  threads: number;
}

export interface NativeAddon {
  Trainer: new (config: NativeConfig, options: Partial<NativeTrainOptions>) => NativeTrainer;
  Model: new (
    config: NativeConfig,
    shards: string[],
    options: { dtype: Dtype; threads: number; kernels?: boolean; draftVocabulary?: Int32Array },
  ) => NativeModel;
  Sequence: new (model: NativeModel, contextLength: number, seed?: number) => NativeSequence;
  verifyBatch(requests: Array<NativeVerifyOptions & { sequence: NativeSequence; block: Int32Array }>): Promise<NativeVerifyResult[]>;
  torchInfo(): { version: string; threads: number; parallelInfo: string };
  /** Direct access to the linear kernels, for tests. */
  kernelTest: {
    /** The best instruction set per weight type on this CPU. */
    info(): { bf16: KernelIsa; f16: KernelIsa };
    run(options: KernelTestOptions): KernelTestResult;
    /** Caps the instruction set of every later kernels call (models included); returns the previous cap. */
    setIsaCap(isa: KernelIsa): KernelIsa;
    /** The processed sampling distribution native code draws from (temperature > 0). */
    processedProbs(logits: Float32Array, sampling: NativeSampling): Float32Array;
  };
}

let cached: NativeAddon | undefined;

export function packageRoot(): string {
  // dist/lib/native.js and lib/native.ts (under ts-jest) both sit below the package root.
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'cascade-spec') return dir;
  }
  return path.resolve(__dirname, '..');
}

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const explicit = process.env.CASCADE_SPEC_NATIVE;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = explicit ? (require(path.resolve(explicit)) as NativeAddon) : (require('node-gyp-build')(packageRoot()) as NativeAddon);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(
      `cascade-spec: cannot load the native addon${explicit ? ` from CASCADE_SPEC_NATIVE=${explicit}` : ''}: ${why}\n` +
        '  Build it with `npm run build:native` (needs libtorch: `sudo bash scripts/setup-debian.sh`).',
    );
  }
  return cached;
}
