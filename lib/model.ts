// A loaded model: config, tokenizer and native weights. Sequences and generations start here.
import * as fs from 'fs';
import * as path from 'path';

import { parseModelConfig, type ModelConfig } from './config';
import { checkModelDir, readOptionalJsonObject, readTokenIdSet, weightFiles } from './files';
import { MaxGram, readBigramTable } from './drafters/maxgram';
import { ModelDrafter } from './drafters/model-drafter';
import type { Drafter } from './drafters/drafter';
import { GenerationStream, runGeneration, type GenerationResult } from './generate';
import { SpeculativeSource } from './speculative';
import { buildCascade, Cascade } from './cascade/cascade';
import { AdaptiveScheduler, SchedulerState } from './cascade/scheduler';
import { ewif, swi } from './metrics';
import { loadNative, type Dtype, type NativeModel } from './native';
import { resolveGenerateOptions, type GenerateOptions, type ResolvedGenerateOptions } from './options';
import { Sequence } from './sequence';
import { TextTokenizer } from './tokenizer';

export interface LoadOptions {
  /**
   * Compute dtype; weights stored as F32/F16/BF16 are converted at load. Default "float32".
   * "bfloat16" and "float16" hold the linear layers' weights in that type and run them on the
   * native kernels (fp32 activations and accumulation, AVX-512 / AVX2 / portable by CPU).
   */
  dtype?: Dtype;
  /**
   * With dtype "bfloat16": false runs libtorch's own bfloat16 path instead of the kernels (for
   * comparison; slower on one core). Default true. float16 needs the kernels.
   */
  kernels?: boolean;
  /** CPU threads for this model's passes. Default 1. */
  threads?: number;
  /** Default context length of new sequences. Default min(max_position_embeddings, 4096). */
  contextLength?: number;
  /**
   * The draft vocabulary: the token ids this model proposes from when it drafts for another
   * (methods 'sd' and 'csd'); its own generation, verification and reviews always use every
   * token. A draft model reads its whole output matrix for every token it proposes, a large
   * share of a small model's pass; restricted to the tokens the target writes, it reads only
   * those rows. Any set keeps the target's output exact (the draft proposes from a different
   * distribution); a token outside it can only come from the target's correction.
   * Default: the folder's `draft-vocab.i32` (written by scripts/build-draft-vocab.ts), if
   * present, else every token. null: every token.
   */
  draftVocabulary?: readonly number[] | Int32Array | null;
  /**
   * When this model drafts for a sampled generation (methods 'sd' and 'csd'), it draws its
   * proposals at the generation's temperature times this (top-k and top-p as the generation's).
   * A draft distilled on its target's greedy tokens is more confident than its target: drawn
   * hotter, its proposals overlap the target's distribution more and more of them pass
   * (bench/README.md, "Draft temperature"). Any value keeps the output exact: the verifier tests
   * each proposal against the distribution it was drawn from. Greedy generations are unaffected.
   * Default: `draftTemperatureScale` in the folder's cascade-spec.json, else 1. In (0, 10].
   */
  draftTemperatureScale?: number;
  /**
   * Keep the target's KV cache of the last generation (its prompt and the tokens it produced)
   * and, when the next prompt starts with some of them, pass only the rest: a chat turn or a
   * request sharing a long system prompt pays only for its new tokens. Exact where a token's
   * logits do not depend on how the context was split into passes, which holds bit for bit on
   * the kernels (bfloat16 / float16); libtorch's float32 matrix products round a row
   * differently by block size, so there the output could depend on the previous request.
   * With it, a generation's target cache has room for twice what it needs (up to
   * `contextLength`), so that the next turn of a chat usually fits, and the model keeps one such
   * cache between generations. Default: true on the kernels, false otherwise.
   */
  promptCache?: boolean;
}

const DTYPES: readonly Dtype[] = ['float32', 'bfloat16', 'float16'];

/** Multiply-adds of a prompt pass short enough to run on the calling thread (libtorch's float32
 * path, about 4x slower per multiply-add, a quarter of it). */
const SYNC_PROMPT_MACS = 1.5e9;

/** The Max-Gram bigram fallback table's file name inside a model folder. */
export const BIGRAM_FILE = 'maxgram-bigram.i32';
/** The default draft vocabulary's file name inside a model folder (LoadOptions.draftVocabulary). */
export const DRAFT_VOCAB_FILE = 'draft-vocab.i32';
/** The project's own settings beside the weights (promptTemplate, draftTemperatureScale). */
export const SETTINGS_FILE = 'cascade-spec.json';

/** A draft temperature scale from the load option or the folder's settings file (default 1). */
function resolveDraftTemperatureScale(dir: string, option: number | undefined): number {
  const check = (v: unknown, where: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 10) throw new RangeError(`${where} must be a number in (0, 10], got ${JSON.stringify(v) ?? String(v)}`);
    return v;
  };
  if (option !== undefined) return check(option, 'draftTemperatureScale');
  const settings = readOptionalJsonObject(path.join(dir, SETTINGS_FILE));
  const v = settings?.draftTemperatureScale;
  return v === undefined ? 1 : check(v, `${path.join(dir, SETTINGS_FILE)}: "draftTemperatureScale"`);
}

const checkedPairs = new WeakMap<Model, WeakSet<Model>>();

/**
 * Drafts are only meaningful when drafter and target tokenize identically: same vocabulary
 * size, special tokens and token texts. Checked once per pair, before any work.
 */
export function assertSameVocabulary(target: Model, draft: Model): void {
  if (checkedPairs.get(target)?.has(draft)) return;
  const fail = (what: string): never => {
    throw new Error(`draft model ${draft.dir} does not share the target's vocabulary (${target.dir}): ${what}`);
  };
  if (draft.config.vocabSize !== target.config.vocabSize) fail(`vocab_size ${draft.config.vocabSize} vs ${target.config.vocabSize}`);
  const a = target.tokenizer, b = draft.tokenizer;
  if (a.bosId !== b.bosId) fail(`BOS id ${String(b.bosId)} vs ${String(a.bosId)}`);
  if (a.eosIds.join(',') !== b.eosIds.join(',')) fail(`EOS ids [${b.eosIds.join(', ')}] vs [${a.eosIds.join(', ')}]`);
  if (a.size !== b.size) fail(`tokenizer size ${b.size} vs ${a.size}`);
  for (let id = 0; id < a.size; id++)
    if (a.tokenText(id) !== b.tokenText(id)) fail(`token ${id} is ${JSON.stringify(b.tokenText(id))} vs ${JSON.stringify(a.tokenText(id))}`);
  if (!checkedPairs.has(target)) checkedPairs.set(target, new WeakSet());
  checkedPairs.get(target)!.add(draft);
}

/**
 * The draft vocabulary to load: the option's ids (any order, each once), the folder's
 * DRAFT_VOCAB_FILE by default, or none (undefined). Sorted for the native side.
 */
function resolveDraftVocabulary(dir: string, vocabSize: number, option: LoadOptions['draftVocabulary']): Int32Array | undefined {
  if (option === null) return undefined;
  if (option === undefined) {
    const file = path.join(dir, DRAFT_VOCAB_FILE);
    return fs.existsSync(file) ? readTokenIdSet(file, vocabSize) : undefined;
  }
  if (!(Array.isArray(option) || option instanceof Int32Array)) throw new TypeError('draftVocabulary must be an array of token ids, an Int32Array or null');
  if (option.length === 0) throw new RangeError('draftVocabulary is empty');
  const ids = Int32Array.from(option as ArrayLike<number>);
  option.forEach((t: number, i: number) => {
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new RangeError(`draftVocabulary[${i}] = ${String(t)} is not a token id in [0, ${vocabSize})`);
  });
  ids.sort();
  for (let i = 1; i < ids.length; i++) if (ids[i] === ids[i - 1]) throw new RangeError(`draftVocabulary lists token ${ids[i]} twice`);
  return ids;
}

export class Model {
  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    readonly tokenizer: TextTokenizer,
    readonly native: NativeModel,
    readonly contextLength: number,
    /** The draft vocabulary's ids as loaded (increasing), or null. */
    private readonly draftIds: Int32Array | null,
    /** LoadOptions.draftTemperatureScale as resolved. */
    readonly draftTemperatureScale: number,
  ) {}

  /** Loads a Hugging Face model folder (config.json, safetensors weights, tokenizer.json). */
  static async load(dir: string, options: LoadOptions = {}): Promise<Model> {
    return Model.loadSync(dir, options);
  }

  static loadSync(dir: string, options: LoadOptions = {}): Model {
    if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('model folder must be a non-empty string');
    if (typeof options !== 'object' || options === null) throw new TypeError('load options must be an object');
    for (const key of Object.keys(options))
      if (!['dtype', 'threads', 'contextLength', 'kernels', 'draftVocabulary', 'draftTemperatureScale', 'promptCache'].includes(key)) throw new TypeError(`unknown load option "${key}"`);
    if (options.kernels !== undefined && typeof options.kernels !== 'boolean') throw new TypeError('kernels must be a boolean');
    if (options.promptCache !== undefined && typeof options.promptCache !== 'boolean') throw new TypeError('promptCache must be a boolean');
    const dtype = options.dtype ?? 'float32';
    if (!DTYPES.includes(dtype)) throw new RangeError(`dtype must be one of ${DTYPES.join(', ')}, got ${String(dtype)}`);
    const threads = options.threads ?? 1;
    if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new RangeError(`threads must be an integer in [1, 256], got ${String(threads)}`);

    const abs = checkModelDir(dir);
    const config = parseModelConfig(abs);
    const contextLength = options.contextLength ?? Math.min(config.maxPositionEmbeddings, 4096);
    if (!Number.isInteger(contextLength) || contextLength < 1 || contextLength > config.maxPositionEmbeddings)
      throw new RangeError(
        `contextLength must be an integer in [1, ${config.maxPositionEmbeddings}] (max_position_embeddings in ${path.join(abs, 'config.json')}), got ${String(contextLength)}`,
      );
    const tokenizer = TextTokenizer.load(abs, config);
    const shards = weightFiles(abs);
    const addon = loadNative();
    const draftVocabulary = resolveDraftVocabulary(abs, config.vocabSize, options.draftVocabulary);
    const draftTemperatureScale = resolveDraftTemperatureScale(abs, options.draftTemperatureScale);
    const native = new addon.Model(config, shards, { dtype, threads, kernels: options.kernels ?? true, draftVocabulary });
    const model = new Model(abs, config, tokenizer, native, contextLength, draftVocabulary ?? null, draftTemperatureScale);
    model.promptCache = options.promptCache ?? model.kernels !== null;
    return model;
  }

  get numParams(): number {
    return this.native.numParams;
  }
  /** Tokens this model's drafts propose from (LoadOptions.draftVocabulary), else vocabSize. */
  get draftVocabularySize(): number {
    return this.native.draftVocabularySize;
  }
  /** The draft vocabulary's token ids (increasing; a copy), or null when drafts use every token. */
  get draftVocabulary(): Int32Array | null {
    return this.draftIds ? this.draftIds.slice() : null;
  }
  get dtype(): Dtype {
    return this.native.dtype;
  }
  get threads(): number {
    return this.native.threads;
  }
  /** The kernels' instruction set ("avx512", "avx2", "portable"), or null when libtorch computes. */
  get kernels(): string | null {
    return this.native.kernels;
  }

  private disposedFlag = false;

  /**
   * Frees the weights now rather than at garbage collection (sequences already made keep them
   * until they are disposed or collected). Generating or creating sequences afterwards throws.
   * Safe to call twice.
   */
  dispose(): void {
    this.dropCachedSequence();
    this.native.dispose();
    this.disposedFlag = true;
  }

  private promptCacheOn = false;
  /** LoadOptions.promptCache as resolved; setting it false also frees the cache held. */
  get promptCache(): boolean {
    return this.promptCacheOn;
  }
  set promptCache(on: boolean) {
    if (typeof on !== 'boolean') throw new TypeError('promptCache must be a boolean');
    this.promptCacheOn = on;
    if (!on) this.dropCachedSequence();
  }

  /** The last generation's target sequence and the tokens in its cache (LoadOptions.promptCache). */
  private cached?: { seq: Sequence; tokens: number[] };

  private dropCachedSequence(): void {
    const c = this.cached;
    this.cached = undefined;
    try {
      c?.seq.dispose();
    } catch {
      /* busy: freed at garbage collection */
    }
  }

  /**
   * A sequence for a generation of `capacity` tokens: the cached one, cut back to the longest
   * prefix its tokens share with the prompt (always leaving the prompt's last token to pass, whose
   * logits give the first token), when it is big enough; else a new one.
   */
  private sequenceFor(promptTokens: number[], capacity: number, seed: number): { seq: Sequence; reused: number } {
    const c = this.cached;
    this.cached = undefined; // a concurrent generation must not take it too
    if (c && c.seq.capacity >= capacity) {
      let shared = 0;
      const limit = Math.min(c.tokens.length, promptTokens.length - 1);
      while (shared < limit && c.tokens[shared] === promptTokens[shared]) shared++;
      if (shared > 0) {
        c.seq.truncate(shared);
        c.seq.reseed(seed);
        c.seq.forwards = 0;
        return { seq: c.seq, reused: shared };
      }
    }
    if (c) this.cached = c; // not usable for this prompt: kept for a later one
    // Twice the room this generation needs (up to the context length), so that a later prompt
    // extending this one, the next turn of a chat, usually still fits.
    return { seq: this.createSequence({ contextLength: Math.min(this.contextLength, 2 * capacity), seed }), reused: 0 };
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  /** A new sequence with its own KV cache of `contextLength` tokens. */
  createSequence(options: { contextLength?: number; seed?: number } = {}): Sequence {
    if (this.disposedFlag) throw new Error(`model ${this.dir} is disposed`);
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
    const { seq, reused } = this.promptCache ? this.sequenceFor(promptTokens, capacity, resolved.seed) : { seq: this.createSequence({ contextLength: capacity, seed: resolved.seed }), reused: 0 };
    let drafter: Drafter | undefined;
    let source: SpeculativeSource | undefined;
    let completed = false;
    try {
      drafter = this.drafterFor(resolved, capacity);
      const k = drafter instanceof AdaptiveScheduler ? drafter.maxDraft : drafter instanceof Cascade ? drafter.top.size : resolved.k;
      source = new SpeculativeSource(seq, drafter, k, resolved, resolved.maxNewTokens, this.syncPromptTokens, reused);
      const result = await runGeneration(source, this.tokenizer, promptTokens, capacity, resolved, onText);
      Object.assign(result.stats, this.costMetrics(source, drafter, result.tokens.length));
      completed = true;
      return result;
    } finally {
      // The caches go back to their models now, for the next generation to reuse; with the
      // prompt cache the target's stays whole, with the tokens it holds, unless the generation
      // failed. (A call still in flight, which only an error path can leave, keeps its sequence
      // busy: that one is left to the garbage collector rather than masking the error.)
      const keep = completed && this.promptCache && !this.disposedFlag;
      if (keep) {
        this.dropCachedSequence();
        this.cached = { seq, tokens: [...promptTokens, ...source!.emittedTokens].slice(0, seq.length) };
      }
      for (const release of [() => (keep ? undefined : seq.dispose()), () => drafter?.dispose?.()])
        try {
          release();
        } catch {
          /* busy: freed at garbage collection */
        }
    }
  }

  private drafterFor(o: ResolvedGenerateOptions, capacity: number): Drafter | undefined {
    const draftContext = (m: Model) => Math.min(capacity + 64, m.config.maxPositionEmbeddings);
    const maxgram = () => new MaxGram({ occurrence: o.maxGramOccurrence, bigram: this.bigramTable() });
    if (o.method === 'mag') return maxgram();
    if (o.method === 'sd') {
      assertSameVocabulary(this, o.draftModel!);
      // The drafter's sampler: seeded from the generation's seed, apart from the target's.
      return new ModelDrafter(o.draftModel!, draftContext(o.draftModel!), undefined, (o.seed + 1) % 2 ** 53, o.draftConfidence);
    }
    if (o.method === 'csd') {
      const models = o.draftModels;
      for (const name of o.cascade!.drafters) assertSameVocabulary(this, models[name]);
      const contextLength = Math.min(capacity + 64, ...o.cascade!.drafters.map((n) => draftContext(models[n])));
      if (!o.adaptive) return buildCascade(o.cascade!, models, maxgram(), contextLength, o.seed);
      // Every drafter is a candidate for the target's draft; the scheduler sizes the bands.
      const K = o.cascade!.K.map((row, r) => (r === 0 ? row.map((v) => Math.max(1, v)) : row));
      const cascade = buildCascade({ ...o.cascade!, K }, models, maxgram(), contextLength, o.seed);
      // What earlier generations with these drafters measured is where this one starts.
      const stateKey = [JSON.stringify(K), ...o.cascade!.drafters.map((n) => models[n].dir)].join('|');
      let state = this.schedulerStates.get(stateKey);
      if (!state) this.schedulerStates.set(stateKey, (state = new SchedulerState(cascade.top.drafters.length)));
      // The configuration's own row 0 (before every drafter became a candidate) is the first
      // plan: tune chose it, and the scheduler moves off it only for a clearly faster one.
      return new AdaptiveScheduler(cascade, { seed: o.seed, state, targetParams: this.numParams, initialPlan: o.cascade!.K[0] });
    }
    return undefined;
  }

  /** SWI (parameter-count cost model), EWIF from measured acceptance, per-level counters. */
  private costMetrics(source: SpeculativeSource, drafter: Drafter | undefined, tokens: number): Record<string, unknown> {
    const P = this.numParams;
    const passes = [{ passes: source.targetForwards, params: P }];
    if (drafter instanceof ModelDrafter) passes.push({ passes: drafter.forwards, params: drafter.model.numParams });
    const cascade = drafter instanceof AdaptiveScheduler ? drafter.cascade : drafter;
    if (cascade instanceof Cascade) for (const l of cascade.levels) passes.push({ passes: l.passes, params: l.model.numParams });
    const draftCost = passes.slice(1).reduce((s, p) => s + p.passes * p.params, 0);
    const verifyPasses = Math.max(1, source.verificationPasses);
    return {
      swi: swi(tokens, P, passes),
      ewif: ewif(source.conditionalAcceptance(), draftCost / verifyPasses / P),
      ...(cascade instanceof Cascade ? { levels: cascade.levelStats() } : {}),
    };
  }

  /**
   * Prompts up to this many tokens (with the first draft) get their pass on the calling thread
   * (SpeculativeSource): about SYNC_PROMPT_MACS multiply-adds, a few ms on one core (the 11M
   * default target: 136 tokens, 5-6 ms for a 90-token GSM8K prompt). Longer prompts go to the
   * libuv pool and leave the event loop free.
   */
  private get syncPromptTokens(): number {
    return Math.floor((this.kernels ? SYNC_PROMPT_MACS : SYNC_PROMPT_MACS / 4) / Math.max(1, this.numParams));
  }

  /** Adaptive schedulers' measurements, per cascade and drafters, kept between generations. */
  private readonly schedulerStates = new Map<string, SchedulerState>();

  private bigram: Int32Array | null | undefined;
  /** The Max-Gram fallback table stored beside the weights (maxgram-bigram.i32), if any. */
  bigramTable(): Int32Array | undefined {
    if (this.bigram === undefined) {
      const file = path.join(this.dir, BIGRAM_FILE);
      this.bigram = fs.existsSync(file) ? readBigramTable(file, this.config.vocabSize) : null;
    }
    return this.bigram ?? undefined;
  }
}
