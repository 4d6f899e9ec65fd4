// Would a smarter draft policy close the gap to issue 5's goals? Measured traces, replayed
// policies.
//
// Along the target's greedy output for each prompt, from every position, the draft model drafts
// greedily K tokens deep from its draft vocabulary (as generation does) and each proposal's
// confidence is kept (its probability over the draft vocabulary: what `draftConfidence` reads);
// Max-Gram proposes the next token, with the length of the context suffix it matched. The
// target's verification cost by block length and the draft's cost per token are measured in
// the same process. Each policy then replays the generations: a pass from position t that
// verifies i drafts accepts min(i, the run of right drafts from t) and costs verify(i + 1) plus
// the draft's forwards. Greedy only, where a policy may look at the drafted tokens themselves
// (where a greedy draft stops never changes the output).
//
// Policies: fixed k; the library's confidence stop (`draftConfidence`, `sd:DRAFT@K~C`); a stop
// that maximises expected tokens per millisecond from P(accept | confidence), calibrated on other
// questions; per position, Max-Gram's proposal instead of the draft's where the draft is unsure
// and Max-Gram matched a long suffix; and two oracles: stopping exactly before the first wrong
// draft, and taking whichever of the two proposals is right. Threshold grids are searched on the
// measured prompts themselves, so the figures favour the policies.
//
//   node dist/bench/draft-policies.js --dataset ../shared/data/gsm8k/test.jsonl --limit 100 \
//     --calibration ../shared/data/gsm8k/train.jsonl --out bench/results/draft-policies.json

import { runScript, scriptFlags, type FlagSpec } from '../lib/cli/args';
import { readPrompts } from '../lib/cli/datasets';
import { promptTemplate } from '../lib/cli/defaults';
import { loadFamily } from '../lib/cli/family';
import { ProgressBar } from '../lib/cli/progress';
import { isotonic } from '../lib/cascade/scheduler';
import { writeJsonFile } from '../lib/files';
import type { Model } from '../lib/model';
import { maxgramProposals } from './ceiling';
import { verifyCost } from './verify-cost';

const FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'GSM8K jsonl: the prompts the policies are replayed on' },
  limit: { type: 'int', help: 'prompts', default: 100, min: 1 },
  calibration: { type: 'string', help: 'GSM8K jsonl for the expected-value stop\'s P(accept | confidence)' },
  'calibration-limit': { type: 'int', help: 'calibration prompts', default: 100, min: 1 },
  draft: { type: 'string', help: 'draft model of the family', default: 'small' },
  depth: { type: 'int', help: 'tokens drafted from each position (the longest block)', default: 12, min: 1, max: 15 },
  'max-new-tokens': { type: 'int', help: 'tokens per prompt', default: 128, min: 2 },
  rounds: { type: 'int', help: 'interleaved rounds of the cost measurement (the best of each block length is kept)', default: 8, min: 1 },
  position: { type: 'int', help: 'cache position of the verification cost measurement', default: 120, min: 0 },
  out: { type: 'string', help: 'JSON file for the results' },
  help: { type: 'boolean', help: 'show this help' },
};

/** What the drafters propose from one position of the target's output (its pending token known). */
export interface Step {
  /** Confidence of each of the draft's proposals, K deep from this position. */
  conf: number[];
  /** Leading proposals equal to the target's next tokens. */
  run: number;
  /** Max-Gram's proposal equals the target's next token. */
  mgOk: boolean;
  /** Length of the context suffix Max-Gram matched (0: bigram fallback or none). */
  mgLen: number;
}

/** One pass's plan: drafts verified, draft forwards paid, drafts the target accepts. */
export interface Pass {
  drafts: number;
  forwards: number;
  accepted: number;
}
export type Policy = (steps: readonly Step[], t: number) => Pass;

export interface Costs {
  /** The target's verification of a block of n tokens (n = 1: a decode), ms. */
  verifyMs: (n: number) => number;
  /** One forward of the draft, ms. */
  draftMs: number;
}

/** Replays a policy over traces; AR pays one decode per token after the first. */
export function replay(traces: readonly Step[][], policy: Policy, costs: Costs): { tokens: number; passes: number; ms: number; arMs: number } {
  let tokens = 0, passes = 0, ms = 0, arMs = 0;
  for (const steps of traces) {
    arMs += steps.length * costs.verifyMs(1);
    for (let t = 0; t < steps.length; ) {
      const p = policy(steps, t);
      const accepted = Math.min(p.accepted, steps.length - t - 1);
      ms += costs.verifyMs(p.drafts + 1) + p.forwards * costs.draftMs;
      passes++;
      tokens += accepted + 1;
      t += accepted + 1;
    }
  }
  return { tokens, passes, ms, arMs };
}

export const fixedK = (k: number): Policy => (steps, t) => {
  const i = Math.min(k, steps[t].conf.length);
  return { drafts: i, forwards: i, accepted: Math.min(i, steps[t].run) };
};

/** The library's rule: stop at a position after the first whose confidence is below `min`. */
export const confidenceStop = (kmax: number, min: number): Policy => (steps, t) => {
  const conf = steps[t].conf;
  const K = Math.min(kmax, conf.length);
  for (let j = 1; j < K; j++) if (conf[j] < min) return { drafts: j, forwards: j + 1, accepted: Math.min(j, steps[t].run) };
  return { drafts: K, forwards: K, accepted: Math.min(K, steps[t].run) };
};

export const CONF_BINS = 10;
const bin = (c: number) => Math.min(CONF_BINS - 1, Math.floor(c * CONF_BINS));

/** P(a proposal passes | every earlier one passed, its confidence's bin), from traces. */
export function calibrate(traces: readonly Step[][]): number[] {
  const n = new Array<number>(CONF_BINS).fill(0), ok = new Array<number>(CONF_BINS).fill(0);
  for (const steps of traces)
    for (const s of steps)
      for (let j = 0; j <= Math.min(s.run, s.conf.length - 1); j++) {
        n[bin(s.conf[j])]++;
        if (j < s.run) ok[bin(s.conf[j])]++;
      }
  return n.map((c, b) => (ok[b] + 0.5) / (c + 1));
}

/**
 * Drafts until the chance that every draft so far passes falls below `floor`, then verifies the
 * prefix that maximises expected tokens - rate x expected ms (expected cost: verification + the
 * forwards drafted). With `rate` the policy's own long-run tokens per ms, that choice maximises
 * the long-run rate (main() iterates rate to that fixed point); a per-pass ratio would not.
 */
export const expectedValueStop = (kmax: number, pass: readonly number[], floor: number, rate: number, costs: Costs): Policy => (steps, t) => {
  const conf = steps[t].conf;
  const K = Math.min(kmax, conf.length);
  let survive = 1, expected = 1, best = 0, bestValue = 1 - rate * costs.verifyMs(1), forwards = 0;
  for (let j = 0; j < K && survive >= floor; j++) {
    forwards++;
    survive *= pass[bin(conf[j])];
    expected += survive;
    const value = expected - rate * (costs.verifyMs(j + 2) + forwards * costs.draftMs);
    if (value > bestValue) (bestValue = value), (best = j + 1);
  }
  return { drafts: best, forwards, accepted: Math.min(best, steps[t].run) };
};

/** k drafts where Max-Gram's proposal replaces the draft's at a position whose confidence is
 * below `min` when Max-Gram matched at least `minLen` tokens (only the first proposal of each
 * position is known along the target's text, which is all a run needs). */
export const maxGramWhereUnsure = (k: number, min: number, minLen: number): Policy => (steps, t) => {
  const i = Math.min(k, steps[t].conf.length);
  let run = 0;
  while (run < i && t + run < steps.length) {
    const s = steps[t + run];
    const ok = s.conf[0] < min && s.mgLen >= minLen ? s.mgOk : s.run >= 1;
    if (!ok) break;
    run++;
  }
  return { drafts: i, forwards: i, accepted: run };
};

export const stopOracle = (kmax: number): Policy => (steps, t) => {
  const i = Math.min(kmax, steps[t].conf.length, steps[t].run);
  return { drafts: i, forwards: i, accepted: i };
};

export const eitherOracle = (k: number): Policy => (steps, t) => {
  const i = Math.min(k, steps[t].conf.length);
  let run = 0;
  while (run < i && t + run < steps.length && (steps[t + run].run >= 1 || steps[t + run].mgOk)) run++;
  return { drafts: i, forwards: i, accepted: run };
};

/** Length of the longest suffix of `ctx` that also ends earlier in it. */
export function matchedSuffix(ctx: readonly number[]): number {
  const L = ctx.length;
  let n = 0;
  for (let m = 1; m < L; m++) {
    let found = false;
    for (let e = L - 2; e >= m - 1 && !found; e--) {
      let i = 0;
      while (i < m && ctx[e - i] === ctx[L - 1 - i]) i++;
      found = i === m;
    }
    if (!found) break;
    n = m;
  }
  return n;
}

/** Confidence and choice over the draft vocabulary (first id wins a tie), from full logits. */
function draftPick(logits: Float32Array, vocab: Int32Array | null): { token: number; conf: number } {
  const ids = vocab ?? Int32Array.from({ length: logits.length }, (_, i) => i);
  let best = ids[0];
  for (const v of ids) if (logits[v] > logits[best]) best = v;
  let sum = 0;
  for (const v of ids) sum += Math.exp(logits[v] - logits[best]);
  return { token: best, conf: 1 / sum };
}

/** The target's greedy output for `prompt` and what the draft and Max-Gram propose along it. */
export async function collectTrace(target: Model, draft: Model, prompt: string, maxNewTokens: number, depth: number): Promise<Step[]> {
  const ar = await target.generate(prompt, { method: 'ar', maxNewTokens, temperature: 0 });
  const P = ar.promptTokens, G = ar.tokens;
  const vocab = draft.draftVocabulary;
  // mgProposals[i]: Max-Gram's proposal for G[i] given the prompt and G[0..i-1].
  const mgProposals = maxgramProposals(target, P, G);
  const seq = draft.createSequence({ contextLength: Math.min(draft.contextLength, P.length + G.length + depth) });
  const steps: Step[] = [];
  try {
    seq.forwardSync(P);
    // Position j: the pending token G[j] is known; the drafters propose G[j + 1], ...
    for (let j = 0; j + 1 < G.length; j++) {
      const base = P.length + j + 1;
      let logits = seq.forwardSync([G[j]]);
      const conf: number[] = [];
      let run = 0, right = true;
      for (let d = 0; d < depth && seq.length < seq.capacity; d++) {
        const pick = draftPick(logits, vocab);
        conf.push(pick.conf);
        right = right && j + 1 + d < G.length && pick.token === G[j + 1 + d];
        if (right) run++;
        if (d + 1 < depth && seq.length < seq.capacity) logits = seq.forwardSync([pick.token]);
      }
      seq.truncate(base);
      if (conf.length === 0) break;
      steps.push({ conf, run, mgOk: mgProposals[j + 1] === G[j + 1], mgLen: matchedSuffix([...P, ...G.slice(0, j + 1)]) });
    }
  } finally {
    seq.dispose();
  }
  return steps;
}

async function main(): Promise<void> {
  const flags = scriptFlags(process.argv.slice(2), FLAGS, 'node dist/bench/draft-policies.js --dataset FILE --calibration FILE', ['dataset', 'calibration']);
  if (!flags) return;
  const depth = flags.depth as number, maxNew = flags['max-new-tokens'] as number;
  const family = await loadFamily({ dtype: 'bfloat16', threads: 1 });
  const draft = family.drafts[flags.draft as string];
  if (!draft) throw new Error(`no draft model "${String(flags.draft)}" in the family (have: ${Object.keys(family.drafts).join(', ')})`);
  const template = promptTemplate(family.target.dir);
  const read = (file: string, limit: number) => readPrompts(file, 'gsm8k', limit).map((q) => (template ? template.replace('{prompt}', q) : q));
  const prompts = read(flags.dataset as string, flags.limit as number);
  const calibrationPrompts = read(flags.calibration as string, flags['calibration-limit'] as number);

  const bar = new ProgressBar(prompts.length + calibrationPrompts.length, 'traces');
  const traces: Step[][] = [], calibration: Step[][] = [];
  for (const p of prompts) traces.push(await collectTrace(family.target, draft, p, maxNew, depth)), bar.update(traces.length);
  for (const p of calibrationPrompts) calibration.push(await collectTrace(family.target, draft, p, maxNew, depth)), bar.update(traces.length + calibration.length);

  const blocks = Array.from({ length: depth + 1 }, (_, i) => i + 1);
  const position = Math.min(flags.position as number, family.target.contextLength - depth - 1);
  const measured = verifyCost(family.target, position, blocks, flags.rounds as number, 150);
  const draftMs = verifyCost(draft, position, [1], flags.rounds as number, 150)[1];
  // A block of n + 1 tokens does the work of n and more: a lower figure is noise.
  const smooth = isotonic(blocks.map((n) => measured[n]), blocks.map(() => 1));
  const costs: Costs = { verifyMs: (n) => smooth[n - 1], draftMs };
  const pass = calibrate(calibration);

  const rows: Array<{ policy: string; family: string; speedup: number; tokensPerPass: number }> = [];
  const run = (name: string, fam: string, p: Policy) => {
    const r = replay(traces, p, costs);
    rows.push({ policy: name, family: fam, speedup: +(r.arMs / r.ms).toFixed(3), tokensPerPass: +(r.tokens / r.passes).toFixed(3) });
  };
  for (let k = 1; k <= depth; k++) run(`k=${k}`, 'fixed k', fixedK(k));
  for (let kmax = 2; kmax <= depth; kmax++) for (const c of [0.3, 0.5, 0.7, 0.8, 0.9]) run(`k<=${kmax} ~${c}`, 'confidence stop', confidenceStop(kmax, c));
  for (const kmax of [4, 7, 9, depth])
    for (const floor of [0.05, 0.15, 0.3]) {
      let rate = 0;
      for (let i = 0; i < 4; i++) {
        const r = replay(traces, expectedValueStop(kmax, pass, floor, rate, costs), costs);
        rate = r.tokens / r.ms;
      }
      run(`k<=${kmax} floor ${floor}`, 'expected-value stop', expectedValueStop(kmax, pass, floor, rate, costs));
    }
  for (let k = 3; k <= Math.min(depth, 8); k++)
    for (const c of [0.3, 0.5, 0.7]) for (const len of [1, 2, 4, 6]) run(`k=${k} ~${c} match>=${len}`, 'Max-Gram where unsure', maxGramWhereUnsure(k, c, len));
  for (let k = 1; k <= depth; k++) run(`k<=${k}`, 'oracle: stop before the first wrong draft', stopOracle(k));
  for (let k = 1; k <= depth; k++) run(`k=${k}`, 'oracle: draft or Max-Gram, whichever is right', eitherOracle(k));

  const best = new Map<string, (typeof rows)[number]>();
  for (const r of rows) if (!best.has(r.family) || r.speedup > best.get(r.family)!.speedup) best.set(r.family, r);
  const fixed = best.get('fixed k')!.speedup;
  const positions = traces.reduce((s, t) => s + t.length, 0);
  const agree = (f: (s: Step) => boolean) => +(traces.reduce((s, t) => s + t.filter(f).length, 0) / positions).toFixed(4);
  const result = {
    what: 'greedy draft policies replayed on measured traces: simulated decode-phase speedup over AR (the prompt pass excluded)',
    prompts: prompts.length,
    calibrationPrompts: calibrationPrompts.length,
    draft: flags.draft,
    depth,
    maxNewTokens: maxNew,
    threads: family.target.threads,
    dtype: family.target.dtype,
    kernels: family.target.kernels,
    date: new Date().toISOString(),
    agreement: { draft: agree((s) => s.run >= 1), maxgram: agree((s) => s.mgOk), either: agree((s) => s.run >= 1 || s.mgOk), maxgramOnly: agree((s) => s.run < 1 && s.mgOk) },
    verifyMs: Object.fromEntries(blocks.map((n) => [n, +measured[n].toFixed(4)])),
    verifyMsMonotone: Object.fromEntries(blocks.map((n) => [n, +smooth[n - 1].toFixed(4)])),
    draftMsPerForward: +draftMs.toFixed(4),
    passByConfidenceBin: pass.map((p) => +p.toFixed(3)),
    best: [...best.values()].map((r) => ({ ...r, vsBestFixedK: +(r.speedup / fixed).toFixed(3) })),
    all: rows,
  };
  if (flags.out) writeJsonFile(flags.out as string, result);
  const table = ['| policies | best | simulated decode speedup | tokens / pass | vs best fixed k |', '|---|---|---|---|---|'];
  for (const r of result.best) table.push(`| ${r.family} | ${r.policy} | ${r.speedup.toFixed(2)}x | ${r.tokensPerPass.toFixed(2)} | ${r.vsBestFixedK.toFixed(3)} |`);
  process.stdout.write(JSON.stringify({ ...result, all: undefined }, null, 2) + '\n\n' + table.join('\n') + '\n');
}

if (require.main === module) runScript('draft-policies', main);
