// How hot should a draft model draw its proposals when the generation samples?
//
// Speculative sampling accepts a proposal drawn from q at the target's p with probability
// sum_x min(p(x), q(x)) (the overlap of the two distributions) at each position. A draft that
// proposes from its own distribution at the generation's settings is exact, but a draft
// distilled on its target's greedy tokens is more confident than the target, so its q piles
// onto the mode and the overlap is smaller than it could be. Drawing at the generation's
// temperature times a scale (LoadOptions.draftTemperatureScale) is exact for any scale; this
// measures the overlap per scale along the target's own sampled continuations:
//   - each prompt is continued by the target under each sampling setting (seeded);
//   - at every generated position, p = the target's processed distribution there and q = the
//     draft's at temperature x scale (same top-k / top-p, restricted to the draft's vocabulary,
//     as its drafts are), both computed by the native sampler;
//   - the mean overlap per draft, setting and scale, and the scale with the best mean over the
//     settings (written into each draft folder's cascade-spec.json with --write).
//
//   node dist/bench/draft-temperature.js --dataset ../shared/data/gsm8k/train.jsonl --limit 80 --out bench/results/draft-temperature.json --write
//
// With --compare METHODS it measures generation instead: AR and each method with the drafts
// loaded at each of --scales, prompt by prompt in turn (compare-drafts.ts), per setting:
//
//   node dist/bench/draft-temperature.js --dataset ../shared/data/gsm8k/test.jsonl --limit 100 --compare sd:small@7,csd --scales 1,1.6 --rounds 2 --out FILE
import * as path from 'path';

import { runScript, scriptFlags, type FlagSpec } from '../lib/cli/args';
import { readPrompts } from '../lib/cli/datasets';
import { promptTemplate } from '../lib/cli/defaults';
import { ProgressBar } from '../lib/cli/progress';
import { readOptionalJsonObject, writeJsonFile } from '../lib/files';
import { Model, SETTINGS_FILE } from '../lib/model';
import { familyCascade, familyDir, FAMILY_DRAFTS, loadFamily, type Family } from '../lib/cli/family';
import { loadNative, type NativeSampling } from '../lib/native';
import { compareDraftVariants, type DraftVariantRow } from './compare-drafts';

const FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'GSM8K jsonl (use train: the scale is chosen on it)' },
  limit: { type: 'int', help: 'prompts', default: 60, min: 1 },
  'max-new-tokens': { type: 'int', help: 'tokens per continuation', default: 128, min: 1 },
  scales: { type: 'string', help: 'draft temperature scales to compare (comma-separated)', default: '1,1.2,1.4,1.6,1.8,2' },
  settings: { type: 'string', help: 'sampling settings T/topK/topP (comma-separated)', default: '0.8/0/0.95,1/0/1,0.6/40/1' },
  seed: { type: 'int', help: 'seed of the first prompt\'s continuation (prompt i: seed + i)', default: 1, min: 0 },
  out: { type: 'string', help: 'JSON file for the results' },
  write: { type: 'boolean', help: "write each draft's best scale into its folder's cascade-spec.json" },
  compare: { type: 'string', help: "time generation instead: these methods (the bench's syntax) with the drafts at each scale" },
  rounds: { type: 'int', help: 'with --compare: passes over the prompts (round r seeds prompt i with seed + r * limit + i)', default: 1, min: 1 },
  help: { type: 'boolean', help: 'show this help' },
};

export interface OverlapOptions {
  settings: NativeSampling[];
  scales: number[];
  maxNewTokens: number;
  seed?: number;
  progress?: ProgressBar;
}

export interface OverlapResult {
  scales: number[];
  /** overlap[draft][setting label][j]: mean sum_x min(p, q) over the positions at scales[j]. */
  overlap: Record<string, Record<string, number[]>>;
  /** Per draft: the overlap at each scale averaged over the settings. */
  meanOverSettings: Record<string, number[]>;
  positions: Record<string, number>;
  /** Per draft: the scale with the highest mean over the settings. */
  best: Record<string, number>;
}

export const settingLabel = (s: NativeSampling): string => `T${s.temperature}/k${s.topK}/p${s.topP}`;

/** The native processed distribution of a logits row, its tokens outside `allowed` removed. */
function processed(logits: Float32Array, sampling: NativeSampling, allowed: Int32Array | null): Float32Array {
  let row = logits;
  if (allowed) {
    row = new Float32Array(logits.length).fill(-Infinity);
    for (const t of allowed) row[t] = logits[t];
  }
  return loadNative().kernelTest.processedProbs(row, sampling);
}

/** Logits rows [positions x V] of `model` over `tokens` (all but the last fed). */
function logitRows(model: Model, tokens: number[]): Float32Array {
  const seq = model.createSequence({ contextLength: tokens.length });
  try {
    return seq.forwardSync(tokens.slice(0, -1), { allLogits: true });
  } finally {
    seq.dispose();
  }
}

export async function measureDraftOverlap(family: Family, prompts: string[], options: OverlapOptions): Promise<OverlapResult> {
  const { target, drafts } = family;
  const V = target.config.vocabSize;
  const names = Object.keys(drafts);
  const sums: Record<string, Record<string, number[]>> = {};
  const positions: Record<string, number> = {};
  for (const s of options.settings) {
    if (!(s.temperature > 0)) throw new RangeError(`sampling setting ${settingLabel(s)}: the temperature must be > 0`);
    sums[settingLabel(s)] = Object.fromEntries(names.map((n) => [n, options.scales.map(() => 0)]));
    positions[settingLabel(s)] = 0;
  }
  for (const [i, text] of prompts.entries()) {
    for (const s of options.settings) {
      const label = settingLabel(s);
      const r = await target.generate(text, { method: 'ar', maxNewTokens: options.maxNewTokens, ...s, seed: (options.seed ?? 1) + i, stopOnEos: true });
      // Positions whose context fits every model: row j predicts generated token j.
      const all = [...r.promptTokens, ...r.tokens];
      const fit = Math.min(all.length, target.config.maxPositionEmbeddings, ...names.map((n) => drafts[n].config.maxPositionEmbeddings));
      const first = r.promptTokens.length - 1;
      if (fit - 1 <= first) continue;
      const tokens = all.slice(0, fit);
      const pRows = logitRows(target, tokens);
      const qRows = Object.fromEntries(names.map((n) => [n, logitRows(drafts[n], tokens)]));
      for (let row = first; row < fit - 1; row++) {
        const p = processed(pRows.subarray(row * V, (row + 1) * V), s, null);
        for (const n of names) {
          const allowed = drafts[n].draftVocabulary;
          options.scales.forEach((scale, j) => {
            const q = processed(qRows[n].subarray(row * V, (row + 1) * V), { ...s, temperature: s.temperature * scale }, allowed);
            let overlap = 0;
            for (let v = 0; v < V; v++) overlap += Math.min(p[v], q[v]);
            sums[label][n][j] += overlap;
          });
        }
        positions[label]++;
      }
    }
    options.progress?.update(i + 1);
  }
  const overlap: OverlapResult['overlap'] = {};
  const meanOverSettings: Record<string, number[]> = {};
  const best: Record<string, number> = {};
  for (const n of names) {
    overlap[n] = {};
    const mean = options.scales.map(() => 0);
    for (const s of options.settings) {
      const label = settingLabel(s);
      overlap[n][label] = options.scales.map((_, j) => {
        const m = positions[label] ? sums[label][n][j] / positions[label] : 0;
        mean[j] += m / options.settings.length;
        return +m.toFixed(4);
      });
    }
    meanOverSettings[n] = mean.map((m) => +m.toFixed(4));
    best[n] = options.scales[mean.indexOf(Math.max(...mean))];
  }
  return { scales: [...options.scales], overlap, meanOverSettings, positions, best };
}

function parseList(flag: string, text: string): number[] {
  const out = text.split(',').map((s) => Number(s));
  if (out.length === 0 || out.some((v) => !Number.isFinite(v) || v <= 0 || v > 10)) throw new Error(`--${flag}: ${text} is not a comma-separated list of numbers in (0, 10]`);
  return out;
}

export function parseSettings(text: string): NativeSampling[] {
  return text.split(',').map((s) => {
    const [t, k, p] = s.split('/').map(Number);
    if (!(t > 0 && Number.isFinite(t)) || !Number.isInteger(k) || k < 0 || !(p > 0 && p <= 1))
      throw new Error(`--settings: ${s} is not T/topK/topP (T > 0, topK an integer >= 0, topP in (0, 1])`);
    return { temperature: t, topK: k, topP: p };
  });
}

/** Sets draftTemperatureScale in a model folder's settings file, keeping its other keys. */
export function writeScale(dir: string, scale: number): void {
  const file = path.join(dir, SETTINGS_FILE);
  const settings = readOptionalJsonObject(file) ?? {};
  writeJsonFile(file, { ...settings, draftTemperatureScale: scale });
}

/**
 * Generation with the family's drafts loaded at each scale (variants "x{scale}"), per setting,
 * interleaved prompt by prompt (compareDraftVariants), `rounds` passes with fresh seeds.
 */
async function compareScales(
  prompts: string[],
  methods: string[],
  scales: number[],
  settings: NativeSampling[],
  options: { maxNewTokens: number; rounds: number; seed: number },
): Promise<Record<string, DraftVariantRow[]>> {
  const root = familyDir();
  const load = { dtype: 'bfloat16' as const, threads: 1 };
  const target = await Model.load(path.join(root, 'target'), { ...load, promptCache: false }); // variants run the same prompts back to back
  const variants: Record<string, Record<string, Model>> = {};
  for (const scale of scales) {
    variants[`x${scale}`] = {};
    for (const name of FAMILY_DRAFTS) variants[`x${scale}`][name] = await Model.load(path.join(root, name), { ...load, draftTemperatureScale: scale });
  }
  const out: Record<string, DraftVariantRow[]> = {};
  for (const s of settings) {
    const rounds: DraftVariantRow[][] = [];
    for (let r = 0; r < options.rounds; r++)
      rounds.push(
        await compareDraftVariants(target, variants, prompts, methods, {
          maxNewTokens: options.maxNewTokens,
          cascade: familyCascade(),
          sampling: s,
          seed: options.seed + r * prompts.length,
          onPrompt: (done) => process.stderr.write(`\r${settingLabel(s)} round ${r + 1}: ${done}/${prompts.length}${done === prompts.length ? '\n' : ''}`),
        }),
      );
    // Rounds pooled as the mean of their figures (each round's speedup is against its own AR).
    out[settingLabel(s)] = rounds[0].map((row, j) => {
      const mean = (f: (x: DraftVariantRow) => number) => +(rounds.reduce((a, rs) => a + f(rs[j]), 0) / rounds.length).toFixed(4);
      return { name: row.name, speedupVsAR: mean((x) => x.speedupVsAR), tokensPerPass: mean((x) => x.tokensPerPass), msPerStep: mean((x) => x.msPerStep), draftMsPerStep: mean((x) => x.draftMsPerStep) };
    });
  }
  return out;
}

async function main(): Promise<void> {
  const flags = scriptFlags(process.argv.slice(2), FLAGS, 'node dist/bench/draft-temperature.js --dataset FILE', ['dataset']);
  if (!flags) return;
  const scales = parseList('scales', flags.scales as string);
  const settings = parseSettings(flags.settings as string);
  if (flags.compare) {
    const template = promptTemplate(path.join(familyDir(), 'target'));
    const prompts = readPrompts(flags.dataset as string, 'gsm8k', flags.limit as number).map((q) => (template ? template.replace('{prompt}', q) : q));
    const methods = (flags.compare as string).split(',').filter(Boolean);
    const results = await compareScales(prompts, methods, scales, settings, { maxNewTokens: flags['max-new-tokens'] as number, rounds: flags.rounds as number, seed: flags.seed as number });
    for (const [label, rows] of Object.entries(results)) {
      process.stdout.write(`${label}\n`);
      for (const r of rows)
        process.stdout.write(`  ${r.name.padEnd(20)} ${r.speedupVsAR.toFixed(3)}x  tok/pass ${r.tokensPerPass.toFixed(2)}  ms/step ${r.msPerStep.toFixed(3)}  draft ${r.draftMsPerStep.toFixed(3)}\n`);
    }
    const json = { prompts: prompts.length, dataset: path.basename(flags.dataset as string), rounds: flags.rounds, maxNewTokens: flags['max-new-tokens'], threads: 1, dtype: 'bfloat16', date: new Date().toISOString(), results };
    if (flags.out) writeJsonFile(flags.out as string, json);
    return;
  }
  // The drafts with their draft vocabularies; the scales compared are applied here, whatever
  // the folders' settings say.
  const family = await loadFamily({ dtype: 'bfloat16', threads: 1 });
  const template = promptTemplate(family.target.dir);
  const prompts = readPrompts(flags.dataset as string, 'gsm8k', flags.limit as number).map((q) => (template ? template.replace('{prompt}', q) : q));
  const result = await measureDraftOverlap(family, prompts, {
    settings,
    scales,
    maxNewTokens: flags['max-new-tokens'] as number,
    seed: flags.seed as number,
    progress: new ProgressBar(prompts.length, 'draft temperature'),
  });
  const report = { prompts: prompts.length, dataset: path.basename(flags.dataset as string), maxNewTokens: flags['max-new-tokens'], date: new Date().toISOString(), ...result };
  if (flags.out) writeJsonFile(flags.out as string, report);
  if (flags.write) for (const [n, scale] of Object.entries(result.best)) writeScale(family.drafts[n].dir, scale);
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
}

if (require.main === module) runScript('draft-temperature', main);
