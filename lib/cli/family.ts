// The embedded default model family (models/target, models/mid, models/small) and the cascade
// configuration `cascade-spec tune` wrote beside it (models/cascade.json).
import * as fs from 'fs';
import * as path from 'path';

import { parseCascade, type CascadeMatrix } from '../cascade/config';
import { readJsonObject } from '../files';
import { Model } from '../model';
import type { Dtype } from '../native';
import { packageRoot } from '../native';

export const FAMILY_DRAFTS = ['mid', 'small'] as const;

export function familyDir(): string {
  return path.join(packageRoot(), 'models');
}

/** Used when no tuned configuration exists: both drafts and Max-Gram, strict reviews. */
export const FALLBACK_CASCADE: CascadeMatrix = { drafters: ['mid', 'small'], K: [[3, 1, 1], [0, 1, 2], [0, 0, 2]], lenience: 1 };

export function cascadeFile(dir = familyDir()): string {
  return path.join(dir, 'cascade.json');
}

/**
 * What a tuned configuration depends on: the kernels' instruction set (Model.kernels, or
 * "libtorch" where libtorch computes) and whether tokens are sampled. On an AVX-512 bf16 CPU
 * the 8-token verification block cost 1.5 decodes and the small draft paid best at k = 7; on an
 * AVX2-only CPU the block cost about 2 decodes and k = 3 won, until stop 21's prefetch change
 * cut the 5-9-token blocks there and tune moved the greedy entry to k = 6 while the sampled one
 * stayed at k = 3 (bench/README.md).
 */
export interface TunedFor {
  kernels: string | null;
  sampling: boolean;
}

/** The cascade.json key of a tuned entry: "avx2", "avx2/sampling", "libtorch", ... */
export function tunedKey(t: TunedFor): string {
  return `${t.kernels ?? 'libtorch'}${t.sampling ? '/sampling' : ''}`;
}

const TUNED_KEY = /^[a-z0-9_-]+(\/sampling)?$/;

/**
 * The tuned cascade of a model family folder, else the fallback. cascade.json holds the
 * configuration tune wrote ({ cascade, measured }) and, in "tuned", one per machine kind and
 * mode that tune wrote there (tunedKey). With `forMachine` the entry for it is used when there
 * is one: "KERNELS/sampling" when sampling (else "KERNELS"), then "KERNELS", then the top-level
 * configuration.
 */
export function familyCascade(dir = familyDir(), forMachine?: TunedFor): CascadeMatrix {
  return familyCascadeEntry(dir, forMachine).cascade;
}

/** familyCascade with where it came from: the "tuned" key, or null for the top-level one. */
export function familyCascadeEntry(dir = familyDir(), forMachine?: TunedFor): { cascade: CascadeMatrix; key: string | null } {
  const file = cascadeFile(dir);
  if (!fs.existsSync(file)) return { cascade: FALLBACK_CASCADE, key: null };
  const o = readJsonObject(file);
  const tuned = o.tuned;
  if (tuned !== undefined && (typeof tuned !== 'object' || tuned === null || Array.isArray(tuned)))
    throw new Error(`${file}: "tuned" must be an object of { cascade, measured } entries keyed by machine kind`);
  const entries = (tuned ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(entries)) {
    if (!TUNED_KEY.test(k)) throw new Error(`${file}: tuned entry "${k}": the key must be a kernels name ("avx2", "avx512", "portable", "libtorch"), optionally with "/sampling"`);
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !('cascade' in v)) throw new Error(`${file}: tuned entry "${k}" must be an object with a "cascade"`);
  }
  const keys = forMachine ? [...(forMachine.sampling ? [tunedKey(forMachine)] : []), tunedKey({ ...forMachine, sampling: false })] : [];
  const key = keys.find((k) => k in entries) ?? null;
  const source = key ? (entries[key] as Record<string, unknown>).cascade : o.cascade ?? o;
  try {
    return { cascade: parseCascade(source), key };
  } catch (e) {
    throw new Error(`${file}${key ? ` (tuned entry "${key}")` : ''}: ${(e as Error).message}`);
  }
}

/**
 * The cascade.json contents after tune measured `entry` for `key`: the entry goes into "tuned"
 * (replacing that key's), and becomes the top-level configuration too when there is none yet,
 * so that machines of kinds nobody tuned on get it. Other entries are kept, and so is a bare
 * matrix or readable form written by hand (it becomes the top-level "cascade").
 */
export function withTunedEntry(existing: Record<string, unknown> | undefined, key: string, entry: { cascade: unknown; measured: unknown }): Record<string, unknown> {
  const { tuned: earlier, ...rest } = existing ?? {};
  const base = 'cascade' in rest ? rest : 'K' in rest || 'levels' in rest ? { cascade: rest } : { cascade: entry.cascade, measured: entry.measured };
  return { ...base, tuned: { ...((earlier as Record<string, unknown> | undefined) ?? {}), [key]: entry } };
}

export interface Family {
  target: Model;
  drafts: Record<string, Model>;
}

/**
 * Loads the target and whichever family drafts exist (or the given folders). fullDraftVocabulary:
 * the drafts propose from every token, ignoring their folders' draft-vocab.i32;
 * draftTemperatureScale: the scale every draft samples its proposals at, instead of its folder's.
 */
export async function loadFamily(options: {
  dtype: Dtype;
  threads: number;
  target?: string | Model;
  drafts?: Record<string, string>;
  fullDraftVocabulary?: boolean;
  /** Every draft's LoadOptions.draftTemperatureScale (default: each folder's own). */
  draftTemperatureScale?: number;
  /**
   * The target's LoadOptions.promptCache. Default false: `bench`, `tune` and the bench scripts
   * run several methods on the same prompt back to back, and a cache would hand every method
   * after the first that prompt's pass for free.
   */
  promptCache?: boolean;
}): Promise<Family> {
  const root = familyDir();
  let target: Model;
  if (options.target instanceof Model) target = options.target;
  else {
    const targetDir = options.target ?? path.join(root, 'target');
    if (!fs.existsSync(targetDir)) throw new Error(`no default model family is installed (${path.resolve(targetDir)} is missing); pass --model DIR`);
    target = await Model.load(targetDir, { dtype: options.dtype, threads: options.threads, promptCache: options.promptCache ?? false });
  }
  const drafts: Record<string, Model> = {};
  const dirs: Record<string, string> = options.drafts ?? Object.fromEntries(FAMILY_DRAFTS.map((n) => [n, path.join(root, n)] as const).filter(([, d]) => fs.existsSync(d)));
  const draftVocabulary = options.fullDraftVocabulary ? null : undefined;
  for (const [name, dir] of Object.entries(dirs))
    drafts[name] = await Model.load(dir, { dtype: options.dtype, threads: options.threads, draftVocabulary, draftTemperatureScale: options.draftTemperatureScale });
  return { target, drafts };
}
