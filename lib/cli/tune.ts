// `cascade-spec tune`: searches the K matrix (band sizes) and lenience of the default family's
// cascade on a prompt set, by measured tokens per second (greedy, or sampled with
// --temperature), and writes the best configuration beside the models (models/cascade.json),
// where `generate` and `bench` find it. The best configuration depends on the machine (what a
// verification block costs against a decode) and on the mode (sampled drafts are accepted less
// often), so it is written as the entry for this machine's kernels and mode ("tuned" in
// cascade.json, see familyCascade); `generate` and `bench` take the entry that fits theirs.
//
// Search: the current configuration and a set of simple seeds (each drafter alone, Max-Gram
// alone, two-level cascades), then coordinate descent from the best of them. Each round tries
// every single change of one K entry by -1/+1 (keeping K upper triangular, row 0 non-empty)
// and each lenience in {1, 2, 3}; the best improvement is kept; it stops when nothing improves
// by more than the noise margin or the evaluation budget is spent. A configuration's score is
// its speedup over AR measured prompt by prompt, back to back (robust to a busy machine). The
// best few are then measured again together, interleaved prompt by prompt, and the best of
// that comparison is chosen.
import * as fs from 'fs';

import { describeCascade, matrixToReadable, validateMatrix, type CascadeMatrix } from '../cascade/config';
import type { Dtype } from '../native';
import { formatHelp, parseArgs, UsageError, type FlagSpec } from './args';
import { readPrompts, type DatasetFormat } from './datasets';
import { readOptionalJsonObject } from '../files';
import { cascadeFile, familyCascade, FALLBACK_CASCADE, loadFamily, tunedKey, withTunedEntry, type Family } from './family';
import { promptTemplate } from './defaults';

export const TUNE_FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'prompt file (GSM8K jsonl, MMLU csv, or jsonl with "prompt")' },
  format: { type: 'string', help: 'dataset format', default: 'gsm8k', choices: ['gsm8k', 'mmlu', 'jsonl'] },
  skip: { type: 'int', help: 'records to skip first (e.g. tune on a slice that bench does not use)', default: 0, min: 0 },
  limit: { type: 'int', help: 'prompts per evaluation', default: 6, min: 1 },
  'max-new-tokens': { type: 'int', help: 'tokens per prompt', default: 96, min: 8 },
  budget: { type: 'int', help: 'configurations to evaluate at most', default: 40, min: 1 },
  threads: { type: 'int', help: 'CPU threads', default: 1, min: 1, max: 256 },
  dtype: { type: 'string', help: 'compute dtype (bfloat16 runs the bf16 kernels)', default: 'bfloat16', choices: ['float32', 'bfloat16'] },
  margin: { type: 'number', help: 'relative improvement needed to move', default: 0.02, min: 0 },
  confirm: { type: 'int', help: 'best configurations measured again, together, before choosing', default: 3, min: 1 },
  'confirm-rounds': { type: 'int', help: 'passes over the prompts of that final comparison', default: 2, min: 1 },
  restart: { type: 'boolean', help: 'start from the fallback configuration instead of the saved one' },
  temperature: { type: 'number', help: 'tune for sampling at this temperature (0: greedy); written as the machine\'s "/sampling" entry', default: 0, min: 0 },
  'top-p': { type: 'number', help: 'nucleus sampling threshold when sampling', default: 1, min: 0, max: 1 },
  'top-k': { type: 'int', help: 'top-k filter when sampling (0: off)', default: 0, min: 0 },
  'min-p': { type: 'number', help: 'min-p filter when sampling (0: off)', default: 0, min: 0, max: 1 },
  seed: { type: 'int', help: 'sampling seed of the first prompt (prompt i uses seed + i)', default: 1, min: 0 },
  'dry-run': { type: 'boolean', help: 'do not write models/cascade.json' },
  help: { type: 'boolean', help: 'show this help' },
};

/**
 * The same cascade with the rows of levels nothing uses zeroed, and lenience 1 when no level
 * below the target reviews anything (it would change nothing): configurations that run the
 * same way get the same key, so tune measures each once.
 */
export function canonicalCascade(m: CascadeMatrix): CascadeMatrix {
  const n = m.K.length;
  const used = new Array<boolean>(n).fill(false);
  used[0] = true;
  // Level r (drafter r) is used when a used row gives column r - 1 a band; rows only point right.
  for (let r = 0; r < n; r++) if (used[r]) for (let c = 0; c < n - 1; c++) if (m.K[r][c] > 0) used[c + 1] = true;
  const K = m.K.map((row, r) => (used[r] ? [...row] : row.map(() => 0)));
  const reviews = K.some((row, r) => r > 0 && row.some((v) => v > 0));
  // The confidence stop applies to used levels that draft alone (an all-zero row).
  const alone = K.some((row, r) => r > 0 && used[r] && row.every((v) => v === 0));
  const { confidence, ...rest } = m;
  return { ...rest, K, lenience: reviews ? m.lenience : 1, ...(alone && confidence ? { confidence } : {}) };
}

const key = (m: CascadeMatrix) => {
  const c = canonicalCascade(m);
  return JSON.stringify([c.K, c.lenience, c.confidence ?? 0]);
};

/** Confidence stops tune tries (0: bands always filled). */
const CONFIDENCES = [0, 0.3, 0.5];

function neighbours(m: CascadeMatrix): CascadeMatrix[] {
  const out: CascadeMatrix[] = [];
  const n = m.K.length;
  for (let r = 0; r < n; r++)
    for (let c = r; c < n; c++)
      for (const d of [-1, 1]) {
        const v = m.K[r][c] + d;
        if (v < 0 || v > 12) continue;
        const K = m.K.map((row) => [...row]);
        K[r][c] = v;
        if (K[0].every((x) => x === 0)) continue;
        out.push({ ...m, K });
      }
  for (const l of [1, 2, 3]) if (l !== m.lenience) out.push({ ...m, lenience: l });
  for (const c of CONFIDENCES) if (c !== (m.confidence ?? 0)) out.push({ ...m, confidence: c });
  return out.map(canonicalCascade);
}

/**
 * Starting points besides the saved configuration: each drafter alone at k = 2..8 (its level
 * drafting by itself or reviewing Max-Gram), Max-Gram alone, and two-level cascades. Coordinate descent
 * from one point stays near it; these put the single-drafter optima in the search.
 */
export function seedConfigurations(drafters: string[]): CascadeMatrix[] {
  const n = drafters.length + 1;
  const zero = () => Array.from({ length: n }, () => new Array<number>(n).fill(0));
  const out: CascadeMatrix[] = [];
  const add = (fill: (K: number[][]) => void, confidence = 0) => {
    const K = zero();
    fill(K);
    out.push({ drafters: [...drafters], K, lenience: 1, ...(confidence ? { confidence } : {}) });
  };
  for (const k of [2, 3]) add((K) => (K[0][n - 1] = k));
  drafters.forEach((_, d) => {
    // A single draft's speed is flat over a wide range of k and shifts when verification gets
    // cheaper or a draft better: the seeds span it, so that the +-1 steps start near its optimum.
    for (const k of [2, 3, 4, 6, 8]) add((K) => (K[0][d] = k));
    add((K) => (K[0][d] = 8), 0.3); // longer drafts that stop where the drafter is unsure
    add((K) => {
      K[0][d] = 3;
      K[d + 1][n - 1] = 1;
    });
    add((K) => {
      K[0][d] = 2;
      K[0][n - 1] = 1;
      K[d + 1][n - 1] = 1;
    });
    if (d + 1 < drafters.length)
      add((K) => {
        K[0][d] = 3;
        K[d + 1][d + 1] = 2;
        K[d + 2][n - 1] = 1;
      });
  });
  return out;
}

/** Sampling settings of a tune (temperature > 0); prompt i of a pass draws with seed + i. */
export interface TuneSampling {
  temperature: number;
  topP: number;
  topK: number;
  /** Min-p (0: off; absent: off). */
  minP?: number;
  seed: number;
}

/**
 * Speedup over target AR on `prompts` of each of `cascades`, measured together: per prompt AR
 * runs once, then every cascade, in an order that rotates from prompt to prompt, so drift in
 * the machine's speed (other jobs) falls alike on AR and on every candidate, and candidates are
 * compared under the same conditions. `rounds` passes over the prompts are pooled. Greedy, each
 * cascade's tokens must equal AR's: a mismatch is a bug. Sampled, the rates are compared (the
 * tokens differ; that they follow the target's distribution is tested elsewhere).
 */
export async function measureSpeedups(
  family: Family,
  cascades: CascadeMatrix[],
  prompts: string[],
  maxNewTokens: number,
  rounds = 1,
  sampling?: TuneSampling,
): Promise<Array<{ speedup: number; tokensPerSecond: number; arTokensPerSecond: number }>> {
  const tokens = cascades.map(() => 0), ms = cascades.map(() => 0), arTokens = cascades.map(() => 0), arMs = cascades.map(() => 0);
  let turn = 0;
  for (let round = 0; round < rounds; round++)
    for (const [n, p] of prompts.entries()) {
      const mode = sampling ? { temperature: sampling.temperature, topP: sampling.topP, topK: sampling.topK, minP: sampling.minP ?? 0, seed: sampling.seed + n } : { temperature: 0 };
      const ar = await family.target.generate(p, { method: 'ar', maxNewTokens, ...mode });
      for (let j = 0; j < cascades.length; j++) {
        const i = (j + turn) % cascades.length;
        const r = await family.target.generate(p, { method: 'csd', cascade: cascades[i], draftModels: family.drafts, maxNewTokens, ...mode });
        if (!sampling && (r.tokens.length !== ar.tokens.length || r.tokens.some((t, n) => t !== ar.tokens[n])))
          throw new Error(`tune: ${describeCascade(cascades[i])} produced other tokens than AR on prompt ${JSON.stringify(p.slice(0, 60))}`);
        tokens[i] += r.tokens.length;
        ms[i] += r.stats.wallMs;
        arTokens[i] += ar.tokens.length;
        arMs[i] += ar.stats.wallMs;
      }
      turn++;
    }
  return cascades.map((_, i) => {
    const tokensPerSecond = (tokens[i] * 1000) / ms[i], arTokensPerSecond = (arTokens[i] * 1000) / arMs[i];
    return { speedup: tokensPerSecond / arTokensPerSecond, tokensPerSecond, arTokensPerSecond };
  });
}

/** measureSpeedups for one cascade: AR and the cascade back to back, prompt by prompt. */
export async function measureSpeedup(family: Family, cascade: CascadeMatrix, prompts: string[], maxNewTokens: number, sampling?: TuneSampling): Promise<{ speedup: number; tokensPerSecond: number; arTokensPerSecond: number }> {
  return (await measureSpeedups(family, [cascade], prompts, maxNewTokens, 1, sampling))[0];
}

export async function tuneCommand(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const { flags, positional } = parseArgs(argv, TUNE_FLAGS);
  if (flags.help) {
    out.write(formatHelp('Usage: cascade-spec tune --dataset FILE [options]', TUNE_FLAGS));
    return 0;
  }
  if (positional.length) throw new UsageError(`unexpected argument "${positional[0]}"`);
  if (!flags.dataset) throw new UsageError('--dataset FILE is required');
  const temperature = flags.temperature as number;
  const sampling: TuneSampling | undefined = temperature > 0 ? { temperature, topP: flags['top-p'] as number, topK: flags['top-k'] as number, minP: flags['min-p'] as number, seed: flags.seed as number } : undefined;
  if (sampling && !(sampling.topP > 0)) throw new UsageError('--top-p must be in (0, 1] when sampling');
  const family = await loadFamily({ dtype: flags.dtype as Dtype, threads: flags.threads as number });
  const template = promptTemplate(family.target.dir);
  const prompts = readPrompts(flags.dataset as string, flags.format as DatasetFormat, flags.limit as number, flags.skip as number).map((q) => (template ? template.replace('{prompt}', q) : q));
  const maxNew = flags['max-new-tokens'] as number;
  const machine = { kernels: family.target.kernels, sampling: sampling !== undefined };
  let best = canonicalCascade(validateMatrix(flags.restart ? FALLBACK_CASCADE : familyCascade(undefined, machine)));
  for (const d of best.drafters) if (!family.drafts[d]) throw new Error(`the cascade uses drafter "${d}", which the family lacks`);
  await family.target.generate(prompts[0], { maxNewTokens: 8 }); // warm-up
  const seen = new Map<string, Awaited<ReturnType<typeof measureSpeedup>>>();
  const candidates = new Map<string, CascadeMatrix>();
  const evaluate = async (m: CascadeMatrix): Promise<number> => {
    m = canonicalCascade(m);
    const k = key(m);
    if (!seen.has(k)) {
      candidates.set(k, m);
      seen.set(k, await measureSpeedup(family, m, prompts, maxNew, sampling));
      err.write(`tune: ${String(seen.size).padStart(3)} ${seen.get(k)!.speedup.toFixed(3)}x AR  ${describeCascade(m)}\n`);
    }
    return seen.get(k)!.speedup;
  };
  const budget = flags.budget as number;
  let bestSpeedup = await evaluate(best);
  for (const seed of seedConfigurations(best.drafters)) {
    if (seen.size >= budget) break;
    const v = await evaluate(seed);
    if (v > bestSpeedup) {
      best = canonicalCascade(seed);
      bestSpeedup = v;
    }
  }
  for (let improved = true; improved && seen.size < budget; ) {
    improved = false;
    let roundBest = best, roundSpeedup = bestSpeedup;
    for (const cand of neighbours(best)) {
      if (seen.size >= budget) break;
      const v = await evaluate(cand);
      if (v > roundSpeedup) {
        roundBest = cand;
        roundSpeedup = v;
      }
    }
    if (roundSpeedup > bestSpeedup * (1 + (flags.margin as number))) {
      best = roundBest;
      bestSpeedup = roundSpeedup;
      improved = true;
    }
  }
  // Measurements differ by a few per cent from run to run, as much as the best few
  // configurations differ: those are measured again, together, interleaved prompt by prompt
  // (measureSpeedups), and the best of that comparison is kept.
  const finalists = [...seen.entries()].sort((a, b) => b[1].speedup - a[1].speedup).slice(0, flags.confirm as number);
  let m = seen.get(key(best))!;
  if (finalists.length > 1) {
    const cands = finalists.map(([k]) => candidates.get(k)!);
    const again = await measureSpeedups(family, cands, prompts, maxNew, flags['confirm-rounds'] as number, sampling);
    let bestAt = 0;
    again.forEach((a, i) => {
      err.write(`tune: confirm ${a.speedup.toFixed(3)}x AR (first ${finalists[i][1].speedup.toFixed(3)}x)  ${describeCascade(cands[i])}\n`);
      if (a.speedup > again[bestAt].speedup) bestAt = i;
    });
    best = cands[bestAt];
    m = again[bestAt];
  }
  const entry = {
    cascade: { ...best, readable: matrixToReadable(best) },
    measured: {
      tokensPerSecond: m.tokensPerSecond, arTokensPerSecond: m.arTokensPerSecond, speedupVsAR: m.speedup, prompts: prompts.length,
      confirmRounds: finalists.length > 1 ? flags['confirm-rounds'] : 0, maxNewTokens: maxNew, threads: flags.threads, dtype: flags.dtype,
      kernels: family.target.kernels, ...(sampling ? { sampling } : {}), evaluated: seen.size, date: new Date().toISOString(),
    },
  };
  const entryKey = tunedKey(machine);
  if (!flags['dry-run']) fs.writeFileSync(cascadeFile(), JSON.stringify(withTunedEntry(readOptionalJsonObject(cascadeFile()), entryKey, entry), null, 2) + '\n');
  out.write(`best for ${entryKey}: ${describeCascade(best)}  ${m.speedup.toFixed(2)}x AR (${m.tokensPerSecond.toFixed(1)} vs ${m.arTokensPerSecond.toFixed(1)} tok/s)${flags['dry-run'] ? '' : `\nwrote ${cascadeFile()} ("tuned": "${entryKey}")`}\n`);
  return 0;
}
