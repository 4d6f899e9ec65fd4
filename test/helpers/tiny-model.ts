/**
 * Writes tiny, randomly initialised Hugging Face model folders (config.json, safetensors weights,
 * tokenizer.json, tokenizer_config.json) so tests can exercise the loader and forward pass on
 * every architecture variant (GQA, head_dim != hidden/heads, tied/untied, q/k/v bias, llama3 RoPE
 * scaling, F16/BF16 storage, sharding) without shipping real checkpoints.
 *
 * Everything is a pure function of the options (seeded PRNG), so a failing test reproduces exactly.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mulberry32 } from '../../lib/prng';
import { FloatDType, readSafetensors, TensorSpec, writeSafetensors } from './safetensors';

export interface RopeScaling {
  rope_type?: string;
  type?: string;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
  [k: string]: unknown;
}

export interface TinyModelOptions {
  vocabSize?: number;
  hiddenSize?: number;
  intermediateSize?: number;
  numLayers?: number;
  numHeads?: number;
  numKvHeads?: number;
  /** Written to config.json only when it differs from hiddenSize / numHeads (as HF configs do). */
  headDim?: number;
  tieWordEmbeddings?: boolean;
  /** With tieWordEmbeddings: also store an lm_head.weight, deliberately *different* from
   *  embed_tokens, so a test can tell which one a loader used (HF uses embed_tokens). */
  storeLmHeadEvenIfTied?: boolean;
  /** q/k/v biases. Implies Qwen2 (Qwen2ForCausalLM / qwen2) unless `architecture` says otherwise;
   *  for a Llama/Mistral architecture it sets attention_bias: true, which in HF also biases o_proj. */
  attentionBias?: boolean;
  /** e.g. 'LlamaForCausalLM' (default), 'MistralForCausalLM', 'Qwen2ForCausalLM'. */
  architecture?: string;
  /** Defaults from the architecture ('llama', 'mistral', 'qwen2', else lowercased prefix). */
  modelType?: string;
  ropeTheta?: number;
  ropeScaling?: RopeScaling | null;
  rmsNormEps?: number;
  maxPositionEmbeddings?: number;
  /** Sliding-window attention (Mistral: sliding_window; Qwen2: use_sliding_window + window,
   *  applied from layer 0 via max_window_layers: 0). */
  slidingWindow?: number;
  dtype?: FloatDType;
  /** 1 -> model.safetensors; N > 1 -> model-0000i-of-0000N.safetensors + index.json. */
  shards?: number;
  seed?: number;
  bosTokenId?: number;
  eosTokenId?: number;
}

/** The config.json object written (HF field names). */
export interface TinyModelConfig {
  architectures: string[];
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  hidden_act: 'silu';
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
  rope_scaling: RopeScaling | null;
  attention_bias?: boolean;
  sliding_window?: number | null;
  use_sliding_window?: boolean;
  max_window_layers?: number;
  tie_word_embeddings: boolean;
  bos_token_id: number;
  eos_token_id: number;
  torch_dtype: 'float32' | 'float16' | 'bfloat16';
}

// mulberry32 (lib/prng.ts): tiny, fast, good enough for test weights, identical on every platform.
export { mulberry32 };

function gaussian(rand: () => number): () => number {
  return () => {
    // Box-Muller; 1 - u keeps the log argument in (0, 1].
    const u = 1 - rand();
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

/** Multiplies a model folder's lm_head by `scale` and adds N(0, sigma) noise (seeded). */
export function editHead(dir: string, scale: number, sigma: number, seed: number): void {
  const file = path.join(dir, 'model.safetensors');
  const t = readSafetensors(file);
  const w = t['lm_head.weight'].data;
  const noise = gaussian(mulberry32(seed));
  for (let i = 0; i < w.length; i++) w[i] = scale * w[i] + sigma * noise();
  writeSafetensors(file, t, { format: 'pt' });
}

/** A tiny target (seed 101) and a draft that is its copy with a noisy lm_head (sigma 0.3: often,
 * not always, right), written under `dir` as target/ and draft/. */
export function makeTargetAndNearDraft(dir: string, vocabSize: number): { targetDir: string; draftDir: string } {
  const targetDir = path.join(dir, 'target'), draftDir = path.join(dir, 'draft');
  makeTinyModel(targetDir, { vocabSize, seed: 101 });
  perturbedCopy(targetDir, draftDir, 0.3, 5);
  return { targetDir, draftDir };
}

/**
 * The same pair as a test file's fixture: a temporary folder made in beforeAll (the pair written
 * under it) and removed in afterAll. Read the paths from the returned object inside tests.
 */
export function useTargetAndNearDraft(prefix: string, vocabSize: number): { tmp: string; targetDir: string; draftDir: string } {
  const fx = { tmp: '', targetDir: '', draftDir: '' };
  beforeAll(() => {
    fx.tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    Object.assign(fx, makeTargetAndNearDraft(fx.tmp, vocabSize));
  });
  afterAll(() => {
    if (fx.tmp) fs.rmSync(fx.tmp, { recursive: true, force: true });
  });
  return fx;
}

/** Copies a model folder and adds N(0, sigma) noise to its lm_head (a drafter that is often,
 * not always, right). */
export function perturbedCopy(from: string, to: string, sigma: number, seed: number): void {
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(from)) fs.copyFileSync(path.join(from, f), path.join(to, f));
  editHead(to, 1, sigma, seed);
}

/** GPT-2's bytes_to_unicode: byte -> printable character used by the ByteLevel pre-tokenizer. */
export function gpt2ByteChars(): string[] {
  const chars: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    chars[b] = String.fromCodePoint(printable ? b : 256 + extra++);
  }
  return chars;
}

/**
 * Byte-level BPE tokenizer with no merges: one token per byte, so any text round-trips and token
 * ids are easy to reason about. The special tokens take their ids first, the 256 bytes then take
 * the lowest free ids in byte order (with the default bos 256 / eos 257 that is id == byte value),
 * and "<extra_N>" fillers make the vocabulary cover exactly vocabSize ids, as a real checkpoint's
 * tokenizer covers its embedding matrix.
 */
function tokenizerFiles(vocabSize: number, bos: number, eos: number): { tokenizer: object; config: object } {
  if (bos === eos || bos < 0 || eos < 0 || bos >= vocabSize || eos >= vocabSize) {
    throw new Error(`bad special token ids bos=${bos} eos=${eos} for vocab ${vocabSize}`);
  }
  if (vocabSize < 258) throw new Error('vocabSize must be >= 258 (256 bytes + <s> + </s>)');
  const byId: string[] = new Array(vocabSize);
  byId[bos] = '<s>';
  byId[eos] = '</s>';
  const chars = gpt2ByteChars();
  let next = 0;
  for (let b = 0; b < 256; b++) {
    while (byId[next] !== undefined) next++;
    byId[next] = chars[b];
  }
  for (let i = 0; i < vocabSize; i++) if (byId[i] === undefined) byId[i] = `<extra_${i}>`;
  const vocab: Record<string, number> = {};
  byId.forEach((tok, id) => (vocab[tok] = id));
  const special = (id: number, content: string) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(bos, '<s>'), special(eos, '</s>')].sort((x, y) => x.id - y.id),
    normalizer: null,
    pre_tokenizer: byteLevel,
    // add_bos_token is realised by the post-processor in tokenizer.json (that is what the fast
    // tokenizers, including @huggingface/tokenizers, actually execute).
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [bos], tokens: ['<s>'] } },
    },
    decoder: byteLevel,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
      end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab, merges: [],
    },
  };
  const config = {
    bos_token: '<s>',
    eos_token: '</s>',
    add_bos_token: true,
    add_eos_token: false,
    // The JS library defaults this to true, which would rewrite " ." -> "." and break round-trips.
    clean_up_tokenization_spaces: false,
    model_max_length: 1 << 20,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  return { tokenizer, config };
}

/** Writes the model folder `dir` (created if missing) and returns the config.json object. */
/** The tied-embedding tiny model the Trainer tests (trainer-init, distill-data) train and load. */
export const TRAINABLE_TINY: TinyModelOptions = { tieWordEmbeddings: true, vocabSize: 300, hiddenSize: 32, numHeads: 4, numKvHeads: 2, seed: 7 };

export function makeTinyModel(dir: string, opts: TinyModelOptions = {}): TinyModelConfig {
  const V = opts.vocabSize ?? 300;
  const H = opts.hiddenSize ?? 32;
  const I = opts.intermediateSize ?? 48;
  const L = opts.numLayers ?? 2;
  const nH = opts.numHeads ?? 4;
  const nKV = opts.numKvHeads ?? 2;
  const hd = opts.headDim ?? H / nH;
  if (!Number.isInteger(hd) || nH % nKV !== 0) throw new Error('bad head configuration');
  const dtype = opts.dtype ?? 'F32';
  const tied = opts.tieWordEmbeddings ?? false;
  const bias = opts.attentionBias ?? false;
  const arch = opts.architecture ?? (bias ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM');
  const modelType = opts.modelType ?? (arch.replace(/ForCausalLM$/, '').toLowerCase() || 'llama');
  const isQwen2 = modelType === 'qwen2';
  const bos = opts.bosTokenId ?? 256;
  const eos = opts.eosTokenId ?? 257;

  const config: TinyModelConfig = {
    architectures: [arch],
    model_type: modelType,
    vocab_size: V,
    hidden_size: H,
    intermediate_size: I,
    num_hidden_layers: L,
    num_attention_heads: nH,
    num_key_value_heads: nKV,
    hidden_act: 'silu',
    max_position_embeddings: opts.maxPositionEmbeddings ?? 128,
    rms_norm_eps: opts.rmsNormEps ?? 1e-6,
    rope_theta: opts.ropeTheta ?? 10000,
    rope_scaling: opts.ropeScaling ?? null,
    tie_word_embeddings: tied,
    bos_token_id: bos,
    eos_token_id: eos,
    torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16',
  };
  if (hd !== H / nH) config.head_dim = hd;
  // Qwen2 always has q/k/v bias and no attention_bias field; Llama-style configs carry the flag.
  if (!isQwen2) config.attention_bias = bias;
  if (isQwen2) {
    config.use_sliding_window = opts.slidingWindow !== undefined;
    config.sliding_window = opts.slidingWindow ?? null;
    config.max_window_layers = 0;
  } else if (opts.slidingWindow !== undefined) {
    config.sliding_window = opts.slidingWindow;
  }

  // Scales: projections ~ 1/sqrt(fan_in) keep activations O(1) through the layers; embeddings 0.5
  // and lm_head 2/sqrt(H) give logits with std ~ 1-3, so argmax gaps are clear (no near-ties that
  // would make greedy comparisons against reduced-precision kernels flaky) yet not one-hot.
  const normal = gaussian(mulberry32(opts.seed ?? 1234));
  const tensors: Record<string, TensorSpec> = {};
  const rand = (name: string, shape: number[], std: number, mean = 0) => {
    const n = shape.reduce((p, d) => p * d, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = mean + std * normal();
    tensors[name] = { dtype, shape, data };
  };
  rand('model.embed_tokens.weight', [V, H], 0.5);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    rand(p + 'input_layernorm.weight', [H], 0.1, 1);
    rand(p + 'self_attn.q_proj.weight', [nH * hd, H], 1 / Math.sqrt(H));
    rand(p + 'self_attn.k_proj.weight', [nKV * hd, H], 1 / Math.sqrt(H));
    rand(p + 'self_attn.v_proj.weight', [nKV * hd, H], 1 / Math.sqrt(H));
    if (bias) {
      // Large enough that a loader silently dropping the bias fails a logits comparison.
      rand(p + 'self_attn.q_proj.bias', [nH * hd], 0.3);
      rand(p + 'self_attn.k_proj.bias', [nKV * hd], 0.3);
      rand(p + 'self_attn.v_proj.bias', [nKV * hd], 0.3);
    }
    rand(p + 'self_attn.o_proj.weight', [H, nH * hd], 1 / Math.sqrt(nH * hd));
    if (bias && !isQwen2) rand(p + 'self_attn.o_proj.bias', [H], 0.3);
    rand(p + 'post_attention_layernorm.weight', [H], 0.1, 1);
    rand(p + 'mlp.gate_proj.weight', [I, H], 1 / Math.sqrt(H));
    rand(p + 'mlp.up_proj.weight', [I, H], 1 / Math.sqrt(H));
    rand(p + 'mlp.down_proj.weight', [H, I], 1 / Math.sqrt(I));
  }
  rand('model.norm.weight', [H], 0.1, 1);
  if (!tied || opts.storeLmHeadEvenIfTied) rand('lm_head.weight', [V, H], 2 / Math.sqrt(H));

  fs.mkdirSync(dir, { recursive: true });
  const json = (name: string, obj: unknown) =>
    fs.writeFileSync(path.join(dir, name), JSON.stringify(obj, null, 2) + '\n');
  json('config.json', config);
  const tok = tokenizerFiles(V, bos, eos);
  json('tokenizer.json', tok.tokenizer);
  json('tokenizer_config.json', tok.config);

  const shards = opts.shards ?? 1;
  const meta = { format: 'pt' };
  if (shards <= 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, meta);
    return config;
  }
  // Split the tensors (in order) into `shards` contiguous groups of roughly equal byte size, each
  // non-empty, and name them like transformers' save_pretrained does.
  const names = Object.keys(tensors);
  if (shards > names.length) throw new Error(`cannot split ${names.length} tensors into ${shards} shards`);
  const bytesOf = (n: string) => tensors[n].data.length * (dtype === 'F32' ? 4 : 2);
  const total = names.reduce((s, n) => s + bytesOf(n), 0);
  const pad = (k: number) => String(k).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  let idx = 0;
  for (let s = 0; s < shards; s++) {
    const file = `model-${pad(s + 1)}-of-${pad(shards)}.safetensors`;
    const group: Record<string, TensorSpec> = {};
    const target = (total * (s + 1)) / shards;
    let acc = names.slice(0, idx).reduce((sum, n) => sum + bytesOf(n), 0);
    do {
      group[names[idx]] = tensors[names[idx]];
      weightMap[names[idx]] = file;
      acc += bytesOf(names[idx]);
      idx++;
      // Stop at the byte target, but always leave at least one tensor per remaining shard.
    } while (idx < names.length - (shards - 1 - s) && (s === shards - 1 || acc < target));
    writeSafetensors(path.join(dir, file), group, meta);
  }
  json('model.safetensors.index.json', { metadata: { total_size: total }, weight_map: weightMap });
  return config;
}
