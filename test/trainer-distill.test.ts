/**
 * Draft training objectives (scripts/train.ts --answers-only, --teacher):
 * - a loss mask: the step's loss is the mean next-token NLL over the marked targets only,
 *   checked against NLLs computed here from the inference model's logits;
 * - distillation: (1 - w) * NLL + w * KL(teacher || model) per counted position, checked the
 *   same way, for a float32 teacher and for one on the bf16 kernels (the target's inference path);
 * - answerFlags / sampleBatch: which stream tokens are answer tokens, and the windows' masks;
 * - bad teachers and masks give Errors and leave the process alive.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { parseModelConfig } from '../lib/config';
import { Model } from '../lib/model';
import { loadNative, type NativeConfig, type NativeTrainer } from '../lib/native';
import { main as distillMain } from '../scripts/distill-data';
import { answerFlags, loadTokenizerDir, parseTrainArgs, sampleBatch, tokenStream } from '../scripts/train';
import { makeTinyModel, mulberry32, TRAINABLE_TINY } from './helpers/tiny-model';

let tmp: string;
let studentDir: string;
let teacherDir: string;
let cfg: NativeConfig;
const B = 3, T = 24;

function batch(seed: number): Int32Array {
  const r = mulberry32(seed);
  return Int32Array.from({ length: B * (T + 1) }, () => Math.floor(r() * cfg.vocabSize));
}

/** A fresh trainer holding the student's weights (float32, no autocast). */
function student(weightDecay = 0.1): NativeTrainer {
  const t = new (loadNative().Trainer)(cfg, { seed: 1, bf16: false, threads: 1, weightDecay });
  t.loadWeights(path.join(studentDir, 'model.safetensors'));
  return t;
}

/** log-softmax of every row of a model's logits over each batch row's first T tokens. */
function logProbs(model: Model, tokens: Int32Array): Float64Array[] {
  const V = cfg.vocabSize;
  const out: Float64Array[] = [];
  for (let b = 0; b < B; b++) {
    const row = tokens.subarray(b * (T + 1), b * (T + 1) + T);
    const logits = model.createSequence({ contextLength: T }).forwardSync(Int32Array.from(row), { allLogits: true });
    for (let i = 0; i < T; i++) {
      const lp = new Float64Array(V);
      let max = -Infinity;
      for (let j = 0; j < V; j++) max = Math.max(max, logits[i * V + j]);
      let sum = 0;
      for (let j = 0; j < V; j++) sum += Math.exp(logits[i * V + j] - max);
      for (let j = 0; j < V; j++) lp[j] = logits[i * V + j] - max - Math.log(sum);
      out.push(lp);
    }
  }
  return out;
}

/** The objective computed here: mean over masked positions of (1-w) NLL + w * the teacher's
 * term (KL(teacher||student), or the NLL of the teacher's argmax). */
function expected(tokens: Int32Array, mask: Uint8Array | undefined, w: number, teacher?: Model, term: 'kl' | 'argmax' = 'kl'): number {
  const s = logProbs(Model.loadSync(studentDir), tokens);
  const t = teacher ? logProbs(teacher, tokens) : undefined;
  let total = 0, n = 0;
  for (let b = 0; b < B; b++)
    for (let i = 0; i < T; i++) {
      const p = b * T + i;
      if (mask && !mask[p]) continue;
      let value = -s[p][tokens[b * (T + 1) + i + 1]];
      if (t && term === 'kl') {
        let kl = 0;
        for (let j = 0; j < cfg.vocabSize; j++) kl += Math.exp(t[p][j]) * (t[p][j] - s[p][j]);
        value = (1 - w) * value + w * kl;
      } else if (t) {
        let best = 0;
        for (let j = 1; j < cfg.vocabSize; j++) if (t[p][j] > t[p][best]) best = j;
        value = (1 - w) * value + w * -s[p][best];
      }
      total += value;
      n++;
    }
  return total / n;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-trainer-distill-'));
  studentDir = path.join(tmp, 'student');
  teacherDir = path.join(tmp, 'teacher');
  makeTinyModel(studentDir, TRAINABLE_TINY);
  makeTinyModel(teacherDir, { ...TRAINABLE_TINY, seed: 99, numLayers: 3, hiddenSize: 48, numHeads: 4 });
  cfg = parseModelConfig(studentDir);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('loss mask', () => {
  test('the step loss is the mean NLL over the marked targets only', () => {
    const tokens = batch(3);
    const r = mulberry32(4);
    const mask = Uint8Array.from({ length: B * T }, () => (r() < 0.4 ? 1 : 0));
    // lr 0: the step reports the loss before its update, and the weights stay as they were.
    const masked = student().step(tokens, B, 0, mask);
    expect(masked).toBeCloseTo(expected(tokens, mask, 0), 4);
    const all = student().step(tokens, B, 0);
    expect(all).toBeCloseTo(expected(tokens, undefined, 0), 4);
    expect(Math.abs(masked - all)).toBeGreaterThan(1e-3); // the mask changed what was counted
    expect(student().step(tokens, B, 0, new Uint8Array(B * T).fill(1))).toBeCloseTo(all, 5);
  });

  test('a masked step trains only through the marked targets', () => {
    const tokens = batch(5);
    // Without weight decay, a step whose mask counts nothing has a zero gradient and AdamW
    // leaves every weight as it was.
    const none = student(0);
    const before = none.evalLoss(tokens, B);
    expect(none.step(tokens, B, 1e-2, new Uint8Array(B * T))).toBe(0);
    expect(none.evalLoss(tokens, B)).toBe(before);
    const some = student();
    for (let i = 0; i < 5; i++) some.step(tokens, B, 1e-2, new Uint8Array(B * T).fill(1));
    expect(some.evalLoss(tokens, B)).toBeLessThan(before - 0.05);
  });
});

describe('distillation from a teacher', () => {
  test.each([0.5, 1])('float32 teacher, weight %p: (1-w) NLL + w KL over the counted positions', (w) => {
    const tokens = batch(6);
    const teacher = Model.loadSync(teacherDir);
    const t = student();
    t.setTeacher(teacher.native, w);
    expect(t.step(tokens, B, 0)).toBeCloseTo(expected(tokens, undefined, w, teacher), 4);
    const mask = Uint8Array.from({ length: B * T }, (_, i) => i % 3 === 0 ? 1 : 0);
    expect(t.step(tokens, B, 0, mask)).toBeCloseTo(expected(tokens, mask, w, teacher), 4);
    // eval stays plain cross-entropy
    expect(t.evalLoss(tokens, B)).toBeCloseTo(expected(tokens, undefined, 0), 4);
  });

  test.each([0.6, 1])('argmax term, weight %p: (1-w) NLL + w NLL of the teacher\'s greedy token', (w) => {
    const tokens = batch(10);
    const teacher = Model.loadSync(teacherDir);
    const t = student();
    t.setTeacher(teacher.native, w, 'argmax');
    const mask = Uint8Array.from({ length: B * T }, (_, i) => i % 2);
    expect(t.step(tokens, B, 0, mask)).toBeCloseTo(expected(tokens, mask, w, teacher, 'argmax'), 4);
    // The student as its own teacher: its argmax's NLL, which is below the data tokens' NLL.
    const self = student();
    self.setTeacher(Model.loadSync(studentDir).native, 1, 'argmax');
    expect(self.step(tokens, B, 0)).toBeCloseTo(expected(tokens, undefined, 1, Model.loadSync(studentDir), 'argmax'), 4);
    expect(self.step(tokens, B, 0)).toBeLessThan(expected(tokens, undefined, 0));
  });

  test('a teacher on the bf16 kernels gives its kernels logits', () => {
    const tokens = batch(7);
    const teacher = Model.loadSync(teacherDir, { dtype: 'bfloat16' });
    expect(teacher.native.kernels).not.toBeNull();
    const t = student();
    t.setTeacher(teacher.native, 0.7);
    expect(t.step(tokens, B, 0)).toBeCloseTo(expected(tokens, undefined, 0.7, teacher), 3);
  });

  test('the model as its own teacher: KL 0, so weight 1 leaves nothing to learn', () => {
    const tokens = batch(8);
    const t = student();
    t.setTeacher(Model.loadSync(studentDir).native, 1);
    expect(Math.abs(t.step(tokens, B, 0))).toBeLessThan(1e-5);
    t.setTeacher(null);
    expect(t.step(tokens, B, 0)).toBeCloseTo(expected(tokens, undefined, 0), 4);
  });

  test('bad teachers and masks: Errors, process alive', () => {
    const other = path.join(tmp, 'other-vocab');
    makeTinyModel(other, { ...TRAINABLE_TINY, vocabSize: 320 });
    const t = student();
    expect(() => t.setTeacher(Model.loadSync(other).native, 0.5)).toThrow(/vocabulary \(320 tokens\) differs from this model's \(300\)/);
    expect(() => t.setTeacher(Model.loadSync(teacherDir).native, 1.5)).toThrow(/weight must be in \[0, 1\]/);
    expect(() => (t.setTeacher as (x: unknown) => void)({})).toThrow(/expected a native Model/);
    expect(() => (t.setTeacher as (...a: unknown[]) => void)(Model.loadSync(teacherDir).native, 0.5, 'mse')).toThrow(/term must be 'kl' or 'argmax'/);
    const tokens = batch(9);
    expect(() => t.step(tokens, B, 0, new Uint8Array(5))).toThrow(/lossMask must hold batch \* T = 72 flags, got 5/);
    expect(() => (t.step as (...a: unknown[]) => number)(tokens, B, 0, new Int32Array(B * T))).toThrow(/lossMask must be a Uint8Array/);
    expect(Number.isFinite(t.step(tokens, B, 0))).toBe(true);
  });
});

describe('answerFlags and sampleBatch', () => {
  const tokDir = path.join(__dirname, '..', 'models', 'tokenizer');
  test('flags mark exactly each record\'s answer tokens and its closing EOS', () => {
    const tok = loadTokenizerDir(tokDir);
    const eos = tok.token_to_id('<|endoftext|>')!;
    const records = [
      { q: 'How many apples are there?', a: ' 3 + 4 = <<3+4=7>>7\n#### 7' },
      { q: 'What is 12 times 2?', a: ' 12 * 2 = 24\n#### 24' },
    ];
    const texts = records.map((r) => `Question: ${r.q}\nAnswer:${r.a}`);
    const stream = tokenStream(tok, texts, eos);
    const flags = answerFlags(tok, texts);
    expect(flags.length).toBe(stream.length);
    // Split the stream at its EOS tokens and decode what the flags select in each record.
    let i = 1;
    for (const r of records) {
      const start = i;
      while (stream[i] !== eos) i++;
      const ids = Array.from(stream.subarray(start, i));
      const flagged = ids.filter((_, k) => flags[start + k]);
      const unflagged = ids.filter((_, k) => !flags[start + k]);
      expect(tok.decode(flagged, { skip_special_tokens: false })).toBe(r.a);
      expect(tok.decode(unflagged, { skip_special_tokens: false })).toBe(`Question: ${r.q}\nAnswer:`);
      expect(flags[i]).toBe(1); // the closing EOS is the answer's last target
      i++;
    }
    expect(flags[0]).toBe(0);
    // A record without "\nAnswer:" has no answer tokens.
    expect(Array.from(answerFlags(tok, ['just text'])).every((f) => f === 0)).toBe(true);
  });

  test('each window\'s mask is the flags of its targets', () => {
    const stream = Int32Array.from({ length: 500 }, (_, i) => i);
    const flags = Uint8Array.from({ length: 500 }, (_, i) => (i * 7) % 3 === 0 ? 1 : 0);
    const ctx = 16;
    const { tokens, mask } = sampleBatch(stream, 4, ctx, mulberry32(3), flags);
    const plain = sampleBatch(stream, 4, ctx, mulberry32(3));
    expect(Array.from(tokens)).toEqual(Array.from(plain)); // same windows with or without flags
    for (let b = 0; b < 4; b++)
      for (let k = 0; k < ctx; k++) expect(mask[b * ctx + k]).toBe(flags[tokens[b * (ctx + 1) + k + 1]]);
  });
});

describe('the scripts refuse bad draft-training options with a clear message', () => {
  /** Runs fn with process.exit and stderr captured: the exit code and what was written. */
  async function refused(fn: () => unknown): Promise<{ code: number | undefined; err: string }> {
    let err = '';
    const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      err += chunk.toString();
      return true;
    });
    const exit = jest.spyOn(process, 'exit').mockImplementation(((code?: number) => {
      throw Object.assign(new Error('exit'), { exitCode: code });
    }) as never);
    let code: number | undefined;
    try {
      await fn();
    } catch (e) {
      code = (e as { exitCode?: number }).exitCode;
    } finally {
      write.mockRestore();
      exit.mockRestore();
    }
    return { code, err };
  }
  const tokDir = path.join(__dirname, '..', 'models', 'tokenizer');
  const base = () => ['--data', path.join(tmp, 'data.jsonl'), '--tokenizer', tokDir, '--out', path.join(tmp, 'out')];
  beforeAll(() => fs.writeFileSync(path.join(tmp, 'data.jsonl'), JSON.stringify({ question: 'q', answer: 'a' }) + '\n'));

  test('train.ts', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--kd-term', 'mse', '--teacher', studentDir], /--kd-term must be kl or argmax/],
      [['--kd-term', 'argmax'], /--kd-term needs --teacher/],
      [['--kd-weight', '0.5'], /--kd-weight needs --teacher/],
      [['--teacher', studentDir, '--kd-weight', '2'], /--kd-weight must be a number in \[0, 1\]/],
      [['--teacher', path.join(tmp, 'nowhere')], /--teacher .*nowhere: no config.json there/],
      [['--answers-only', '--format', 'text'], /--answers-only needs --format gsm8k/],
    ];
    for (const [extra, msg] of cases) {
      const r = await refused(() => parseTrainArgs([...base(), ...extra]));
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
    }
    // and the good forms parse
    const ok = parseTrainArgs([...base(), '--answers-only', '--teacher', studentDir, '--kd-term', 'argmax', '--kd-weight', '1']);
    expect([ok.answersOnly, ok.teacher, ok.kdTerm, ok.kdWeight]).toEqual([true, studentDir, 'argmax', 1]);
  });

  test('distill-data.ts', async () => {
    const args = ['--model', studentDir, '--data', path.join(tmp, 'data.jsonl'), '--out', path.join(tmp, 'd.jsonl')];
    for (const [extra, msg] of [
      [['--temperature', '-1'], /--temperature must be a number >= 0/],
      [['--temperature', 'hot'], /--temperature must be a number >= 0/],
      [['--seed', '1.5'], /--seed must be an integer >= 0/],
      [['--seed', '-3'], /--seed must be an integer >= 0/],
    ] as Array<[string[], RegExp]>) {
      const r = await refused(() => distillMain([...args, ...extra]));
      expect(r.code).toBe(2);
      expect(r.err).toMatch(msg);
    }
  });
});
