/**
 * Builds a draft vocabulary (LoadOptions.draftVocabulary): the token ids a draft model proposes
 * from. A draft reads its whole output matrix for every token it proposes; restricted to the
 * tokens its target writes, it reads only those rows (FR-Spec's frequency-ranked draft
 * vocabulary). The set is taken from what the target writes, not from a model's scores:
 *   1. every token of the target's own answers (--target: GSM8K jsonl whose answers the target
 *      wrote, e.g. scripts/distill-data.ts' output), most frequent first;
 *   2. then, while there is room, the tokens of reference answers (--reference), most frequent
 *      first (held-out questions bring words the target's answers to the training questions
 *      did not use);
 *   3. always: EOS and the tokens of the prompt template (a generation that goes on past EOS
 *      writes the next record's "Question:" first).
 * Ties go to the smaller id. Written as DRAFT_VOCAB_FILE (little-endian int32 ids, increasing)
 * into each --out folder, where Model.load finds it.
 *
 *   node dist/scripts/build-draft-vocab.js --target FILE --reference FILE --tokenizer DIR --size N --out DIR[,DIR...]
 */
import * as fs from 'fs';
import * as path from 'path';

import type { Tokenizer } from '@huggingface/tokenizers';

import { writeInt32File } from '../lib/files';
import { DRAFT_VOCAB_FILE } from '../lib/model';
import { loadTokenizerDir } from './train';
import { formatGsm8k, formatGsm8kPrompt } from './train-tokenizer';

/** Token counts of the answers of GSM8K records: the tokens of the formatted record past its prompt's. */
export function answerTokenCounts(tok: Tokenizer, records: Array<{ question: string; answer: string }>): Map<number, number> {
  const counts = new Map<number, number>();
  for (const r of records) {
    const prompt = tok.encode(formatGsm8kPrompt(r.question), { add_special_tokens: false }).ids;
    const full = tok.encode(formatGsm8k(r.question, r.answer), { add_special_tokens: false }).ids;
    for (const t of full.slice(prompt.length)) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return counts;
}

/** Ids by decreasing count, ties by increasing id. */
function ranked(counts: Map<number, number>): number[] {
  return [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([t]) => t);
}

/**
 * The draft vocabulary (increasing ids): `always`, then the target's tokens by count, then the
 * reference's, up to `size` ids. A set smaller than the target's distinct tokens keeps its most
 * frequent ones: the rarest are cheaper left to the target's correction than read at every
 * drafted token (the default drafts keep 512 of the 744, 99.92% of what the target writes).
 * Throws when `always` alone does not fit.
 */
export function draftVocabulary(target: Map<number, number>, reference: Map<number, number>, size: number, always: number[]): Int32Array {
  const chosen = new Set<number>(always);
  if (chosen.size > size) throw new RangeError(`--size ${size} cannot hold the ${chosen.size} tokens always kept (EOS and the prompt template's)`);
  for (const t of [...ranked(target), ...ranked(reference)]) {
    if (chosen.size >= size) break;
    chosen.add(t);
  }
  return Int32Array.from([...chosen].sort((a, b) => a - b));
}

/** The share of the target's answer tokens (counted with repeats) that `ids` holds. */
export function coverage(target: Map<number, number>, ids: Int32Array): number {
  const held = new Set(ids);
  let all = 0, kept = 0;
  for (const [t, n] of target) {
    all += n;
    if (held.has(t)) kept += n;
  }
  return all ? kept / all : 1;
}

function readGsm8k(file: string): Array<{ question: string; answer: string }> {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      const o = JSON.parse(l) as { question?: unknown; answer?: unknown };
      if (typeof o.question !== 'string' || typeof o.answer !== 'string') throw new Error(`${file}:${i + 1}: expected {"question": ..., "answer": ...}`);
      return { question: o.question, answer: o.answer };
    });
}

function main(argv: string[]): void {
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const target = arg('target'), reference = arg('reference'), tokenizer = arg('tokenizer'), out = arg('out');
  const size = Number(arg('size') ?? 512);
  if (!target || !reference || !tokenizer || !out || !Number.isInteger(size) || size < 1) {
    process.stderr.write('usage: build-draft-vocab --target FILE --reference FILE --tokenizer DIR --size N --out DIR[,DIR...]\n');
    process.exit(2);
  }
  const tok = loadTokenizerDir(tokenizer);
  const eos = tok.token_to_id('<|endoftext|>') ?? 0;
  const own = answerTokenCounts(tok, readGsm8k(target));
  const template = tok.encode(formatGsm8kPrompt(''), { add_special_tokens: false }).ids;
  const ids = draftVocabulary(own, answerTokenCounts(tok, readGsm8k(reference)), size, [eos, ...template]);
  for (const dir of out.split(',')) {
    writeInt32File(path.join(dir, DRAFT_VOCAB_FILE), ids);
    process.stderr.write(
      `build-draft-vocab: wrote ${path.join(dir, DRAFT_VOCAB_FILE)} (${ids.length} ids; the target's answers use ${own.size} distinct tokens, ` +
        `${(100 * coverage(own, ids)).toFixed(3)}% of their occurrences are in the set)\n`,
    );
  }
}

if (require.main === module) main(process.argv.slice(2));
