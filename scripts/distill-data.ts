/**
 * Sequence-level distillation data: the target's own continuations of GSM8K questions (greedy,
 * or sampled with --temperature),
 * written as GSM8K jsonl ({"question", "answer"}) for scripts/train.ts, so that a draft trained
 * on it learns to predict what the target will say (the acceptance of speculative decoding).
 *
 *   node dist/scripts/distill-data.js --model models/target --data ../shared/data/gsm8k/train.jsonl
 *        --out FILE [--max-new-tokens 160] [--batch 16] [--limit N] [--threads 1] [--dtype bfloat16]
 *        [--temperature T --seed S]
 *
 * Each question is wrapped in the model's prompt template ("Question: {q}\nAnswer:") and
 * continued greedily (or, with --temperature, sampled: question i with seed S + i, as
 * model.generate samples with that seed) until EOS, --max-new-tokens, or the context ends.
 * Sampled answers are text the target writes but not its greedy text: a draft trained on them
 * with the teacher's argmax as its labels (train.ts --teacher --kd-term argmax) learns what the
 * target says next in more contexts than the greedy answers alone hold. Sequences are decoded
 * together (continuous batching through the native verifyBatch: one packed pass per token for all
 * of them), which gives exactly the tokens of plain greedy generation one at a time.
 *
 * The answer is written so that train.ts's formatting, "Question: {q}\nAnswer: {a}", tokenizes
 * to exactly the prompt followed by the target's tokens: the continuation's leading space is
 * the one the format adds. A record whose text would not reproduce the target's tokens (no leading
 * space, or a token sequence the tokenizer would encode differently) is skipped and counted.
 * Records cut by the length limit (no EOS) are kept with "eos": false; train.ts appends EOS to
 * every record all the same.
 *
 * Use GSM8K *train* questions only: the family is evaluated on test.
 */
import * as fs from 'fs';
import * as path from 'path';

import { Model } from '../lib/model';
import { loadNative, type Dtype } from '../lib/native';
import type { Sequence } from '../lib/sequence';

export interface DistillOptions {
  maxNewTokens?: number;
  batch?: number;
  /** 0 (the default): greedy. Otherwise prompt i is sampled at this temperature (no top-k or
   *  top-p) with seed `seed + i`. */
  temperature?: number;
  seed?: number;
  /** Called after each finished question with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

export interface DistillRecord {
  question: string;
  /** The continuation's tokens (EOS excluded). */
  tokens: number[];
  /** Ended with EOS (rather than the length limit). */
  eos: boolean;
}

/** The prompt template of a model folder (cascade-spec.json), else the family's. */
export function promptTemplate(dir: string): string {
  const f = path.join(dir, 'cascade-spec.json');
  if (fs.existsSync(f)) {
    const t = (JSON.parse(fs.readFileSync(f, 'utf8')) as { promptTemplate?: string }).promptTemplate;
    if (t) return t;
  }
  return 'Question: {prompt}\nAnswer:';
}

/**
 * Continuations of `prompts` (token ids), greedy or sampled (options.temperature), decoded
 * `batch` at a time through verifyBatch. Results are in the order of `prompts`.
 */
export async function continuations(model: Model, prompts: number[][], options: DistillOptions = {}): Promise<Array<{ tokens: number[]; eos: boolean }>> {
  const maxNew = options.maxNewTokens ?? 160;
  const batch = Math.max(1, options.batch ?? 16);
  const temperature = options.temperature ?? 0;
  const sampling = { temperature, topK: 0, topP: 1 };
  const eosIds = new Set(model.tokenizer.eosIds);
  const addon = loadNative();
  const results: Array<{ tokens: number[]; eos: boolean }> = new Array(prompts.length);
  interface Slot { seq: Sequence; index: number; block: Int32Array; fixed: number; tokens: number[] }
  const free: Sequence[] = [];
  const active: Slot[] = [];
  let nextPrompt = 0;
  let done = 0;
  const refill = (): void => {
    while (active.length < batch && nextPrompt < prompts.length) {
      const index = nextPrompt++;
      const seq = free.pop() ?? model.createSequence();
      seq.truncate(0);
      if (temperature > 0) seq.native.reseed((options.seed ?? 0) + index);
      const p = prompts[index];
      if (p.length >= seq.capacity) throw new RangeError(`prompt ${index} is ${p.length} tokens; the context is ${seq.capacity}`);
      // The whole prompt is one block of known tokens: the pass prefills it and yields the first token.
      active.push({ seq, index, block: Int32Array.from(p), fixed: p.length, tokens: [] });
    }
  };
  refill();
  while (active.length > 0) {
    const out = await addon.verifyBatch(active.map((s) => ({ sequence: s.seq.native, block: s.block, fixed: s.fixed, sampling })));
    for (let i = active.length - 1; i >= 0; i--) {
      const s = active[i];
      const next = out[i].next;
      const promptLen = prompts[s.index].length;
      const isEos = eosIds.has(next);
      if (!isEos) s.tokens.push(next);
      // Stops once prompt + continuation fill the context (a length limit like maxNewTokens).
      if (isEos || s.tokens.length >= maxNew || promptLen + s.tokens.length >= s.seq.capacity) {
        results[s.index] = { tokens: s.tokens, eos: isEos };
        free.push(s.seq);
        active.splice(i, 1);
        options.onProgress?.(++done, prompts.length);
      } else {
        s.block = Int32Array.of(next);
        s.fixed = 1;
      }
    }
    refill();
  }
  return results;
}

/**
 * The GSM8K record for a continuation, or undefined when train.ts's formatting of it would not
 * reproduce exactly the prompt's tokens followed by the continuation's.
 */
export function toRecord(model: Model, template: string, question: string, tokens: number[]): { question: string; answer: string } | undefined {
  const text = model.tokenizer.decode(tokens, { skipSpecialTokens: false });
  if (!text.startsWith(' ')) return undefined;
  const answer = text.slice(1);
  const prompt = template.replace('{prompt}', question);
  const expected = [...model.tokenizer.encode(prompt, { addBos: false }), ...tokens];
  const got = model.tokenizer.encode(`${prompt} ${answer}`, { addBos: false });
  if (got.length !== expected.length || got.some((t, i) => t !== expected[i])) return undefined;
  return { question, answer };
}

function fail(msg: string): never {
  process.stderr.write(`distill-data: error: ${msg}\n`);
  process.exit(2);
}

export async function main(argv: string[]): Promise<void> {
  const raw: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) fail(`bad argument ${argv[i]} (every option takes a value)`);
    raw[argv[i].slice(2)] = argv[++i];
  }
  const known = ['model', 'data', 'out', 'max-new-tokens', 'batch', 'limit', 'threads', 'dtype', 'temperature', 'seed'];
  for (const k of Object.keys(raw)) if (!known.includes(k)) fail(`unknown option --${k}`);
  if (!raw.data) fail('--data FILE (GSM8K jsonl, train split) is required');
  if (!raw.out) fail('--out FILE is required');
  const int = (k: string, d: number): number => {
    if (raw[k] === undefined) return d;
    const v = Number(raw[k]);
    if (!Number.isInteger(v) || v < 1) fail(`--${k} must be a positive integer`);
    return v;
  };
  const modelDir = raw.model ?? 'models/target';
  const maxNewTokens = int('max-new-tokens', 160);
  const batch = int('batch', 16);
  const limit = int('limit', Number.MAX_SAFE_INTEGER);
  const threads = int('threads', 1);
  const dtype = (raw.dtype ?? 'bfloat16') as Dtype;
  if (!['float32', 'bfloat16', 'float16'].includes(dtype)) fail('--dtype must be float32, bfloat16 or float16');
  if (!fs.existsSync(raw.data)) fail(`--data ${raw.data}: file not found`);
  const temperature = raw.temperature === undefined ? 0 : Number(raw.temperature);
  if (!(temperature >= 0 && Number.isFinite(temperature))) fail('--temperature must be a number >= 0');
  const seed = raw.seed === undefined ? 0 : Number(raw.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) fail('--seed must be an integer >= 0');

  const questions = fs.readFileSync(raw.data, 'utf8').split('\n').filter((l) => l.trim()).slice(0, limit)
    .map((l, i) => {
      const q = (JSON.parse(l) as { question?: unknown }).question;
      if (typeof q !== 'string') fail(`${raw.data}:${i + 1}: no "question" string`);
      return q;
    });
  const model = await Model.load(modelDir, { dtype, threads });
  const template = promptTemplate(modelDir);
  // Questions whose prompt fills the context leave nothing to learn from: skipped.
  const kept: string[] = [];
  const prompts: number[][] = [];
  for (const q of questions) {
    try {
      prompts.push(model.encodePrompt(template.replace('{prompt}', q)));
      kept.push(q);
    } catch (e) {
      if (!(e instanceof RangeError)) throw e;
    }
  }
  if (kept.length < questions.length) process.stderr.write(`distill-data: ${questions.length - kept.length} question(s) skipped: the prompt fills the context\n`);
  const t0 = Date.now();
  let lastReport = 0;
  const conts = await continuations(model, prompts, {
    maxNewTokens, batch, temperature, seed,
    onProgress: (d, n) => {
      if (Date.now() - lastReport > 10_000 || d === n) {
        lastReport = Date.now();
        process.stderr.write(`distill-data: ${d}/${n} questions, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
      }
    },
  });
  const lines: string[] = [];
  let skipped = 0, tokens = 0, eos = 0;
  conts.forEach((c, i) => {
    const rec = toRecord(model, template, kept[i], c.tokens);
    if (!rec) return void skipped++;
    tokens += c.tokens.length;
    if (c.eos) eos++;
    lines.push(JSON.stringify({ ...rec, eos: c.eos }));
  });
  fs.mkdirSync(path.dirname(path.resolve(raw.out)), { recursive: true });
  fs.writeFileSync(raw.out, lines.map((l) => l + '\n').join(''));
  const secs = (Date.now() - t0) / 1000;
  process.stderr.write(
    `distill-data: wrote ${lines.length} records (${tokens} answer tokens, ${eos} ended with EOS) to ${raw.out}; ` +
      `${skipped} skipped (text does not round-trip); ${secs.toFixed(0)} s, ${((tokens / secs) || 0).toFixed(0)} tok/s\n`,
  );
}

if (require.main === module) main(process.argv.slice(2)).catch((e) => {
  console.error(e);
  process.exit(1);
});
