// What the prompt cache (LoadOptions.promptCache) saves on a second turn. For each pair of
// GSM8K questions: turn 1 asks the first in the family's template; turn 2's prompt is turn 1's
// prompt, its answer and the second question (a chat that goes on). Turn 2 runs with the cache
// (after turn 1, so the target's cache holds turn 1) and without it, on the same model instance
// (two instances of the target would compete for the L3), the order alternating from pair to
// pair; both must return the same tokens.
//
//   node dist/bench/prompt-cache.js --dataset ../shared/data/gsm8k/test.jsonl --limit 40 --out bench/results/prompt-cache-avx2.json
import { runScript, scriptFlags, type FlagSpec } from '../lib/cli/args';
import { readPrompts } from '../lib/cli/datasets';
import { promptTemplate } from '../lib/cli/defaults';
import { familyCascadeEntry, loadFamily } from '../lib/cli/family';
import { ProgressBar } from '../lib/cli/progress';
import { writeJsonFile } from '../lib/files';
import type { GenerateOptions } from '../lib/options';

const FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'GSM8K jsonl (questions are paired in order)' },
  limit: { type: 'int', help: 'questions (pairs: limit / 2)', default: 40, min: 2 },
  'max-new-tokens': { type: 'int', help: 'tokens per turn', default: 64, min: 1 },
  methods: { type: 'string', help: 'ar and/or csd (the family cascade tuned for this machine)', default: 'ar,csd' },
  out: { type: 'string', help: 'write the JSON result here' },
  help: { type: 'boolean', help: 'show this help' },
};

async function main(): Promise<void> {
  const flags = scriptFlags(process.argv.slice(2), FLAGS, 'node dist/bench/prompt-cache.js --dataset FILE', ['dataset']);
  if (!flags) return;
  const methods = (flags.methods as string).split(',').filter(Boolean);
  for (const m of methods) if (m !== 'ar' && m !== 'csd') throw new Error(`--methods: ${m} is neither ar nor csd`);
  const family = await loadFamily({ dtype: 'bfloat16', threads: 1 });
  const target = family.target;
  const template = promptTemplate(target.dir) ?? '{prompt}';
  const questions = readPrompts(flags.dataset as string, 'gsm8k', flags.limit as number);
  const maxNewTokens = flags['max-new-tokens'] as number;
  const cascade = familyCascadeEntry(undefined, { kernels: target.kernels, sampling: false }).cascade;
  const pairs = Math.floor(questions.length / 2);
  const progress = new ProgressBar(pairs * methods.length, 'prompt-cache');
  const results: Record<string, unknown> = {};
  for (const method of methods) {
    const options: GenerateOptions = method === 'csd' ? { method: 'csd', cascade, draftModels: family.drafts, maxNewTokens } : { maxNewTokens };
    const sum = { skipped: 0, promptTokens: 0, reused: 0, cachedPromptMs: 0, freshPromptMs: 0, cachedWallMs: 0, freshWallMs: 0 };
    for (let i = 0; i < pairs; i++) {
      const first = template.replace('{prompt}', questions[2 * i]);
      target.promptCache = false;
      const answer = (await target.generate(first, options)).text;
      const second = `${first}${answer}\n\n${template.replace('{prompt}', questions[2 * i + 1])}`;
      // The default family's context is 256 tokens: a pair whose second turn leaves fewer than
      // 16 tokens to generate is skipped (and counted).
      if (target.tokenizer.encode(second).length > target.contextLength - 16) {
        sum.skipped++;
        continue;
      }
      const runCached = async () => {
        target.promptCache = true;
        await target.generate(first, options); // turn 1 fills the cache
        return target.generate(second, options);
      };
      const runFresh = async () => {
        target.promptCache = false;
        return target.generate(second, options);
      };
      let cached, fresh;
      if (i % 2 === 0) {
        cached = await runCached();
        fresh = await runFresh();
      } else {
        fresh = await runFresh();
        cached = await runCached();
      }
      if (cached.tokens.join() !== fresh.tokens.join()) throw new Error(`pair ${i}: the cached turn returned other tokens than the fresh one`);
      sum.promptTokens += cached.promptTokens.length;
      sum.reused += Number(cached.stats.cachedPromptTokens);
      sum.cachedPromptMs += cached.stats.promptMs;
      sum.freshPromptMs += fresh.stats.promptMs;
      sum.cachedWallMs += cached.stats.wallMs;
      sum.freshWallMs += fresh.stats.wallMs;
      progress.update(methods.indexOf(method) * pairs + i + 1);
    }
    const measured = pairs - sum.skipped;
    results[method] = {
      pairs: measured,
      skippedPairs: sum.skipped,
      meanTurn2PromptTokens: +(sum.promptTokens / measured).toFixed(1),
      meanReusedTokens: +(sum.reused / measured).toFixed(1),
      turn2PromptMs: { cached: +(sum.cachedPromptMs / measured).toFixed(2), fresh: +(sum.freshPromptMs / measured).toFixed(2) },
      turn2WallMs: { cached: +(sum.cachedWallMs / measured).toFixed(2), fresh: +(sum.freshWallMs / measured).toFixed(2) },
      promptSpeedup: +(sum.freshPromptMs / sum.cachedPromptMs).toFixed(2),
      wallSpeedup: +(sum.freshWallMs / sum.cachedWallMs).toFixed(3),
    };
  }
  const result = { command: process.argv.slice(2).join(' '), threads: 1, dtype: 'bfloat16', kernels: target.kernels, maxNewTokens, date: new Date().toISOString(), methods: results };
  if (flags.out) writeJsonFile(flags.out as string, result);
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}

if (require.main === module) runScript('prompt-cache', main);
