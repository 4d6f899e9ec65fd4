/**
 * scripts/distill-data.ts: its batched greedy continuations equal plain greedy generation, and the
 * records it writes re-tokenize (in train.ts's format) to exactly prompt + those tokens.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { parseModelConfig } from '../lib/config';
import { Model } from '../lib/model';
import { loadNative, type NativeConfig } from '../lib/native';
import { continuations, main as distillMain, toRecord } from '../scripts/distill-data';
import { makeTinyModel, mulberry32, TRAINABLE_TINY } from './helpers/tiny-model';

let tmp: string;
let tinyDir: string;
let cfg: NativeConfig;
const B = 4, T = 32;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-distill-'));
  tinyDir = path.join(tmp, 'tiny');
  makeTinyModel(tinyDir, TRAINABLE_TINY);
  cfg = parseModelConfig(tinyDir);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('scripts/distill-data', () => {
  const questions = ['What is 2 plus 3?', 'Tom has 4 apples and eats one.', 'How many legs do 3 cats have?', 'x', 'A train leaves at 5 pm. When does it arrive?'];
  let dir: string;
  let model: Model;

  beforeAll(() => {
    // Fine-tune the tiny model from its own weights (loadWeights) on "Question: q\nAnswer: a"
    // documents, so its greedy answers start with the format's space and some records are written.
    dir = path.join(tmp, 'taught');
    fs.cpSync(tinyDir, dir, { recursive: true });
    const tok = Model.loadSync(dir).tokenizer;
    const docs = questions.map((q, i) => tok.encode(`Question: ${q}\nAnswer: the answer is ${i}.`, { addBos: true }).concat(tok.eosIds[0]));
    const stream = docs.flat();
    const t = new (loadNative().Trainer)(cfg, { seed: 5, bf16: false, threads: 1 });
    t.loadWeights(path.join(dir, 'model.safetensors'));
    const r = mulberry32(3);
    for (let s = 0; s < 60; s++) {
      const rows = Int32Array.from({ length: B * (T + 1) }, () => 0);
      for (let b = 0; b < B; b++) {
        const start = Math.floor(r() * (stream.length - T - 1));
        rows.set(stream.slice(start, start + T + 1), b * (T + 1));
      }
      t.step(rows, B, 1e-2);
    }
    t.saveWeights(path.join(dir, 'model.safetensors'), 'BF16');
    model = Model.loadSync(dir, { dtype: 'bfloat16' });
  });

  test('batched continuations (fewer slots than prompts) equal plain greedy generation', async () => {
    const prompts = questions.map((q) => model.encodePrompt(`Question: ${q}\nAnswer:`));
    const got = await continuations(model, prompts, { maxNewTokens: 24, batch: 2 });
    for (let i = 0; i < prompts.length; i++) {
      const r = await model.generate(prompts[i], { maxNewTokens: 24, method: 'ar', temperature: 0 });
      const eos = r.finishReason === 'eos';
      expect(got[i]).toEqual({ tokens: eos ? r.tokens.slice(0, -1) : r.tokens, eos });
    }
  });

  test('sampled continuations: prompt i equals generate() sampled with seed S + i', async () => {
    const prompts = questions.map((q) => model.encodePrompt(`Question: ${q}\nAnswer:`));
    const got = await continuations(model, prompts, { maxNewTokens: 24, batch: 2, temperature: 0.9, seed: 40 });
    const greedy = await continuations(model, prompts, { maxNewTokens: 24, batch: 2 });
    let differs = 0;
    for (let i = 0; i < prompts.length; i++) {
      const r = await model.generate(prompts[i], { maxNewTokens: 24, method: 'ar', temperature: 0.9, topK: 0, topP: 1, seed: 40 + i });
      const eos = r.finishReason === 'eos';
      expect(got[i]).toEqual({ tokens: eos ? r.tokens.slice(0, -1) : r.tokens, eos });
      if (JSON.stringify(got[i]) !== JSON.stringify(greedy[i])) differs++;
    }
    expect(differs).toBeGreaterThan(0); // sampling happened
  });

  test('toRecord: accepts exactly the continuations whose text re-tokenizes to the same ids', () => {
    const tpl = 'Question: {prompt}\nAnswer:';
    const ids = model.tokenizer.encode(' 12 apples', { addBos: false });
    expect(toRecord(model, tpl, 'q?', ids)).toEqual({ question: 'q?', answer: '12 apples' });
    expect(toRecord(model, tpl, 'q?', model.tokenizer.encode('12', { addBos: false }))).toBeUndefined(); // no leading space
  });

  test('the script writes records whose training text is prompt + the greedy tokens', async () => {
    const data = path.join(tmp, 'questions.jsonl'), out = path.join(tmp, 'out', 'distilled.jsonl');
    fs.writeFileSync(data, questions.map((q) => JSON.stringify({ question: q, answer: 'unused' }) + '\n').join(''));
    const write = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      await distillMain(['--model', dir, '--data', data, '--out', out, '--max-new-tokens', '24', '--batch', '3', '--dtype', 'bfloat16']);
    } finally {
      process.stderr.write = write;
    }
    const records = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { question: string; answer: string; eos: boolean });
    expect(records.length).toBeGreaterThan(0);
    for (const rec of records) {
      const prompt = model.encodePrompt(`Question: ${rec.question}\nAnswer:`);
      const r = await model.generate(prompt, { maxNewTokens: 24, method: 'ar', temperature: 0 });
      const cont = r.finishReason === 'eos' ? r.tokens.slice(0, -1) : r.tokens;
      expect(rec.eos).toBe(r.finishReason === 'eos');
      // train.ts's document text, tokenized as train.ts does (no BOS; it puts EOS between documents)
      expect(model.tokenizer.encode(`Question: ${rec.question}\nAnswer: ${rec.answer}`, { addBos: false })).toEqual([...prompt.slice(1), ...cont]);
    }
  });
});
