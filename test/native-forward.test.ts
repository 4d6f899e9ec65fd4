/**
 * The native (libtorch) forward against the independent float64 TypeScript reference
 * (test/reference/llama.ts), on every architecture variant the loader supports, through every
 * path that feeds the KV cache: one block, one token at a time, uneven chunks, truncate and
 * reuse. Then the bfloat16 compute dtype, and a real pretrained checkpoint (stories260K).
 *
 * Tolerances (stated once, used everywhere):
 *  - float32 compute on the tiny models: max |native - reference| <= 2e-4 absolute. Their logits
 *    have a scale (max |logit|) of ~7-8, so this is ~3e-5 relative; float32 rounding through two
 *    layers gives ~3e-6, a wrong formula gives O(0.1-1).
 *  - float32 on stories260K (logit scale ~19, 5 layers): 5e-4 absolute (~2.6e-5 relative).
 *  - bfloat16 compute: see the bfloat16 describe block.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Model } from '../lib/model';
import { loadNative } from '../lib/native';
import { readSafetensors, writeSafetensors, type TensorSpec } from './helpers/safetensors';
import { makeTinyModel, mulberry32, type TinyModelOptions } from './helpers/tiny-model';
import { argmax, maxAbsDiff, processedDistribution } from './helpers/stats';
import { ReferenceLlama } from './reference/llama';

const TOL_F32 = 2e-4;
const TOL_F32_STORIES = 5e-4;
const STORIES = path.resolve(__dirname, '../../shared/models/stories260K');
const HAVE_STORIES = fs.existsSync(path.join(STORIES, 'model.safetensors'));

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-native-fwd-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const flat = (rows: number[][]): number[] => rows.flat();
/** Random token ids in [0, V), a pure function of the seed. */
function randomTokens(n: number, V: number, seed: number): number[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => Math.floor(r() * V));
}

/** Copies a model folder, then edits its config and/or tensors (to build a feature-less twin). */
function ablatedCopy(src: string, dst: string, edit: { config?: (c: Record<string, unknown>) => void; dropTensor?: (name: string) => boolean }): string {
  fs.mkdirSync(dst, { recursive: true });
  for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dst, f));
  if (edit.config) {
    const c = JSON.parse(fs.readFileSync(path.join(dst, 'config.json'), 'utf8')) as Record<string, unknown>;
    edit.config(c);
    fs.writeFileSync(path.join(dst, 'config.json'), JSON.stringify(c));
  }
  if (edit.dropTensor) {
    const file = path.join(dst, 'model.safetensors');
    const all = readSafetensors(file);
    const kept: Record<string, TensorSpec> = {};
    for (const [k, v] of Object.entries(all)) if (!edit.dropTensor(k)) kept[k] = v;
    expect(Object.keys(kept).length).toBeLessThan(Object.keys(all).length);
    writeSafetensors(file, kept, { format: 'pt' });
  }
  return dst;
}

interface Variant {
  name: string;
  opts: TinyModelOptions;
  /** A twin without the feature under test: its reference logits must differ from the native ones
   *  by far more than the tolerance, so the comparison could catch a loader ignoring the feature. */
  ablate?: Parameters<typeof ablatedCopy>[2];
}

const VARIANTS: Variant[] = [
  { name: 'default GQA llama (4 heads / 2 kv)', opts: {} },
  { name: 'MHA (kv heads == heads)', opts: { numHeads: 4, numKvHeads: 4 } },
  { name: 'MQA (1 kv head)', opts: { numHeads: 4, numKvHeads: 1 } },
  { name: 'tied embeddings', opts: { tieWordEmbeddings: true } },
  { name: 'untied embeddings', opts: { tieWordEmbeddings: false, seed: 99 } },
  {
    name: 'tied with a stored, different lm_head (HF uses embed_tokens)',
    opts: { tieWordEmbeddings: true, storeLmHeadEvenIfTied: true },
    ablate: { config: (c) => (c.tie_word_embeddings = false) }, // = "used the stored lm_head"
  },
  {
    name: 'qwen2 q/k/v bias',
    opts: { attentionBias: true },
    ablate: { dropTensor: (n) => n.endsWith('.bias') },
  },
  {
    name: 'llama attention_bias (q/k/v/o bias)',
    opts: { attentionBias: true, architecture: 'LlamaForCausalLM' },
    ablate: { dropTensor: (n) => n.endsWith('o_proj.bias') },
  },
  { name: 'head_dim 12 != hidden/heads (8)', opts: { hiddenSize: 32, numHeads: 4, numKvHeads: 2, headDim: 12 } },
  {
    name: 'llama3 rope_scaling, original_max_position_embeddings 8',
    opts: {
      headDim: 16,
      numHeads: 2,
      numKvHeads: 1,
      ropeScaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8 },
    },
    ablate: { config: (c) => (c.rope_scaling = null) },
  },
  {
    name: 'mistral sliding_window 3 < sequence length',
    opts: { architecture: 'MistralForCausalLM', slidingWindow: 3 },
    ablate: { config: (c) => delete c.sliding_window },
  },
  { name: 'sharded (3 shards + index.json)', opts: { shards: 3 } },
  { name: 'F16 storage', opts: { dtype: 'F16' } },
  { name: 'BF16 storage', opts: { dtype: 'BF16' } },
  { name: 'odd sizes (hidden 24, intermediate 37, vocab 301)', opts: { hiddenSize: 24, intermediateSize: 37, vocabSize: 301, numHeads: 3, numKvHeads: 1 } },
];

const T = 11; // 3 + 1 + 5 + 2

describe.each(VARIANTS.map((v) => [v.name, v] as const))('%s', (_name, variant) => {
  let dir: string;
  let V: number;
  let model: Model;
  let ref: ReferenceLlama;
  let tokens: number[];
  let refLogits: number[]; // [T * V]
  let block: Float32Array;

  beforeAll(() => {
    dir = path.join(tmp, variant.name.replace(/[^a-z0-9]+/gi, '_'));
    const cfg = makeTinyModel(dir, variant.opts);
    V = cfg.vocab_size;
    if (variant.opts.shards) expect(fs.existsSync(path.join(dir, 'model.safetensors.index.json'))).toBe(true);
    model = Model.loadSync(dir);
    ref = ReferenceLlama.load(dir);
    tokens = randomTokens(T, V, 17);
    refLogits = flat(ref.forward(tokens));
    block = model.createSequence().forwardSync(tokens, { allLogits: true });
  });

  test('block forward (allLogits) equals the reference at every position', () => {
    expect(block.length).toBe(T * V);
    expect(maxAbsDiff(block, refLogits)).toBeLessThanOrEqual(TOL_F32);
    // Without allLogits: the last position only.
    const last = model.createSequence().forwardSync(tokens);
    expect(last.length).toBe(V);
    expect(maxAbsDiff(last, refLogits.slice((T - 1) * V))).toBeLessThanOrEqual(TOL_F32);
  });

  if (variant.ablate) {
    test('the feature matters: the reference without it is far from the native logits', () => {
      const twin = ablatedCopy(dir, dir + '_ablated', variant.ablate!);
      const other = flat(ReferenceLlama.load(twin).forward(tokens));
      expect(maxAbsDiff(block, other)).toBeGreaterThan(100 * TOL_F32);
    });
  }

  test('one token at a time through the KV cache equals the block', async () => {
    const seq = model.createSequence();
    for (let t = 0; t < T; t++) {
      // Alternate the sync and async paths: both must feed the same cache.
      const row = t % 2 ? await seq.forward([tokens[t]]) : seq.forwardSync([tokens[t]]);
      expect(row.length).toBe(V);
      expect(seq.length).toBe(t + 1);
      expect(maxAbsDiff(row, block.subarray(t * V, (t + 1) * V))).toBeLessThanOrEqual(TOL_F32);
      expect(maxAbsDiff(row, refLogits.slice(t * V, (t + 1) * V))).toBeLessThanOrEqual(TOL_F32);
    }
  });

  test('uneven chunks 3,1,5,2 (allLogits) equal the block', () => {
    const seq = model.createSequence();
    const got: number[] = [];
    let at = 0;
    for (const n of [3, 1, 5, 2]) {
      const out = seq.forwardSync(tokens.slice(at, at + n), { allLogits: true });
      expect(out.length).toBe(n * V);
      got.push(...out);
      at += n;
    }
    expect(seq.length).toBe(T);
    expect(maxAbsDiff(got, block)).toBeLessThanOrEqual(TOL_F32);
    expect(maxAbsDiff(got, refLogits)).toBeLessThanOrEqual(TOL_F32);
  });

  test('truncate(6) then 4 different tokens equals a fresh sequence of the 6 + 4; truncate(0) reuses the cache', () => {
    const seq = model.createSequence({ contextLength: 12 });
    seq.forwardSync(tokens.slice(0, 10), { allLogits: true });
    seq.truncate(6);
    expect(seq.length).toBe(6);
    const other = randomTokens(4, V, 4242);
    expect(other).not.toEqual(tokens.slice(6, 10));
    const cont = seq.forwardSync(other, { allLogits: true });
    expect(seq.length).toBe(10);
    const joined = [...tokens.slice(0, 6), ...other];
    const fresh = model.createSequence().forwardSync(joined, { allLogits: true });
    const refJoined = flat(ref.forward(joined)).slice(6 * V);
    expect(maxAbsDiff(cont, fresh.subarray(6 * V))).toBeLessThanOrEqual(TOL_F32);
    expect(maxAbsDiff(cont, refJoined)).toBeLessThanOrEqual(TOL_F32);

    seq.truncate(0);
    expect(seq.length).toBe(0);
    const again = randomTokens(12, V, 777); // fills the whole context of 12
    const out = seq.forwardSync(again, { allLogits: true });
    expect(maxAbsDiff(out, flat(ref.forward(again)))).toBeLessThanOrEqual(TOL_F32);
    expect(() => seq.forwardSync([0])).toThrow(/context length/);
  });

  test('dispose: later calls throw; a new sequence reusing the freed cache starts clean', () => {
    // Fill a cache with other tokens, dispose it, and create sequences of nearby capacities:
    // they take the freed buffers (the pool hands back buffers up to 2x the size asked) and
    // must compute exactly what a sequence on fresh memory does.
    const dirty = model.createSequence({ contextLength: 16 });
    dirty.forwardSync(randomTokens(16, V, 99), { allLogits: true });
    dirty.dispose();
    dirty.dispose(); // twice is a no-op
    expect(() => dirty.forwardSync([0])).toThrow(/disposed/);
    expect(() => dirty.truncate(0)).toThrow(/disposed/);
    expect(dirty.length).toBe(0);
    for (const cap of [T, 16]) {
      const seq = model.createSequence({ contextLength: cap });
      const steps: number[] = [];
      for (const t of tokens) steps.push(...seq.forwardSync([t]));
      expect(maxAbsDiff(steps, refLogits)).toBeLessThanOrEqual(TOL_F32);
      seq.dispose();
    }
  });
});

/**
 * bfloat16 keeps 8 significant bits (unit roundoff 2^-9 ~ 0.2%). Weights, activations, the KV
 * cache and the logits themselves are rounded to it, so the output rounding alone is up to
 * 0.2% of the logit scale, and each matmul/residual add contributes errors of the same relative
 * order that add up over the layers. Measured (libtorch 1.13 CPU): the worst logit error is
 * 1.2-2.8% of max |logit| and the RMS error 0.6-1.6% of the RMS logit. Bounds: max error <= 6%
 * of max |logit|, RMS error <= 4% of the RMS logit (2-2.5x the worst measured) -- loose against
 * rounding, but a wrong formula (dropped bias, RoPE layout, mask) is O(30-100%) of the scale
 * (see the "feature matters" tests). The bf16 result must also differ from float32 (> 1e-3),
 * proving the computation really ran in bfloat16.
 */
const BF16_MAX_REL = 0.06;
const BF16_RMS_REL = 0.04;

function bf16Check(got: ArrayLike<number>, want: ArrayLike<number>): { max: number; rms: number; scale: number; rmsRef: number } {
  let scale = 0, ss = 0, se = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    ss += want[i] * want[i];
    se += (got[i] - want[i]) ** 2;
  }
  return { max: maxAbsDiff(got, want), rms: Math.sqrt(se / want.length), scale, rmsRef: Math.sqrt(ss / want.length) };
}

describe('bfloat16 compute dtype', () => {
  test.each([
    ['default', {}],
    ['qwen2 bias', { attentionBias: true }],
    ['sliding window', { architecture: 'MistralForCausalLM', slidingWindow: 3 }],
    ['odd sizes', { hiddenSize: 24, intermediateSize: 37, vocabSize: 301, numHeads: 3, numKvHeads: 1 }],
    ['BF16 storage', { dtype: 'BF16' }],
  ] as Array<[string, TinyModelOptions]>)('%s: logits close to the float32 reference', (name, opts) => {
    const dir = path.join(tmp, 'bf16_' + name.replace(/[^a-z0-9]+/gi, '_'));
    const cfg = makeTinyModel(dir, opts);
    const tokens = randomTokens(T, cfg.vocab_size, 5);
    const want = flat(ReferenceLlama.load(dir).forward(tokens));
    const m = Model.loadSync(dir, { dtype: 'bfloat16' });
    expect(m.dtype).toBe('bfloat16');
    const got = m.createSequence().forwardSync(tokens, { allLogits: true });
    const e = bf16Check(got, want);
    expect(e.max).toBeLessThanOrEqual(BF16_MAX_REL * e.scale);
    expect(e.rms).toBeLessThanOrEqual(BF16_RMS_REL * e.rmsRef);
    // The pass really ran in bfloat16: the weights were rounded to bf16 (float32 storage), or on
    // the AVX-512 path x was too (vdpbf16ps multiplies bf16 pairs). With BF16 storage on the other
    // paths the kernels multiply the stored bf16 weights by fp32 x, as the reference does, so only
    // the kernels in use tell.
    expect(m.kernels).not.toBeNull();
    if (opts.dtype !== 'BF16' || m.kernels === 'avx512') expect(e.max).toBeGreaterThan(1e-3);
    // Cache path in bf16 agrees with the bf16 block as well as with the reference.
    const seq = m.createSequence();
    const steps: number[] = [];
    for (const t of tokens) steps.push(...seq.forwardSync([t]));
    expect(bf16Check(steps, want).max).toBeLessThanOrEqual(BF16_MAX_REL * e.scale);
    // A sequence on the kernels' cache layout, reusing the buffers `seq` filled, computes the
    // same as `seq` did on fresh ones (bit for bit: same kernels, same order).
    seq.dispose();
    const reused = m.createSequence();
    const again: number[] = [];
    for (const t of tokens) again.push(...reused.forwardSync([t]));
    expect(again).toEqual(steps);
    // A pass that returns the last position's logits only (a prompt's pass) skips the other
    // rows' work in its last layer: the same last row bit for bit, and the same cache after it.
    const V = cfg.vocab_size;
    const lastOnly = m.createSequence(), full = m.createSequence();
    const [a, b] = [lastOnly.forwardSync(tokens), full.forwardSync(tokens, { allLogits: true })];
    expect(Array.from(a)).toEqual(Array.from(b.subarray((T - 1) * V)));
    for (const t of randomTokens(3, V, 6)) expect(Array.from(lastOnly.forwardSync([t]))).toEqual(Array.from(full.forwardSync([t])));
    // and a greedy step over a block (its argmax path) picks what the full logits' argmax does
    const stepped = m.createSequence().native.step(Int32Array.from(tokens), { temperature: 0, topK: 0, topP: 1 });
    expect(stepped).toBe(argmax(Array.from(b.subarray((T - 1) * V))));
  });

  test('a verification block of many fixed tokens computes only its last rows, as the full pass does', async () => {
    const dir = path.join(tmp, 'bf16_fixed');
    const cfg = makeTinyModel(dir, {});
    const V = cfg.vocab_size;
    const m = Model.loadSync(dir, { dtype: 'bfloat16' });
    const greedy = { temperature: 0, topK: 0, topP: 1 };
    const tokens = randomTokens(T, V, 8);
    const nextOf = (ctx: number[]) => argmax(Array.from(m.createSequence().forwardSync(ctx)));
    // Drafts = the model's own greedy tokens for the first two, then a wrong one: accepted 2.
    for (const fixed of [1, 4, T - 3]) {
      const k = T - fixed;
      const block = tokens.slice(0, fixed);
      for (let i = 0; i < k; i++) block.push(i < 2 ? nextOf(block) : (nextOf(block) + 1) % V);
      // Greedy argmax path and the logits path (returnProbs) over the same block.
      const want = m.createSequence().forwardSync(block, { allLogits: true });
      const wantArg = (i: number) => argmax(Array.from(want.subarray((fixed - 1 + i) * V, (fixed + i) * V)));
      const accepted = Math.min(k, 2);
      const seq = m.createSequence();
      const r = seq.native.verify(Int32Array.from(block), { sampling: greedy, fixed });
      expect(r.accepted).toBe(accepted);
      expect(r.next).toBe(wantArg(accepted));
      expect(seq.length).toBe(fixed + accepted);
      const withProbs = m.createSequence().native.verify(Int32Array.from(block), { sampling: greedy, fixed, returnProbs: true });
      expect(withProbs.accepted).toBe(accepted);
      // The rows of the tokens it produced: the accepted drafts and `next`.
      expect(withProbs.probs!.length).toBe((accepted + 1) * V);
      for (let i = 0; i <= accepted; i++) {
        const row = Array.from(want.subarray((fixed - 1 + i) * V, (fixed + i) * V));
        const mx = Math.max(...row);
        const z = row.reduce((a, x) => a + Math.exp(x - mx), 0);
        for (let j = 0; j < V; j++) expect(withProbs.probs![i * V + j]).toBeCloseTo(Math.exp(row[j] - mx) / z, 6);
      }
      // The cache it leaves holds every kept row's keys and values: the next pass matches.
      const ref = m.createSequence();
      ref.forwardSync(block.slice(0, fixed + accepted));
      expect(Array.from(seq.forwardSync([r.next]))).toEqual(Array.from(ref.forwardSync([r.next])));
    }
    // Several sequences in one packed pass, each with its own fixed count, agree with their
    // passes alone.
    const blocks = [tokens.slice(0, 9), tokens.slice(2, 5), tokens.slice(1, 11)];
    const fixeds = [6, 1, 10];
    for (const returnProbs of [false, true]) {
      const batch = blocks.map((blk, i) => ({ sequence: m.createSequence().native, block: Int32Array.from(blk), sampling: greedy, fixed: fixeds[i], returnProbs }));
      const together = await loadNative().verifyBatch(batch);
      blocks.forEach((blk, i) => {
        const alone = m.createSequence().native.verify(Int32Array.from(blk), { sampling: greedy, fixed: fixeds[i], returnProbs });
        expect(together[i].accepted).toBe(alone.accepted);
        expect(together[i].next).toBe(alone.next);
        if (returnProbs) expect(Array.from(together[i].probs!)).toEqual(Array.from(alone.probs!));
        expect(batch[i].sequence.length).toBe(fixeds[i] + alone.accepted);
      });
    }
  });

  test('a sampled verification hands back the processed distributions of the rows it produced, with the outcome it has without them', () => {
    const dir = path.join(tmp, 'bf16_rows');
    const cfg = makeTinyModel(dir, {});
    const V = cfg.vocab_size;
    const m = Model.loadSync(dir, { dtype: 'bfloat16' });
    const [temperature, topP] = [0.5, 0.9];
    const sampling = { temperature, topK: 0, topP };
    const context = randomTokens(6, V, 9);
    // Drafts: the model's own greedy continuation, so that some seeds accept some of them.
    const block = [...context];
    for (let i = 0; i < 3; i++) block.push(argmax(Array.from(m.createSequence().forwardSync(block))));
    const fixed = context.length;
    const all = m.createSequence().forwardSync(block, { allLogits: true });
    const acceptedSeen = new Set<number>();
    for (let seed = 1; seed <= 24; seed++) {
      const plain = m.createSequence({ seed }).native.verify(Int32Array.from(block), { sampling, fixed });
      const withRows = m.createSequence({ seed }).native.verify(Int32Array.from(block), { sampling, fixed, returnProbs: true });
      expect([withRows.accepted, withRows.next]).toEqual([plain.accepted, plain.next]);
      expect(withRows.probs!.length).toBe((plain.accepted + 1) * V);
      for (let i = 0; i <= plain.accepted; i++) {
        const want = processedDistribution(all.subarray((fixed - 1 + i) * V, (fixed + i) * V), temperature, 0, topP);
        expect(maxAbsDiff(withRows.probs!.subarray(i * V, (i + 1) * V), want)).toBeLessThan(1e-5);
      }
      acceptedSeen.add(plain.accepted);
    }
    // Both a rejection and rows past the first were checked.
    expect(Math.min(...acceptedSeen)).toBeLessThan(3);
    expect(Math.max(...acceptedSeen)).toBeGreaterThan(0);
  });
});

const describeStories = HAVE_STORIES ? describe : describe.skip;
if (!HAVE_STORIES) console.warn(`stories260K tests SKIPPED: ${STORIES} not found (the shared models folder is absent)`);

describeStories('stories260K (real pretrained checkpoint)' + (HAVE_STORIES ? '' : ' [SKIPPED: ../shared/models/stories260K absent]'), () => {
  const N = 60;
  let ref: ReferenceLlama;
  let prompt: number[];
  let refGreedy: number[];

  beforeAll(() => {
    ref = ReferenceLlama.load(STORIES);
    prompt = Model.loadSync(STORIES).tokenizer.encode('Once upon a time');
    refGreedy = ref.greedy(prompt, N);
  });

  const coherent = (text: string) => {
    const words = text.replace(/[.,!?;:"']/g, ' ').split(/\s+/).filter((w) => w.length > 0);
    expect(words.length).toBeGreaterThan(20);
    for (const w of words) expect(w).toMatch(/^[A-Za-z]+$/);
    const lower = new Set(words.map((w) => w.toLowerCase()));
    const common = ['the', 'a', 'was', 'she', 'he', 'to', 'and', 'her', 'little', 'day', 'there'];
    expect(common.filter((c) => lower.has(c)).length).toBeGreaterThanOrEqual(3);
  };

  test('prompt "Once upon a time": native logits equal the reference at every position', () => {
    expect(prompt).toEqual([1, 403, 407, 261, 378]); // BOS + SentencePiece pieces
    const m = Model.loadSync(STORIES);
    const got = m.createSequence().forwardSync(prompt, { allLogits: true });
    const want = flat(ref.forward(prompt));
    expect(got.length).toBe(prompt.length * 512);
    expect(maxAbsDiff(got, want)).toBeLessThanOrEqual(TOL_F32_STORIES);
  });

  test(`generate: greedy ${N} tokens equal ReferenceLlama.greedy, coherent text`, async () => {
    const m = Model.loadSync(STORIES);
    const r = await m.generate('Once upon a time', { maxNewTokens: N, stopOnEos: false });
    expect(r.promptTokens).toEqual(prompt);
    expect(r.tokens).toEqual(refGreedy);
    expect(r.finishReason).toBe('length');
    coherent(r.text);
    // The whole generated sequence through the cache still matches the reference at the end.
    const seq = m.createSequence();
    seq.forwardSync(prompt);
    let last: Float32Array = new Float32Array();
    for (const t of refGreedy) last = seq.forwardSync([t]);
    const all = ref.forward([...prompt, ...refGreedy]);
    expect(maxAbsDiff(last, all[all.length - 1])).toBeLessThanOrEqual(TOL_F32_STORIES);
  });

  test('bfloat16: logits close to the reference, greedy teacher-forced agreement, coherent generation', async () => {
    const m = Model.loadSync(STORIES, { dtype: 'bfloat16' });
    expect(m.dtype).toBe('bfloat16');
    const seqTokens = [...prompt, ...refGreedy];
    const got = m.createSequence().forwardSync(seqTokens, { allLogits: true });
    const wantRows = ref.forward(seqTokens);
    const e = bf16Check(got, flat(wantRows));
    expect(e.max).toBeLessThanOrEqual(BF16_MAX_REL * e.scale);
    expect(e.rms).toBeLessThanOrEqual(BF16_RMS_REL * e.rmsRef);
    expect(e.max).toBeGreaterThan(1e-3); // really computed in bfloat16
    // Wherever the reference's top-2 margin exceeds twice the bf16 error bound, bf16 picks the
    // same greedy token (the next token of the reference greedy continuation).
    const bound = BF16_MAX_REL * e.scale;
    let checked = 0;
    for (let i = prompt.length - 1; i < seqTokens.length - 1; i++) {
      const row = wantRows[i];
      const sorted = [...row].sort((a, b) => b - a);
      if (sorted[0] - sorted[1] <= 2 * bound) continue;
      checked++;
      expect([i, argmax(got.subarray(i * 512, (i + 1) * 512))]).toEqual([i, seqTokens[i + 1]]);
    }
    expect(checked).toBeGreaterThan(N / 3);
    const r = await m.generate('Once upon a time', { maxNewTokens: N, stopOnEos: false });
    coherent(r.text);
  });
});
