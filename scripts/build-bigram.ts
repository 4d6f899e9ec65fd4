/**
 * Builds Max-Gram's bigram fallback table: for every token, the token that most often follows
 * it in a corpus (ties: the smaller id; tokens never seen: -1). Built from corpus counts, not
 * from a model's predictions: it needs no forward passes and is the same for every model that
 * shares the tokenizer. Stored beside the weights as maxgram-bigram.i32 (little-endian int32
 * per token id), where Model.bigramTable() finds it.
 *
 *   node dist/scripts/build-bigram.js --data FILE[,FILE] [--format gsm8k|text] --tokenizer DIR --out DIR[,DIR...]
 */
import * as path from 'path';

import { writeInt32File } from '../lib/files';
import { BIGRAM_FILE } from '../lib/model';
import { loadTokenizerDir, tokenStream } from './train';
import { readTexts, type DataFormat } from './train-tokenizer';

export function bigramTable(stream: Int32Array, vocabSize: number): Int32Array {
  const counts = new Map<number, number>();
  for (let i = 0; i + 1 < stream.length; i++) {
    const key = stream[i] * vocabSize + stream[i + 1];
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const table = new Int32Array(vocabSize).fill(-1);
  const best = new Int32Array(vocabSize);
  for (const [key, c] of counts) {
    const prev = Math.floor(key / vocabSize), next = key % vocabSize;
    if (c > best[prev] || (c === best[prev] && next < table[prev])) {
      best[prev] = c;
      table[prev] = next;
    }
  }
  return table;
}

function main(argv: string[]): void {
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const data = arg('data'), tokenizer = arg('tokenizer'), out = arg('out');
  const format = (arg('format') ?? 'gsm8k') as DataFormat;
  if (!data || !tokenizer || !out) {
    process.stderr.write('usage: build-bigram --data FILE[,FILE] [--format gsm8k|text] --tokenizer DIR --out DIR[,DIR...]\n');
    process.exit(2);
  }
  const tok = loadTokenizerDir(tokenizer);
  const eos = tok.token_to_id('<|endoftext|>') ?? 0;
  let vocab = 0;
  for (const id of tok.get_vocab(true).values()) vocab = Math.max(vocab, id + 1);
  const table = bigramTable(tokenStream(tok, readTexts(data.split(','), format), eos), vocab);
  for (const dir of out.split(',')) {
    writeInt32File(path.join(dir, BIGRAM_FILE), table);
    process.stderr.write(`build-bigram: wrote ${path.join(dir, BIGRAM_FILE)} (${table.filter((t) => t >= 0).length}/${vocab} tokens with a successor)\n`);
  }
}

if (require.main === module) main(process.argv.slice(2));
