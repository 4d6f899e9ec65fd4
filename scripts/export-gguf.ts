/**
 * Exports a Hugging Face Llama folder (safetensors + byte-level BPE tokenizer.json) as a GGUF file
 * for llama.cpp, so that llama.cpp and node-llama-cpp can run exactly the model cascade-spec runs
 * (bench/vs-node-llama-cpp.mjs). Written from the GGUF specification (version 3):
 *
 *   "GGUF" | u32 version | u64 tensor count | u64 metadata count | metadata key/values
 *   | tensor infos (name, dims innermost first, type, offset) | padding to the alignment | data
 *
 * Weights keep their values: a bf16 checkpoint exported as bf16 is copied bit for bit; `f16`
 * rounds to nearest even (bf16 -> f16 is exact for values in f16's normal range); norm weights
 * are always f32, as llama.cpp expects. Q and K rows are reordered within each head, because HF
 * Llama rotates the halves of a head (x[i], x[i + d/2]) and llama.cpp's "llama" architecture
 * rotates adjacent pairs (x[2i], x[2i + 1]); the attention scores are the same either way.
 * Only what maps one to one is accepted: Llama or Mistral without biases, rope scaling or
 * sliding windows, and a byte-level BPE tokenizer (GGUF's "gpt2" tokenizer).
 *
 *   node dist/scripts/export-gguf.js --model DIR --out FILE [--type bf16|f16|f32]
 */
import * as fs from 'fs';
import * as path from 'path';

import { runScript, scriptFlags, UsageError, type FlagSpec } from '../lib/cli/args';
import { parseModelConfig, type ModelConfig } from '../lib/config';
import { readJsonObject, weightFiles } from '../lib/files';
import { TextTokenizer } from '../lib/tokenizer';

export type GgufWeightType = 'bf16' | 'f16' | 'f32';

/** ggml tensor type ids. */
const GGML_TYPE = { f32: 0, f16: 1, bf16: 30 } as const;
/** llama_ftype of a file whose matrices are all of one type. */
const FILE_TYPE = { f32: 0, f16: 1, bf16: 32 } as const;
const ALIGNMENT = 32;
/** GGUF token types: normal, control (special), unused. */
const TOKEN_NORMAL = 1, TOKEN_CONTROL = 3, TOKEN_UNUSED = 5;

interface SourceTensor {
  file: string;
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  bytes: Buffer;
}

const SOURCE_BYTES = { F32: 4, F16: 2, BF16: 2 } as const;
const SOURCE_TYPE = { F32: 'f32', F16: 'f16', BF16: 'bf16' } as const;

/** Every tensor of a set of safetensors files, validated (names the file on any problem). */
export function readSafetensorsTensors(files: string[]): Map<string, SourceTensor> {
  const out = new Map<string, SourceTensor>();
  for (const file of files) {
    const buf = fs.readFileSync(file);
    const fail = (what: string): never => {
      throw new Error(`${file}: ${what}`);
    };
    if (buf.length < 8) fail('too short for a safetensors header');
    const n = Number(buf.readBigUInt64LE(0));
    if (n <= 0 || 8 + n > buf.length) fail(`header length ${n} does not fit the file's ${buf.length} bytes`);
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
    } catch (e) {
      return fail(`header is not JSON: ${(e as Error).message}`);
    }
    const dataStart = 8 + n;
    for (const [name, v] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (t.dtype !== 'F32' && t.dtype !== 'F16' && t.dtype !== 'BF16') fail(`tensor "${name}" has dtype ${JSON.stringify(t.dtype)} (F32, F16 or BF16 only)`);
      const dtype = t.dtype as SourceTensor['dtype'];
      if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d > 0)) fail(`tensor "${name}" has a bad shape ${JSON.stringify(t.shape)}`);
      const shape = t.shape as number[];
      const offs = t.data_offsets;
      if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0)) fail(`tensor "${name}" has bad data_offsets`);
      const [b, e] = offs as number[];
      const want = shape.reduce((a, d) => a * d, 1) * SOURCE_BYTES[dtype];
      if (e - b !== want || dataStart + e > buf.length) fail(`tensor "${name}": data_offsets [${b}, ${e}) do not hold ${want} bytes inside the file`);
      if (out.has(name)) fail(`tensor "${name}" appears in more than one shard`);
      out.set(name, { file, dtype, shape, bytes: buf.subarray(dataStart + b, dataStart + e) });
    }
  }
  return out;
}

const scratch = new DataView(new ArrayBuffer(4));

function decode(t: SourceTensor): Float32Array {
  const n = t.bytes.length / SOURCE_BYTES[t.dtype];
  const out = new Float32Array(n);
  for (let i = 0; i < n; ++i) {
    if (t.dtype === 'F32') out[i] = t.bytes.readFloatLE(4 * i);
    else if (t.dtype === 'BF16') {
      scratch.setUint32(0, t.bytes.readUInt16LE(2 * i) << 16);
      out[i] = scratch.getFloat32(0);
    } else out[i] = f16BitsToNumber(t.bytes.readUInt16LE(2 * i));
  }
  return out;
}

function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 value -> binary16 bits, round to nearest even, overflow to infinity, subnormals kept. */
export function toF16Bits(v: number): number {
  scratch.setFloat32(0, v);
  const bits = scratch.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff, man = bits & 0x7fffff;
  if (exp === 0xff) return sign | (man ? 0x7e00 : 0x7c00);
  // Work on the magnitude as an integer count of 2^-24 units (f16's smallest subnormal), with
  // the remainder deciding the rounding; exact in doubles for every float32.
  const a = Math.abs(scratch.getFloat32(0));
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest f16 (65504)
  const e = exp === 0 ? -126 : exp - 127;
  const unit = e < -14 ? 2 ** -24 : 2 ** (e - 10); // spacing of f16 values around a
  const q = a / unit, f = Math.floor(q), r = q - f;
  const m = r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f;
  // m * unit is the rounded value; rebuild the bits from it (a carry into the next binade is fine).
  if (e < -14) return sign | m; // subnormal (m may reach 1024: the smallest normal's bits)
  return sign | (((e + 15) << 10) + (m - 1024));
}

function toBf16Bits(v: number): number {
  scratch.setFloat32(0, v);
  const u = scratch.getUint32(0);
  if (Number.isNaN(v)) return ((u >>> 16) & 0x8000) | 0x7fc0;
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

function encode(values: Float32Array, type: GgufWeightType): Buffer {
  const out = Buffer.alloc(values.length * (type === 'f32' ? 4 : 2));
  for (let i = 0; i < values.length; ++i) {
    if (type === 'f32') out.writeFloatLE(values[i], 4 * i);
    else out.writeUInt16LE(type === 'f16' ? toF16Bits(values[i]) : toBf16Bits(values[i]), 2 * i);
  }
  return out;
}

/**
 * HF's rotate-half layout -> llama.cpp's adjacent pairs: within each head of `headDim` rows, row
 * 2j + s of the result is row s * headDim / 2 + j of the source (s = 0, 1). Rows of any width.
 */
export function permuteRopeRows<T extends { length: number; subarray(a: number, b: number): T }>(
  rows: T,
  numRows: number,
  headDim: number,
  copy: (dst: number, src: T) => void,
): void {
  const width = rows.length / numRows;
  for (let h = 0; h < numRows / headDim; ++h)
    for (let j = 0; j < headDim / 2; ++j)
      for (let s = 0; s < 2; ++s) {
        const src = h * headDim + s * (headDim / 2) + j;
        copy((h * headDim + 2 * j + s) * width, rows.subarray(src * width, (src + 1) * width));
      }
}

interface OutTensor {
  name: string;
  /** Dimensions innermost first (GGUF's ne order): [columns, rows] for a matrix. */
  dims: number[];
  type: GgufWeightType;
  data: Buffer;
}

type MetaValue =
  | { t: 'u32'; v: number }
  | { t: 'f32'; v: number }
  | { t: 'bool'; v: boolean }
  | { t: 'str'; v: string }
  | { t: 'strs'; v: string[] }
  | { t: 'i32s'; v: number[] };

function checkExportable(config: ModelConfig, file: string): void {
  const no = (what: string): never => {
    throw new Error(`${file}: ${what}: GGUF export supports Llama and Mistral checkpoints without it`);
  };
  if (!['LlamaForCausalLM', 'MistralForCausalLM'].includes(config.architecture)) no(`architecture ${config.architecture}`);
  if (config.attentionBias || config.outputBias) no('attention or output biases');
  if (config.ropeScaling) no('rope scaling');
  if (config.slidingWindow > 0) no('a sliding window');
  if (config.headDim % 2 !== 0) no(`an odd head_dim (${config.headDim})`);
}

/** The tokenizer's token strings by id (GGUF "gpt2": the byte-level BPE strings) and merges. */
function bpeVocabulary(dir: string, vocabSize: number): { tokens: string[]; types: number[]; merges: string[] } {
  const file = path.join(dir, 'tokenizer.json');
  const json = readJsonObject(file);
  const model = json.model as { type?: unknown; vocab?: unknown; merges?: unknown } | undefined;
  const byteLevel = (v: unknown): boolean => JSON.stringify(v ?? null).includes('"ByteLevel"');
  if (!model || model.type !== 'BPE' || !(byteLevel(json.pre_tokenizer) || byteLevel(json.decoder)))
    throw new Error(`${file}: only byte-level BPE tokenizers map to GGUF's "gpt2" tokenizer (model.type ${JSON.stringify(model?.type)})`);
  if (typeof model.vocab !== 'object' || model.vocab === null || !Array.isArray(model.merges))
    throw new Error(`${file}: model.vocab must be an object and model.merges an array`);
  const tokens: Array<string | undefined> = new Array(vocabSize).fill(undefined);
  const types = new Array<number>(vocabSize).fill(TOKEN_NORMAL);
  const put = (text: string, id: unknown, type: number): void => {
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= vocabSize)
      throw new Error(`${file}: token ${JSON.stringify(text)} has id ${JSON.stringify(id)} outside the vocabulary (vocab_size ${vocabSize})`);
    tokens[id as number] = text;
    types[id as number] = type;
  };
  for (const [text, id] of Object.entries(model.vocab as Record<string, unknown>)) put(text, id, TOKEN_NORMAL);
  for (const a of (json.added_tokens ?? []) as Array<{ id?: unknown; content?: unknown; special?: unknown }>)
    if (typeof a.content === 'string') put(a.content, a.id, a.special === false ? TOKEN_NORMAL : TOKEN_CONTROL);
  for (let i = 0; i < vocabSize; ++i)
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_UNUSED;
    }
  const merges = (model.merges as unknown[]).map((m, i) => {
    if (typeof m === 'string') return m;
    if (Array.isArray(m) && m.length === 2 && m.every((p) => typeof p === 'string')) return m.join(' ');
    throw new Error(`${file}: model.merges[${i}] is neither "a b" nor ["a", "b"]`);
  });
  return { tokens: tokens as string[], types, merges };
}

/** Builds the GGUF bytes of a model folder. */
export function ggufBytes(dir: string, type: GgufWeightType): Buffer {
  const config = parseModelConfig(dir);
  checkExportable(config, path.join(dir, 'config.json'));
  const tokenizer = TextTokenizer.load(dir, config);
  const source = readSafetensorsTensors(weightFiles(dir));
  const take = (name: string, shape: number[]): SourceTensor => {
    const t = source.get(name);
    if (!t) throw new Error(`${dir}: tensor "${name}" is missing from the safetensors files`);
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`${t.file}: tensor "${name}" has shape [${t.shape}], expected [${shape}]`);
    return t;
  };
  const { hiddenSize: d, numHeads: nh, numKvHeads: nkv, headDim: hd, intermediateSize: ff, vocabSize: V } = config;
  const tensors: OutTensor[] = [];
  const matrix = (name: string, from: string, shape: number[], ropeRows = false): void => {
    const t = take(from, shape);
    // Stored already in the wanted type (a bf16 checkpoint exported as bf16): its bytes as they are.
    const data = SOURCE_TYPE[t.dtype] === type ? t.bytes : encode(decode(t), type);
    let out = data;
    if (ropeRows) {
      out = Buffer.alloc(data.length);
      permuteRopeRows(data, shape[0], hd, (dst, src) => src.copy(out, dst));
    }
    tensors.push({ name, dims: [shape[1], shape[0]], type, data: out });
  };
  const vector = (name: string, from: string): void => {
    tensors.push({ name, dims: [d], type: 'f32', data: encode(decode(take(from, [d])), 'f32') });
  };
  matrix('token_embd.weight', 'model.embed_tokens.weight', [V, d]);
  for (let i = 0; i < config.numLayers; ++i) {
    const p = `model.layers.${i}.`;
    vector(`blk.${i}.attn_norm.weight`, `${p}input_layernorm.weight`);
    matrix(`blk.${i}.attn_q.weight`, `${p}self_attn.q_proj.weight`, [nh * hd, d], true);
    matrix(`blk.${i}.attn_k.weight`, `${p}self_attn.k_proj.weight`, [nkv * hd, d], true);
    matrix(`blk.${i}.attn_v.weight`, `${p}self_attn.v_proj.weight`, [nkv * hd, d]);
    matrix(`blk.${i}.attn_output.weight`, `${p}self_attn.o_proj.weight`, [d, nh * hd]);
    vector(`blk.${i}.ffn_norm.weight`, `${p}post_attention_layernorm.weight`);
    matrix(`blk.${i}.ffn_gate.weight`, `${p}mlp.gate_proj.weight`, [ff, d]);
    matrix(`blk.${i}.ffn_up.weight`, `${p}mlp.up_proj.weight`, [ff, d]);
    matrix(`blk.${i}.ffn_down.weight`, `${p}mlp.down_proj.weight`, [d, ff]);
  }
  vector('output_norm.weight', 'model.norm.weight');
  // Tied embeddings: llama.cpp reads token_embd.weight for the output when output.weight is absent.
  if (!config.tieWordEmbeddings) matrix('output.weight', 'lm_head.weight', [V, d]);

  const vocab = bpeVocabulary(dir, V);
  const meta: Array<[string, MetaValue]> = [
    ['general.architecture', { t: 'str', v: 'llama' }],
    ['general.name', { t: 'str', v: path.basename(path.resolve(dir)) }],
    ['general.file_type', { t: 'u32', v: FILE_TYPE[type] }],
    ['general.alignment', { t: 'u32', v: ALIGNMENT }],
    ['llama.context_length', { t: 'u32', v: config.maxPositionEmbeddings }],
    ['llama.embedding_length', { t: 'u32', v: d }],
    ['llama.block_count', { t: 'u32', v: config.numLayers }],
    ['llama.feed_forward_length', { t: 'u32', v: ff }],
    ['llama.attention.head_count', { t: 'u32', v: nh }],
    ['llama.attention.head_count_kv', { t: 'u32', v: nkv }],
    ['llama.attention.key_length', { t: 'u32', v: hd }],
    ['llama.attention.value_length', { t: 'u32', v: hd }],
    ['llama.rope.dimension_count', { t: 'u32', v: hd }],
    ['llama.rope.freq_base', { t: 'f32', v: config.ropeTheta }],
    ['llama.attention.layer_norm_rms_epsilon', { t: 'f32', v: config.rmsNormEps }],
    ['llama.vocab_size', { t: 'u32', v: V }],
    ['tokenizer.ggml.model', { t: 'str', v: 'gpt2' }],
    ['tokenizer.ggml.pre', { t: 'str', v: 'default' }],
    ['tokenizer.ggml.tokens', { t: 'strs', v: vocab.tokens }],
    ['tokenizer.ggml.token_type', { t: 'i32s', v: vocab.types }],
    ['tokenizer.ggml.merges', { t: 'strs', v: vocab.merges }],
    ['tokenizer.ggml.add_bos_token', { t: 'bool', v: tokenizer.addBos }],
  ];
  if (tokenizer.bosId !== undefined) meta.push(['tokenizer.ggml.bos_token_id', { t: 'u32', v: tokenizer.bosId }]);
  if (tokenizer.eosIds.length) meta.push(['tokenizer.ggml.eos_token_id', { t: 'u32', v: tokenizer.eosIds[0] }]);
  return serialize(meta, tensors);
}

function serialize(meta: Array<[string, MetaValue]>, tensors: OutTensor[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const u64 = (v: number): void => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s: string): void => {
    const b = Buffer.from(s, 'utf8');
    u64(b.length);
    parts.push(b);
  };
  parts.push(Buffer.from('GGUF', 'ascii'));
  u32(3);
  u64(tensors.length);
  u64(meta.length);
  // Value type ids: u32 4, i32 5, f32 6, bool 7, string 8, array 9.
  for (const [key, m] of meta) {
    str(key);
    if (m.t === 'u32') {
      u32(4);
      u32(m.v);
    } else if (m.t === 'f32') {
      u32(6);
      const b = Buffer.alloc(4);
      b.writeFloatLE(m.v);
      parts.push(b);
    } else if (m.t === 'bool') {
      u32(7);
      parts.push(Buffer.from([m.v ? 1 : 0]));
    } else if (m.t === 'str') {
      u32(8);
      str(m.v);
    } else if (m.t === 'strs') {
      u32(9);
      u32(8);
      u64(m.v.length);
      for (const s of m.v) str(s);
    } else {
      u32(9);
      u32(5);
      u64(m.v.length);
      const b = Buffer.alloc(4 * m.v.length);
      m.v.forEach((x, i) => b.writeInt32LE(x, 4 * i));
      parts.push(b);
    }
  }
  const align = (x: number): number => Math.ceil(x / ALIGNMENT) * ALIGNMENT;
  const offsets: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    str(t.name);
    u32(t.dims.length);
    for (const dim of t.dims) u64(dim);
    u32(GGML_TYPE[t.type]);
    u64(offset);
    offsets.push(offset);
    offset = align(offset + t.data.length);
  }
  const head = Buffer.concat(parts);
  const dataStart = align(head.length);
  const out = Buffer.alloc(dataStart + offset);
  head.copy(out, 0);
  tensors.forEach((t, i) => t.data.copy(out, dataStart + offsets[i]));
  return out;
}

const FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'Hugging Face model folder (config.json, safetensors, tokenizer.json)' },
  out: { type: 'string', help: 'GGUF file to write' },
  type: { type: 'string', help: 'matrix type', default: 'bf16', choices: ['bf16', 'f16', 'f32'] },
  help: { type: 'boolean', help: 'show this help' },
};

async function main(argv: string[]): Promise<void> {
  const flags = scriptFlags(argv, FLAGS, 'node dist/scripts/export-gguf.js --model DIR --out FILE [--type bf16|f16|f32]', ['model', 'out']);
  if (!flags) return;
  const dir = flags.model as string;
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`--model ${dir}: not a folder`);
  const bytes = ggufBytes(dir, flags.type as GgufWeightType);
  const out = flags.out as string;
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
  fs.writeFileSync(out, bytes);
  process.stderr.write(`export-gguf: wrote ${out} (${bytes.length} bytes, ${flags.type} matrices)\n`);
}

if (require.main === module) runScript('export-gguf', () => main(process.argv.slice(2)));
