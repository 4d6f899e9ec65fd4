// How many tokens per target pass does block verification add over the token-by-token test?
//
// The exact expectation of each test, per draft, on real rows. Along the target's own sampled
// continuation of each prompt (seeded), every `stride` positions: the draft model drafts k
// tokens from that context as it would in generation (its native sampled draft, at its
// temperature scale, with the rows it drew from), the target's processed rows over the block
// come from the native sampler, and for those rows and drafts
//   token by token: E = 1 + sum_i prod_{j <= i} min(1, p_j(x_j) / q_j(x_j));
//   jointly (block verification, native/verify.cc): E = 1 + sum_j j P(tau = j), with
//   P(tau = j) = h_j prod_{i > j} (1 - h_i).
// No timing: the figures say what each test keeps, not what it costs (bench/README.md, "Block
// verification", for the wall-clock comparison).
//
//   node dist/bench/block-verification.js --dataset ../shared/data/gsm8k/test.jsonl --limit 20 --k 7 --temperature 0.8 --top-p 0.95
import * as path from 'path';

import { runScript, scriptFlags, type FlagSpec } from '../lib/cli/args';
import { readPrompts } from '../lib/cli/datasets';
import { promptTemplate } from '../lib/cli/defaults';
import { familyDir, loadFamily, type Family } from '../lib/cli/family';
import { draftSampling } from '../lib/drafters/drafter';
import { writeJsonFile } from '../lib/files';
import { loadNative, type NativeSampling } from '../lib/native';

const FLAGS: Record<string, FlagSpec> = {
  dataset: { type: 'string', help: 'GSM8K jsonl' },
  limit: { type: 'int', help: 'prompts', default: 20, min: 1 },
  'max-new-tokens': { type: 'int', help: "tokens of the target's continuation", default: 100, min: 1 },
  draft: { type: 'string', help: 'draft model of the family', default: 'small' },
  k: { type: 'int', help: 'drafts per block', default: 7, min: 1, max: 64 },
  temperature: { type: 'number', help: 'sampling temperature', default: 0.8, min: 1e-9 },
  'top-k': { type: 'int', help: 'top-k (0: off)', default: 0, min: 0 },
  'top-p': { type: 'number', help: 'top-p (1: off)', default: 0.95, min: 1e-9, max: 1 },
  scale: { type: 'number', help: "the draft's temperature scale (default: its folder's)", min: 1e-9, max: 10 },
  stride: { type: 'int', help: 'positions between two measured contexts', default: 9, min: 1 },
  draws: { type: 'int', help: 'drafts per context', default: 4, min: 1 },
  seed: { type: 'int', help: 'seed of the first continuation (prompt i: seed + i)', default: 0, min: 0 },
  out: { type: 'string', help: 'JSON file for the results' },
  help: { type: 'boolean', help: 'show this help' },
};

/** Expected tokens of one pass (accepted drafts + the next token) under each test. */
export function expectedTokens(p: ArrayLike<number>[], q: ArrayLike<number>[], drafts: readonly number[]): { token: number; block: number } {
  const k = drafts.length;
  const V = p[0].length;
  let reach = 1;
  let token = 1;
  for (let i = 0; i < k; i++) {
    reach *= Math.min(1, p[i][drafts[i]] / q[i][drafts[i]]);
    token += reach;
  }
  const w = [1];
  const h = [1];
  for (let i = 1; i <= k; i++) {
    w.push(Math.min(1, (w[i - 1] * p[i - 1][drafts[i - 1]]) / q[i - 1][drafts[i - 1]]));
    if (i === k) h.push(w[k]);
    else {
      let r = 0;
      for (let x = 0; x < V; x++) r += Math.max(0, w[i] * p[i][x] - q[i][x]);
      h.push(r > 0 ? r / (r + 1 - w[i]) : 0);
    }
  }
  let block = 1;
  let later = 1; // prod_{i > j} (1 - h_i)
  for (let j = k; j >= 1; j--) {
    block += j * h[j] * later;
    later *= 1 - h[j];
  }
  return { token, block };
}

export interface BlockGainOptions {
  sampling: NativeSampling;
  draft: string;
  k: number;
  maxNewTokens: number;
  /** The draft's temperature scale; default its model's. */
  scale?: number;
  stride?: number;
  draws?: number;
  seed?: number;
  onPrompt?: (done: number) => void;
}

export interface BlockGainResult {
  blocks: number;
  tokensPerPassToken: number;
  tokensPerPassBlock: number;
  ratio: number;
}

export async function measureBlockGain(family: Family, prompts: string[], o: BlockGainOptions): Promise<BlockGainResult> {
  const { target } = family;
  const draft = family.drafts[o.draft];
  if (!draft) throw new Error(`no draft model "${o.draft}" (have: ${Object.keys(family.drafts).join(', ')})`);
  if (!(o.sampling.temperature > 0)) throw new RangeError('block verification is a sampling test: the temperature must be > 0');
  const V = target.config.vocabSize;
  const sampler = loadNative().kernelTest;
  const draftParams = draftSampling(o.sampling, o.scale ?? draft.draftTemperatureScale);
  let token = 0;
  let block = 0;
  let blocks = 0;
  for (const [i, text] of prompts.entries()) {
    const g = await target.generate(text, { ...o.sampling, maxNewTokens: o.maxNewTokens, seed: (o.seed ?? 0) + i, stopOnEos: true });
    const all = [...g.promptTokens, ...g.tokens];
    const room = Math.min(target.config.maxPositionEmbeddings, draft.config.maxPositionEmbeddings) - o.k - 1;
    for (let pos = g.promptTokens.length; pos < Math.min(all.length, room); pos += o.stride ?? 9) {
      const context = all.slice(0, pos);
      const ds = draft.createSequence({ contextLength: pos + o.k, seed: (o.seed ?? 0) + i * 100003 + pos });
      const ts = target.createSequence({ contextLength: pos + o.k + 1 });
      try {
        ds.forwardSync(context.slice(0, -1));
        ts.forwardSync(context.slice(0, -1));
        for (let d = 0; d < (o.draws ?? 4); d++) {
          const { tokens, probs } = ds.native.draft(Int32Array.of(context[pos - 1]), o.k, draftParams, 0, undefined);
          const drafts = Array.from(tokens);
          if (!probs || drafts.length === 0) throw new Error('the draft returned no sampled rows');
          const q = drafts.map((_, j) => probs.subarray(j * V, (j + 1) * V));
          const logits = ts.forwardSync([context[pos - 1], ...drafts], { allLogits: true });
          const p = Array.from({ length: drafts.length + 1 }, (_, j) => sampler.processedProbs(logits.subarray(j * V, (j + 1) * V), o.sampling));
          ds.truncate(pos - 1);
          ts.truncate(pos - 1);
          const e = expectedTokens(p, q, drafts);
          token += e.token;
          block += e.block;
          blocks++;
        }
      } finally {
        ds.dispose();
        ts.dispose();
      }
    }
    o.onPrompt?.(i + 1);
  }
  if (blocks === 0) throw new Error('no context to measure: the continuations were too short');
  return { blocks, tokensPerPassToken: token / blocks, tokensPerPassBlock: block / blocks, ratio: block / token };
}

async function main(): Promise<void> {
  const flags = scriptFlags(process.argv.slice(2), FLAGS, 'node dist/bench/block-verification.js --dataset FILE', ['dataset']);
  if (!flags) return;
  const family = await loadFamily({ dtype: 'bfloat16', threads: 1 });
  const template = promptTemplate(path.join(familyDir(), 'target'));
  const prompts = readPrompts(flags.dataset as string, 'gsm8k', flags.limit as number).map((q) => (template ? template.replace('{prompt}', q) : q));
  const sampling = { temperature: flags.temperature as number, topK: flags['top-k'] as number, topP: flags['top-p'] as number };
  const r = await measureBlockGain(family, prompts, {
    sampling,
    draft: flags.draft as string,
    k: flags.k as number,
    maxNewTokens: flags['max-new-tokens'] as number,
    scale: flags.scale as number | undefined,
    stride: flags.stride as number,
    draws: flags.draws as number,
    seed: flags.seed as number,
    onPrompt: (done) => process.stderr.write(`\r${done}/${prompts.length}${done === prompts.length ? '\n' : ''}`),
  });
  process.stdout.write(
    `${flags.draft} k ${String(flags.k)}, T ${sampling.temperature} top-k ${sampling.topK} top-p ${sampling.topP}: ${r.blocks} blocks, ` +
      `tokens per pass ${r.tokensPerPassToken.toFixed(3)} token by token, ${r.tokensPerPassBlock.toFixed(3)} jointly (x${r.ratio.toFixed(4)})\n`,
  );
  if (flags.out) writeJsonFile(flags.out as string, { dataset: path.basename(flags.dataset as string), prompts: prompts.length, draft: flags.draft, k: flags.k, sampling, date: new Date().toISOString(), ...r });
}

if (require.main === module) runScript('block-verification', main);
