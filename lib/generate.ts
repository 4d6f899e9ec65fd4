// The one decoding loop: prompt in, tokens out through a `TokenSource` (plain autoregressive
// decoding now; speculative sources emit several tokens per target pass), with stop
// conditions, streaming text and AbortSignal handled once, here.
import type { ResolvedGenerateOptions } from './options';
import type { Sequence } from './sequence';
import type { TextTokenizer } from './tokenizer';

export type FinishReason = 'eos' | 'stop' | 'length' | 'context';

export interface GenerationStats {
  /** Wall-clock time of the whole call, prompt included. */
  wallMs: number;
  /** Time to process the prompt and produce the first token(s): with a drafter, the prompt's
   * pass also verifies a first draft and may emit several tokens at once (`firstTokens`). */
  promptMs: number;
  /** Tokens the prompt's pass emitted (1 without a drafter). */
  firstTokens: number;
  /** Native target forward passes (each may carry many tokens). */
  targetForwards: number;
  /** Generated tokens per second after the prompt's pass (its `firstTokens` excluded). */
  tokensPerSecond: number;
  seed: number;
  [extra: string]: unknown;
}

export interface GenerationResult {
  text: string;
  /** Generated token ids (an end-of-sequence token that stopped the generation included). */
  tokens: number[];
  promptTokens: number[];
  finishReason: FinishReason;
  stats: GenerationStats;
}

/** Produces the next tokens of a sequence: one or more per call. */
export interface TokenSource {
  /** Processes the prompt and returns the first generated token(s). */
  start(promptTokens: number[]): Promise<number[]>;
  /** Commits the previously returned tokens and returns the next ones. */
  next(): Promise<number[]>;
  /** Target forward passes so far. */
  readonly targetForwards: number;
  /** Extra statistics merged into the result's stats. */
  stats?(): Record<string, unknown>;
}

function abortError(signal: AbortSignal): Error {
  if (signal.reason instanceof Error) return signal.reason;
  const e = new Error('generation aborted');
  e.name = 'AbortError';
  return e;
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function heldBackForStops(text: string, stops: string[]): number {
  let held = 0;
  for (const stop of stops)
    for (let n = Math.min(stop.length - 1, text.length); n > held; n--)
      if (text.endsWith(stop.slice(0, n))) {
        held = n;
        break;
      }
  return held;
}

/**
 * Runs `source` until a stop condition, calling `onText` with each new piece of text.
 * The context limit (`capacity` tokens in all) ends a generation early with reason "context".
 */
export async function runGeneration(
  source: TokenSource,
  tokenizer: TextTokenizer,
  promptTokens: number[],
  capacity: number,
  options: ResolvedGenerateOptions,
  onText?: (chunk: string) => void,
): Promise<GenerationResult> {
  const t0 = performance.now();
  const tokens: number[] = [];
  const eos = new Set(options.stopOnEos ? tokenizer.eosIds : []);
  let emitted = 0;
  let text = '';
  let finishReason: FinishReason | undefined;
  let promptMs = 0;
  let firstTokens = 0;
  const check = () => {
    if (options.signal?.aborted) throw abortError(options.signal);
  };

  /** Cuts `text` before the first stop string in it (searching from what is not yet out). */
  const cutAtStop = (): boolean => {
    let cut = -1;
    for (const s of options.stop) {
      const at = text.indexOf(s, Math.max(0, emitted - s.length));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut < 0) return false;
    text = text.slice(0, cut);
    finishReason = 'stop';
    return true;
  };

  const accept = (batch: number[]): void => {
    for (const t of batch) {
      if (tokens.length >= options.maxNewTokens) {
        finishReason = 'length';
        break;
      }
      tokens.push(t);
      if (eos.has(t)) {
        finishReason = 'eos';
        break;
      }
      // A stop string ends the generation at the token that completes it, however many
      // tokens the source returned at once (speculative methods return several), so every
      // method returns the same tokens as plain decoding.
      if (options.stop.length && batch.length > 1) {
        text = tokenizer.decode(tokens);
        if (cutAtStop()) break;
      }
    }
    if (!finishReason && tokens.length >= options.maxNewTokens) finishReason = 'length';
    // The pending token still fits while the cache (prompt + tokens - 1) is below capacity.
    if (!finishReason && promptTokens.length + tokens.length > capacity) finishReason = 'context';
    // Text is needed along the way only to stream it or to find stop strings; decoding every
    // step costs more than a small model's forward pass, so otherwise it waits for the end.
    if (finishReason !== 'stop' && (onText || options.stop.length || finishReason)) {
      text = tokenizer.decode(tokens);
      if (options.stop.length && cutAtStop()) finishReason = 'stop';
    }
    // Hold back an incomplete UTF-8 character and anything that may start a stop string.
    let safe = text.length;
    if (!finishReason) {
      while (safe > emitted && text.charCodeAt(safe - 1) === 0xfffd) safe--;
      safe -= heldBackForStops(text.slice(0, safe), options.stop);
    }
    if (safe > emitted) {
      onText?.(text.slice(emitted, safe));
      emitted = safe;
    }
  };

  if (options.maxNewTokens === 0) finishReason = 'length';
  else {
    check();
    accept(await source.start(promptTokens));
    promptMs = performance.now() - t0;
    firstTokens = tokens.length;
  }
  while (!finishReason) {
    check();
    accept(await source.next());
  }
  const wallMs = performance.now() - t0;
  const decodeMs = wallMs - promptMs;
  return {
    text,
    tokens,
    promptTokens,
    finishReason,
    stats: {
      wallMs,
      promptMs,
      firstTokens,
      targetForwards: source.targetForwards,
      tokensPerSecond: tokens.length > firstTokens && decodeMs > 0 ? ((tokens.length - firstTokens) * 1000) / decodeMs : 0,
      seed: options.seed,
      ...(source.stats?.() ?? {}),
    },
  };
}

/** An async iterator of text chunks whose final result is available as `result`. */
export class GenerationStream implements AsyncIterable<string> {
  readonly result: Promise<GenerationResult>;
  private readonly chunks: string[] = [];
  private wake: (() => void) | undefined;
  private finished = false;
  private failure: unknown;

  constructor(run: (onText: (chunk: string) => void) => Promise<GenerationResult>) {
    const notify = () => {
      this.wake?.();
      this.wake = undefined;
    };
    this.result = run((chunk) => {
      this.chunks.push(chunk);
      notify();
    }).then(
      (r) => {
        this.finished = true;
        notify();
        return r;
      },
      (e: unknown) => {
        this.finished = true;
        this.failure = e ?? new Error('generation failed');
        notify();
        throw e;
      },
    );
    this.result.catch(() => undefined);  // surfaced through the iterator or an explicit await
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      if (this.chunks.length) yield this.chunks.shift()!;
      else if (this.finished) {
        if (this.failure !== undefined) throw this.failure;
        return;
      } else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }
}
