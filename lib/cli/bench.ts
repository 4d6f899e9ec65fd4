// `cascade-spec bench`: every method on the same prompts in one process; greedy outputs must
// equal AR's token for token (a mismatch fails the command); a table, JSON and an SVG chart.
// With --temperature > 0 the methods sample (the same seed per prompt for every method): their
// outputs follow the target's distribution but are not AR's tokens, so the token check is off
// (identicalToAR null); sampling's exactness is tested distributionally (test/*sampling*).
import * as fs from 'fs';
import * as path from 'path';

import { describeCascade } from '../cascade/config';
import type { GenerationResult } from '../generate';
import type { Dtype } from '../native';
import { formatHelp, parseArgs, UsageError, type FlagSpec } from './args';
import { readPrompts, type DatasetFormat } from './datasets';
import { familyCascadeEntry, loadFamily, type Family } from './family';
import { parseMethod, type MethodSpec } from './methods';
import { promptTemplate } from './defaults';
import { ProgressBar } from './progress';
import { barChart } from './svg';

export const BENCH_FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'prompt file (GSM8K jsonl, MMLU csv, or jsonl with "prompt")' },
  format: { type: 'string', help: 'dataset format', default: 'gsm8k', choices: ['gsm8k', 'mmlu', 'jsonl'] },
  skip: { type: 'int', help: 'records to skip first (e.g. tune on a slice that bench does not use)', default: 0, min: 0 },
  limit: { type: 'int', help: 'prompts to use', default: 20, min: 1 },
  methods: { type: 'string', help: 'comma-separated: ar, mag[@K], sd[:DRAFT][@K][~C] (C: stop below draft probability C), csd[:FILE], acsd[:FILE] (adaptive bands); /token after a speculative method: sampled drafts tested token by token, not jointly', default: 'ar,mag,sd,csd,acsd' },
  'max-new-tokens': { type: 'int', help: 'tokens per prompt', default: 128, min: 1 },
  threads: { type: 'int', help: 'CPU threads', default: 1, min: 1, max: 256 },
  dtype: { type: 'string', help: 'compute dtype (bfloat16 runs the bf16 kernels)', default: 'bfloat16', choices: ['float32', 'bfloat16'] },
  k: { type: 'int', help: 'default draft length for mag / sd', default: 4, min: 1, max: 64 },
  draft: { type: 'string', help: 'default draft name for sd', default: 'mid' },
  model: { type: 'string', help: 'target model folder (default: the embedded family)' },
  'draft-temperature-scale': { type: 'number', help: "when sampling, drafts draw at the temperature times this (default: each draft folder's cascade-spec.json, else 1)", min: 1e-9, max: 10 },
  'full-draft-vocabulary': { type: 'boolean', help: 'drafts propose from every token, ignoring their folders\' draft-vocab.i32' },
  warmup: { type: 'int', help: 'untimed prompts per method first', default: 1, min: 0 },
  rounds: { type: 'int', help: 'passes over the prompts (results pooled; per-round speedups reported too)', default: 1, min: 1, max: 100 },
  temperature: { type: 'number', help: 'sampling temperature (0: greedy, and outputs are checked against AR)', default: 0, min: 0 },
  'top-k': { type: 'int', help: 'sampling: keep the k most likely tokens (0: off)', default: 0, min: 0 },
  'top-p': { type: 'number', help: 'sampling: nucleus mass (1: off)', default: 1, min: 0, max: 1 },
  'min-p': { type: 'number', help: 'sampling: keep tokens at least this fraction as likely as the most likely one (0: off)', default: 0, min: 0, max: 1 },
  seed: { type: 'int', help: 'sampling: seed of the first prompt (prompt i of round r uses seed + r * prompts + i)', default: 0, min: 0 },
  json: { type: 'boolean', help: 'print ONE JSON object with a "methods" array' },
  out: { type: 'string', help: 'folder for bench.json and bench.svg' },
  help: { type: 'boolean', help: 'show this help' },
};

export interface MethodResult {
  name: string;
  describe: string;
  tokens: number;
  wallMs: number;
  tokensPerSecond: number;
  /** Over all rounds pooled (total tokens / total wall time, against AR's). */
  speedupVsAR: number;
  /** The same for each round alone: the spread says how much the machine's speed moved. */
  speedupVsARByRound: number[];
  swi: number;
  meanAcceptedLength: number;
  targetForwards: number;
  /** Greedy: the output equalled AR's on every prompt. null when sampling (not comparable). */
  identicalToAR: boolean | null;
  mismatches: number;
  acceptanceByPosition: number[];
  /** Per verification step (target pass after the prompt's): wall ms, and of it the drafting
   * and the target's verification calls (the rest is bookkeeping and stop checks). */
  msPerStep: number;
  draftMsPerStep: number;
  verifyMsPerStep: number;
  /** Time to the first token(s) of every request, summed: the target's prompt pass, with the
   * first draft it verifies when there is a drafter. */
  promptMs: number;
  /** The paper's EWIF (predicted from measured acceptance), mean over requests weighted by
   * their verification passes; 1 for AR. */
  ewif: number;
  /** Per cascade level (csd / acsd), summed over requests: review passes, tokens produced,
   * drafts reviewed and accepted, and the acceptance rate. */
  levels: Array<{ level: string; passes: number; produced: number; proposed: number; accepted: number; acceptance: number }>;
  /** Tokens per second and speedup after each request's prompt pass and the tokens it emitted. */
  decodeTokensPerSecond: number;
  decodeSpeedupVsAR: number;
  /**
   * Adaptive methods (acsd) only: how many drafts each plan made, over all requests, most used
   * first. A plan is the band sizes of the target's drafters in the cascade's order ("0/7/0":
   * the second drafter fills 7 positions).
   */
  adaptivePlans?: Record<string, number>;
}

export async function runBench(
  family: Family,
  methods: MethodSpec[],
  prompts: string[],
  options: {
    maxNewTokens: number;
    warmup: number;
    rounds?: number;
    progress?: ProgressBar;
    /** Sample instead of greedy decoding; prompt i of round r uses seed + r * prompts + i. */
    sampling?: { temperature: number; topK: number; topP: number; minP?: number; seed: number };
  },
): Promise<MethodResult[]> {
  const rounds = options.rounds ?? 1;
  const sampling = options.sampling && options.sampling.temperature > 0 ? options.sampling : undefined;
  const { target } = family;
  if (methods[0]?.name !== 'ar') methods = [parseArOnly(), ...methods.filter((m) => m.name !== 'ar')];
  const acc = methods.map(() => ({ tokens: 0, wallMs: 0, forwards: 0, verifications: 0, first: 0, swiCost: 0, mismatches: 0, proposedAt: [] as number[], acceptedAt: [] as number[], steps: 0, stepMs: 0, draftMs: 0, verifyMs: 0, promptMs: 0, ewifWeighted: 0, ewifWeight: 0, levels: new Map<string, { passes: number; produced: number; proposed: number; accepted: number }>(), plans: new Map<string, number>() }));
  const gen = (m: MethodSpec, p: string, seed: number): Promise<GenerationResult> =>
    target.generate(p, {
      ...m.options,
      maxNewTokens: options.maxNewTokens,
      stopOnEos: true,
      ...(sampling ? { temperature: sampling.temperature, topK: sampling.topK, topP: sampling.topP, minP: sampling.minP ?? 0, seed } : { temperature: 0 }),
    });
  for (const m of methods) for (const p of prompts.slice(0, options.warmup)) await gen(m, p, sampling?.seed ?? 0);
  let done = 0;
  // Per round and method: tokens and wall time.
  const byRound = Array.from({ length: rounds }, () => methods.map(() => ({ tokens: 0, wallMs: 0 })));
  // Prompt-major order: every method sees the same machine state for the same prompt.
  for (let round = 0; round < rounds; round++) for (const [pi, p] of prompts.entries()) {
    let reference: number[] | undefined;
    const seed = (sampling?.seed ?? 0) + round * prompts.length + pi;
    for (let i = 0; i < methods.length; i++) {
      const r = await gen(methods[i], p, seed);
      const a = acc[i];
      a.tokens += r.tokens.length;
      a.wallMs += r.stats.wallMs;
      byRound[round][i].tokens += r.tokens.length;
      byRound[round][i].wallMs += r.stats.wallMs;
      a.forwards += r.stats.targetForwards;
      // Passes that verified a block: the prompt's too when it carried the first draft.
      const verifications = Number(r.stats.verificationPasses);
      a.verifications += verifications;
      a.first += r.stats.firstTokens;
      a.swiCost += r.tokens.length / Math.max(1e-9, Number(r.stats.swi ?? 1));
      const timing = r.stats.timing as { steps: number; stepMs: number; draftMs: number; verifyMs: number } | undefined;
      if (timing) {
        a.steps += timing.steps;
        a.stepMs += timing.stepMs;
        a.draftMs += timing.draftMs;
        a.verifyMs += timing.verifyMs;
      }
      a.promptMs += r.stats.promptMs;
      const steps = Math.max(1, verifications);
      a.ewifWeighted += Number(r.stats.ewif ?? 1) * steps;
      a.ewifWeight += steps;
      for (const l of (r.stats.levels as Array<{ level: string; passes: number; produced: number; proposed: number; accepted: number }> | undefined) ?? []) {
        const sum = a.levels.get(l.level) ?? { passes: 0, produced: 0, proposed: 0, accepted: 0 };
        sum.passes += l.passes;
        sum.produced += l.produced;
        sum.proposed += l.proposed;
        sum.accepted += l.accepted;
        a.levels.set(l.level, sum);
      }
      const plans = (r.stats.drafter as { plans?: Record<string, number> } | undefined)?.plans ?? {};
      for (const [plan, n] of Object.entries(plans)) a.plans.set(plan, (a.plans.get(plan) ?? 0) + n);
      const byPos = (r.stats.acceptanceByPosition as number[] | undefined) ?? [];
      if (i === 0) reference = r.tokens;
      else if (!sampling && (reference!.length !== r.tokens.length || reference!.some((t, j) => t !== r.tokens[j]))) a.mismatches++;
      byPos.forEach((v, j) => {
        a.proposedAt[j] = (a.proposedAt[j] ?? 0) + 1;
        a.acceptedAt[j] = (a.acceptedAt[j] ?? 0) + v;
      });
      options.progress?.update(++done, methods[i].name);
    }
  }
  const arTps = (acc[0].tokens * 1000) / acc[0].wallMs;
  // After each request's prompt pass (and the tokens it emitted).
  const decodeTps = (a: (typeof acc)[number]) => ((a.tokens - a.first) * 1000) / Math.max(1e-9, a.wallMs - a.promptMs);
  return methods.map((m, i) => {
    const a = acc[i];
    const tps = (a.tokens * 1000) / a.wallMs;
    return {
      name: m.name,
      describe: m.describe,
      tokens: a.tokens,
      wallMs: a.wallMs,
      tokensPerSecond: tps,
      speedupVsAR: tps / arTps,
      speedupVsARByRound: byRound.map((r) => (r[i].tokens / r[i].wallMs) / (r[0].tokens / r[0].wallMs)),
      swi: a.tokens / a.swiCost,
      // Tokens per verification pass, the prompt's included when it carried the first draft (a
      // prompt pass without one, as AR's, emitted 1 token and is left out).
      meanAcceptedLength: a.verifications > 0 ? (a.tokens - (a.forwards - a.verifications)) / a.verifications : 1,
      targetForwards: a.forwards,
      identicalToAR: sampling ? null : a.mismatches === 0,
      mismatches: a.mismatches,
      acceptanceByPosition: a.proposedAt.map((n, j) => a.acceptedAt[j] / n),
      msPerStep: a.steps ? a.stepMs / a.steps : 0,
      draftMsPerStep: a.steps ? a.draftMs / a.steps : 0,
      verifyMsPerStep: a.steps ? a.verifyMs / a.steps : 0,
      promptMs: a.promptMs,
      ewif: a.ewifWeight ? a.ewifWeighted / a.ewifWeight : 1,
      levels: [...a.levels.entries()].map(([level, l]) => ({ level, ...l, acceptance: l.proposed ? l.accepted / l.proposed : 0 })),
      decodeTokensPerSecond: decodeTps(a),
      decodeSpeedupVsAR: decodeTps(a) / decodeTps(acc[0]),
      ...(a.plans.size ? { adaptivePlans: Object.fromEntries([...a.plans.entries()].sort((x, y) => y[1] - x[1])) } : {}),
    };
  });
}

function parseArOnly(): MethodSpec {
  return { name: 'ar', options: { method: 'ar' }, describe: 'target alone' };
}

export function formatTable(rows: MethodResult[]): string {
  // With several rounds, the per-round speedups' range beside the pooled one.
  const ranged = rows.some((r) => r.speedupVsARByRound.length > 1);
  const range = (r: MethodResult) => `${Math.min(...r.speedupVsARByRound).toFixed(2)}-${Math.max(...r.speedupVsARByRound).toFixed(2)}x`;
  const head = ['method', 'tok/s', 'speedup', ...(ranged ? ['rounds'] : []), 'SWI', 'tok/pass', 'ms/step', 'draft', 'verify', 'identical', 'config'];
  const body = rows.map((r) => [
    r.name, r.tokensPerSecond.toFixed(1), `${r.speedupVsAR.toFixed(2)}x`, ...(ranged ? [range(r)] : []), r.swi.toFixed(2), r.meanAcceptedLength.toFixed(2),
    r.msPerStep.toFixed(3), r.draftMsPerStep.toFixed(3), r.verifyMsPerStep.toFixed(3), r.identicalToAR === null ? 'n/a (sampled)' : r.identicalToAR ? 'yes' : `NO (${r.mismatches})`, r.describe,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n') + '\n';
}

export async function benchCommand(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const { flags, positional } = parseArgs(argv, BENCH_FLAGS);
  if (flags.help) {
    out.write(formatHelp('Usage: cascade-spec bench --dataset FILE [options]', BENCH_FLAGS));
    return 0;
  }
  if (positional.length) throw new UsageError(`unexpected argument "${positional[0]}"`);
  if (!flags.dataset) throw new UsageError('--dataset FILE is required');
  const family = await loadFamily({
    dtype: flags.dtype as Dtype,
    threads: flags.threads as number,
    target: flags.model as string | undefined,
    fullDraftVocabulary: flags['full-draft-vocabulary'] as boolean,
    draftTemperatureScale: flags['draft-temperature-scale'] as number | undefined,
  });
  const template = promptTemplate(family.target.dir);
  const prompts = readPrompts(flags.dataset as string, flags.format as DatasetFormat, flags.limit as number, flags.skip as number).map((q) => (template ? template.replace('{prompt}', q) : q));
  const temperature = flags.temperature as number;
  // csd without a file: the family's configuration tuned for this machine's kernels and mode.
  const familyEntry = familyCascadeEntry(undefined, { kernels: family.target.kernels, sampling: temperature > 0 });
  const defaults = { k: flags.k as number, draft: flags.draft as string, cascade: familyEntry.cascade };
  const methods = (flags.methods as string).split(',').filter(Boolean).map((s) => parseMethod(s, family, defaults));
  const rounds = flags.rounds as number;
  const total = rounds * prompts.length * (methods.some((m) => m.name === 'ar') ? methods.length : methods.length + 1);
  const sampling = temperature > 0 ? { temperature, topK: flags['top-k'] as number, topP: flags['top-p'] as number, minP: flags['min-p'] as number, seed: flags.seed as number } : undefined;
  if (sampling && !(sampling.topP > 0)) throw new UsageError('--top-p must be in (0, 1]');
  const rows = await runBench(family, methods, prompts, {
    maxNewTokens: flags['max-new-tokens'] as number,
    warmup: flags.warmup as number,
    rounds,
    progress: new ProgressBar(total, 'bench', err),
    sampling,
  });
  const report = {
    dataset: path.resolve(flags.dataset as string),
    prompts: prompts.length,
    rounds,
    maxNewTokens: flags['max-new-tokens'],
    threads: flags.threads,
    dtype: flags.dtype,
    greedy: !sampling,
    ...(sampling ? { sampling } : {}),
    kernels: family.target.kernels,
    // What plain `csd` / `acsd` ran: models/cascade.json's entry for this machine and mode (null: its top-level one).
    familyCascade: { entry: familyEntry.key, describe: describeCascade(familyEntry.cascade) },
    models: {
      target: { dir: family.target.dir, params: family.target.numParams },
      ...Object.fromEntries(Object.entries(family.drafts).map(([n, m]) => [n, { dir: m.dir, params: m.numParams, draftVocabularySize: m.draftVocabularySize, draftTemperatureScale: m.draftTemperatureScale }])),
    },
    date: new Date().toISOString(),
    methods: rows,
  };
  if (flags.out) {
    const dir = flags.out as string;
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'bench.json'), JSON.stringify(report, null, 2) + '\n');
    fs.writeFileSync(
      path.join(dir, 'bench.svg'),
      barChart(`Wall-clock speedup over target AR (${prompts.length} prompts${rounds > 1 ? ` x ${rounds} rounds` : ''}, ${String(flags['max-new-tokens'])} tokens, ${String(flags.threads)} thread, ${String(flags.dtype)}${sampling ? `, T ${sampling.temperature} top-k ${sampling.topK} top-p ${sampling.topP}${sampling.minP ? ` min-p ${sampling.minP}` : ''}` : ''})`,
        rows.map((r) => ({ label: r.name, value: r.speedupVsAR })), 'x', 1),
    );
  }
  if (flags.json) out.write(JSON.stringify(report) + '\n');
  else out.write(formatTable(rows));
  const bad = rows.filter((r) => r.identicalToAR === false);
  if (bad.length) {
    err.write(`cascade-spec: error: greedy output differs from AR for ${bad.map((r) => `${r.name} (${r.mismatches} prompts)`).join(', ')}\n`);
    return 1;
  }
  return 0;
}
