// How fast could ANY cascade of this family be? An upper bound, measured.
//
// In greedy mode every token a cascade puts in the target's block is the greedy proposal of one
// of its drafters (mid, small, Max-Gram) given the context before it: a model level proposes its
// argmax, a lenient review only picks between such proposals, and inside an accepted run each
// drafter's context equals the target's own continuation. So along the target's greedy output,
// a target pass starting after token t can accept at most L(t) drafts, the run of positions
// where at least one drafter's proposal equals the target's token.
//
// The oracle below is better than any cascade: it drafts for free, and knows L(t), so its block
// holds exactly the L(t) tokens that will pass (no wasted verification). Each pass is a real
// fused verify of the target on the true tokens, timed, against real single-token decode steps
// of the same continuation, interleaved per prompt in one process. The second figure charges
// each drafted token the cheapest cost a model can produce it at (its per-token cost in a
// 16-token block pass) unless Max-Gram also proposes it. Single-draft SD is run in the same
// process for the comparison the goals make (CSD >= 3x AR and >= 1.4x the best SD).
//
//   node dist/bench/ceiling.js --dataset ../shared/data/gsm8k/test.jsonl --limit 100 --out bench/results/ceiling.json

import { runScript, scriptFlags, type FlagSpec } from '../lib/cli/args';
import { readPrompts } from '../lib/cli/datasets';
import { promptTemplate } from '../lib/cli/defaults';
import { loadFamily, type Family } from '../lib/cli/family';
import { ProgressBar } from '../lib/cli/progress';
import { writeJsonFile } from '../lib/files';
import { MaxGram } from '../lib/drafters/maxgram';
import type { Model } from '../lib/model';
import { GREEDY, verifyCost } from './verify-cost';

const FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'GSM8K jsonl' },
  limit: { type: 'int', help: 'prompts', default: 100, min: 1 },
  'max-new-tokens': { type: 'int', help: 'tokens per prompt', default: 128, min: 1 },
  sd: { type: 'string', help: 'single-draft methods run for comparison (DRAFT@K, comma-separated)', default: 'small@3,small@6,mid@6' },
  out: { type: 'string', help: 'JSON file for the results' },
  help: { type: 'boolean', help: 'show this help' },
};


function argmaxRows(logits: Float32Array, vocab: number): number[] {
  const out: number[] = [];
  for (let r = 0; r * vocab < logits.length; r++) {
    let best = 0;
    for (let v = 1; v < vocab; v++) if (logits[r * vocab + v] > logits[r * vocab + best]) best = v;
    out.push(best);
  }
  return out;
}

/** Each generated token's greedy proposal by a draft model, given the true context. */
function modelProposals(model: Model, prompt: number[], generated: number[]): number[] {
  const all = [...prompt, ...generated];
  const seq = model.createSequence({ contextLength: all.length - 1 }); // every token but the last is fed
  try {
    const next = argmaxRows(seq.forwardSync(all.slice(0, -1), { allLogits: true }), model.config.vocabSize);
    return generated.map((_, j) => next[prompt.length + j - 1]);
  } finally {
    seq.dispose();
  }
}

/** Max-Gram's first proposal before each generated token. */
export function maxgramProposals(target: Model, prompt: number[], generated: number[]): number[] {
  const mg = new MaxGram({ bigram: target.bigramTable() });
  mg.begin(prompt);
  return generated.map((t) => {
    const p = mg.propose(1)[0] ?? -1;
    mg.push([t]);
    return p;
  });
}

export interface CeilingOptions {
  maxNewTokens: number;
  /** Single-draft methods timed for comparison: draft name and k. */
  sd: Array<{ draft: string; k: number }>;
  /** Block length and position of the draft-cost floor measurement. */
  floorBlock?: number;
  floorPosition?: number;
  progress?: ProgressBar;
}

/** Runs the oracle on `prompts` (already in the family's template). */
export async function measureCeiling(family: Family, prompts: string[], options: CeilingOptions) {
  const { target, drafts } = family;
  const names = Object.keys(drafts);
  const maxNew = options.maxNewTokens;
  const sdMethods = options.sd.map(({ draft, k }) => {
    if (!drafts[draft]) throw new Error(`no draft model named ${draft}`);
    return { name: `sd:${draft}@${k}`, draftModel: drafts[draft], k };
  });
  const floorBlock = options.floorBlock ?? 16;
  const floorPosition = Math.min(options.floorPosition ?? 160, ...names.map((n) => drafts[n].contextLength - floorBlock));

  // Cheapest cost per token of each draft model: its share of a 16-token block pass.
  const perTokenFloorMs: Record<string, number> = {};
  for (const n of names) perTokenFloorMs[n] = verifyCost(drafts[n], floorPosition, [floorBlock], 3, 100)[floorBlock] / floorBlock;

  const sum = { tokens: 0, arMs: 0, oracleMs: 0, oracleFloorMs: 0, passes: 0, positions: 0, agree: Object.fromEntries([...names, 'maxgram', 'any'].map((n) => [n, 0])) as Record<string, number> };
  const all = [...names, 'maxgram'];
  const subsets = Array.from({ length: 2 ** all.length - 1 }, (_, m) => all.filter((_, i) => ((m + 1) >> i) & 1));
  const runs: Record<string, { tokens: number; passes: number }> = {};
  /** Oracle passes by block length (pending token + drafts): count and summed wall ms. */
  const byBlock: Array<{ passes: number; ms: number }> = [];
  const sd = sdMethods.map(() => ({ decodeMs: 0, tokens: 0 }));
  let arGenDecodeMs = 0;
  for (const [i, text] of prompts.entries()) {
    const ar = await target.generate(text, { method: 'ar', maxNewTokens: maxNew, temperature: 0, stopOnEos: true });
    arGenDecodeMs += ar.stats.wallMs - ar.stats.promptMs;
    for (const [m, s] of sdMethods.entries()) {
      const r = await target.generate(text, { method: 'sd', draftModel: s.draftModel, k: s.k, maxNewTokens: maxNew, temperature: 0, stopOnEos: true });
      if (r.tokens.join() !== ar.tokens.join()) throw new Error(`${s.name} differs from AR on prompt ${i}`);
      sd[m].decodeMs += r.stats.wallMs - r.stats.promptMs;
      sd[m].tokens += r.tokens.length;
    }
    const P = ar.promptTokens, G = ar.tokens;
    if (G.length < 2) continue;
    // agreeBy[d][j]: drafter d proposes G[j] given P + G[0..j-1] (j >= 1: G[0] comes from the prompt pass).
    const proposals: Record<string, number[]> = { maxgram: maxgramProposals(target, P, G) };
    for (const n of names) proposals[n] = modelProposals(drafts[n], P, G);
    const any = G.map((t, j) => Object.values(proposals).some((p) => p[j] === t));
    // Oracle tokens per pass if only a subset of the drafters existed (no timing: run lengths).
    for (const subset of subsets) {
      const ok = G.map((t, j) => subset.some((n) => proposals[n][j] === t));
      const s = (runs[subset.join('+')] ??= { tokens: 0, passes: 0 });
      for (let t = 0; t + 1 < G.length; s.passes++) {
        let L = 0;
        while (t + 1 + L < G.length - 1 && ok[t + 1 + L]) L++;
        s.tokens += L + 1;
        t += L + 1;
      }
    }
    for (let j = 1; j < G.length; j++) {
      sum.positions++;
      for (const [n, p] of Object.entries(proposals)) if (p[j] === G[j]) sum.agree[n]++;
      if (any[j]) sum.agree.any++;
    }
    // The same continuation decoded one token at a time, and by oracle passes, interleaved.
    const arSeq = target.createSequence({ contextLength: P.length + G.length - 1 });
    const orSeq = target.createSequence({ contextLength: P.length + G.length - 1 });
    try {
      arSeq.forwardSync(P);
      orSeq.forwardSync(P);
      for (let j = 0; j + 1 < G.length; j++) {
        const t0 = performance.now();
        const next = arSeq.native.step([G[j]], GREEDY);
        sum.arMs += performance.now() - t0;
        if (next !== G[j + 1]) throw new Error(`prompt ${i}: decoding did not reproduce the continuation`);
      }
      for (let t = 0; t + 1 < G.length; ) {
        let L = 0;
        while (t + 1 + L < G.length - 1 && any[t + 1 + L]) L++;
        const block = G.slice(t, t + 1 + L);
        const t0 = performance.now();
        const r = orSeq.verifySync(block, { sampling: GREEDY });
        const ms = performance.now() - t0;
        if (r.accepted !== L || r.next !== G[t + 1 + L]) throw new Error(`prompt ${i}: an oracle pass did not accept its block`);
        sum.oracleMs += ms;
        const b = (byBlock[block.length] ??= { passes: 0, ms: 0 });
        b.passes++;
        b.ms += ms;
        let floor = 0;
        for (let j = t + 1; j <= t + L; j++)
          if (proposals.maxgram[j] !== G[j]) floor += Math.min(...names.filter((n) => proposals[n][j] === G[j]).map((n) => perTokenFloorMs[n]));
        sum.oracleFloorMs += ms + floor;
        sum.passes++;
        t += L + 1;
      }
      sum.tokens += G.length - 1;
    } finally {
      arSeq.dispose();
      orSeq.dispose();
    }
    options.progress?.update(i + 1);
  }
  const sdResults = sdMethods.map((s, m) => ({ name: s.name, decodeSpeedupVsAR: arGenDecodeMs / sd[m].decodeMs }));
  const bestSd = sdResults.length ? sdResults.reduce((a, b) => (b.decodeSpeedupVsAR > a.decodeSpeedupVsAR ? b : a)) : undefined;
  const result = {
    what: 'upper bound on any greedy cascade of the default family: oracle passes that draft for free and hold exactly the tokens that pass',
    prompts: prompts.length,
    maxNewTokens: maxNew,
    threads: target.threads,
    dtype: target.dtype,
    date: new Date().toISOString(),
    agreement: Object.fromEntries(Object.entries(sum.agree).map(([n, c]) => [n, +(c / sum.positions).toFixed(4)])),
    oracleTokensPerPass: +(sum.tokens / sum.passes).toFixed(3),
    oracleTokensPerPassWithOnly: Object.fromEntries(Object.entries(runs).map(([k, r]) => [k, +(r.tokens / r.passes).toFixed(3)])),
    arMsPerToken: +(sum.arMs / sum.tokens).toFixed(4),
    oracleMsPerPass: +(sum.oracleMs / sum.passes).toFixed(4),
    /** Verification cost of a block of n tokens relative to a decode step, where >= 20 passes had that length. */
    verifyCostByBlock: Object.fromEntries(
      byBlock.flatMap((b, n) => (b && b.passes >= 20 ? [[n, { passes: b.passes, vsDecode: +(b.ms / b.passes / (sum.arMs / sum.tokens)).toFixed(3) }]] : [])),
    ),
    draftPerTokenFloorMs: Object.fromEntries(Object.entries(perTokenFloorMs).map(([n, v]) => [n, +v.toFixed(4)])),
    bound: {
      freeDraftingDecodeSpeedupVsAR: +(sum.arMs / sum.oracleMs).toFixed(3),
      costFloorDecodeSpeedupVsAR: +(sum.arMs / sum.oracleFloorMs).toFixed(3),
    },
    singleDraft: sdResults.map((r) => ({ ...r, decodeSpeedupVsAR: +r.decodeSpeedupVsAR.toFixed(3) })),
    bestSingleDraft: bestSd?.name ?? null,
    boundOverBestSD: bestSd ? +(sum.arMs / sum.oracleMs / bestSd.decodeSpeedupVsAR).toFixed(3) : null,
  };
  return result;
}

async function main(): Promise<void> {
  const flags = scriptFlags(process.argv.slice(2), FLAGS, 'node dist/bench/ceiling.js --dataset FILE', ['dataset']);
  if (!flags) return;
  const sd = (flags.sd as string).split(',').filter(Boolean).map((s) => {
    const [draft, k] = s.split('@');
    if (!draft || !Number.isInteger(Number(k)) || Number(k) < 1) throw new Error(`--sd: ${s} is not DRAFT@K`);
    return { draft, k: Number(k) };
  });
  const family = await loadFamily({ dtype: 'bfloat16', threads: 1 });
  const template = promptTemplate(family.target.dir);
  const prompts = readPrompts(flags.dataset as string, 'gsm8k', flags.limit as number).map((q) => (template ? template.replace('{prompt}', q) : q));
  const result = await measureCeiling(family, prompts, { maxNewTokens: flags['max-new-tokens'] as number, sd, progress: new ProgressBar(prompts.length, 'ceiling') });
  const json = JSON.stringify(result, null, 2);
  if (flags.out) writeJsonFile(flags.out as string, result);
  process.stdout.write(json + '\n');
}

if (require.main === module) runScript('ceiling', main);
