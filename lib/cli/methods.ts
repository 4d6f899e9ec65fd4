// Method specifications for bench and tune: "ar", "mag[@K]", "sd[:DRAFT][@K]", "csd[:FILE]";
// a "/token" suffix on a speculative method verifies sampled drafts token by token instead of
// jointly (GenerateOptions.blockVerification), for comparison.
import * as fs from 'fs';

import { describeCascade, parseCascade, type CascadeMatrix } from '../cascade/config';
import { readJsonObject } from '../files';
import type { GenerateOptions } from '../options';
import { UsageError } from './args';
import type { Family } from './family';

export interface MethodSpec {
  name: string;
  options: GenerateOptions;
  /** Models whose passes count in SWI (the drafts used). */
  describe: string;
}

export function parseMethod(spec: string, family: Family, defaults: { k: number; draft: string; cascade: CascadeMatrix }): MethodSpec {
  const token = /\/token$/.exec(spec.trim());
  if (!token) return parseBaseMethod(spec, family, defaults);
  const base = parseBaseMethod(spec.trim().slice(0, token.index), family, defaults);
  if (base.name === 'ar') throw new UsageError(`bad method "${spec}": ar verifies no drafts (/token is for speculative methods)`);
  return {
    name: `${base.name}/token`,
    options: { ...base.options, blockVerification: false },
    describe: `${base.describe}, sampled drafts tested token by token`,
  };
}

function parseBaseMethod(spec: string, family: Family, defaults: { k: number; draft: string; cascade: CascadeMatrix }): MethodSpec {
  const m = /^(ar|mag|sd|csd|acsd)(?::([^@~]+))?(?:@(\d+))?(?:~([0-9.]+))?$/.exec(spec.trim());
  if (!m) throw new UsageError(`bad method "${spec}": expected ar, mag[@K], sd[:DRAFT][@K][~C], csd[:FILE] or acsd[:FILE], each but ar with an optional /token`);
  const [, kind, arg, kStr, confStr] = m;
  if (confStr !== undefined && kind !== 'sd') throw new UsageError(`bad method "${spec}": only sd takes a draft confidence (~C)`);
  const confidence = confStr === undefined ? 0 : Number(confStr);
  if (!(confidence >= 0 && confidence < 1)) throw new UsageError(`bad method "${spec}": the draft confidence C must be in [0, 1)`);
  const k = kStr ? Number(kStr) : defaults.k;
  if (k < 1 || k > 64) throw new UsageError(`bad method "${spec}": K must be in [1, 64]`);
  switch (kind) {
    case 'ar':
      if (arg || kStr) throw new UsageError(`bad method "${spec}": ar takes no draft or K`);
      return { name: 'ar', options: { method: 'ar' }, describe: 'target alone' };
    case 'mag':
      if (arg) throw new UsageError(`bad method "${spec}": mag takes no draft`);
      return { name: `mag@${k}`, options: { method: 'mag', k }, describe: `Max-Gram, k ${k}` };
    case 'sd': {
      const draft = arg ?? defaults.draft;
      const model = family.drafts[draft];
      if (!model) throw new UsageError(`bad method "${spec}": no draft model "${draft}" (have: ${Object.keys(family.drafts).join(', ') || 'none'})`);
      if (confidence > 0)
        return {
          name: `sd:${draft}@${k}~${confidence}`,
          options: { method: 'sd', draftModel: model, k, draftConfidence: confidence },
          describe: `draft ${draft}, k <= ${k}, stops below p ${confidence}`,
        };
      return { name: `sd:${draft}@${k}`, options: { method: 'sd', draftModel: model, k }, describe: `draft ${draft}, k ${k}` };
    }
    default: {
      if (kStr) throw new UsageError(`bad method "${spec}": ${kind} takes no K (the cascade file sets the band sizes)`);
      let cascade = defaults.cascade;
      if (arg) {
        if (!fs.existsSync(arg)) throw new UsageError(`bad method "${spec}": cascade file ${arg} not found`);
        const o = readJsonObject(arg);
        cascade = parseCascade(o.cascade ?? o);
      }
      for (const d of cascade.drafters)
        if (!family.drafts[d]) throw new UsageError(`bad method "${spec}": the cascade uses drafter "${d}", which is not loaded`);
      const adaptive = kind === 'acsd';
      return {
        name: `${kind}${arg ? `:${arg}` : ''}`,
        options: { method: 'csd', cascade, draftModels: family.drafts, adaptive },
        describe: adaptive ? `adaptive bands over ${describeCascade(cascade)}` : describeCascade(cascade),
      };
    }
  }
}
