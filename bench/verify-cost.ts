// The fused verification pass's cost by block length, for the models of a family: what a
// speculative step pays for checking k drafts (a block of k + 1 tokens) against one decode.
// Each model's blocks are timed in interleaved rounds (best round kept, so a burst of load on
// the shared machine does not decide a figure), at one cache position, then truncated back.
//
//   node dist/bench/verify-cost.js [--models models] [--position 150] [--blocks 1,2,4,...] [--out FILE]
//
// A/B of two builds of the addon: run it under CASCADE_SPEC_NATIVE=A.node and =B.node in turn.
import * as fs from 'fs';
import * as path from 'path';

import { runScript, scriptFlags, UsageError, type FlagSpec } from '../lib/cli/args';
import { familyDir } from '../lib/cli/family';
import { Model } from '../lib/model';

const FLAGS: Record<string, FlagSpec> = {
  models: { type: 'string', help: 'folder holding the model folders', default: '' },
  names: { type: 'string', help: 'model folders to time (comma-separated)', default: 'target,mid,small' },
  position: { type: 'int', help: 'cache length before the block', default: 150, min: 0 },
  blocks: { type: 'string', help: 'block lengths (comma-separated)', default: '1,2,3,4,5,6,7,8,9,12,16' },
  rounds: { type: 'int', help: 'interleaved rounds (the best is kept)', default: 3, min: 1 },
  'min-ms': { type: 'int', help: 'time per block length per round', default: 250, min: 1 },
  threads: { type: 'int', help: 'CPU threads', default: 1, min: 1, max: 256 },
  out: { type: 'string', help: 'JSON file for the results' },
  help: { type: 'boolean', help: 'show this help' },
};

export const GREEDY = { temperature: 0, topK: 0, topP: 1 };

/** Best-of-rounds mean ms of a verify pass of each block length at `position`. */
export function verifyCost(model: Model, position: number, blocks: number[], rounds: number, minMs: number): Record<number, number> {
  const longest = Math.max(...blocks);
  if (position + longest > model.contextLength) throw new RangeError(`${model.dir}: position ${position} + block ${longest} exceeds the context (${model.contextLength})`);
  const V = model.config.vocabSize;
  const seq = model.createSequence({ contextLength: position + longest });
  try {
    if (position > 0) seq.forwardSync(Array.from({ length: position }, (_, i) => (i * 7 + 5) % V));
    const best: Record<number, number> = {};
    for (let r = 0; r < rounds; r++)
      for (const B of blocks) {
        const block = Array.from({ length: B }, (_, i) => (i * 13 + 11) % V);
        let n = 0;
        const t0 = performance.now();
        do {
          seq.verifySync(block, { sampling: GREEDY });
          seq.truncate(position);
          n++;
        } while (performance.now() - t0 < minMs);
        const ms = (performance.now() - t0) / n;
        best[B] = Math.min(best[B] ?? Infinity, ms);
      }
    return best;
  } finally {
    seq.dispose();
  }
}

async function main(): Promise<void> {
  const flags = scriptFlags(process.argv.slice(2), FLAGS, 'node dist/bench/verify-cost.js');
  if (!flags) return;
  const blocks = (flags.blocks as string).split(',').map(Number);
  if (blocks.some((b) => !Number.isInteger(b) || b < 1)) throw new UsageError('--blocks: positive integers, comma-separated');
  const root = (flags.models as string) || familyDir();
  const models: Record<string, unknown> = {};
  for (const name of (flags.names as string).split(',').filter(Boolean)) {
    const model = await Model.load(path.join(root, name), { dtype: 'bfloat16', threads: flags.threads as number });
    const ms = verifyCost(model, flags.position as number, blocks, flags.rounds as number, flags['min-ms'] as number);
    const decode = ms[1] ?? NaN;
    models[name] = { params: model.numParams, kernels: model.kernels, ms, vsDecode: Object.fromEntries(Object.entries(ms).map(([b, v]) => [b, +(v / decode).toFixed(3)])) };
    process.stderr.write(`${name}: ${blocks.map((b) => `${b}:${ms[b].toFixed(3)}`).join(' ')}\n`);
    model.dispose();
  }
  const result = { position: flags.position, threads: flags.threads, dtype: 'bfloat16', addon: process.env.CASCADE_SPEC_NATIVE ?? 'default lookup', date: new Date().toISOString(), models };
  const json = JSON.stringify(result, null, 2);
  if (flags.out) fs.writeFileSync(flags.out as string, json + '\n');
  process.stdout.write(json + '\n');
}

if (require.main === module) runScript('verify-cost', main);
