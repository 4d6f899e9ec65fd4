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
}

export interface NativeModel {
  readonly numParams: number;
  readonly vocabSize: number;
  readonly dtype: Dtype;
  threads: number;
}

export interface NativeSequence {
  readonly length: number;
  readonly capacity: number;
  forward(tokens: Int32Array | number[], allLogits: boolean): Float32Array;
  forwardAsync(tokens: Int32Array | number[], allLogits: boolean): Promise<Float32Array>;
  step(tokens: Int32Array | number[], sampling?: NativeSampling): number;
  stepAsync(tokens: Int32Array | number[], sampling?: NativeSampling): Promise<number>;
  truncate(n: number): void;
  reseed(seed: number): void;
}

export interface NativeAddon {
  Model: new (config: NativeConfig, shards: string[], options: { dtype: Dtype; threads: number }) => NativeModel;
  Sequence: new (model: NativeModel, contextLength: number, seed?: number) => NativeSequence;
  torchInfo(): { version: string; threads: number; parallelInfo: string };
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
