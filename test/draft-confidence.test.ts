/**
 * Drafts that stop where the draft is unsure (`draftConfidence`, native draft's minConfidence).
 * The rule is checked against a reference built from full logits (softmax of each position,
 * computed by a separate sequence), on the float32 (libtorch) and bf16 (kernels: argmax with
 * log-sum-exp, no logits) paths; greedy 'sd' with the option is checked token for token against
 * AR; the option's validation and the bench method syntax are checked. (Sampling exactness with
 * the option: test/speculative-sampling.test.ts.)
 */

import { parseMethod } from '../lib/cli/methods';
import type { Family } from '../lib/cli/family';
import { Model } from '../lib/model';
import type { Dtype } from '../lib/native';
import { greedyWithProbabilities } from './helpers/greedy-reference';
import { useTargetAndNearDraft } from './helpers/tiny-model';

const V = 260;
const GREEDY = { temperature: 0, topK: 0, topP: 1 };
const fx = useTargetAndNearDraft('cascade-confidence-', V);

describe.each(['float32', 'bfloat16'] as Dtype[])('native draft with minConfidence (%s)', (dtype) => {
  test('stops before the first token after the first whose probability is below the threshold; the cache keeps all but the last', () => {
    const model = Model.loadSync(fx.draftDir, { dtype });
    // bf16 runs the kernels, whose greedy path takes p(argmax) from the argmax epilogue's
    // log-sum-exp; float32 runs libtorch and takes it from the logits.
    expect(model.kernels === null).toBe(dtype === 'float32');
    const contexts = [[256, 72, 105], [256, 10, 20, 30, 40], [256, 200, 3, 3, 3, 3]];
    let stopped = 0, full = 0;
    for (const context of contexts) {
      const ref = greedyWithProbabilities(model, context, 8);
      const probs = ref.slice(1).map((r) => r.p).sort((a, b) => a - b);
      // Thresholds between the reference probabilities (never at one: float rounding), and 0.
      const thresholds = [0, ...probs.map((p, i) => (i + 1 < probs.length ? (p + probs[i + 1]) / 2 : p * 1.01))];
      for (const tau of thresholds) {
        let want = ref.length;
        for (let i = 1; i < ref.length; i++)
          if (ref[i].p < tau) {
            want = i;
            break;
          }
        const seq = model.createSequence({ contextLength: 64 });
        const r = seq.native.draft(Int32Array.from(context), 8, GREEDY, tau);
        expect({ context, tau, tokens: Array.from(r.tokens) }).toEqual({ context, tau, tokens: ref.slice(0, want).map((x) => x.token) });
        expect(seq.length).toBe(context.length + want - 1);
        if (want < 8) stopped++;
        else full++;
        seq.dispose();
      }
    }
    expect(stopped).toBeGreaterThan(5);
    expect(full).toBeGreaterThan(2);
    model.dispose();
  });
});

test('bad minConfidence values are refused with a clear error', () => {
  const model = Model.loadSync(fx.draftDir);
  const seq = model.createSequence({ contextLength: 32 });
  for (const bad of [-0.1, 1, 2, NaN]) expect(() => seq.native.draft(Int32Array.of(256, 72), 3, GREEDY, bad)).toThrow(/minConfidence must be in \[0, 1\)/);
  expect(() => seq.native.draft(Int32Array.of(256, 72), 3, GREEDY, 'x' as unknown as number)).toThrow(/minConfidence must be a number/);
  model.dispose();
});

test("greedy 'sd' with draftConfidence equals AR token for token, and drafts fewer tokens", async () => {
  const target = Model.loadSync(fx.targetDir);
  const draft = Model.loadSync(fx.draftDir);
  const prompts = [[256, 72, 105], [256, 1, 2, 3, 1, 2, 3], [256, 99, 98, 97]];
  for (const prompt of prompts)
    for (const k of [1, 3, 6]) {
      const ar = await target.generate(prompt, { maxNewTokens: 30, temperature: 0, stopOnEos: false });
      const plain = await target.generate(prompt, { method: 'sd', draftModel: draft, k, maxNewTokens: 30, temperature: 0, stopOnEos: false });
      for (const c of [0.2, 0.6, 0.95]) {
        const r = await target.generate(prompt, { method: 'sd', draftModel: draft, k, draftConfidence: c, maxNewTokens: 30, temperature: 0, stopOnEos: false });
        expect({ prompt, k, c, tokens: r.tokens }).toEqual({ prompt, k, c, tokens: ar.tokens });
        if (k > 1 && c === 0.95) expect(r.stats.drafted as number).toBeLessThan(plain.stats.drafted as number);
      }
    }
});

test('draftConfidence is validated; the bench method syntax sd[:DRAFT][@K][~C]', async () => {
  const target = Model.loadSync(fx.targetDir);
  const draft = Model.loadSync(fx.draftDir);
  for (const bad of [-0.5, 1, 'high'])
    await expect(target.generate([256], { method: 'sd', draftModel: draft, draftConfidence: bad as number })).rejects.toThrow(/draftConfidence must be a number in \[0, 1\)/);
  const family: Family = { target, drafts: { small: draft } };
  const defaults = { k: 4, draft: 'small', cascade: { drafters: ['small'], K: [[1, 0], [0, 0]], lenience: 1 } };
  const m = parseMethod('sd:small@8~0.4', family, defaults);
  expect(m.name).toBe('sd:small@8~0.4');
  expect(m.options).toMatchObject({ method: 'sd', k: 8, draftConfidence: 0.4 });
  expect(parseMethod('sd@5', family, defaults).options).not.toHaveProperty('draftConfidence');
  expect(() => parseMethod('mag@3~0.4', family, defaults)).toThrow(/only sd takes a draft confidence/);
  expect(() => parseMethod('sd:small@8~1.5', family, defaults)).toThrow(/must be in \[0, 1\)/);
});

test('generate --draft-confidence: used with sd, out of range is a usage error', async () => {
  const { cli } = await import('./helpers/cli');
  const ok = await cli('generate', '--model', fx.targetDir, '--method', 'sd', '--draft', fx.draftDir, '--k', '5', '--draft-confidence', '0.5', '--max-new-tokens', '12', '--json', '--raw', 'Hello');
  expect(ok.code).toBe(0);
  const ar = await cli('generate', '--model', fx.targetDir, '--max-new-tokens', '12', '--json', '--raw', 'Hello');
  expect(JSON.parse(ok.out).tokens).toEqual(JSON.parse(ar.out).tokens);
  const bad = await cli('generate', '--model', fx.targetDir, '--method', 'sd', '--draft', fx.draftDir, '--draft-confidence', '1.5', 'Hello');
  expect(bad.code).toBe(2);
  expect(bad.err).toMatch(/--draft-confidence/);
});
