import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SequencePreTokenizer, Tokenizer } from '@huggingface/tokenizers';
import {
  BYTE_TO_CHAR,
  DEFAULT_SPECIAL_TOKENS,
  EOS_TOKEN,
  PAD_TOKEN,
  PRE_TOKENIZER_CONFIG,
  UsageError,
  bytesPerToken,
  formatGsm8k,
  formatGsm8kPrompt,
  loadTokenizer,
  parseArgs,
  readTexts,
  runCli,
  trainByteLevelBpe,
  TrainResult,
} from '../scripts/train-tokenizer';

const SAMPLE_RECORDS = 300;
const VOCAB = 800;

/** Finds GSM8K train.jsonl: $GSM8K_DIR, shared/ beside the repo, or /work/shared. */
function findGsm8kTrain(): string | null {
  const candidates = [
    process.env.GSM8K_DIR ? path.join(process.env.GSM8K_DIR, 'train.jsonl') : '',
    path.resolve(__dirname, '..', 'shared', 'data', 'gsm8k', 'train.jsonl'),
    path.resolve(__dirname, '..', '..', 'shared', 'data', 'gsm8k', 'train.jsonl'),
    '/work/shared/data/gsm8k/train.jsonl',
  ];
  return candidates.find((c) => c !== '' && fs.existsSync(c)) ?? null;
}

/**
 * The first SAMPLE_RECORDS GSM8K records, or a deterministic synthetic stand-in if the data is
 * absent (or TOKENIZER_TEST_SYNTHETIC=1, to exercise that path).
 */
function loadSampleRecords(): { question: string; answer: string }[] {
  const file = process.env.TOKENIZER_TEST_SYNTHETIC === '1' ? null : findGsm8kTrain();
  if (file) {
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
    return lines.slice(0, SAMPLE_RECORDS).map((l) => JSON.parse(l));
  }
  // Synthetic stand-in: pseudo-words from syllables give enough distinct pairs for the vocab sizes below.
  let s = 12345;
  const rnd = (n: number): number => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return Math.floor(s / 65536) % n;
  };
  const syl = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'to', 'vi', 'ze', 'bar', 'den', 'fol', 'gim', 'hup', 'jex', 'kor',
    'lun', 'mos', 'nit', 'pra', 'que', 'rond', 'stel', 'tri', 'ulm', 'vax', 'wen', 'yor', 'zim', 'cha', 'sho', 'thi'];
  const word = (): string => Array.from({ length: 1 + rnd(3) }, () => syl[rnd(syl.length)]).join('');
  const recs: { question: string; answer: string }[] = [];
  for (let i = 0; i < SAMPLE_RECORDS; i++) {
    const w = word();
    const who = w[0].toUpperCase() + w.slice(1);
    const what = word() + 's';
    const a = 2 + rnd(90);
    const b = 2 + rnd(90);
    const filler = Array.from({ length: 4 + rnd(8) }, word).join(' ');
    recs.push({
      question: `${who} has ${a} ${what} and ${filler}, then buys ${b} more ${what}. How many ${what} does ${who} have now?`,
      answer: `${who} had ${a} ${what} and bought ${b} more, so ${who} has ${a}+${b} = <<${a}+${b}=${a + b}>>${a + b} ${what}.\n#### ${a + b}`,
    });
  }
  return recs;
}

const records = loadSampleRecords();
const sampleTexts = records.map((r) => formatGsm8k(r.question, r.answer));
const specialTokens = [...DEFAULT_SPECIAL_TOKENS];

let trained: TrainResult;
let tok: Tokenizer;

beforeAll(() => {
  trained = trainByteLevelBpe(sampleTexts, { vocabSize: VOCAB, specialTokens });
  tok = loadTokenizer(trained);
});

/** Byte-level token string → the text it stands for. */
function tokenText(token: string): string {
  const charToByte = new Map(BYTE_TO_CHAR.map((c, b) => [c, b] as [string, number]));
  const bytes = Array.from(token, (c) => {
    const b = charToByte.get(c);
    if (b === undefined) throw new Error(`not a byte-level token: ${token}`);
    return b;
  });
  return Buffer.from(bytes).toString('utf8');
}

describe('trainByteLevelBpe', () => {
  test('writes standard Hugging Face tokenizer.json fields', () => {
    const j = trained.tokenizerJson;
    expect(j.model.type).toBe('BPE');
    expect(j.decoder.type).toBe('ByteLevel');
    expect(j.pre_tokenizer.type).toBe('Sequence');
    expect(j.added_tokens).toEqual([
      { id: 0, content: EOS_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 1, content: PAD_TOKEN, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ]);
    for (const m of j.model.merges) expect(m.split(' ')).toHaveLength(2);
    const c = trained.tokenizerConfig;
    expect(c.bos_token).toBe(EOS_TOKEN);
    expect(c.eos_token).toBe(EOS_TOKEN);
    expect(c.pad_token).toBe(PAD_TOKEN);
    expect(c.add_bos_token).toBe(true);
    expect(c.clean_up_tokenization_spaces).toBe(false);
    // Survives a JSON round trip (what is written to disk).
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });

  test('vocabulary has exactly the requested size, with dense ids 0..V-1', () => {
    const vocab = trained.tokenizerJson.model.vocab;
    const ids = Object.values(vocab).sort((a, b) => a - b);
    expect(ids).toHaveLength(VOCAB);
    ids.forEach((id, i) => expect(id).toBe(i));
    expect(vocab[EOS_TOKEN]).toBe(0);
    expect(vocab[PAD_TOKEN]).toBe(1);
    BYTE_TO_CHAR.forEach((c, b) => expect(vocab[c]).toBe(2 + b));
    expect(tok.get_vocab().size).toBe(VOCAB);
    expect(tok.token_to_id(EOS_TOKEN)).toBe(0);
    expect(tok.id_to_token(VOCAB - 1)).toBeDefined();
    // Every merge combines two vocabulary tokens into a vocabulary token.
    for (const m of trained.tokenizerJson.model.merges) {
      const [a, b] = m.split(' ');
      expect(vocab[a]).toBeDefined();
      expect(vocab[b]).toBeDefined();
      expect(vocab[a + b]).toBeDefined();
    }
    // Other sizes too.
    for (const v of [258, 259, 300]) {
      const r = trainByteLevelBpe(sampleTexts.slice(0, 50), { vocabSize: v, specialTokens });
      expect(Object.keys(r.tokenizerJson.model.vocab)).toHaveLength(v);
    }
  });

  test('training is deterministic', () => {
    const again = trainByteLevelBpe(sampleTexts, { vocabSize: VOCAB, specialTokens });
    expect(JSON.stringify(again.tokenizerJson)).toBe(JSON.stringify(trained.tokenizerJson));
    expect(JSON.stringify(again.tokenizerConfig)).toBe(JSON.stringify(trained.tokenizerConfig));
  });

  test('matches a naive reference BPE trainer merge for merge', () => {
    const texts = sampleTexts.slice(0, 40);
    const vocabSize = 330;
    const fast = trainByteLevelBpe(texts, { vocabSize, specialTokens });

    // Naive: recount every pair each step; ties broken by (left string, right string).
    const pre = new SequencePreTokenizer(PRE_TOKENIZER_CONFIG as ConstructorParameters<typeof SequencePreTokenizer>[0]);
    const freq = new Map<string, number>();
    for (const t of texts) for (const w of pre.pre_tokenize_text(t)) freq.set(w, (freq.get(w) ?? 0) + 1);
    let words = [...freq.entries()].map(([w, f]) => ({ syms: Array.from(w), f }));
    const vocab = new Set<string>([...specialTokens, ...BYTE_TO_CHAR]);
    const merges: string[] = [];
    while (vocab.size < vocabSize) {
      const counts = new Map<string, number>();
      for (const { syms, f } of words) {
        for (let i = 0; i + 1 < syms.length; i++) {
          const k = JSON.stringify([syms[i], syms[i + 1]]);
          counts.set(k, (counts.get(k) ?? 0) + f);
        }
      }
      let best: [string, string] | null = null;
      let bestCount = 0;
      for (const [k, c] of counts) {
        const p = JSON.parse(k) as [string, string];
        if (
          best === null ||
          c > bestCount ||
          (c === bestCount && (p[0] < best[0] || (p[0] === best[0] && p[1] < best[1])))
        ) {
          best = p;
          bestCount = c;
        }
      }
      if (best === null) throw new Error('ran out of pairs');
      const [a, b] = best;
      merges.push(`${a} ${b}`);
      vocab.add(a + b);
      words = words.map(({ syms, f }) => {
        const out: string[] = [];
        for (let i = 0; i < syms.length; ) {
          if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) {
            out.push(a + b);
            i += 2;
          } else {
            out.push(syms[i++]);
          }
        }
        return { syms: out, f };
      });
    }
    expect(fast.tokenizerJson.model.merges).toEqual(merges);
  });
});

describe('trained tokenizer', () => {
  test('encode → decode round-trips arbitrary text', () => {
    const texts = [
      ...sampleTexts.slice(0, 50),
      'Natalia sold 48/2 = <<48/2=24>>24 clips in May.',
      '<<48/2=24>>',
      '#### 72',
      'Question: How much?\nAnswer: 5\n#### 5',
      'héllo wörld — naïve café, 日本語のテキスト, emoji 😀👍🏽, Ελληνικά, عربى ١٢٣',
      'tabs\tand\r\nCRLF\n\n\nblank lines   and    runs of spaces ',
      '   leading spaces',
      "it's they're we'll I'd you've",
      '12345678901234567890 0.5 -3.25 1,000,000 $12.50 50%',
      'zero-width\u200bjoiner\u200d and combining e\u0301',
      '\u0000\u0001\u007f control bytes',
      'x',
      ' ',
      '\n',
    ];
    for (const t of texts) {
      const ids = tok.encode(t, { add_special_tokens: false }).ids;
      expect(ids.every((id) => Number.isInteger(id) && id >= 0 && id < VOCAB)).toBe(true);
      expect(tok.decode(ids)).toBe(t);
    }
  });

  test('special tokens are single ids and survive decode', () => {
    const t = `Question: a\nAnswer: b${EOS_TOKEN}${PAD_TOKEN}${PAD_TOKEN}`;
    const ids = tok.encode(t, { add_special_tokens: false }).ids;
    expect(ids.slice(-3)).toEqual([0, 1, 1]);
    expect(tok.decode(ids)).toBe(t);
    expect(tok.decode(ids, { skip_special_tokens: true })).toBe('Question: a\nAnswer: b');
  });

  test('every digit is its own token', () => {
    // No vocabulary token other than a lone digit contains a number character.
    for (const token of Object.keys(trained.tokenizerJson.model.vocab)) {
      if (specialTokens.includes(token)) continue;
      const text = tokenText(token);
      if (/\p{N}/u.test(text)) expect(text).toMatch(/^\p{N}$/u);
    }
    const enc = tok.encode('Answer: 1234 + 56 = <<1234+56=1290>>1290\n#### 1290', { add_special_tokens: false });
    const digitTokens = enc.tokens.filter((t) => /[0-9]/.test(t));
    expect(digitTokens.length).toBe(4 + 2 + 4 + 2 + 4 + 4 + 4);
    for (const t of digitTokens) expect(t).toMatch(/^[0-9]$/);
  });

  test('a prompt ending in "\\nAnswer:" tokenizes as a prefix of the training text', () => {
    for (const r of records.slice(0, 100)) {
      const prompt = tok.encode(formatGsm8kPrompt(r.question), { add_special_tokens: false }).ids;
      const full = tok.encode(formatGsm8k(r.question, r.answer) + EOS_TOKEN, { add_special_tokens: false }).ids;
      expect(full.slice(0, prompt.length)).toEqual(prompt);
      // The answer continues with its own token, starting with the space.
      expect(tok.id_to_token(full[prompt.length])!.startsWith('Ġ')).toBe(true);
      expect(full[full.length - 1]).toBe(0);
    }
    const tail = tok.encode('?\nAnswer:', { add_special_tokens: false }).tokens;
    expect(tail.slice(-2)).toEqual(['Answer', ':']);
  });

  test('merges compress the training sample (> 2 bytes per token)', () => {
    const { ratio } = bytesPerToken(tok, sampleTexts);
    expect(ratio).toBeGreaterThan(2);
  });
});

describe('argument and input validation', () => {
  test('trainByteLevelBpe rejects bad options with clear messages', () => {
    expect(() => trainByteLevelBpe(sampleTexts, { vocabSize: 100, specialTokens })).toThrow(/at least 258/);
    expect(() => trainByteLevelBpe(sampleTexts, { vocabSize: 300.5, specialTokens })).toThrow(/integer/);
    expect(() => trainByteLevelBpe(sampleTexts, { vocabSize: Number.NaN, specialTokens })).toThrow(/integer/);
    expect(() => trainByteLevelBpe(sampleTexts, { vocabSize: 300, specialTokens: ['<a>', '<a>'] })).toThrow(/duplicate special token/);
    expect(() => trainByteLevelBpe(sampleTexts, { vocabSize: 300, specialTokens: [''] })).toThrow(/non-empty/);
    expect(() => trainByteLevelBpe(['ab ab'], { vocabSize: 300, specialTokens })).toThrow(/too small for vocab size 300/);
    expect(() => trainByteLevelBpe(['ab ab'], { vocabSize: 300, specialTokens })).toThrow(UsageError);
  });

  describe('CLI', () => {
    let dir: string;
    let data: string;
    beforeAll(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tok-train-'));
      data = path.join(dir, 'train.jsonl');
      fs.writeFileSync(data, records.slice(0, 100).map((r) => JSON.stringify(r)).join('\n') + '\n');
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    test('parseArgs reports bad arguments clearly', () => {
      const out = path.join(dir, 'out');
      expect(() => parseArgs(['--out', out])).toThrow(/missing --data/);
      expect(() => parseArgs(['--data', data])).toThrow(/missing --out/);
      expect(() => parseArgs(['--data', path.join(dir, 'nope.jsonl'), '--out', out])).toThrow(/file not found: .*nope\.jsonl/);
      expect(() => parseArgs(['--data', dir, '--out', out])).toThrow(/not a regular file/);
      expect(() => parseArgs(['--data', data, '--out', out, '--vocab-size', 'abc'])).toThrow(/--vocab-size must be a positive integer/);
      expect(() => parseArgs(['--data', data, '--out', out, '--vocab-size', '100'])).toThrow(/--vocab-size must be between 258/);
      expect(() => parseArgs(['--data', data, '--out', out, '--format', 'csv'])).toThrow(/--format must be gsm8k or text/);
      expect(() => parseArgs(['--data', data, '--out', out, '--seed', 'x'])).toThrow(/--seed must be an integer/);
      expect(() => parseArgs(['--data', data, '--out', out, '--bogus', '1'])).toThrow(/unknown option --bogus/);
      expect(() => parseArgs(['--data', data, '--out'])).toThrow(/--out needs a value/);
      expect(() => parseArgs(['--data', data, '--out', data])).toThrow(/not a directory/);
      const o = parseArgs([`--data=${data},${data}`, '--out', out, '--vocab-size', '300', '--format', 'text', '--seed', '7']);
      expect(o).toMatchObject({ data: [data, data], out, vocabSize: 300, format: 'text', seed: 7 });
    });

    test('readTexts reports malformed data with file and line', () => {
      const bad = path.join(dir, 'bad.jsonl');
      fs.writeFileSync(bad, '{"question": "q", "answer": "a"}\n{not json}\n');
      expect(() => readTexts([bad], 'gsm8k')).toThrow(/bad\.jsonl:2: invalid JSON/);
      fs.writeFileSync(bad, '{"question": "q"}\n');
      expect(() => readTexts([bad], 'gsm8k')).toThrow(/bad\.jsonl:1: expected an object with string fields "question" and "answer"/);
      fs.writeFileSync(bad, '\n\n');
      expect(() => readTexts([bad], 'gsm8k')).toThrow(/no gsm8k records/);
      expect(() => readTexts([path.join(dir, 'missing.txt')], 'text')).toThrow(/data file not found/);
      expect(readTexts([data], 'gsm8k')[0]).toBe(formatGsm8k(records[0].question, records[0].answer));
      expect(readTexts([data], 'text')).toEqual([fs.readFileSync(data, 'utf8')]);
    });

    test('runCli trains, writes loadable files and reports bytes per token', () => {
      const out = path.join(dir, 'out');
      const lines: string[] = [];
      const summary = runCli(['--data', data, '--vocab-size', '320', '--out', out, '--eval', data], (l) => lines.push(l));
      expect(summary).not.toBeNull();
      expect(summary!.vocabSize).toBe(320);
      expect(summary!.roundTripFailures).toBe(0);
      expect(summary!.train.ratio).toBeGreaterThan(1.2);
      expect(summary!.eval!.ratio).toBeCloseTo(summary!.train.ratio, 10);
      expect(lines.join('\n')).toMatch(/vocab size: 320/);
      expect(lines.join('\n')).toMatch(/bytes per token/);
      const json = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8'));
      const cfg = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8'));
      const t = new Tokenizer(json, cfg);
      expect(t.decode(t.encode('#### 72').ids)).toBe('#### 72');
      expect(runCli(['--help'], () => undefined)).toBeNull();
    });
  });
});
