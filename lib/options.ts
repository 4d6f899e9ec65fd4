import { parseCascade, type CascadeMatrix, type ReadableCascade } from './cascade/config';
import type { Model } from './model';

// Generation options: documented defaults, and a clear error for every invalid value.

export interface GenerateOptions {
  /** Tokens to generate at most. Default 128. */
  maxNewTokens?: number;
  /** 0 = greedy (argmax). Default 0. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off. Default 0. */
  topK?: number;
  /** Nucleus: keep a token iff the probability of the tokens more likely than it is < p (the
   * smallest set reaching p; tied tokens stay or go together); 1 = off. Default 1. */
  topP?: number;
  /** Min-p: keep a token iff its probability is at least this fraction of the most likely
   * token's (applied after top-k and top-p, as Hugging Face does); 0 = off. In [0, 1]. Default 0. */
  minP?: number;
  /** Seed of the sampler; the same seed reproduces a sampled generation. Default: random, reported in stats.seed. */
  seed?: number;
  /** Stop when the generated text contains any of these; the text is cut before it. */
  stop?: string[];
  /** Stop at an end-of-sequence token. Default true. */
  stopOnEos?: boolean;
  /** Prepend BOS as the tokenizer config says (default) or force it on/off. */
  addBos?: boolean;
  /** Aborts the generation: the promise rejects / the stream throws with an AbortError. */
  signal?: AbortSignal;
  /**
   * Decoding method; every one produces exactly the target's output (greedy: the same tokens;
   * sampling: the same distribution). 'ar' plain autoregressive (default); 'mag' Max-Gram
   * drafts; 'sd' a draft model (`draftModel`).
   */
  method?: Method;
  /** The draft model for method 'sd': same vocabulary as the target. */
  draftModel?: Model;
  /** Draft tokens per verification pass. Default 4. */
  k?: number;
  /**
   * Method 'sd': the draft model stops its draft at a position (after the first) where its most
   * likely token has a probability below this (greedy: the token it would propose; sampling:
   * the largest probability of its processed distribution, checked before it draws), so `k`
   * becomes the longest draft. 0 (default) always drafts k tokens. Exactness is unaffected:
   * the stop depends on the draft's distribution only, never on the token it draws. In [0, 1).
   */
  draftConfidence?: number;
  /** Max-Gram occurrence choice: 'recent' (default) or 'earliest'. */
  maxGramOccurrence?: 'recent' | 'earliest';
  /** Method 'csd': the cascade, as a K matrix or in readable form (lib/cascade/config.ts). */
  cascade?: CascadeMatrix | ReadableCascade;
  /** Method 'csd': the drafter models by the names the cascade uses. */
  draftModels?: Record<string, Model>;
  /**
   * Method 'csd': choose the target's band sizes online from measured acceptance and costs
   * (lib/cascade/scheduler.ts) instead of K's row 0; lower rows of K still apply. Default false.
   */
  adaptive?: boolean;
  /**
   * Speculative methods, when sampling: the target (and a cascade's strict review levels) test
   * a block's drafts jointly, by block verification (Sun et al., 2024), which keeps more drafts
   * per pass in expectation than testing them token by token; the output follows the target's
   * distribution either way. false: the classic token-by-token test. Greedy decoding is not
   * affected. Default true.
   */
  blockVerification?: boolean;
}

export type Method = 'ar' | 'mag' | 'sd' | 'csd';
export const METHODS: readonly Method[] = ['ar', 'mag', 'sd', 'csd'];

export interface ResolvedGenerateOptions {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  seed: number;
  stop: string[];
  stopOnEos: boolean;
  addBos?: boolean;
  signal?: AbortSignal;
  method: Method;
  draftModel?: Model;
  k: number;
  draftConfidence: number;
  maxGramOccurrence: 'recent' | 'earliest';
  cascade?: CascadeMatrix;
  draftModels: Record<string, Model>;
  adaptive: boolean;
  blockVerification: boolean;
}

const KNOWN = new Set(['maxNewTokens', 'temperature', 'topK', 'topP', 'minP', 'seed', 'stop', 'stopOnEos', 'addBos', 'signal', 'method', 'draftModel', 'k', 'draftConfidence', 'maxGramOccurrence', 'cascade', 'draftModels', 'adaptive', 'blockVerification']);

function badBool(name: string): never {
  throw new TypeError(`${name} must be a boolean`);
}

export function resolveGenerateOptions(options: GenerateOptions = {}, extraKeys: readonly string[] = []): ResolvedGenerateOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('generate options must be an object');
  for (const key of Object.keys(options))
    if (!KNOWN.has(key) && !extraKeys.includes(key)) throw new TypeError(`unknown generate option "${key}"`);
  const int = (name: string, v: unknown, fallback: number, min: number): number => {
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${String(v)}`);
    return v;
  };
  const temperature = options.temperature ?? 0;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0)
    throw new RangeError(`temperature must be a finite number >= 0, got ${String(temperature)}`);
  const topP = options.topP ?? 1;
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw new RangeError(`topP must be in (0, 1], got ${String(topP)}`);
  const minP = options.minP ?? 0;
  if (typeof minP !== 'number' || !(minP >= 0 && minP <= 1)) throw new RangeError(`minP must be in [0, 1], got ${String(minP)}`);
  const stop = options.stop ?? [];
  if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string' && s.length > 0))
    throw new TypeError('stop must be an array of non-empty strings');
  if (options.stopOnEos !== undefined && typeof options.stopOnEos !== 'boolean') throw new TypeError('stopOnEos must be a boolean');
  if (options.addBos !== undefined && typeof options.addBos !== 'boolean') throw new TypeError('addBos must be a boolean');
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  const method = options.method ?? 'ar';
  if (!METHODS.includes(method)) throw new RangeError(`method must be one of ${METHODS.join(', ')}, got ${String(method)}`);
  if (method === 'sd' && options.draftModel === undefined) throw new TypeError("method 'sd' needs a draftModel");
  if (options.draftModel !== undefined && (typeof options.draftModel !== 'object' || typeof (options.draftModel as Model).createSequence !== 'function'))
    throw new TypeError('draftModel must be a loaded Model');
  let cascade: CascadeMatrix | undefined;
  const draftModels = options.draftModels ?? {};
  if (typeof draftModels !== 'object' || draftModels === null) throw new TypeError('draftModels must be an object of loaded Models by name');
  if (method === 'csd') {
    if (options.cascade === undefined) throw new TypeError("method 'csd' needs a cascade (K matrix or readable form)");
    cascade = parseCascade(options.cascade);
    for (const name of cascade.drafters)
      if (!draftModels[name] || typeof draftModels[name].createSequence !== 'function')
        throw new TypeError(`cascade drafter "${name}" has no loaded model in draftModels`);
  }
  const draftConfidence = options.draftConfidence ?? 0;
  if (typeof draftConfidence !== 'number' || !(draftConfidence >= 0 && draftConfidence < 1))
    throw new RangeError(`draftConfidence must be a number in [0, 1), got ${String(draftConfidence)}`);
  const occurrence = options.maxGramOccurrence ?? 'recent';
  if (occurrence !== 'recent' && occurrence !== 'earliest') throw new RangeError("maxGramOccurrence must be 'recent' or 'earliest'");
  return {
    method,
    draftModel: options.draftModel,
    k: int('k', options.k, 4, 1),
    draftConfidence,
    maxGramOccurrence: occurrence,
    cascade,
    draftModels,
    adaptive: typeof options.adaptive === 'boolean' ? options.adaptive : options.adaptive === undefined ? false : badBool('adaptive'),
    blockVerification:
      typeof options.blockVerification === 'boolean' ? options.blockVerification : options.blockVerification === undefined ? true : badBool('blockVerification'),
    maxNewTokens: int('maxNewTokens', options.maxNewTokens, 128, 0),
    temperature,
    topK: int('topK', options.topK, 0, 0),
    topP,
    minP,
    seed: int('seed', options.seed, Math.floor(Math.random() * 2 ** 32), 0),
    stop,
    stopOnEos: options.stopOnEos ?? true,
    addBos: options.addBos,
    signal: options.signal,
  };
}
