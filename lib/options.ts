// Generation options: documented defaults, and a clear error for every invalid value.

export interface GenerateOptions {
  /** Tokens to generate at most. Default 128. */
  maxNewTokens?: number;
  /** 0 = greedy (argmax). Default 0. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off. Default 0. */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p; 1 = off. Default 1. */
  topP?: number;
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
}

export interface ResolvedGenerateOptions {
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  stop: string[];
  stopOnEos: boolean;
  addBos?: boolean;
  signal?: AbortSignal;
}

const KNOWN = new Set(['maxNewTokens', 'temperature', 'topK', 'topP', 'seed', 'stop', 'stopOnEos', 'addBos', 'signal']);

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
  const stop = options.stop ?? [];
  if (!Array.isArray(stop) || !stop.every((s) => typeof s === 'string' && s.length > 0))
    throw new TypeError('stop must be an array of non-empty strings');
  if (options.stopOnEos !== undefined && typeof options.stopOnEos !== 'boolean') throw new TypeError('stopOnEos must be a boolean');
  if (options.addBos !== undefined && typeof options.addBos !== 'boolean') throw new TypeError('addBos must be a boolean');
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) throw new TypeError('signal must be an AbortSignal');
  return {
    maxNewTokens: int('maxNewTokens', options.maxNewTokens, 128, 0),
    temperature,
    topK: int('topK', options.topK, 0, 0),
    topP,
    seed: int('seed', options.seed, Math.floor(Math.random() * 2 ** 32), 0),
    stop,
    stopOnEos: options.stopOnEos ?? true,
    addBos: options.addBos,
    signal: options.signal,
  };
}
