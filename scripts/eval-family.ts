/**
 * Evaluates the default model family for its report (docs/model-family.md):
 * - held-out perplexity of each model on GSM8K test (documents formatted as in training,
 *   scored in non-overlapping windows of the training context);
 * - each draft's greedy agreement with the target: along the target's own greedy continuation
 *   (128 tokens) of the first N test questions, the fraction of positions where the draft's
 *   argmax equals the target's token; also up to the first EOS only (greedyAgreementToEos), the
 *   positions a generation that stops at EOS drafts for (past EOS the target starts a new
 *   question, which drafts trained on answers only no longer model);
 * - single-token decode cost ratios (target / draft);
 * - training-loss curves as an SVG from each model's training log.
 *
 *   node dist/scripts/eval-family.js [--models models] [--test FILE] [--questions 200] [--tokens 128] [--out docs]
 */
import * as fs from 'fs';
import * as path from 'path';

import { Model } from '../lib/model';
import { lineChart } from '../lib/cli/svg';
import { PROMPT_TEMPLATE } from './train';
import { readTexts } from './train-tokenizer';

function arg(argv: string[], name: string, fallback: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : fallback;
}

function logSoftmaxAt(logits: Float32Array, offset: number, V: number, target: number): number {
  let max = -Infinity;
  for (let j = 0; j < V; j++) max = Math.max(max, logits[offset + j]);
  let sum = 0;
  for (let j = 0; j < V; j++) sum += Math.exp(logits[offset + j] - max);
  return logits[offset + target] - max - Math.log(sum);
}

/** The first maximal index of logits[offset .. offset + V), among `allowed` ids when given. */
function argmaxAt(logits: Float32Array, offset: number, V: number, allowed?: Uint8Array): number {
  let best = -1;
  for (let j = 0; j < V; j++) if ((!allowed || allowed[j]) && (best < 0 || logits[offset + j] > logits[offset + best])) best = j;
  return best;
}

export function perplexity(model: Model, stream: Int32Array, window: number): { loss: number; ppl: number; tokens: number } {
  let nll = 0;
  let count = 0;
  const V = model.config.vocabSize;
  for (let start = 0; start + 1 < stream.length; start += window) {
    const chunk = stream.subarray(start, Math.min(stream.length, start + window + 1));
    if (chunk.length < 2) break;
    const seq = model.createSequence({ contextLength: window });
    const logits = seq.forwardSync(Int32Array.from(chunk.subarray(0, chunk.length - 1)), { allLogits: true });
    for (let i = 0; i + 1 < chunk.length; i++) nll -= logSoftmaxAt(logits, i * V, V, chunk[i + 1]);
    count += chunk.length - 1;
  }
  return { loss: nll / count, ppl: Math.exp(nll / count), tokens: count };
}

/**
 * Single-token decode cost of each model at cache position 64, measured in interleaved rounds
 * (every model once per round, median over rounds) so that a busy machine slows all alike.
 */
export function decodeMs(models: Model[], rounds = 7, steps = 100): number[] {
  const seqs = models.map((m) => {
    const seq = m.createSequence({ contextLength: 256 });
    seq.forwardSync(Int32Array.from({ length: 64 }, (_, i) => (i * 31) % m.config.vocabSize));
    return seq;
  });
  const one = Int32Array.from([5]);
  const samples: number[][] = models.map(() => []);
  for (let r = 0; r < rounds; r++)
    seqs.forEach((seq, i) => {
      const t0 = performance.now();
      for (let s = 0; s < steps; s++) {
        seq.native.forward(one, false);
        seq.truncate(64);
      }
      if (r > 0) samples[i].push((performance.now() - t0) / steps); // round 0 warms up
    });
  return samples.map((xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]);
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--decode-only')) {
    // Re-measures the cost ratios into an existing report.
    const out = arg(argv, 'out', 'docs');
    const file = path.join(out, 'model-family-eval.json');
    const report = JSON.parse(fs.readFileSync(file, 'utf8'));
    const names = ['target', 'mid', 'small'];
    const costs = decodeMs(names.map((n) => Model.loadSync(path.join(arg(argv, 'models', 'models'), n))));
    names.forEach((n, i) => (report.models[n].decodeMs = costs[i]));
    for (const d of ['mid', 'small']) report.models[d].costRatio = costs[0] / report.models[d].decodeMs;
    fs.writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
    process.stderr.write(`eval: decode ms target ${costs[0].toFixed(3)} mid ${costs[1].toFixed(3)} small ${costs[2].toFixed(3)}\n`);
    return;
  }
  const root = arg(argv, 'models', 'models');
  const testFile = arg(argv, 'test', path.resolve(__dirname, '../../../shared/data/gsm8k/test.jsonl'));
  const questions = Number(arg(argv, 'questions', '200'));
  const nTokens = Number(arg(argv, 'tokens', '128'));
  const out = arg(argv, 'out', 'docs');
  const names = ['target', 'mid', 'small'];
  const models = Object.fromEntries(names.map((n) => [n, Model.loadSync(path.join(root, n))])) as Record<string, Model>;
  const target = models.target;
  const report: Record<string, unknown> = { testFile: path.resolve(testFile), questions, tokens: nTokens, models: {} };

  // Perplexity on the held-out split, formatted exactly as the training text.
  // EOS (= BOS) before every document, as scripts/train.ts builds the training stream.
  const eos = target.tokenizer.eosIds[0];
  const ids: number[] = [eos];
  for (const doc of readTexts([testFile], 'gsm8k')) ids.push(...target.tokenizer.encode(doc, { addBos: false }), eos);
  const stream = Int32Array.from(ids);
  const costs = decodeMs(names.map((n) => models[n]));
  names.forEach((n, i) => {
    const m = models[n];
    const ppl = perplexity(m, stream, 256);
    (report.models as Record<string, unknown>)[n] = { params: m.numParams, testLoss: ppl.loss, testPpl: ppl.ppl, testTokens: ppl.tokens, decodeMs: costs[i] };
    process.stderr.write(`eval: ${n} params ${m.numParams} test loss ${ppl.loss.toFixed(3)} ppl ${ppl.ppl.toFixed(2)} decode ${costs[i].toFixed(3)} ms\n`);
  });

  // Greedy agreement along the target's own continuation.
  const qs = fs.readFileSync(testFile, 'utf8').split('\n').filter(Boolean).slice(0, questions).map((l) => JSON.parse(l).question as string);
  // Also with each draft's argmax over its draft vocabulary (what its drafts propose).
  const agree: Record<string, { match: number; total: number; matchDraftVocab: number; matchToEos: number; totalToEos: number }> = {
    mid: { match: 0, total: 0, matchDraftVocab: 0, matchToEos: 0, totalToEos: 0 },
    small: { match: 0, total: 0, matchDraftVocab: 0, matchToEos: 0, totalToEos: 0 },
  };
  const eosIds = new Set(target.tokenizer.eosIds);
  const V = target.config.vocabSize;
  const allowedOf = (m: Model): Uint8Array => {
    const ids = m.draftVocabulary;
    const allowed = new Uint8Array(V).fill(ids ? 0 : 1);
    for (const t of ids ?? []) allowed[t] = 1;
    return allowed;
  };
  const allowed = { mid: allowedOf(models.mid), small: allowedOf(models.small) };
  for (let qi = 0; qi < qs.length; qi++) {
    const prompt = target.encodePrompt(PROMPT_TEMPLATE.replace('{prompt}', qs[qi]));
    const r = await target.generate(prompt, { maxNewTokens: nTokens, stopOnEos: false, method: 'mag' });
    const cont = r.tokens;
    const firstEos = cont.findIndex((t) => eosIds.has(t));
    const toEos = firstEos < 0 ? cont.length : firstEos + 1;
    for (const d of ['mid', 'small']) {
      const seq = models[d].createSequence();
      const logits = seq.forwardSync(Int32Array.from([...prompt, ...cont.slice(0, -1)]), { allLogits: true });
      for (let i = 0; i < cont.length; i++) {
        agree[d].total++;
        const hit = argmaxAt(logits, (prompt.length - 1 + i) * V, V) === cont[i];
        if (hit) agree[d].match++;
        if (i < toEos) {
          agree[d].totalToEos++;
          if (hit) agree[d].matchToEos++;
        }
        if (argmaxAt(logits, (prompt.length - 1 + i) * V, V, allowed[d as 'mid' | 'small']) === cont[i]) agree[d].matchDraftVocab++;
      }
    }
    if ((qi + 1) % 20 === 0) {
      const f = (d: string) => `${(agree[d].match / agree[d].total).toFixed(3)} (to EOS ${(agree[d].matchToEos / agree[d].totalToEos).toFixed(3)})`;
      process.stderr.write(`eval: agreement ${qi + 1}/${qs.length}: mid ${f('mid')} small ${f('small')}\n`);
    }
  }
  for (const d of ['mid', 'small']) {
    const entry = (report.models as Record<string, Record<string, unknown>>)[d];
    entry.greedyAgreement = agree[d].match / agree[d].total;
    entry.greedyAgreementToEos = agree[d].matchToEos / agree[d].totalToEos;
    entry.draftVocabularySize = models[d].draftVocabularySize;
    entry.greedyAgreementDraftVocabulary = agree[d].matchDraftVocab / agree[d].total;
    entry.costRatio = ((report.models as Record<string, Record<string, number>>).target.decodeMs) / (entry.decodeMs as number);
  }

  // Loss curves from the training logs copied into the report folder.
  const colors: Record<string, string> = { target: '#c33', mid: '#2a7', small: '#36c' };
  const series: Array<{ label: string; points: Array<[number, number]>; color: string }> = [];
  for (const n of names) {
    const log = path.join(out, 'training', `${n}.jsonl`);
    if (!fs.existsSync(log)) continue;
    const rows = fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { tokens: number; loss: number; evalLoss?: number });
    let smooth = rows[0].loss;
    series.push({ label: `${n} train`, color: colors[n], points: rows.map((r) => [r.tokens / 1e6, (smooth = 0.97 * smooth + 0.03 * r.loss)] as [number, number]).filter((_, i) => i % 5 === 0) });
    const evals = rows.filter((r) => r.evalLoss !== undefined).map((r) => [r.tokens / 1e6, r.evalLoss!] as [number, number]);
    if (evals.length) series.push({ label: `${n} held-out`, color: colors[n] + '88', points: evals });
  }
  if (series.length) fs.writeFileSync(path.join(out, 'model-family-loss.svg'), lineChart('Training loss (GSM8K train; held-out: GSM8K test sample)', series, 'training tokens (millions)', 'cross-entropy (nats/token)'));
  fs.writeFileSync(path.join(out, 'model-family-eval.json'), JSON.stringify(report, null, 2) + '\n');
  process.stderr.write(`eval: wrote ${path.join(out, 'model-family-eval.json')}\n`);
}

if (require.main === module) main(process.argv.slice(2)).catch((e) => {
  console.error(e);
  process.exit(1);
});
