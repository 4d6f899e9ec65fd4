/**
 * Trains a Llama-architecture model from scratch on the project's own libtorch model code
 * (the native Trainer), and writes it in the Hugging Face layout the loader reads.
 *
 *   node dist/scripts/train.js --data FILE --tokenizer DIR --out DIR [--preset target|mid|small]
 *        [--hidden N --layers N --heads N --kv-heads N --intermediate N] [--context 256]
 *        [--steps N] [--batch 8] [--lr 2e-3] [--warmup 100] [--seed 0] [--threads 1]
 *        [--format gsm8k|text] [--eval FILE] [--eval-every 200] [--checkpoint-every 200]
 *        [--state-dir DIR] [--resume] [--fp32] [--save-dtype BF16|F16|F32] [--init DIR]
 *        [--answers-only] [--teacher DIR] [--kd-weight 0.5] [--kd-term kl|argmax]
 *
 * Data: GSM8K jsonl records become "Question: {q}\nAnswer: {a}" + EOS, exactly the format the
 * CLI's prompt template produces at inference; --format text trains on raw text files.
 * Batches are windows of context+1 tokens drawn from the concatenated token stream by a PRNG
 * seeded with (seed, step), so a resumed run sees the same batches as an uninterrupted one.
 * --data takes comma-separated files (their records are concatenated).
 *
 * --init DIR starts from that Hugging Face model folder's weights instead of random ones (e.g. to
 * fine-tune a draft on distillation data, scripts/distill-data.ts); its config.json must describe
 * the chosen shape. The schedule is the same (warm-up from 0 to --lr, then cosine to 0.1 --lr).
 * With --resume and a saved state, the state wins.
 *
 * Draft training (what speculative decoding needs from a draft is the target's next token in
 * answers, not a model of the questions):
 * --answers-only counts the loss only where the target token belongs to an answer (after
 * "\nAnswer:", the closing EOS included); the questions still feed the context. gsm8k only.
 * --teacher DIR distils from that model folder (bf16 kernels, as the target runs; no gradients):
 * the objective is (1 - w) * cross-entropy + w * the teacher's term, w = --kd-weight: with
 * --kd-term kl (the default) KL(teacher || model); with argmax the cross-entropy of the
 * teacher's greedy token at each position, so that text the target did not write greedily
 * (its sampled answers, say) still teaches what the target would say next.
 * The log's loss is that objective; its evalLoss stays plain cross-entropy on every token.
 */
import * as fs from 'fs';
import * as path from 'path';

import { Tokenizer } from '@huggingface/tokenizers';

import { weightFiles } from '../lib/files';
import { Model } from '../lib/model';
import { loadNative, type NativeConfig } from '../lib/native';
import { mulberry32 } from '../lib/prng';
import { readTexts, type DataFormat } from './train-tokenizer';

export const PROMPT_TEMPLATE = 'Question: {prompt}\nAnswer:';

export const PRESETS: Record<string, { hidden: number; layers: number; heads: number; kvHeads: number; intermediate: number }> = {
  target: { hidden: 384, layers: 6, heads: 6, kvHeads: 2, intermediate: 1024 },
  mid: { hidden: 192, layers: 4, heads: 3, kvHeads: 1, intermediate: 512 },
  small: { hidden: 96, layers: 2, heads: 2, kvHeads: 1, intermediate: 256 },
};

interface Args {
  data: string[];
  format: DataFormat;
  tokenizer: string;
  out: string;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  context: number;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  seed: number;
  threads: number;
  eval?: string;
  evalEvery: number;
  checkpointEvery: number;
  stateDir: string;
  resume: boolean;
  bf16: boolean;
  saveDtype: 'BF16' | 'F16' | 'F32';
  init?: string;
  answersOnly: boolean;
  teacher?: string;
  kdWeight: number;
  kdTerm: 'kl' | 'argmax';
}

function fail(msg: string): never {
  process.stderr.write(`train: error: ${msg}\n`);
  process.exit(2);
}

export function parseTrainArgs(argv: string[]): Args {
  const raw: Record<string, string | boolean> = {};
  const booleans = new Set(['resume', 'fp32', 'answers-only']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) fail(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (booleans.has(name)) raw[name] = true;
    else if (i + 1 < argv.length) raw[name] = argv[++i];
    else fail(`--${name} needs a value`);
  }
  const known = new Set(['data', 'format', 'tokenizer', 'out', 'preset', 'hidden', 'layers', 'heads', 'kv-heads', 'intermediate', 'context',
    'steps', 'batch', 'lr', 'warmup', 'seed', 'threads', 'eval', 'eval-every', 'checkpoint-every', 'state-dir', 'resume', 'fp32', 'save-dtype', 'init',
    'answers-only', 'teacher', 'kd-weight', 'kd-term']);
  for (const k of Object.keys(raw)) if (!known.has(k)) fail(`unknown option --${k}`);
  const preset = PRESETS[(raw.preset as string) ?? 'target'];
  if (!preset) fail(`unknown --preset ${String(raw.preset)} (target, mid, small)`);
  const num = (k: string, d: number, int = true, min = 1): number => {
    if (raw[k] === undefined) return d;
    const v = Number(raw[k]);
    if (!Number.isFinite(v) || (int && !Number.isInteger(v)) || v < min) fail(`--${k} must be ${int ? 'an integer' : 'a number'} >= ${min}`);
    return v;
  };
  if (typeof raw.data !== 'string') fail('--data FILE is required');
  if (typeof raw.tokenizer !== 'string') fail('--tokenizer DIR is required');
  if (typeof raw.out !== 'string') fail('--out DIR is required');
  const data = (raw.data as string).split(',');
  for (const f of data) if (!fs.existsSync(f)) fail(`--data ${f}: file not found`);
  if (!fs.existsSync(path.join(raw.tokenizer as string, 'tokenizer.json'))) fail(`--tokenizer ${raw.tokenizer}: no tokenizer.json there`);
  const format = ((raw.format as string) ?? 'gsm8k') as DataFormat;
  if (format !== 'gsm8k' && format !== 'text') fail('--format must be gsm8k or text');
  const saveDtype = ((raw['save-dtype'] as string) ?? 'BF16') as Args['saveDtype'];
  if (!['BF16', 'F16', 'F32'].includes(saveDtype)) fail('--save-dtype must be BF16, F16 or F32');
  const out = raw.out as string;
  if (raw.init !== undefined && !fs.existsSync(path.join(raw.init as string, 'config.json'))) fail(`--init ${String(raw.init)}: no config.json there`);
  if (raw.teacher !== undefined && !fs.existsSync(path.join(raw.teacher as string, 'config.json'))) fail(`--teacher ${String(raw.teacher)}: no config.json there`);
  if (raw['answers-only'] === true && format !== 'gsm8k') fail('--answers-only needs --format gsm8k (answers are what follows "\nAnswer:")');
  const kdWeight = raw['kd-weight'] === undefined ? 0.5 : Number(raw['kd-weight']);
  if (!(kdWeight >= 0 && kdWeight <= 1)) fail('--kd-weight must be a number in [0, 1]');
  if (raw['kd-weight'] !== undefined && raw.teacher === undefined) fail('--kd-weight needs --teacher');
  const kdTerm = ((raw['kd-term'] as string) ?? 'kl') as Args['kdTerm'];
  if (kdTerm !== 'kl' && kdTerm !== 'argmax') fail('--kd-term must be kl or argmax');
  if (raw['kd-term'] !== undefined && raw.teacher === undefined) fail('--kd-term needs --teacher');
  return {
    data, format, tokenizer: raw.tokenizer as string, out,
    hidden: num('hidden', preset.hidden), layers: num('layers', preset.layers), heads: num('heads', preset.heads),
    kvHeads: num('kv-heads', preset.kvHeads), intermediate: num('intermediate', preset.intermediate),
    context: num('context', 256, true, 2), steps: num('steps', 2000), batch: num('batch', 8), lr: num('lr', 2e-3, false, 0),
    warmup: num('warmup', 100, true, 0), seed: num('seed', 0, true, 0), threads: num('threads', 1),
    eval: raw.eval as string | undefined, evalEvery: num('eval-every', 200), checkpointEvery: num('checkpoint-every', 200),
    stateDir: (raw['state-dir'] as string) ?? path.join(out, '..', '.train-state', path.basename(out)),
    resume: raw.resume === true, bf16: raw.fp32 !== true, saveDtype, init: raw.init as string | undefined,
    answersOnly: raw['answers-only'] === true, teacher: raw.teacher as string | undefined, kdWeight, kdTerm,
  };
}

export function loadTokenizerDir(dir: string): Tokenizer {
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
  const cfgFile = path.join(dir, 'tokenizer_config.json');
  const cfg = fs.existsSync(cfgFile) ? JSON.parse(fs.readFileSync(cfgFile, 'utf8')) : {};
  return new Tokenizer(json, cfg);
}

/** The token stream of a corpus: EOS (= BOS) before every document and at the end. */
export function tokenStream(tok: Tokenizer, texts: string[], eos: number): Int32Array {
  const parts: number[] = [eos];
  for (const t of texts) {
    for (const id of tok.encode(t, { add_special_tokens: false }).ids) parts.push(id);
    parts.push(eos);
  }
  return Int32Array.from(parts);
}

/**
 * For tokenStream(tok, texts, eos) of gsm8k records ("Question: q\nAnswer: a"), one flag per
 * stream token: 1 where the token belongs to an answer (what follows "\nAnswer:", and the EOS
 * that closes the record). Where the record's tokens do not start with its question part's own
 * tokens (a merge across the boundary), its answer starts at the first token that differs.
 */
export function answerFlags(tok: Tokenizer, texts: string[]): Uint8Array {
  const parts: number[] = [0];
  for (const t of texts) {
    const ids = tok.encode(t, { add_special_tokens: false }).ids;
    const cut = t.indexOf('\nAnswer:');
    let start = ids.length;
    if (cut >= 0) {
      const q = tok.encode(t.slice(0, cut + '\nAnswer:'.length), { add_special_tokens: false }).ids;
      start = 0;
      while (start < q.length && start < ids.length && q[start] === ids[start]) start++;
    }
    for (let i = 0; i < ids.length; i++) parts.push(i >= start ? 1 : 0);
    parts.push(cut >= 0 ? 1 : 0);
  }
  return Uint8Array.from(parts);
}

/** A batch of windows of context + 1 tokens; with `flags` (one per stream token), also the
 * loss mask of its targets (each window's last `context` flags). */
export function sampleBatch(stream: Int32Array, batch: number, context: number, rand: () => number): Int32Array;
export function sampleBatch(
  stream: Int32Array, batch: number, context: number, rand: () => number, flags: Uint8Array,
): { tokens: Int32Array; mask: Uint8Array };
export function sampleBatch(
  stream: Int32Array, batch: number, context: number, rand: () => number, flags?: Uint8Array,
): Int32Array | { tokens: Int32Array; mask: Uint8Array } {
  const out = new Int32Array(batch * (context + 1));
  const mask = flags ? new Uint8Array(batch * context) : undefined;
  for (let b = 0; b < batch; b++) {
    const start = Math.floor(rand() * (stream.length - context - 1));
    out.set(stream.subarray(start, start + context + 1), b * (context + 1));
    mask?.set(flags!.subarray(start + 1, start + context + 1), b * context);
  }
  return mask ? { tokens: out, mask } : out;
}

function learningRate(a: Args, step: number): number {
  if (step < a.warmup) return (a.lr * (step + 1)) / a.warmup;
  const progress = (step - a.warmup) / Math.max(1, a.steps - a.warmup);
  return a.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * Math.min(1, progress))));
}

/**
 * The differences between a model folder's config.json and the shape being trained (empty when
 * they agree), as "field: folder value vs this run's value".
 */
export function initConfigMismatches(dir: string, cfg: NativeConfig): string[] {
  const hf = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const heads = Number(hf.num_attention_heads);
  const want: Array<[string, unknown, unknown]> = [
    ['vocab_size', hf.vocab_size, cfg.vocabSize],
    ['hidden_size', hf.hidden_size, cfg.hiddenSize],
    ['intermediate_size', hf.intermediate_size, cfg.intermediateSize],
    ['num_hidden_layers', hf.num_hidden_layers, cfg.numLayers],
    ['num_attention_heads', hf.num_attention_heads, cfg.numHeads],
    ['num_key_value_heads', hf.num_key_value_heads ?? hf.num_attention_heads, cfg.numKvHeads],
    ['head_dim', hf.head_dim ?? Number(hf.hidden_size) / heads, cfg.headDim],
    ['tie_word_embeddings', hf.tie_word_embeddings ?? true, cfg.tieWordEmbeddings],
    ['attention_bias', hf.attention_bias ?? false, cfg.attentionBias],
  ];
  return want.filter(([, a, b]) => a !== b).map(([k, a, b]) => `${k}: ${String(a)} vs ${String(b)}`);
}

function writeModelFolder(a: Args, cfg: NativeConfig, trainer: { saveWeights(p: string, d: 'BF16' | 'F16' | 'F32'): void }, vocab: number, eos: number): void {
  fs.mkdirSync(a.out, { recursive: true });
  const config = {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: vocab, hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize, num_hidden_layers: cfg.numLayers, num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads, head_dim: cfg.headDim, max_position_embeddings: cfg.maxPositionEmbeddings,
    rms_norm_eps: cfg.rmsNormEps, rope_theta: cfg.ropeTheta, rope_scaling: null, hidden_act: 'silu', attention_bias: false,
    mlp_bias: false, tie_word_embeddings: true, bos_token_id: eos, eos_token_id: eos,
    torch_dtype: a.saveDtype === 'BF16' ? 'bfloat16' : a.saveDtype === 'F16' ? 'float16' : 'float32',
  };
  fs.writeFileSync(path.join(a.out, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  fs.writeFileSync(path.join(a.out, 'generation_config.json'), JSON.stringify({ bos_token_id: eos, eos_token_id: eos }, null, 2) + '\n');
  fs.writeFileSync(path.join(a.out, 'cascade-spec.json'), JSON.stringify({ promptTemplate: PROMPT_TEMPLATE }, null, 2) + '\n');
  for (const f of ['tokenizer.json', 'tokenizer_config.json'])
    if (fs.existsSync(path.join(a.tokenizer, f))) fs.copyFileSync(path.join(a.tokenizer, f), path.join(a.out, f));
  trainer.saveWeights(path.join(a.out, 'model.safetensors'), a.saveDtype);
}

export function main(argv: string[]): void {
  const a = parseTrainArgs(argv);
  const tok = loadTokenizerDir(a.tokenizer);
  const eos = tok.token_to_id('<|endoftext|>');
  if (eos === undefined) fail(`${a.tokenizer}/tokenizer.json has no <|endoftext|> token`);
  let vocab = 0;
  for (const id of tok.get_vocab(true).values()) vocab = Math.max(vocab, id + 1);
  const t0 = Date.now();
  const texts = readTexts(a.data, a.format);
  const stream = tokenStream(tok, texts, eos);
  const flags = a.answersOnly ? answerFlags(tok, texts) : undefined;
  if (flags && flags.length !== stream.length) fail('internal: answer flags do not line up with the token stream');
  const evalStream = a.eval ? tokenStream(tok, readTexts([a.eval], a.format), eos) : undefined;
  process.stderr.write(`train: ${stream.length} training tokens (${((Date.now() - t0) / 1000).toFixed(1)} s to tokenize)\n`);

  const cfg: NativeConfig = {
    architecture: 'LlamaForCausalLM', vocabSize: vocab, hiddenSize: a.hidden, intermediateSize: a.intermediate,
    numLayers: a.layers, numHeads: a.heads, numKvHeads: a.kvHeads, headDim: a.hidden / a.heads,
    maxPositionEmbeddings: a.context, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true,
    attentionBias: false, outputBias: false, slidingWindow: 0,
  };
  if (!Number.isInteger(cfg.headDim) || cfg.headDim % 2) fail('--hidden / --heads must be an even integer');
  const native = loadNative();
  const trainer = new native.Trainer(cfg, { seed: a.seed, bf16: a.bf16, threads: a.threads });
  if (a.teacher) {
    let teacher: Model;
    try {
      teacher = Model.loadSync(a.teacher, { dtype: 'bfloat16', threads: a.threads, draftVocabulary: null });
      trainer.setTeacher(teacher.native, a.kdWeight, a.kdTerm);
    } catch (e) {
      fail(`--teacher ${a.teacher}: ${(e as Error).message}`);
    }
    process.stderr.write(`train: distilling from ${a.teacher} (${a.kdTerm}, weight ${a.kdWeight})\n`);
  }
  fs.mkdirSync(a.stateDir, { recursive: true });
  const stateFile = path.join(a.stateDir, 'state.pt');
  const logFile = path.join(a.stateDir, 'log.jsonl');
  if (a.resume && fs.existsSync(stateFile)) {
    trainer.loadState(stateFile);
    process.stderr.write(`train: resumed at step ${trainer.stepsDone}\n`);
    // Steps logged after the checkpoint were lost with the interrupted run; they are redone.
    if (fs.existsSync(logFile)) {
      const kept = fs.readFileSync(logFile, 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as { step: number }).step <= trainer.stepsDone);
      fs.writeFileSync(logFile, kept.map((l) => l + '\n').join(''));
    }
  } else {
    if (fs.existsSync(logFile)) fs.rmSync(logFile);
    if (a.init) {
      const diff = initConfigMismatches(a.init, cfg);
      if (diff.length) fail(`--init ${a.init}: its config.json does not match the chosen shape (${diff.join('; ')}); pick the matching --preset or shape options`);
      try {
        trainer.loadWeights(weightFiles(a.init));
      } catch (e) {
        fail(`--init ${a.init}: ${(e as Error).message}`);
      }
      process.stderr.write(`train: starting from the weights of ${a.init}\n`);
    }
  }

  // A fixed held-out sample, so eval losses along the run are comparable.
  const evalBatch = evalStream ? sampleBatch(evalStream, 16, a.context, mulberry32(12345)) : undefined;
  const tokensPerStep = a.batch * (a.context + 1);
  const started = Date.now();
  const startStep = trainer.stepsDone;
  let smooth = NaN;
  for (let step = trainer.stepsDone; step < a.steps; step++) {
    const rand = mulberry32(a.seed * 1_000_003 + step);
    const batch = flags ? sampleBatch(stream, a.batch, a.context, rand, flags) : { tokens: sampleBatch(stream, a.batch, a.context, rand) };
    const lr = learningRate(a, step);
    const loss = trainer.step(batch.tokens, a.batch, lr, 'mask' in batch ? batch.mask : undefined);
    smooth = Number.isNaN(smooth) ? loss : 0.95 * smooth + 0.05 * loss;
    const entry: Record<string, number> = { step: step + 1, loss, lr, tokens: (step + 1) * tokensPerStep };
    const done = step + 1;
    if (evalBatch && (done % a.evalEvery === 0 || done === a.steps)) entry.evalLoss = trainer.evalLoss(evalBatch, 16);
    fs.appendFileSync(logFile, JSON.stringify(entry) + '\n');
    if (done % a.checkpointEvery === 0 || done === a.steps) {
      trainer.saveState(stateFile);
      writeModelFolder(a, cfg, trainer, vocab, eos);
    }
    const elapsed = (Date.now() - started) / 1000;
    const rate = ((done - startStep) * tokensPerStep) / elapsed;
    const eta = ((a.steps - done) * tokensPerStep) / rate;
    const width = 30;
    const filled = Math.round((width * done) / a.steps);
    process.stderr.write(
      `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${a.steps} loss ${smooth.toFixed(3)}` +
        `${entry.evalLoss !== undefined ? ` eval ${entry.evalLoss.toFixed(3)}` : ''} ${rate.toFixed(0)} tok/s eta ${Math.floor(eta / 60)}m${String(Math.round(eta % 60)).padStart(2, '0')}s `,
    );
  }
  process.stderr.write(`\ntrain: done, ${trainer.numParams} parameters, model in ${a.out}\n`);
}

if (require.main === module) main(process.argv.slice(2));
