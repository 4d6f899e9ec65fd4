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

/** The tuned cascade of a model family folder, else the fallback. */
export function familyCascade(dir = familyDir()): CascadeMatrix {
  const file = cascadeFile(dir);
  if (!fs.existsSync(file)) return FALLBACK_CASCADE;
  const o = readJsonObject(file);
  try {
    return parseCascade(o.cascade ?? o);
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
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
}): Promise<Family> {
  const root = familyDir();
  let target: Model;
  if (options.target instanceof Model) target = options.target;
  else {
    const targetDir = options.target ?? path.join(root, 'target');
    if (!fs.existsSync(targetDir)) throw new Error(`no default model family is installed (${path.resolve(targetDir)} is missing); pass --model DIR`);
    target = await Model.load(targetDir, { dtype: options.dtype, threads: options.threads });
  }
  const drafts: Record<string, Model> = {};
  const dirs: Record<string, string> = options.drafts ?? Object.fromEntries(FAMILY_DRAFTS.map((n) => [n, path.join(root, n)] as const).filter(([, d]) => fs.existsSync(d)));
  const draftVocabulary = options.fullDraftVocabulary ? null : undefined;
  for (const [name, dir] of Object.entries(dirs))
    drafts[name] = await Model.load(dir, { dtype: options.dtype, threads: options.threads, draftVocabulary, draftTemperatureScale: options.draftTemperatureScale });
  return { target, drafts };
}
