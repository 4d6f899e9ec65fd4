// config.json of a Hugging Face Llama-family checkpoint -> the plain config native code takes.
// Every field the forward pass depends on is checked here, with the file named in the error.
import * as path from 'path';

import { readJsonObject } from './files';
import type { NativeConfig } from './native';

export const SUPPORTED_ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'] as const;
const MODEL_TYPE_TO_ARCH: Record<string, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

export interface ModelConfig extends NativeConfig {
  bosTokenId?: number;
  eosTokenIds: number[];
  /** The raw config.json, for anything not mapped here. */
  raw: Record<string, unknown>;
}

export function parseModelConfig(dir: string): ModelConfig {
  const file = path.join(dir, 'config.json');
  const raw = readJsonObject(file);
  const fail = (what: string): never => {
    throw new Error(`${file}: ${what}`);
  };
  const int = (key: string, fallback?: number, min = 1): number => {
    const v = raw[key] ?? fallback;
    if (v === undefined) return fail(`missing "${key}"`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) return fail(`"${key}" must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return fail(`"${key}" must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  const bool = (key: string, fallback: boolean): boolean => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'boolean') return fail(`"${key}" must be a boolean, got ${JSON.stringify(v)}`);
    return v;
  };

  let architecture: string | undefined;
  if (raw.architectures !== undefined) {
    if (!Array.isArray(raw.architectures) || typeof raw.architectures[0] !== 'string')
      fail('"architectures" must be an array of strings');
    architecture = (raw.architectures as string[])[0];
  } else if (typeof raw.model_type === 'string') {
    architecture = MODEL_TYPE_TO_ARCH[raw.model_type] ?? `model_type "${raw.model_type}"`;
  }
  if (architecture === undefined) fail('no "architectures" or "model_type": cannot tell the architecture');
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(architecture!))
    fail(`unsupported architecture "${architecture}" (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  const arch = architecture!;

  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) fail(`num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  if (raw.head_dim === undefined || raw.head_dim === null) {
    if (hiddenSize % numHeads !== 0) fail(`hidden_size (${hiddenSize}) is not divisible by num_attention_heads (${numHeads}) and no head_dim is given`);
  }
  const headDim = raw.head_dim === undefined || raw.head_dim === null ? hiddenSize / numHeads : int('head_dim');
  if (headDim % 2 !== 0) fail(`head_dim (${headDim}) must be even for rotary embeddings`);

  const act = raw.hidden_act ?? raw.hidden_activation ?? 'silu';
  if (act !== 'silu') fail(`unsupported hidden_act "${String(act)}" (only "silu")`);
  if (raw.mlp_bias === true) fail('unsupported "mlp_bias": true');

  let ropeScaling: NativeConfig['ropeScaling'];
  const rs = raw.rope_scaling;
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== 'object' || Array.isArray(rs)) fail('"rope_scaling" must be an object or null');
    const r = rs as Record<string, unknown>;
    const type = r.rope_type ?? r.type;
    if (type === 'llama3') {
      const factor = r.factor;
      if (typeof factor !== 'number' || factor < 1) fail('rope_scaling "factor" must be a number >= 1');
      const low = r.low_freq_factor ?? 1;
      const high = r.high_freq_factor ?? 4;
      const orig = r.original_max_position_embeddings ?? 8192;
      if (typeof low !== 'number' || typeof high !== 'number' || !(high > low)) fail('rope_scaling needs high_freq_factor > low_freq_factor');
      if (typeof orig !== 'number' || !Number.isInteger(orig) || orig < 1) fail('rope_scaling "original_max_position_embeddings" must be a positive integer');
      ropeScaling = { factor: factor as number, lowFreqFactor: low as number, highFreqFactor: high as number, originalMaxPositionEmbeddings: orig as number };
    } else if (type !== 'default') {
      fail(`unsupported rope_scaling type ${JSON.stringify(type)} (supported: "llama3", "default")`);
    }
  }

  // Bias layout differs by family: Llama's attention_bias covers q, k, v and o; Qwen2 always
  // has q/k/v biases and never an o bias; Mistral has none.
  let attentionBias = false;
  let outputBias = false;
  if (arch === 'Qwen2ForCausalLM') attentionBias = true;
  else if (arch === 'LlamaForCausalLM') attentionBias = outputBias = bool('attention_bias', false);

  let slidingWindow = 0;
  if (arch === 'MistralForCausalLM' && raw.sliding_window !== undefined && raw.sliding_window !== null) slidingWindow = int('sliding_window');
  if (arch === 'Qwen2ForCausalLM' && raw.use_sliding_window === true) {
    const numLayers = int('num_hidden_layers');
    if (int('max_window_layers', numLayers, 0) !== 0)
      fail('sliding windows on only some layers (Qwen2 max_window_layers > 0) are not supported');
    slidingWindow = int('sliding_window');
  }

  const eos = raw.eos_token_id;
  const eosTokenIds = eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!eosTokenIds.every((e) => Number.isInteger(e) && e >= 0)) fail('"eos_token_id" must be an integer or an array of integers');
  const bos = raw.bos_token_id;
  if (bos !== undefined && bos !== null && !(Number.isInteger(bos) && (bos as number) >= 0)) fail('"bos_token_id" must be an integer');

  return {
    architecture: arch,
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    maxPositionEmbeddings: int('max_position_embeddings', 2048),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    attentionBias,
    outputBias,
    slidingWindow,
    ropeScaling,
    bosTokenId: typeof bos === 'number' ? bos : undefined,
    eosTokenIds: eosTokenIds as number[],
    raw,
  };
}
