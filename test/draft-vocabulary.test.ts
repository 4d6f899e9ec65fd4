/**
 * Draft vocabularies (LoadOptions.draftVocabulary): a draft model proposes from a set of token
 * ids only. Checked against references from the unrestricted model's full logits (argmax and
 * softmax over the set) on the float32 (libtorch) and bf16 (kernels: a packed sub-matrix of the
 * output weights) paths; greedy 'sd' with a restricted draft equals AR; the model's own passes
 * ignore the set; loading from the folder's file, bad sets and bad files. (Sampling exactness
 * with a restricted draft: test/speculative-sampling.test.ts, method 'sdv'.)
 */
import * as fs from 'fs';
import * as path from 'path';

import { DRAFT_VOCAB_FILE, Model } from '../lib/model';
import type { Dtype } from '../lib/native';
import { coverage, draftVocabulary } from '../scripts/build-draft-vocab';
import { greedyWithProbabilities } from './helpers/greedy-reference';
import { writeInt32File } from '../lib/files';
import { makeTinyModel, mulberry32, perturbedCopy, useTargetAndNearDraft } from './helpers/tiny-model';

const V = 260;
const GREEDY = { temperature: 0, topK: 0, topP: 1 };
const fx = useTargetAndNearDraft('cascade-draft-vocab-', V);

/** A random subset of the vocabulary with about `share` of the ids. */
function randomSet(seed: number, share: number): number[] {
  const rand = mulberry32(seed);
  const ids = [...Array(V).keys()].filter(() => rand() < share);
  return ids.length ? ids : [0];
}

const CONTEXTS = [[256, 72, 105], [256, 10, 20, 30, 40], [256, 200, 3, 3, 3, 3], [256, 65, 66, 67]];

describe.each(['float32', 'bfloat16'] as Dtype[])('native draft over a draft vocabulary (%s)', (dtype) => {
  test('greedy drafts are the argmax over the set, confidence its softmax over the set', () => {
    const full = Model.loadSync(fx.draftDir, { dtype, draftVocabulary: null });
    let changed = 0;
    for (const [i, share] of [0.1, 0.5, 0.9].entries()) {
      const ids = randomSet(40 + i, share);
      const model = Model.loadSync(fx.draftDir, { dtype, draftVocabulary: ids });
      expect(model.draftVocabularySize).toBe(ids.length);
      for (const context of CONTEXTS) {
        const ref = greedyWithProbabilities(full, context, 6, new Set(ids));
        const unrestricted = greedyWithProbabilities(full, context, 6);
        if (ref[0].token !== unrestricted[0].token) changed++;
        const seq = model.createSequence({ contextLength: 64 });
        const r = seq.native.draft(Int32Array.from(context), 6, GREEDY, 0);
        expect({ share, context, tokens: Array.from(r.tokens) }).toEqual({ share, context, tokens: ref.map((x) => x.token) });
        seq.dispose();
        // A threshold between two of the set's probabilities stops where the set's softmax says.
        const probs = ref.slice(1).map((x) => x.p).sort((a, b) => a - b);
        const tau = (probs[1] + probs[2]) / 2;
        const want = ref.findIndex((x, j) => j > 0 && x.p < tau);
        const gated = model.createSequence({ contextLength: 64 });
        const g = gated.native.draft(Int32Array.from(context), 6, GREEDY, tau);
        expect(Array.from(g.tokens)).toEqual(ref.slice(0, want < 0 ? 6 : want).map((x) => x.token));
        gated.dispose();
      }
      model.dispose();
    }
    // The sets were small enough to exclude the unrestricted argmax at times.
    expect(changed).toBeGreaterThan(2);
    full.dispose();
  });

  test('sampled drafts come from the set, with q zero outside it', () => {
    const ids = randomSet(7, 0.3);
    const inSet = new Set(ids);
    const model = Model.loadSync(fx.draftDir, { dtype, draftVocabulary: ids });
    const seq = model.createSequence({ contextLength: 64, seed: 3 });
    for (let rep = 0; rep < 20; rep++) {
      const r = seq.native.draft(Int32Array.of(256, 72, 105), 4, { temperature: 1, topK: 0, topP: 1 }, 0);
      expect(r.tokens.length).toBe(4);
      for (let i = 0; i < 4; i++) {
        expect(inSet.has(r.tokens[i])).toBe(true);
        const row = r.probs!.subarray(i * V, (i + 1) * V);
        let inside = 0;
        row.forEach((p, v) => {
          if (inSet.has(v)) inside += p;
          else expect(p).toBe(0);
        });
        expect(inside).toBeCloseTo(1, 5);
        expect(row[r.tokens[i]]).toBeGreaterThan(0);
      }
      seq.truncate(0);
    }
    model.dispose();
  });

  test("probsOut: a sampled draft's rows land in the caller's array; a short one is left alone; other types are refused", () => {
    const model = Model.loadSync(fx.draftDir, { dtype, draftVocabulary: randomSet(7, 0.3) });
    const a = model.createSequence({ contextLength: 64, seed: 5 }), b = model.createSequence({ contextLength: 64, seed: 5 });
    const s = { temperature: 1, topK: 0, topP: 1 };
    const out = new Float32Array(6 * V).fill(7);
    for (let rep = 0; rep < 3; rep++) {
      const ra = a.native.draft(Int32Array.of(256, 72, 105), 4, s, 0, out);
      const rb = b.native.draft(Int32Array.of(256, 72, 105), 4, s, 0);
      expect(Array.from(ra.tokens)).toEqual(Array.from(rb.tokens));
      // A view of the caller's array, holding what a fresh array would.
      expect(ra.probs!.buffer).toBe(out.buffer);
      expect(ra.probs!.length).toBe(4 * V);
      expect(Array.from(ra.probs!)).toEqual(Array.from(rb.probs!));
      expect(out[4 * V]).toBe(7); // past the draft's rows: untouched
      a.truncate(0);
      b.truncate(0);
    }
    const short = new Float32Array(V);
    const rc = a.native.draft(Int32Array.of(256, 72, 105), 4, s, 0, short);
    expect(rc.probs!.buffer).not.toBe(short.buffer);
    expect(rc.probs!.length).toBe(4 * V);
    expect(Array.from(short).every((v) => v === 0)).toBe(true);
    expect(() => a.native.draft(Int32Array.of(1), 2, s, 0, [1, 2] as unknown as Float32Array)).toThrow('draft: probsOut must be a Float32Array');
    expect(() => a.native.draft(Int32Array.of(1), 2, s, 0, new Float64Array(2 * V) as unknown as Float32Array)).toThrow('draft: probsOut must be a Float32Array');
    model.dispose();
  });

  test("the model's own passes use every token: generation as a target is unchanged", async () => {
    const full = Model.loadSync(fx.draftDir, { dtype, draftVocabulary: null });
    const restricted = Model.loadSync(fx.draftDir, { dtype, draftVocabulary: randomSet(9, 0.2) });
    for (const context of CONTEXTS) {
      const a = await full.generate(context, { maxNewTokens: 12, temperature: 0, stopOnEos: false });
      const b = await restricted.generate(context, { maxNewTokens: 12, temperature: 0, stopOnEos: false });
      expect(b.tokens).toEqual(a.tokens);
      const sa = full.createSequence({ contextLength: 32 }), sb = restricted.createSequence({ contextLength: 32 });
      expect(Array.from(sb.forwardSync(context))).toEqual(Array.from(sa.forwardSync(context)));
    }
  });
});

test("greedy 'sd' with a restricted draft equals AR token for token", async () => {
  const target = Model.loadSync(fx.targetDir);
  for (const share of [0.05, 0.5]) {
    const draft = Model.loadSync(fx.draftDir, { draftVocabulary: randomSet(11, share) });
    for (const context of CONTEXTS)
      for (const k of [1, 3, 6]) {
        const ar = await target.generate(context, { maxNewTokens: 24, temperature: 0, stopOnEos: false });
        const sd = await target.generate(context, { maxNewTokens: 24, temperature: 0, stopOnEos: false, method: 'sd', draftModel: draft, k });
        expect({ share, context, k, tokens: sd.tokens }).toEqual({ share, context, k, tokens: ar.tokens });
      }
    draft.dispose();
  }
});

test("the folder's draft-vocab.i32 is the default; null turns it off", () => {
  const dir = path.join(fx.tmp, 'with-file');
  makeTinyModel(dir, { vocabSize: V, seed: 5 });
  const ids = [0, 3, 17, 200];
  writeInt32File(path.join(dir, DRAFT_VOCAB_FILE), Int32Array.from(ids));
  expect(Model.loadSync(dir).draftVocabularySize).toBe(4);
  expect(Model.loadSync(dir, { draftVocabulary: null }).draftVocabularySize).toBe(V);
  expect(Model.loadSync(dir, { draftVocabulary: [5, 1] }).draftVocabularySize).toBe(2);
  expect(Array.from(Model.loadSync(dir).draftVocabulary!)).toEqual(ids);
  expect(Array.from(Model.loadSync(dir, { draftVocabulary: [5, 1] }).draftVocabulary!)).toEqual([1, 5]);
  expect(Model.loadSync(dir, { draftVocabulary: null }).draftVocabulary).toBeNull();
  const seq = Model.loadSync(dir).createSequence({ contextLength: 16 });
  expect(Array.from(seq.native.draft(Int32Array.of(256, 1, 2), 3, GREEDY, 0).tokens).every((t) => ids.includes(t))).toBe(true);
});

test('bad draft vocabularies and files are refused with errors naming the problem', () => {
  const bad: Array<[unknown, RegExp]> = [
    [[], /draftVocabulary is empty/],
    [[1, 2, 2], /lists token 2 twice/],
    [[1, V], new RegExp(`draftVocabulary\\[1\\] = ${V} is not a token id in \\[0, ${V}\\)`)],
    [[-1], /draftVocabulary\[0\] = -1/],
    [[1.5], /draftVocabulary\[0\] = 1.5/],
    ['0,1', /draftVocabulary must be an array of token ids, an Int32Array or null/],
  ];
  for (const [value, msg] of bad) expect(() => Model.loadSync(fx.draftDir, { draftVocabulary: value as number[] })).toThrow(msg);
  const dir = path.join(fx.tmp, 'bad-file');
  makeTinyModel(dir, { vocabSize: V, seed: 5 });
  const file = path.join(dir, DRAFT_VOCAB_FILE);
  const write = (vals: number[], extra = 0) => {
    const b = Buffer.alloc(vals.length * 4 + extra);
    vals.forEach((v, i) => b.writeInt32LE(v, i * 4));
    fs.writeFileSync(file, b);
  };
  const cases: Array<[() => void, RegExp]> = [
    [() => write([1, 2], 2), /expected a non-empty list of int32 token ids, got 10 bytes/],
    [() => write([]), /got 0 bytes/],
    [() => write([4, 3]), /must be strictly increasing \(entry 1 = 3 after 4\)/],
    [() => write([1, 9999]), /entry 1 = 9999 is not a token id in \[0, 260\)/],
  ];
  for (const [make, msg] of cases) {
    make();
    expect(() => Model.loadSync(dir)).toThrow(msg);
    expect(() => Model.loadSync(dir)).toThrow(file);
  }
  // The native side checks too (its own callers may bypass the JS checks).
  const addon = require('../lib/native').loadNative();
  const m = Model.loadSync(dir, { draftVocabulary: null });
  expect(() => new addon.Model(m.config, [path.join(dir, 'model.safetensors')], { dtype: 'float32', threads: 1, draftVocabulary: Int32Array.of(3, 1) })).toThrow(
    /sorted and unique \(3 then 1\)/,
  );
  expect(() => new addon.Model(m.config, [path.join(dir, 'model.safetensors')], { dtype: 'float32', threads: 1, draftVocabulary: [1] })).toThrow(
    /draftVocabulary must be an Int32Array/,
  );
});

test('build-draft-vocab: the target\'s tokens first, then the reference\'s by count, EOS always', () => {
  const target = new Map([[10, 5], [11, 1], [12, 3]]);
  const reference = new Map([[20, 9], [10, 8], [21, 9], [22, 1]]);
  // size 6: EOS (0), 10, 11, 12, then 20 and 21 (9 each; 20 first by id), not 22.
  expect(Array.from(draftVocabulary(target, reference, 6, [0]))).toEqual([0, 10, 11, 12, 20, 21]);
  expect(Array.from(draftVocabulary(target, reference, 5, [0]))).toEqual([0, 10, 11, 12, 20]);
  // Too small for every token the target writes: its most frequent ones (10: 5, then 12: 3).
  expect(Array.from(draftVocabulary(target, reference, 3, [0]))).toEqual([0, 10, 12]);
  expect(Array.from(draftVocabulary(target, reference, 2, [0]))).toEqual([0, 10]);
  expect(coverage(target, Int32Array.of(0, 10, 12))).toBeCloseTo(8 / 9, 12);
  expect(coverage(target, Int32Array.of(0, 10, 11, 12))).toBe(1);
  expect(() => draftVocabulary(target, reference, 1, [0, 5])).toThrow(/--size 1 cannot hold the 2 tokens always kept/);
});

test('generate --full-draft-vocabulary: the draft folder\'s set is ignored; the output is AR\'s either way', async () => {
  const { cli } = await import('./helpers/cli');
  const dir = path.join(fx.tmp, 'draft-with-file');
  perturbedCopy(fx.targetDir, dir, 0.3, 5);
  writeInt32File(path.join(dir, DRAFT_VOCAB_FILE), Int32Array.of(0, 1, 2, 3, 4, 5, 6, 7));
  const base = ['generate', '--model', fx.targetDir, '--max-new-tokens', '16', '--json', '--raw', 'Hello there'];
  const ar = JSON.parse((await cli(...base)).out);
  const accepted: number[] = [];
  for (const extra of [[], ['--full-draft-vocabulary']]) {
    const r = await cli(...base, '--method', 'sd', '--draft', dir, '--k', '4', ...extra);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.out);
    expect(out.tokens).toEqual(ar.tokens);
    accepted.push(out.stats.accepted);
  }
  // Eight token ids leave the draft almost nothing to get right; every token, a near copy of the target.
  expect(accepted[1]).toBeGreaterThan(accepted[0]);
});
