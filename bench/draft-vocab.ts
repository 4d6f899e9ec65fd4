// Draft vocabularies, A/B in one process: each speculative method runs with its drafts loaded
// twice, once proposing from every token and once from their draft vocabulary (the folders'
// draft-vocab.i32), and once more per --compare-vocab file (another set, e.g. of another size
// from scripts/build-draft-vocab.ts), prompt by prompt in turn with AR, so all see the same
// machine. Reports,
// per method and variant, tokens per target pass, ms per step and its drafting share, and
// wall-clock speedup over AR (prompt included), and checks every output against AR's.
//
//   node dist/bench/draft-vocab.js --dataset FILE [--limit 60] [--methods sd:small@7,sd:mid@6,csd]
//        [--compare-vocab FILE[,FILE...]] [--out FILE]
import * as fs from 'fs';
import * as path from 'path';

import { runScript, scriptFlags, type FlagSpec } from '../lib/cli/args';
import { readPrompts } from '../lib/cli/datasets';
import { promptTemplate } from '../lib/cli/defaults';
import { familyCascade, familyDir, FAMILY_DRAFTS } from '../lib/cli/family';
import { readTokenIdSet } from '../lib/files';
import { Model } from '../lib/model';
import type { CascadeMatrix } from '../lib/cascade/config';
import { compareDraftVariants, type DraftVariantRow } from './compare-drafts';

const FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'GSM8K jsonl' },
  limit: { type: 'int', help: 'prompts', default: 60, min: 1 },
  'max-new-tokens': { type: 'int', help: 'tokens per prompt', default: 128, min: 1 },
  methods: { type: 'string', help: "the bench's method syntax (sd:DRAFT@K, csd = the tuned cascade, ...), comma-separated", default: 'sd:small@7,sd:mid@6,csd' },
  threads: { type: 'int', help: 'CPU threads', default: 1, min: 1, max: 256 },
  'compare-vocab': { type: 'string', help: 'other draft vocabularies (int32 id files) to run every draft with, comma-separated' },
  out: { type: 'string', help: 'JSON file for the results' },
  help: { type: 'boolean', help: 'show this help' },
};

export type DraftVocabRow = DraftVariantRow;

/** Per variant ("all", "restricted", and any others), the drafts by name. */
export type DraftVocabVariants = { all: Record<string, Model>; restricted: Record<string, Model> } & Record<string, Record<string, Model>>;

/** The drafts of `all` and of `restricted` in turn (greedy): see compareDraftVariants. */
export function compareDraftVocabularies(
  target: Model,
  variants: DraftVocabVariants,
  prompts: string[],
  methods: string[],
  options: { maxNewTokens: number; cascade?: CascadeMatrix; onPrompt?: (done: number) => void },
): Promise<DraftVariantRow[]> {
  return compareDraftVariants(target, variants, prompts, methods, options);
}

async function main(): Promise<void> {
  const flags = scriptFlags(process.argv.slice(2), FLAGS, 'node dist/bench/draft-vocab.js --dataset FILE', ['dataset']);
  if (!flags) return;
  const root = familyDir();
  const load = { dtype: 'bfloat16' as const, threads: flags.threads as number };
  const target = await Model.load(path.join(root, 'target'), { ...load, promptCache: false }); // variants run the same prompts back to back
  const variants: DraftVocabVariants = { all: {}, restricted: {} };
  const others = ((flags['compare-vocab'] as string | undefined) ?? '').split(',').filter(Boolean);
  // Read before the drafts load, so a bad file fails at once (the message names it).
  const otherSets = others.map((file) => [`vocab:${path.basename(file)}`, readTokenIdSet(file, target.config.vocabSize)] as const);
  for (const name of FAMILY_DRAFTS) {
    variants.all[name] = await Model.load(path.join(root, name), { ...load, draftVocabulary: null });
    variants.restricted[name] = await Model.load(path.join(root, name), load);
    for (const [label, ids] of otherSets) (variants[label] ??= {})[name] = await Model.load(path.join(root, name), { ...load, draftVocabulary: ids });
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
  const out = { prompts: prompts.length, maxNewTokens: flags['max-new-tokens'], threads: flags.threads, dtype: 'bfloat16', draftVocabularySizes: sizes, compared: others, date: new Date().toISOString(), results };
  if (flags.out) fs.writeFileSync(flags.out as string, JSON.stringify(out, null, 2) + '\n');
}

if (require.main === module) runScript('draft-vocab', main);
