// Draft vocabularies, A/B in one process: each speculative method runs with its drafts loaded
// twice, once proposing from every token and once from their draft vocabulary (the folders'
// draft-vocab.i32), prompt by prompt in turn with AR, so both see the same machine. Reports,
// per method and variant, tokens per target pass, ms per step and its drafting share, and
// wall-clock speedup over AR (prompt included), and checks every output against AR's.
//
//   node dist/bench/draft-vocab.js --dataset FILE [--limit 60] [--methods sd:small@7,sd:mid@6,csd] [--out FILE]
import * as fs from 'fs';
import * as path from 'path';

import { formatHelp, parseArgs, UsageError, type FlagSpec } from '../lib/cli/args';
import { readPrompts } from '../lib/cli/datasets';
import { promptTemplate } from '../lib/cli/defaults';
import { FALLBACK_CASCADE, familyCascade, familyDir, FAMILY_DRAFTS } from '../lib/cli/family';
import { parseMethod } from '../lib/cli/methods';
import { Model } from '../lib/model';
import type { GenerateOptions } from '../lib/options';
import type { CascadeMatrix } from '../lib/cascade/config';

const FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'GSM8K jsonl' },
  limit: { type: 'int', help: 'prompts', default: 60, min: 1 },
  'max-new-tokens': { type: 'int', help: 'tokens per prompt', default: 128, min: 1 },
  methods: { type: 'string', help: "the bench's method syntax (sd:DRAFT@K, csd = the tuned cascade, ...), comma-separated", default: 'sd:small@7,sd:mid@6,csd' },
  threads: { type: 'int', help: 'CPU threads', default: 1, min: 1, max: 256 },
  out: { type: 'string', help: 'JSON file for the results' },
  help: { type: 'boolean', help: 'show this help' },
};

interface Tally {
  tokens: number;
  wallMs: number;
  steps: number;
  stepMs: number;
  draftMs: number;
  passes: number;
  /** Prompt passes without a draft (one token each). */
  plain: number;
}

export interface DraftVocabRow {
  name: string;
  speedupVsAR: number;
  tokensPerPass: number;
  msPerStep: number;
  draftMsPerStep: number;
}

/**
 * Runs AR and each method (the bench's syntax, parseMethod: `sd:DRAFT@K`, `csd` with `cascade`,
 * ...) with the drafts of `all` and of `restricted` in turn, prompt by prompt; throws if any
 * output differs from AR's.
 */
export async function compareDraftVocabularies(
  target: Model,
  variants: { all: Record<string, Model>; restricted: Record<string, Model> },
  prompts: string[],
  methods: string[],
  options: { maxNewTokens: number; cascade?: CascadeMatrix; onPrompt?: (done: number) => void },
): Promise<DraftVocabRow[]> {
  const defaults = { k: 4, draft: 'small', cascade: options.cascade ?? FALLBACK_CASCADE };
  const optionsOf = (spec: string, drafts: Record<string, Model>): GenerateOptions => parseMethod(spec, { target, drafts }, defaults).options;
  const runs: Array<[string, GenerateOptions]> = [['ar', {}]];
  for (const spec of methods)
    for (const [variant, drafts] of Object.entries(variants)) runs.push([`${spec} ${variant}`, optionsOf(spec, drafts)]);
  const tally: Record<string, Tally> = {};
  for (const [name] of runs) tally[name] = { tokens: 0, wallMs: 0, steps: 0, stepMs: 0, draftMs: 0, passes: 0, plain: 0 };
  for (const [i, prompt] of prompts.entries()) {
    let reference: number[] = [];
    for (const [name, o] of runs) {
      const t0 = performance.now();
      const r = await target.generate(prompt, { ...o, maxNewTokens: options.maxNewTokens, temperature: 0 });
      const t = tally[name];
      t.wallMs += performance.now() - t0;
      if (name === 'ar') reference = r.tokens;
      else if (r.tokens.join() !== reference.join()) throw new Error(`${name}: output differs from AR's on prompt ${i}`);
      const timing = r.stats.timing as { steps: number; stepMs: number; draftMs: number } | undefined;
      t.tokens += r.tokens.length;
      // Verification passes (the prompt's too when it carried the first draft); a plain prompt
      // pass emitted one token.
      const verifications = Number(r.stats.verificationPasses);
      t.passes += verifications;
      t.plain += r.stats.targetForwards - verifications;
      if (timing) {
        t.steps += timing.steps;
        t.stepMs += timing.stepMs;
        t.draftMs += timing.draftMs;
      }
    }
    options.onPrompt?.(i + 1);
  }
  const ar = tally.ar;
  return Object.entries(tally).map(([name, t]) => ({
    name,
    speedupVsAR: +(t.tokens / t.wallMs / (ar.tokens / ar.wallMs)).toFixed(3),
    // Tokens per verification pass (AR: 1).
    tokensPerPass: +((t.tokens - t.plain) / Math.max(1, t.passes)).toFixed(3),
    msPerStep: +(t.stepMs / Math.max(1, t.steps)).toFixed(4),
    draftMsPerStep: +(t.draftMs / Math.max(1, t.steps)).toFixed(4),
  }));
}

async function main(): Promise<void> {
  const { flags } = parseArgs(process.argv.slice(2), FLAGS);
  if (flags.help || !flags.dataset) {
    process.stdout.write(formatHelp('node dist/bench/draft-vocab.js', FLAGS));
    if (!flags.help) throw new UsageError('--dataset is required');
    return;
  }
  const root = familyDir();
  const load = { dtype: 'bfloat16' as const, threads: flags.threads as number };
  const target = await Model.load(path.join(root, 'target'), load);
  const variants = { all: {} as Record<string, Model>, restricted: {} as Record<string, Model> };
  for (const name of FAMILY_DRAFTS) {
    variants.all[name] = await Model.load(path.join(root, name), { ...load, draftVocabulary: null });
    variants.restricted[name] = await Model.load(path.join(root, name), load);
  }
  const template = promptTemplate(target.dir);
  const prompts = readPrompts(flags.dataset as string, 'gsm8k', flags.limit as number).map((q) => (template ? template.replace('{prompt}', q) : q));
  const results = await compareDraftVocabularies(target, variants, prompts, (flags.methods as string).split(',').filter(Boolean), {
    maxNewTokens: flags['max-new-tokens'] as number,
    cascade: familyCascade(),
    onPrompt: (done) => process.stderr.write(`\rdraft-vocab: ${done}/${prompts.length}${done === prompts.length ? '\n' : ''}`),
  });
  for (const r of results)
    process.stdout.write(`${r.name.padEnd(24)} ${r.speedupVsAR.toFixed(3)}x  tok/pass ${r.tokensPerPass.toFixed(2)}  ms/step ${r.msPerStep.toFixed(3)}  draft ${r.draftMsPerStep.toFixed(3)}\n`);
  const sizes = Object.fromEntries(FAMILY_DRAFTS.map((n) => [n, variants.restricted[n].draftVocabularySize]));
  const out = { prompts: prompts.length, maxNewTokens: flags['max-new-tokens'], threads: flags.threads, dtype: 'bfloat16', draftVocabularySizes: sizes, date: new Date().toISOString(), results };
  if (flags.out) fs.writeFileSync(flags.out as string, JSON.stringify(out, null, 2) + '\n');
}

if (require.main === module)
  main().catch((e: Error) => {
    process.stderr.write(`draft-vocab: ${e.message}\n`);
    process.exit(e instanceof UsageError ? 2 : 1);
  });
