// A loaded model: config, tokenizer and native weights. Sequences and generations start here.
import { parseModelConfig, type ModelConfig } from './config';
import { checkModelDir, weightFiles } from './files';
import { AutoregressiveSource, GenerationStream, runGeneration, type GenerationResult } from './generate';
import { loadNative, type Dtype, type NativeModel } from './native';
import { resolveGenerateOptions, type GenerateOptions } from './options';
import { Sequence } from './sequence';
import { TextTokenizer } from './tokenizer';

export interface LoadOptions {
  /** Compute dtype; weights stored as F32/F16/BF16 are converted at load. Default "float32". */
  dtype?: Dtype;
  /** CPU threads for this model's passes. Default 1. */
  threads?: number;
  /** Default context length of new sequences. Default min(max_position_embeddings, 4096). */
  contextLength?: number;
}

const DTYPES: readonly Dtype[] = ['float32', 'bfloat16', 'float16'];

export class Model {
  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    readonly tokenizer: TextTokenizer,
    readonly native: NativeModel,
    readonly contextLength: number,
  ) {}

  /** Loads a Hugging Face model folder (config.json, safetensors weights, tokenizer.json). */
  static async load(dir: string, options: LoadOptions = {}): Promise<Model> {
    return Model.loadSync(dir, options);
  }

  static loadSync(dir: string, options: LoadOptions = {}): Model {
    if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('model folder must be a non-empty string');
    if (typeof options !== 'object' || options === null) throw new TypeError('load options must be an object');
    for (const key of Object.keys(options))
      if (!['dtype', 'threads', 'contextLength'].includes(key)) throw new TypeError(`unknown load option "${key}"`);
    const dtype = options.dtype ?? 'float32';
    if (!DTYPES.includes(dtype)) throw new RangeError(`dtype must be one of ${DTYPES.join(', ')}, got ${String(dtype)}`);
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new RangeError(`threads must be an integer in [1, 256], got ${String(threads)}`);

    const abs = checkModelDir(dir);
    const config = parseModelConfig(abs);
    const contextLength = options.contextLength ?? Math.min(config.maxPositionEmbeddings, 4096);
    if (!Number.isInteger(contextLength) || contextLength < 1 || contextLength > config.maxPositionEmbeddings)
      throw new RangeError(`contextLength must be an integer in [1, ${config.maxPositionEmbeddings}] (max_position_embeddings), got ${String(contextLength)}`);
    const tokenizer = TextTokenizer.load(abs, config);
    const shards = weightFiles(abs);
    const addon = loadNative();
    const native = new addon.Model(config, shards, { dtype, threads });
    return new Model(abs, config, tokenizer, native, contextLength);
  }

  get numParams(): number {
    return this.native.numParams;
  }
  get dtype(): Dtype {
    return this.native.dtype;
  }
  get threads(): number {
    return this.native.threads;
  }

  /** A new sequence with its own KV cache of `contextLength` tokens. */
  createSequence(options: { contextLength?: number; seed?: number } = {}): Sequence {
    const cap = options.contextLength ?? this.contextLength;
    if (!Number.isInteger(cap) || cap < 1 || cap > this.config.maxPositionEmbeddings)
      throw new RangeError(`contextLength must be an integer in [1, ${this.config.maxPositionEmbeddings}], got ${String(cap)}`);
    const addon = loadNative();
    return new Sequence(new addon.Sequence(this.native, cap, options.seed ?? 0), this.config.vocabSize);
  }

  /** Prompt token ids, checked against the context length. */
  encodePrompt(prompt: string | number[], addBos?: boolean): number[] {
    let ids: number[];
    if (typeof prompt === 'string') ids = this.tokenizer.encode(prompt, { addBos });
    else if (Array.isArray(prompt) && prompt.every((t) => Number.isInteger(t) && t >= 0 && t < this.config.vocabSize)) ids = [...prompt];
    else throw new TypeError(`prompt must be a string or an array of token ids in [0, ${this.config.vocabSize})`);
    if (ids.length === 0) throw new RangeError('prompt is empty: it encodes to no tokens (and the tokenizer adds no BOS)');
    if (ids.length >= this.contextLength)
      throw new RangeError(`prompt is ${ids.length} tokens; the context length is ${this.contextLength}, which leaves no room to generate`);
    return ids;
  }

  /** Generates a continuation of `prompt` (text, or token ids). */
  async generate(prompt: string | number[], options: GenerateOptions = {}): Promise<GenerationResult> {
    return this.run(prompt, options);
  }

  /** Like generate(), as an async iterator of text chunks; `.result` holds the final result. */
  stream(prompt: string | number[], options: GenerateOptions = {}): GenerationStream {
    return new GenerationStream((onText) => this.run(prompt, options, onText));
  }

  private async run(prompt: string | number[], options: GenerateOptions, onText?: (chunk: string) => void): Promise<GenerationResult> {
    const resolved = resolveGenerateOptions(options);
    const promptTokens = this.encodePrompt(prompt, resolved.addBos);
    const capacity = Math.min(this.contextLength, promptTokens.length + resolved.maxNewTokens);
    const seq = this.createSequence({ contextLength: capacity, seed: resolved.seed });
    return runGeneration(new AutoregressiveSource(seq, resolved), this.tokenizer, promptTokens, capacity, resolved, onText);
  }
}
