// Draft variants A/B in one process: each speculative method runs with each variant of its draft
// models in turn, prompt by prompt with AR, so every variant sees the same machine. Reports, per
// method and variant, tokens per target pass, ms per step and its drafting share, and wall-clock
// speedup over AR (prompt included). Used by draft-vocab.ts and draft-temperature.ts.
import { FALLBACK_CASCADE } from '../lib/cli/family';
import { parseMethod } from '../lib/cli/methods';
import type { Model } from '../lib/model';
import type { NativeSampling } from '../lib/native';
import type { GenerateOptions } from '../lib/options';
import type { CascadeMatrix } from '../lib/cascade/config';

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

export interface DraftVariantRow {
  name: string;
  speedupVsAR: number;
  tokensPerPass: number;
  msPerStep: number;
  draftMsPerStep: number;
}

/**
 * Runs AR and each method (the bench's syntax, parseMethod: `sd:DRAFT@K`, `csd` with `cascade`,
 * ...) with each variant's drafts in turn (rows named "METHOD VARIANT"), prompt by prompt, so
 * every variant sees the same machine. Greedy by default, and then any output that differs from
 * AR's throws; with `sampling`, prompt i samples with seed `seed + i` in every run.
 */
export async function compareDraftVariants(
  target: Model,
  variants: Record<string, Record<string, Model>>,
  prompts: string[],
  methods: string[],
  options: { maxNewTokens: number; cascade?: CascadeMatrix; sampling?: NativeSampling; seed?: number; onPrompt?: (done: number) => void },
): Promise<DraftVariantRow[]> {
  const defaults = { k: 4, draft: 'small', cascade: options.cascade ?? FALLBACK_CASCADE };
  const optionsOf = (spec: string, drafts: Record<string, Model>): GenerateOptions => parseMethod(spec, { target, drafts }, defaults).options;
  const runs: Array<[string, GenerateOptions]> = [['ar', {}]];
  for (const spec of methods)
    for (const [variant, drafts] of Object.entries(variants)) runs.push([`${spec} ${variant}`, optionsOf(spec, drafts)]);
  const sampling = options.sampling ?? { temperature: 0, topK: 0, topP: 1 };
  const sampled = sampling.temperature > 0;
  const tally: Record<string, Tally> = {};
  for (const [name] of runs) tally[name] = { tokens: 0, wallMs: 0, steps: 0, stepMs: 0, draftMs: 0, passes: 0, plain: 0 };
  for (const [i, prompt] of prompts.entries()) {
    let reference: number[] = [];
    for (const [name, o] of runs) {
      const t0 = performance.now();
      const r = await target.generate(prompt, { ...o, maxNewTokens: options.maxNewTokens, ...sampling, seed: (options.seed ?? 1) + i });
      const t = tally[name];
      t.wallMs += performance.now() - t0;
      // Sampled outputs follow the target's distribution but are not AR's tokens.
      if (sampled) {
        /* checked by distribution in the tests */
      } else if (name === 'ar') reference = r.tokens;
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
