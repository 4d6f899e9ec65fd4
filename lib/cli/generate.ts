// `cascade-spec generate`: one prompt, one generation, text or one JSON object out.
import * as fs from 'fs';
import * as path from 'path';

import { Model } from '../model';
import type { Dtype } from '../native';
import type { Method } from '../options';
import { formatHelp, parseArgs, UsageError, type FlagSpec } from './args';
import { defaultDraftDir, defaultModelDir, promptTemplate } from './defaults';
import { familyCascadeEntry, loadFamily } from './family';
import { describeCascade, parseCascade, type CascadeMatrix } from '../cascade/config';
import { readJsonObject } from '../files';

export const GENERATE_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'Hugging Face model folder (default: the embedded default family\'s target)' },
  prompt: { type: 'string', help: 'prompt text (or give it as the positional argument)' },
  'max-new-tokens': { type: 'int', help: 'tokens to generate at most', default: 128, min: 0 },
  temperature: { type: 'number', help: 'sampling temperature; 0 = greedy', default: 0, min: 0 },
  'top-k': { type: 'int', help: 'keep the k most likely tokens; 0 = off', default: 0, min: 0 },
  'top-p': { type: 'number', help: 'nucleus sampling mass; 1 = off', default: 1, min: 1e-9, max: 1 },
  'min-p': { type: 'number', help: 'keep tokens at least this fraction as likely as the most likely one; 0 = off', default: 0, min: 0, max: 1 },
  seed: { type: 'int', help: 'sampler seed (default: random, printed in stats)', min: 0 },
  stop: { type: 'list', help: 'stop string (repeatable)' },
  threads: { type: 'int', help: 'CPU threads', default: 1, min: 1, max: 256 },
  dtype: { type: 'string', help: 'compute dtype: float32 | bfloat16 | float16 (default: bfloat16 on the default family, whose weights are bf16 and run on the bf16 kernels; float32 with --model)', choices: ['float32', 'bfloat16', 'float16'] },
  method: { type: 'string', help: 'decoding method: ar (autoregressive) | mag (Max-Gram drafts) | sd (draft model) | csd (cascade). Default: csd on the default family, else ar', choices: ['ar', 'mag', 'sd', 'csd'] },
  cascade: { type: 'string', help: 'cascade for --method csd: a JSON file or inline JSON (K matrix or readable form); default: the family\'s models/cascade.json, its entry tuned for this machine\'s kernels and mode where there is one' },
  adaptive: { type: 'boolean', help: 'with csd: size the target\'s bands online from measured acceptance and costs' },
  drafts: { type: 'string', help: 'drafter folders for --method csd as name=DIR,name=DIR (default: the family\'s mid and small)' },
  draft: { type: 'string', help: 'draft model folder for --method sd (default: the default family\'s mid draft)' },
  k: { type: 'int', help: 'draft tokens per verification pass', default: 4, min: 1, max: 64 },
  'draft-confidence': { type: 'number', help: "with sd: stop a draft where the draft's most likely token has probability below this (0 = off)", default: 0, min: 0, max: 0.999999 },
  'draft-temperature-scale': { type: 'number', help: "when sampling, drafts draw at the temperature times this (default: each draft folder's cascade-spec.json, else 1)", min: 1e-9, max: 10 },
  'full-draft-vocabulary': { type: 'boolean', help: 'drafts propose from every token, ignoring their folders\' draft-vocab.i32' },
  'token-verification': { type: 'boolean', help: 'when sampling with drafts: test them token by token instead of jointly (block verification, the default); the same output distribution' },
  raw: { type: 'boolean', help: 'use the prompt as given, without the model\'s prompt template' },
  json: { type: 'boolean', help: 'print one JSON object: text, tokens, promptTokens, finishReason, stats' },
  help: { type: 'boolean', help: 'show this help' },
};

function parseDrafts(spec: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0 || eq === part.length - 1) throw new UsageError(`--drafts: expected name=DIR, got "${part}"`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

function readCascadeArg(spec: string): CascadeMatrix {
  try {
    const o = spec.trim().startsWith('{') ? (JSON.parse(spec) as Record<string, unknown>) : readJsonObject(spec);
    return parseCascade(o.cascade ?? o);
  } catch (e) {
    throw new UsageError(`--cascade: ${(e as Error).message}`);
  }
}

export const GENERATE_USAGE = 'Usage: cascade-spec generate [PROMPT] [--model DIR] [--prompt TEXT] [options]';

export async function generateCommand(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<void> {
  const { flags, positional } = parseArgs(argv, GENERATE_FLAGS);
  if (flags.help) {
    out.write(formatHelp(GENERATE_USAGE, GENERATE_FLAGS));
    return;
  }
  if (positional.length > 1) throw new UsageError(`expected at most one positional prompt, got ${positional.length}`);
  if (positional.length && flags.prompt !== undefined) throw new UsageError('give the prompt either positionally or with --prompt, not both');
  const promptText = (flags.prompt as string | undefined) ?? positional[0];
  if (promptText === undefined) throw new UsageError('no prompt: pass one as an argument or with --prompt');
  const dir = (flags.model as string | undefined) ?? defaultModelDir();
  if (!fs.existsSync(dir) && flags.model === undefined)
    throw new Error(`no default model family is installed (${path.resolve(dir)} is missing); pass --model DIR`);

  flags.dtype = (flags.dtype as Dtype | undefined) ?? (flags.model === undefined ? 'bfloat16' : 'float32');
  const model = await Model.load(dir, { dtype: flags.dtype as Dtype, threads: flags.threads as number });
  const onFamily = flags.model === undefined;
  const method = (flags.method as Method | undefined) ?? (onFamily ? 'csd' : 'ar');
  if (flags.draft !== undefined && method !== 'sd') throw new UsageError('--draft is only used with --method sd');
  if ((flags.cascade !== undefined || flags.drafts !== undefined || flags.adaptive) && method !== 'csd') throw new UsageError('--cascade, --drafts and --adaptive are only used with --method csd');
  let cascade: CascadeMatrix | undefined;
  let cascadeSource = '';
  let draftModels: Record<string, Model> | undefined;
  if (method === 'csd') {
    const dirs = flags.drafts !== undefined ? parseDrafts(flags.drafts as string) : undefined;
    if (!onFamily && !dirs) throw new UsageError('--method csd with --model needs --drafts name=DIR,... and --cascade');
    if (flags.cascade !== undefined) cascade = readCascadeArg(flags.cascade as string);
    else {
      // The family's configuration tuned for this machine's kernels and mode, where tune wrote one.
      const entry = familyCascadeEntry(undefined, { kernels: model.kernels, sampling: (flags.temperature as number) > 0 });
      cascade = entry.cascade;
      cascadeSource = entry.key ? `tuned for ${entry.key}` : 'models/cascade.json';
    }
    const family = await loadFamily({
      dtype: flags.dtype as Dtype,
      threads: flags.threads as number,
      target: model,
      drafts: dirs,
      fullDraftVocabulary: flags['full-draft-vocabulary'] as boolean,
      draftTemperatureScale: flags['draft-temperature-scale'] as number | undefined,
    });
    draftModels = family.drafts;
  }
  let draftModel: Model | undefined;
  if (method === 'sd') {
    const draftDir = (flags.draft as string | undefined) ?? defaultDraftDir();
    if (flags.draft === undefined && !fs.existsSync(draftDir))
      throw new Error(`--method sd needs --draft DIR (the default draft ${path.resolve(draftDir)} is missing)`);
    draftModel = await Model.load(draftDir, {
      dtype: flags.dtype as Dtype,
      threads: flags.threads as number,
      draftVocabulary: flags['full-draft-vocabulary'] ? null : undefined,
      draftTemperatureScale: flags['draft-temperature-scale'] as number | undefined,
    });
  }
  const template = flags.raw ? undefined : promptTemplate(model.dir);
  const prompt = template ? template.replace('{prompt}', promptText) : promptText;
  const options = {
    maxNewTokens: flags['max-new-tokens'] as number,
    temperature: flags.temperature as number,
    topK: flags['top-k'] as number,
    topP: flags['top-p'] as number,
    minP: flags['min-p'] as number,
    seed: flags.seed as number | undefined,
    stop: (flags.stop as string[] | undefined) ?? [],
    method,
    draftModel,
    k: flags.k as number,
    draftConfidence: flags['draft-confidence'] as number,
    cascade,
    draftModels,
    adaptive: flags.adaptive === true,
    blockVerification: flags['token-verification'] !== true,
  };
  if (flags.json) {
    const result = await model.generate(prompt, options);
    out.write(JSON.stringify({ ...result, model: { dir: model.dir, params: model.numParams, dtype: model.dtype, threads: model.threads } }) + '\n');
    return;
  }
  // "csd target[small:3], tuned for avx2": which cascade ran, and from where when it was the default.
  const describeMethod = () =>
    method === 'csd' ? `csd${flags.adaptive ? ' adaptive' : ''} ${describeCascade(cascade!)}${cascadeSource ? `, ${cascadeSource}` : ''}` : `${method}, k ${String(flags.k)}`;
  const stream = model.stream(prompt, options);
  for await (const chunk of stream) out.write(chunk);
  const r = await stream.result;
  out.write('\n');
  err.write(
    `[${r.tokens.length} tokens, ${r.finishReason}; ${r.stats.wallMs.toFixed(1)} ms, ${r.stats.tokensPerSecond.toFixed(1)} tok/s, ` +
      `${r.stats.targetForwards} target passes${method !== 'ar' ? ` (${describeMethod()}, ${Number(r.stats.meanAcceptedLength).toFixed(2)} tokens/pass)` : ''}, ${model.dtype}, ${model.threads} thread(s), seed ${r.stats.seed}]\n`,
  );
}
