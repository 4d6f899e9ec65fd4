/**
 * Byte-level BPE tokenizer trainer (GPT-2 style), writing a standard Hugging Face
 * `tokenizer.json` + `tokenizer_config.json` pair.
 *
 * CLI:
 *   node dist/scripts/train-tokenizer.js --data FILE[,FILE...] [--format gsm8k|text]
 *        [--vocab-size 4096] --out DIR [--eval FILE[,FILE...]] [--seed N]
 *
 * Layout of the vocabulary (ids are dense, 0..V-1):
 *   0           "<|endoftext|>"   (BOS and EOS)
 *   1           "<|pad|>"
 *   2..257      the 256 byte tokens, id = 2 + byte value (GPT-2 byte→unicode alphabet)
 *   258..V-1    merged tokens, in merge order
 *
 * Pre-tokenization (identical at training and inference time, because training uses the
 * very pre-tokenizer implementation of @huggingface/tokenizers that the project encodes with):
 *   Split(regex, Isolated) → ByteLevel(add_prefix_space=false, use_regex=false)
 * where the regex is GPT-2's with one change: every number character is its own pre-token
 * (`\p{N}` instead of ` ?\p{N}+`), and a space before a digit is a pre-token of its own,
 * so no token ever contains a digit next to anything else. Words carry their leading space
 * (" clips"), newlines are separate whitespace pre-tokens, and a prompt ending in
 * "\nAnswer:" pre-tokenizes exactly like the same prefix of the training text.
 *
 * Training is deterministic: ties between equally frequent pairs are broken by the pair's
 * token strings (left, then right, in UTF-16 code-unit order). The `--seed` option is
 * accepted for interface uniformity with the other scripts but has no effect.
 */
import * as fs from 'fs';
import * as path from 'path';
import { SequencePreTokenizer, Tokenizer } from '@huggingface/tokenizers';

export const EOS_TOKEN = '<|endoftext|>';
export const BOS_TOKEN = EOS_TOKEN;
export const PAD_TOKEN = '<|pad|>';
export const DEFAULT_SPECIAL_TOKENS: readonly string[] = [EOS_TOKEN, PAD_TOKEN];
export const DEFAULT_VOCAB_SIZE = 4096;
/** Largest vocabulary the trainer accepts (pair keys are packed as left * 2^21 + right). */
export const MAX_VOCAB_SIZE = 1 << 21;

/**
 * Oniguruma regex (as stored in tokenizer.json; also understood by @huggingface/tokenizers,
 * which rewrites it to a JS regex). GPT-2's pattern with single-character numbers.
 */
export const PRE_TOKENIZER_PATTERN =
  "'(?:[sdmt]|ll|ve|re)| ?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

export const PRE_TOKENIZER_CONFIG = {
  type: 'Sequence',
  pretokenizers: [
    { type: 'Split', pattern: { Regex: PRE_TOKENIZER_PATTERN }, behavior: 'Isolated', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
  ],
};

export const DECODER_CONFIG = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };

export interface TrainOptions {
  /** Total vocabulary size, special tokens and the 256 byte tokens included. */
  vocabSize: number;
  /** Special tokens, given ids 0..n-1 in this order. The first one is BOS/EOS. */
  specialTokens: string[];
}

export interface TrainResult {
  tokenizerJson: HfTokenizerJson;
  tokenizerConfig: HfTokenizerConfig;
}

export interface HfAddedToken {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

export interface HfTokenizerJson {
  version: string;
  truncation: null;
  padding: null;
  added_tokens: HfAddedToken[];
  normalizer: null;
  pre_tokenizer: typeof PRE_TOKENIZER_CONFIG;
  post_processor: null;
  decoder: typeof DECODER_CONFIG;
  model: {
    type: 'BPE';
    dropout: null;
    unk_token: null;
    continuing_subword_prefix: null;
    end_of_word_suffix: null;
    fuse_unk: boolean;
    byte_fallback: boolean;
    ignore_merges: boolean;
    vocab: Record<string, number>;
    merges: string[];
  };
}

export interface HfTokenizerConfig {
  tokenizer_class: string;
  add_bos_token: boolean;
  add_eos_token: boolean;
  bos_token: string;
  eos_token: string;
  pad_token: string | null;
  unk_token: null;
  clean_up_tokenization_spaces: boolean;
  added_tokens_decoder: Record<string, Omit<HfAddedToken, 'id'>>;
  [key: string]: unknown;
}

/** An error caused by bad input (arguments, files); the CLI prints its message and the usage. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

// ---------------------------------------------------------------------------------------
// Byte-level alphabet (GPT-2 bytes_to_unicode)
// ---------------------------------------------------------------------------------------

/** BYTE_TO_CHAR[b] is the printable character that stands for byte b. */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const out = new Array<string>(256);
  for (let i = 0; i < 256; i++) out[bs[i]] = String.fromCharCode(cs[i]);
  return out;
})();

const CHAR_CODE_TO_BYTE: Int16Array = (() => {
  const t = new Int16Array(512).fill(-1);
  BYTE_TO_CHAR.forEach((c, b) => {
    t[c.charCodeAt(0)] = b;
  });
  return t;
})();

// ---------------------------------------------------------------------------------------
// Text preparation
// ---------------------------------------------------------------------------------------

/** One GSM8K training example, without the EOS token (which follows it in training). */
export function formatGsm8k(question: string, answer: string): string {
  return `Question: ${question}\nAnswer: ${answer}`;
}

/** The inference prompt for a GSM8K question (a prefix of formatGsm8k's output). */
export function formatGsm8kPrompt(question: string): string {
  return `Question: ${question}\nAnswer:`;
}

export type DataFormat = 'gsm8k' | 'text';

/** Reads the texts of one or more files; gsm8k files give one text per record. */
export function readTexts(files: string[], format: DataFormat): string[] {
  const texts: string[] = [];
  for (const file of files) {
    let raw: string;
    try {
      raw = fs.readFileSync(file, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new UsageError(`data file not found: ${file}`);
      if (code === 'EISDIR') throw new UsageError(`data path is a directory, not a file: ${file}`);
      throw new UsageError(`cannot read data file ${file}: ${(e as Error).message}`);
    }
    if (format === 'text') {
      if (raw.length > 0) texts.push(raw);
      continue;
    }
    const lines = raw.split('\n');
    let records = 0;
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].trim();
      if (line === '') continue;
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch (e) {
        throw new UsageError(`${file}:${i + 1}: invalid JSON (${(e as Error).message}); --format gsm8k expects one {"question","answer"} object per line`);
      }
      const r = rec as { question?: unknown; answer?: unknown };
      if (rec === null || typeof rec !== 'object' || typeof r.question !== 'string' || typeof r.answer !== 'string') {
        throw new UsageError(`${file}:${i + 1}: expected an object with string fields "question" and "answer"`);
      }
      texts.push(formatGsm8k(r.question, r.answer));
      records++;
    }
    if (records === 0) throw new UsageError(`${file}: no gsm8k records found`);
  }
  return texts;
}

// ---------------------------------------------------------------------------------------
// Trainer
// ---------------------------------------------------------------------------------------

function validateTrainOptions(opts: TrainOptions): void {
  if (opts === null || typeof opts !== 'object') throw new UsageError('options must be an object {vocabSize, specialTokens}');
  const { vocabSize, specialTokens } = opts;
  if (!Array.isArray(specialTokens)) throw new UsageError('specialTokens must be an array of strings');
  const seen = new Set<string>();
  for (const t of specialTokens) {
    if (typeof t !== 'string' || t.length === 0) throw new UsageError(`special tokens must be non-empty strings, got ${JSON.stringify(t)}`);
    if (seen.has(t)) throw new UsageError(`duplicate special token ${JSON.stringify(t)}`);
    if (BYTE_TO_CHAR.includes(t)) throw new UsageError(`special token ${JSON.stringify(t)} collides with a byte token`);
    seen.add(t);
  }
  const min = specialTokens.length + 256;
  if (typeof vocabSize !== 'number' || !Number.isInteger(vocabSize)) {
    throw new UsageError(`vocab size must be an integer, got ${JSON.stringify(vocabSize)}`);
  }
  if (vocabSize < min) {
    throw new UsageError(`vocab size ${vocabSize} is too small: it must be at least ${min} (${specialTokens.length} special tokens + 256 byte tokens)`);
  }
  if (vocabSize > MAX_VOCAB_SIZE) throw new UsageError(`vocab size ${vocabSize} is too large (max ${MAX_VOCAB_SIZE})`);
}

/** Splits text around occurrences of special tokens (longest match first), dropping them. */
function stripSpecialTokens(text: string, specials: string[]): string[] {
  if (specials.length === 0) return [text];
  const sorted = [...specials].sort((a, b) => b.length - a.length);
  const escaped = sorted.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return text.split(new RegExp(escaped.join('|'))).filter((s) => s.length > 0);
}

interface HeapEntry {
  count: number;
  a: number;
  b: number;
}

/** Binary max-heap of pair candidates; ties broken by (str[a], str[b]) ascending. */
class PairHeap {
  private items: HeapEntry[] = [];
  constructor(private readonly str: string[]) {}

  get size(): number {
    return this.items.length;
  }

  private before(x: HeapEntry, y: HeapEntry): boolean {
    if (x.count !== y.count) return x.count > y.count;
    const xa = this.str[x.a];
    const ya = this.str[y.a];
    if (xa !== ya) return xa < ya;
    const xb = this.str[x.b];
    const yb = this.str[y.b];
    return xb < yb;
  }

  push(e: HeapEntry): void {
    const items = this.items;
    items.push(e);
    let i = items.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(items[i], items[p])) break;
      [items[i], items[p]] = [items[p], items[i]];
      i = p;
    }
  }

  pop(): HeapEntry | undefined {
    const items = this.items;
    if (items.length === 0) return undefined;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && this.before(items[l], items[m])) m = l;
        if (r < items.length && this.before(items[r], items[m])) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m], items[i]];
        i = m;
      }
    }
    return top;
  }
}

const KEY_MULT = MAX_VOCAB_SIZE;

/**
 * Trains a byte-level BPE tokenizer on `texts`.
 * Returns a standard Hugging Face tokenizer.json object and a tokenizer_config.json object.
 * Throws UsageError for invalid options or when the texts cannot support `vocabSize` tokens.
 */
export function trainByteLevelBpe(texts: string[], opts: TrainOptions): TrainResult {
  if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) {
    throw new UsageError('texts must be an array of strings');
  }
  validateTrainOptions(opts);
  const { vocabSize } = opts;
  const specials = [...opts.specialTokens];

  // 1. Count pre-tokens (byte-level strings) with the inference library's own pre-tokenizer.
  const preTokenizer = new SequencePreTokenizer(PRE_TOKENIZER_CONFIG as ConstructorParameters<typeof SequencePreTokenizer>[0]);
  const wordFreq = new Map<string, number>();
  for (const text of texts) {
    for (const section of stripSpecialTokens(text, specials)) {
      for (const w of preTokenizer.pre_tokenize_text(section)) {
        wordFreq.set(w, (wordFreq.get(w) ?? 0) + 1);
      }
    }
  }

  // 2. Initial vocabulary: specials, then the 256 bytes.
  const tokStr: string[] = [...specials, ...BYTE_TO_CHAR];
  const strToId = new Map<string, number>();
  tokStr.forEach((s, i) => strToId.set(s, i));
  const byteBase = specials.length;

  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [w, f] of wordFreq) {
    const syms = new Array<number>(w.length);
    for (let i = 0; i < w.length; i++) {
      const c = w.charCodeAt(i);
      const b = c < 512 ? CHAR_CODE_TO_BYTE[c] : -1;
      if (b < 0) throw new Error(`internal error: pre-token ${JSON.stringify(w)} is not byte-level encoded`);
      syms[i] = byteBase + b;
    }
    words.push(syms);
    freqs.push(f);
  }

  // 3. Pair statistics: counts, pair → words index (may hold stale entries), lazy max-heap.
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  for (let wi = 0; wi < words.length; wi++) {
    const w = words[wi];
    const f = freqs[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const k = w[i] * KEY_MULT + w[i + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + f);
      let s = pairWords.get(k);
      if (!s) pairWords.set(k, (s = new Set()));
      s.add(wi);
    }
  }
  const heap = new PairHeap(tokStr);
  for (const [k, c] of pairCount) heap.push({ count: c, a: Math.floor(k / KEY_MULT), b: k % KEY_MULT });

  const dec = (k: number, f: number): void => {
    const v = pairCount.get(k)! - f;
    if (v === 0) pairCount.delete(k);
    else pairCount.set(k, v);
  };

  // 4. Merge loop.
  const merges: string[] = [];
  let vocabLen = tokStr.length;
  while (vocabLen < vocabSize) {
    const top = heap.pop();
    if (top === undefined) {
      throw new UsageError(
        `the training text is too small for vocab size ${vocabSize}: no pairs left to merge at ${vocabLen} tokens ` +
          `(${merges.length} merges); use more text or a vocab size of at most ${vocabLen}`,
      );
    }
    const key = top.a * KEY_MULT + top.b;
    const cur = pairCount.get(key) ?? 0;
    if (cur !== top.count) {
      if (cur > 0) heap.push({ count: cur, a: top.a, b: top.b });
      continue;
    }
    const { a, b } = top;
    const merged = tokStr[a] + tokStr[b];
    let x = strToId.get(merged);
    if (x === undefined) {
      x = vocabLen++;
      tokStr.push(merged);
      strToId.set(merged, x);
    }
    merges.push(`${tokStr[a]} ${tokStr[b]}`);

    const where = pairWords.get(key)!;
    pairWords.delete(key);
    const touched = new Set<number>();
    for (const wi of where) {
      const w = words[wi];
      let found = false;
      for (let i = 0; i + 1 < w.length; i++) {
        if (w[i] === a && w[i + 1] === b) {
          found = true;
          break;
        }
      }
      if (!found) continue; // stale index entry
      const f = freqs[wi];
      for (let i = 0; i + 1 < w.length; i++) dec(w[i] * KEY_MULT + w[i + 1], f);
      const nw: number[] = [];
      for (let i = 0; i < w.length; ) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          nw.push(x);
          i += 2;
        } else {
          nw.push(w[i]);
          i += 1;
        }
      }
      words[wi] = nw;
      for (let i = 0; i + 1 < nw.length; i++) {
        const k = nw[i] * KEY_MULT + nw[i + 1];
        pairCount.set(k, (pairCount.get(k) ?? 0) + f);
        if (nw[i] === x || nw[i + 1] === x) {
          let s = pairWords.get(k);
          if (!s) pairWords.set(k, (s = new Set()));
          s.add(wi);
          touched.add(k);
        }
      }
    }
    for (const k of touched) {
      const c = pairCount.get(k);
      if (c !== undefined && c > 0) heap.push({ count: c, a: Math.floor(k / KEY_MULT), b: k % KEY_MULT });
    }
  }

  // 5. Assemble the Hugging Face files.
  const vocab: Record<string, number> = {};
  tokStr.forEach((s, i) => {
    vocab[s] = i;
  });
  const addedTokens: HfAddedToken[] = specials.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  const tokenizerJson: HfTokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: PRE_TOKENIZER_CONFIG,
    post_processor: null,
    decoder: DECODER_CONFIG,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const addedTokensDecoder: Record<string, Omit<HfAddedToken, 'id'>> = {};
  for (const { id, ...rest } of addedTokens) addedTokensDecoder[String(id)] = rest;
  const bos = specials.length > 0 ? specials[0] : '';
  const tokenizerConfig: HfTokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: specials.length > 0,
    add_eos_token: false,
    bos_token: bos,
    eos_token: bos,
    pad_token: specials.length > 1 ? specials[1] : null,
    unk_token: null,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: addedTokensDecoder,
  };
  return { tokenizerJson, tokenizerConfig };
}

/** Loads a trained tokenizer into @huggingface/tokenizers. */
export function loadTokenizer(result: TrainResult): Tokenizer {
  return new Tokenizer(result.tokenizerJson, result.tokenizerConfig);
}

/** UTF-8 bytes per token of `texts` (each text encoded on its own, without special tokens). */
export function bytesPerToken(tok: Tokenizer, texts: string[]): { bytes: number; tokens: number; ratio: number } {
  let bytes = 0;
  let tokens = 0;
  for (const t of texts) {
    bytes += Buffer.byteLength(t, 'utf8');
    tokens += tok.encode(t, { add_special_tokens: false }).ids.length;
  }
  return { bytes, tokens, ratio: tokens === 0 ? 0 : bytes / tokens };
}

// ---------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------

export const USAGE = `usage: node dist/scripts/train-tokenizer.js --data FILE[,FILE...] --out DIR
         [--format gsm8k|text] [--vocab-size ${DEFAULT_VOCAB_SIZE}] [--eval FILE[,FILE...]] [--seed N]

  --data FILES       training files, comma separated (or repeat --data)
  --format F         gsm8k: jsonl {"question","answer"} records, each formatted as
                     "Question: {question}\\nAnswer: {answer}"; text: raw text files (default gsm8k)
  --vocab-size V     total vocabulary size incl. 2 special tokens and 256 bytes (default ${DEFAULT_VOCAB_SIZE})
  --out DIR          output folder for tokenizer.json and tokenizer_config.json (created if missing)
  --eval FILES       held-out files (same format) to report bytes per token on
  --seed N           accepted for uniformity; training is deterministic and ignores it`;

export interface CliOptions {
  data: string[];
  format: DataFormat;
  vocabSize: number;
  out: string;
  eval: string[];
  seed: number | null;
  help: boolean;
}

function splitList(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Parses CLI arguments; throws UsageError with a clear message on bad input. */
export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = { data: [], format: 'gsm8k', vocabSize: DEFAULT_VOCAB_SIZE, out: '', eval: [], seed: null, help: false };
  const known = new Set(['--data', '--format', '--vocab-size', '--out', '--eval', '--seed']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      o.help = true;
      continue;
    }
    let name = arg;
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      name = arg.slice(0, eq);
      value = arg.slice(eq + 1);
    }
    if (!known.has(name)) {
      throw new UsageError(arg.startsWith('-') ? `unknown option ${name}` : `unexpected argument ${JSON.stringify(arg)}`);
    }
    if (value === undefined) {
      if (i + 1 >= argv.length || argv[i + 1].startsWith('--')) throw new UsageError(`option ${name} needs a value`);
      value = argv[++i];
    }
    switch (name) {
      case '--data':
        o.data.push(...splitList(value));
        break;
      case '--eval':
        o.eval.push(...splitList(value));
        break;
      case '--out':
        o.out = value;
        break;
      case '--format':
        if (value !== 'gsm8k' && value !== 'text') throw new UsageError(`--format must be gsm8k or text, got ${JSON.stringify(value)}`);
        o.format = value;
        break;
      case '--vocab-size': {
        if (!/^\d+$/.test(value)) throw new UsageError(`--vocab-size must be a positive integer, got ${JSON.stringify(value)}`);
        o.vocabSize = Number(value);
        break;
      }
      case '--seed':
        if (!/^-?\d+$/.test(value)) throw new UsageError(`--seed must be an integer, got ${JSON.stringify(value)}`);
        o.seed = Number(value);
        break;
    }
  }
  if (o.help) return o;
  if (o.data.length === 0) throw new UsageError('missing --data FILE[,FILE...]');
  if (o.out === '') throw new UsageError('missing --out DIR');
  const min = DEFAULT_SPECIAL_TOKENS.length + 256;
  if (o.vocabSize < min || o.vocabSize > MAX_VOCAB_SIZE) {
    throw new UsageError(`--vocab-size must be between ${min} (${DEFAULT_SPECIAL_TOKENS.length} special tokens + 256 bytes) and ${MAX_VOCAB_SIZE}, got ${o.vocabSize}`);
  }
  for (const f of [...o.data, ...o.eval]) {
    if (!fs.existsSync(f)) throw new UsageError(`file not found: ${f}`);
    if (!fs.statSync(f).isFile()) throw new UsageError(`not a regular file: ${f}`);
  }
  if (fs.existsSync(o.out) && !fs.statSync(o.out).isDirectory()) throw new UsageError(`--out exists and is not a directory: ${o.out}`);
  return o;
}

export interface CliSummary {
  vocabSize: number;
  merges: number;
  trainSeconds: number;
  train: { bytes: number; tokens: number; ratio: number };
  eval: { bytes: number; tokens: number; ratio: number } | null;
  roundTripFailures: number;
  outDir: string;
}

/** Runs the CLI; returns a summary (null for --help). Throws UsageError on bad input. */
export function runCli(argv: string[], log: (line: string) => void = (l) => console.log(l)): CliSummary | null {
  const o = parseArgs(argv);
  if (o.help) {
    log(USAGE);
    return null;
  }
  const t0 = Date.now();
  const texts = readTexts(o.data, o.format);
  const evalTexts = o.eval.length > 0 ? readTexts(o.eval, o.format) : null;
  const totalBytes = texts.reduce((s, t) => s + Buffer.byteLength(t, 'utf8'), 0);
  log(`read ${texts.length} ${o.format === 'gsm8k' ? 'records' : 'files'} (${(totalBytes / 1e6).toFixed(2)} MB) from ${o.data.join(', ')}`);
  if (o.seed !== null) log(`seed ${o.seed} (ignored: BPE training is deterministic)`);

  const t1 = Date.now();
  const result = trainByteLevelBpe(texts, { vocabSize: o.vocabSize, specialTokens: [...DEFAULT_SPECIAL_TOKENS] });
  const trainSeconds = (Date.now() - t1) / 1000;

  fs.mkdirSync(o.out, { recursive: true });
  fs.writeFileSync(path.join(o.out, 'tokenizer.json'), JSON.stringify(result.tokenizerJson, null, 2) + '\n');
  fs.writeFileSync(path.join(o.out, 'tokenizer_config.json'), JSON.stringify(result.tokenizerConfig, null, 2) + '\n');

  // Reload from the written files, as a consumer would, and measure.
  const tok = new Tokenizer(
    JSON.parse(fs.readFileSync(path.join(o.out, 'tokenizer.json'), 'utf8')),
    JSON.parse(fs.readFileSync(path.join(o.out, 'tokenizer_config.json'), 'utf8')),
  );
  let roundTripFailures = 0;
  for (const t of texts) {
    const ids = tok.encode(t, { add_special_tokens: false }).ids;
    if (ids.length > 0 && tok.decode(ids) !== t) roundTripFailures++;
  }
  const train = bytesPerToken(tok, texts);
  const ev = evalTexts ? bytesPerToken(tok, evalTexts) : null;

  const vocabSize = tok.get_vocab().size;
  log(`wrote ${path.join(o.out, 'tokenizer.json')} and tokenizer_config.json`);
  log(`vocab size: ${vocabSize} (${result.tokenizerJson.model.merges.length} merges)`);
  log(`training time: ${trainSeconds.toFixed(2)} s (total ${((Date.now() - t0) / 1000).toFixed(2)} s)`);
  log(`train: ${train.bytes} bytes / ${train.tokens} tokens = ${train.ratio.toFixed(3)} bytes per token`);
  if (ev) log(`eval (${o.eval.join(', ')}): ${ev.bytes} bytes / ${ev.tokens} tokens = ${ev.ratio.toFixed(3)} bytes per token`);
  if (roundTripFailures > 0) log(`WARNING: ${roundTripFailures} training texts did not round-trip through encode/decode`);
  return {
    vocabSize,
    merges: result.tokenizerJson.model.merges.length,
    trainSeconds,
    train,
    eval: ev,
    roundTripFailures,
    outDir: o.out,
  };
}

if (require.main === module) {
  try {
    const summary = runCli(process.argv.slice(2));
    if (summary && summary.roundTripFailures > 0) process.exitCode = 1;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else {
      throw e;
    }
  }
}
