// A tiny model family for the bench / tune / ceiling tests, written under `dir`: a target, a
// `mid` draft that is the target with a noisy lm_head (often right), a one-layer `small` draft
// with other random weights (rarely right), and a `same` draft identical to the target (always
// right), loaded as two families.
import * as path from 'path';

import type { Family } from '../../lib/cli/family';
import { Model } from '../../lib/model';
import { makeTinyModel, perturbedCopy } from './tiny-model';

export const TINY_FAMILY_VOCAB = 260;

export function makeTinyFamily(dir: string): { targetDir: string; family: Family; sameFamily: Family } {
  const V = TINY_FAMILY_VOCAB;
  const targetDir = path.join(dir, 'target');
  makeTinyModel(targetDir, { vocabSize: V, seed: 101 });
  perturbedCopy(targetDir, path.join(dir, 'mid'), 0.25, 3);
  makeTinyModel(path.join(dir, 'small'), { vocabSize: V, seed: 202, numLayers: 1 });
  makeTinyModel(path.join(dir, 'same'), { vocabSize: V, seed: 101 });
  const target = Model.loadSync(targetDir);
  return {
    targetDir,
    family: { target, drafts: { mid: Model.loadSync(path.join(dir, 'mid')), small: Model.loadSync(path.join(dir, 'small')) } },
    sameFamily: { target, drafts: { same: Model.loadSync(path.join(dir, 'same')) } },
  };
}
