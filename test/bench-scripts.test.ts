/**
 * bench/verify-cost.ts: timings per block length, and its refusal of a block past the context.
 * bench/draft-policies.ts: traces checked against an independent along-the-text count, and the
 * replay of each policy against passes counted by hand.
 * bench/ceiling.ts: the oracle upper bound on any greedy cascade. Agreement is checked against
 * an independent count (each draft decoding the true prefix token by token), the oracle's
 * passes against what a draft identical to the target must give (one pass per prompt), and
 * the subset figures against their ordering (more drafters can only lengthen the runs).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { expectedTokens, measureBlockGain } from '../bench/block-verification';
import { measureCeiling } from '../bench/ceiling';
import { calibrate, collectTrace, confidenceStop, CONF_BINS, eitherOracle, expectedValueStop, fixedK, matchedSuffix, maxGramWhereUnsure, replay, stopOracle, type Costs, type Step } from '../bench/draft-policies';
import { compareDraftVocabularies } from '../bench/draft-vocab';
import { measureDraftOverlap, parseSettings, settingLabel, writeScale } from '../bench/draft-temperature';
import { verifyCost } from '../bench/verify-cost';
import type { Family } from '../lib/cli/family';
import { Model } from '../lib/model';
import { makeTinyFamily, TINY_FAMILY_VOCAB } from './helpers/tiny-family';
import { processedDistribution } from './helpers/stats';
import { ReferenceLlama } from './reference/llama';
import { blockRuleOutcome, ruleOutcome } from './helpers/spec-rule';
import { mulberry32 } from './helpers/tiny-model';

const PROMPTS = ['Hello', 'abc abc abc', 'The cat sat on the mat. The cat'];
const MAX_NEW = 20;
const GREEDY = { temperature: 0, topK: 0, topP: 1 };

let tmp: string;
let family: Family;
let sameFamily: Family;
let tinyDir: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-ceiling-'));
  ({ family, sameFamily } = makeTinyFamily(tmp));
  tinyDir = tmp;
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function continuations(fam: Family): Promise<Array<{ prompt: number[]; generated: number[] }>> {
  const out = [];
  for (const p of PROMPTS) {
    const r = await fam.target.generate(p, { maxNewTokens: MAX_NEW, temperature: 0, stopOnEos: true });
    out.push({ prompt: r.promptTokens, generated: r.tokens });
  }
  return out;
}

test('a draft identical to the target agrees everywhere: one oracle pass per prompt', async () => {
  const r = await measureCeiling(sameFamily, PROMPTS, { maxNewTokens: MAX_NEW, sd: [{ draft: 'same', k: 4 }], floorBlock: 4, floorPosition: 8 });
  const conts = (await continuations(sameFamily)).filter((c) => c.generated.length >= 2);
  const tokens = conts.reduce((s, c) => s + c.generated.length - 1, 0);
  expect(r.agreement.same).toBe(1);
  expect(r.agreement.any).toBe(1);
  expect(r.oracleTokensPerPass).toBeCloseTo(tokens / conts.length, 3);
  expect(r.singleDraft.map((s) => s.name)).toEqual(['sd:same@4']);
  expect(r.bound.freeDraftingDecodeSpeedupVsAR).toBeGreaterThan(0);
});

test('agreement equals an independent token-by-token count; subsets and bounds are ordered', async () => {
  const r = await measureCeiling(family, PROMPTS, { maxNewTokens: MAX_NEW, sd: [{ draft: 'small', k: 2 }, { draft: 'mid', k: 3 }], floorBlock: 4, floorPosition: 8 });
  const conts = await continuations(family);
  let positions = 0;
  const agree: Record<string, number> = { mid: 0, small: 0 };
  for (const { prompt, generated } of conts) {
    if (generated.length < 2) continue;
    for (const name of ['mid', 'small']) {
      const seq = family.drafts[name].createSequence({ contextLength: prompt.length + generated.length });
      let next = seq.native.step(Int32Array.from(prompt), GREEDY);
      for (let j = 1; j < generated.length; j++) {
        next = seq.native.step(Int32Array.of(generated[j - 1]), GREEDY);
        if (next === generated[j]) agree[name]++;
      }
      seq.dispose();
    }
    positions += generated.length - 1;
  }
  expect(positions).toBeGreaterThan(20);
  for (const name of ['mid', 'small']) expect(r.agreement[name]).toBeCloseTo(agree[name] / positions, 3);
  // The perturbed copy agrees more often than an unrelated model (what makes this test able to
  // tell the two drafts apart).
  expect(r.agreement.mid).toBeGreaterThan(r.agreement.small);
  for (const name of ['mid', 'small', 'maxgram']) expect(r.agreement.any).toBeGreaterThanOrEqual(r.agreement[name]);
  const only: Record<string, number> = r.oracleTokensPerPassWithOnly;
  expect(Object.keys(only).sort()).toEqual(['maxgram', 'mid', 'mid+maxgram', 'mid+small', 'mid+small+maxgram', 'small', 'small+maxgram'].sort());
  for (const [a, va] of Object.entries(only))
    for (const [b, vb] of Object.entries(only)) if (a.split('+').every((d) => b.split('+').includes(d))) expect(vb).toBeGreaterThanOrEqual(va);
  expect(only['mid+small+maxgram']).toBeCloseTo(r.oracleTokensPerPass, 3);
  expect(r.oracleTokensPerPass).toBeGreaterThanOrEqual(1);
  expect(r.bound.costFloorDecodeSpeedupVsAR).toBeLessThanOrEqual(r.bound.freeDraftingDecodeSpeedupVsAR);
  expect(r.singleDraft.map((s) => s.name)).toEqual(['sd:small@2', 'sd:mid@3']);
  expect([r.bestSingleDraft]).toContain(r.singleDraft.reduce((a, b) => (b.decodeSpeedupVsAR > a.decodeSpeedupVsAR ? b : a)).name);
});

test('an unknown draft name is an error naming it', async () => {
  await expect(measureCeiling(family, PROMPTS, { maxNewTokens: 4, sd: [{ draft: 'huge', k: 2 }] })).rejects.toThrow('no draft model named huge');
});

test('verifyCost times every block length; a block past the context is refused', () => {
  const ms = verifyCost(family.target, 5, [1, 3, 8], 2, 5);
  expect(Object.keys(ms).map(Number).sort((a, b) => a - b)).toEqual([1, 3, 8]);
  for (const v of Object.values(ms)) expect(v > 0 && Number.isFinite(v)).toBe(true);
  expect(() => verifyCost(family.target, family.target.contextLength - 2, [4], 1, 1)).toThrow(/exceeds the context/);
});

test('a continuation that fills the context is measured too (the oracle feeds all but the last token)', async () => {
  const cap = family.target.contextLength;
  const r = await measureCeiling(family, ['The cat sat on the mat. The cat'], { maxNewTokens: cap, sd: [], floorBlock: 4, floorPosition: 8 });
  const gen = await family.target.generate('The cat sat on the mat. The cat', { maxNewTokens: cap, temperature: 0, stopOnEos: true });
  expect(gen.promptTokens.length + gen.tokens.length).toBe(cap + 1);
  expect(r.oracleTokensPerPass).toBeGreaterThanOrEqual(1);
  expect(r.bestSingleDraft).toBeNull();
});

test('draft-vocab: every variant equals AR; a draft proposing from half the tokens gets fewer of them accepted', async () => {
  const half = Array.from({ length: TINY_FAMILY_VOCAB / 2 }, (_, i) => 2 * i + 1);
  const restricted = { mid: Model.loadSync(path.join(tinyDir, 'mid'), { draftVocabulary: half }) };
  const rows = await compareDraftVocabularies(family.target, { all: { mid: family.drafts.mid }, restricted }, PROMPTS, ['sd:mid@4', 'csd'], {
    maxNewTokens: MAX_NEW,
    cascade: { drafters: ['mid'], K: [[3, 1], [0, 0]], lenience: 1 },
  });
  expect(rows.map((r) => r.name)).toEqual(['ar', 'sd:mid@4 all', 'sd:mid@4 restricted', 'csd all', 'csd restricted']);
  const by = Object.fromEntries(rows.map((r) => [r.name, r]));
  expect(by.ar.tokensPerPass).toBe(1);
  // The mid is often right with every token; without the even ids it cannot be where the target writes one.
  expect(by['sd:mid@4 restricted'].tokensPerPass).toBeLessThan(by['sd:mid@4 all'].tokensPerPass);
  for (const r of rows) expect(r.speedupVsAR > 0 && r.msPerStep > 0).toBe(true);
  await expect(compareDraftVocabularies(family.target, { all: {}, restricted: {} }, PROMPTS, ['sd:nope@2'], { maxNewTokens: 4 })).rejects.toThrow(/bad method "sd:nope@2"/);
});

test('the scripts refuse bad flags with a message naming the flag', () => {
  const { spawnSync } = require('child_process') as typeof import('child_process');
  const root = path.resolve(__dirname, '..');
  const run = (script: string, ...args: string[]) => spawnSync(process.execPath, [path.join(root, 'dist/bench', script), ...args], { encoding: 'utf8' });
  const blocks = run('verify-cost.js', '--blocks', '1,0');
  expect(blocks.status).toBe(2);
  expect(blocks.stderr).toMatch(/--blocks: positive integers/);
  const sd = run('ceiling.js', '--dataset', 'unused.jsonl', '--sd', 'small@x');
  expect(sd.status).toBe(1);
  expect(sd.stderr).toMatch(/--sd: small@x is not DRAFT@K/);
  const noDataset = run('ceiling.js');
  expect(noDataset.status).toBe(2);
  expect(noDataset.stdout).toMatch(/--dataset/);
  expect(noDataset.stderr).toMatch(/--dataset is required/);
  const help = run('ceiling.js', '--help');
  expect(help.status).toBe(0);
  expect(help.stdout).toMatch(/Options:/);
  const vocab = run('draft-vocab.js');
  expect(vocab.status).toBe(2);
  expect(vocab.stderr).toMatch(/--dataset is required/);
  const missing = path.join(os.tmpdir(), 'cascade-spec-no-such-vocab.i32');
  const otherVocab = run('draft-vocab.js', '--dataset', 'unused.jsonl', '--compare-vocab', missing);
  expect(otherVocab.status).toBe(1);
  expect(otherVocab.stderr).toContain(missing);
  const scales = run('draft-temperature.js', '--dataset', 'unused.jsonl', '--scales', '1,0');
  expect(scales.status).toBe(1);
  expect(scales.stderr).toMatch(/--scales: 1,0 is not a comma-separated list of numbers in \(0, 10\]/);
  const settings = run('draft-temperature.js', '--dataset', 'unused.jsonl', '--settings', '0.8/x/1');
  expect(settings.status).toBe(1);
  expect(settings.stderr).toMatch(/--settings: 0.8\/x\/1 is not T\/topK\/topP/);
  const noData = run('draft-temperature.js');
  expect(noData.status).toBe(2);
  expect(noData.stdout).toMatch(/--dataset/);
  const noCalibration = run('draft-policies.js', '--dataset', 'unused.jsonl');
  expect(noCalibration.status).toBe(2);
  expect(noCalibration.stderr).toMatch(/--calibration is required/);
  const depth = run('draft-policies.js', '--dataset', 'a.jsonl', '--calibration', 'b.jsonl', '--depth', '16');
  expect(depth.status).toBe(2);
  expect(depth.stderr).toMatch(/--depth/);
  const cacheNoData = run('prompt-cache.js');
  expect(cacheNoData.status).toBe(2);
  expect(cacheNoData.stderr).toMatch(/--dataset is required/);
  const cacheMethod = run('prompt-cache.js', '--dataset', 'unused.jsonl', '--methods', 'ar,sd');
  expect(cacheMethod.status).toBe(1);
  expect(cacheMethod.stderr).toMatch(/--methods: sd is neither ar nor csd/);
});

test('prompt-cache: second turns on the default family reuse turn 1 and return the uncached tokens', () => {
  const { spawnSync } = require('child_process') as typeof import('child_process');
  const root = path.resolve(__dirname, '..');
  const dataset = path.join(root, '..', 'shared', 'data', 'gsm8k', 'test.jsonl');
  const r = spawnSync(process.execPath, [path.join(root, 'dist/bench/prompt-cache.js'), '--dataset', dataset, '--limit', '4', '--max-new-tokens', '8'], { encoding: 'utf8' });
  // The script itself fails when a cached turn returns other tokens than the fresh one.
  expect({ status: r.status, stderr: r.status === 0 ? '' : r.stderr }).toEqual({ status: 0, stderr: '' });
  const out = JSON.parse(r.stdout) as { methods: Record<string, { pairs: number; meanTurn2PromptTokens: number; meanReusedTokens: number }> };
  for (const m of ['ar', 'csd']) {
    expect(out.methods[m].pairs).toBe(2);
    // Turn 1's prompt (the template and a question, ~60 tokens) at least is reused.
    expect(out.methods[m].meanReusedTokens).toBeGreaterThan(40);
    expect(out.methods[m].meanReusedTokens).toBeLessThan(out.methods[m].meanTurn2PromptTokens);
  }
});

describe('bench/draft-policies.ts', () => {
  const step = (run: number, conf: number[], mgOk = false, mgLen = 0): Step => ({ run, conf, mgOk, mgLen });
  const unit: Costs = { verifyMs: (n) => n, draftMs: 0.1 };

  test('traces: runs equal an independent count of the greedy draft tokens along the target text', async () => {
    const depth = 4;
    let steps = 0;
    for (const p of PROMPTS) {
      const trace = await collectTrace(family.target, family.drafts.mid, p, MAX_NEW, depth);
      const gen = await family.target.generate(p, { maxNewTokens: MAX_NEW, temperature: 0 });
      const G = gen.tokens;
      // The draft's greedy token after every prefix of the text, one token at a time.
      const seq = family.drafts.mid.createSequence({ contextLength: gen.promptTokens.length + G.length });
      const right: boolean[] = [];
      seq.native.step(Int32Array.from(gen.promptTokens), GREEDY);
      for (let j = 0; j + 1 < G.length; j++) right.push(seq.native.step(Int32Array.of(G[j]), GREEDY) === G[j + 1]);
      seq.dispose();
      expect(trace.length).toBe(Math.max(0, G.length - 1));
      trace.forEach((s, j) => {
        let run = 0;
        while (run < depth && j + run < right.length && right[j + run]) run++;
        expect(s.run).toBe(run);
        expect(s.conf.length).toBe(depth);
        for (const c of s.conf) expect(c > 0 && c <= 1).toBe(true);
        expect(s.mgLen).toBe(matchedSuffix([...gen.promptTokens, ...G.slice(0, j + 1)]));
      });
      steps += trace.length;
    }
    expect(steps).toBeGreaterThan(20);
    // A draft identical to the target is right as deep as the text goes.
    const same = await collectTrace(sameFamily.target, sameFamily.drafts.same, PROMPTS[2], MAX_NEW, 3);
    same.forEach((s, j) => expect(s.run).toBe(Math.min(3, same.length - j)));
  });

  test('matchedSuffix: the longest suffix that also ends earlier', () => {
    expect(matchedSuffix([1, 2, 3, 1, 2])).toBe(2);
    expect(matchedSuffix([1, 2, 3])).toBe(0);
    expect(matchedSuffix([5, 5, 5])).toBe(2);
    expect(matchedSuffix([7])).toBe(0);
  });

  test('replay: passes, tokens and costs counted by hand', () => {
    const trace = [step(2, [0.9, 0.9, 0.9]), step(0, [0.9, 0.9, 0.9]), step(1, [0.9, 0.9, 0.9]), step(3, [0.9, 0.9, 0.9]), step(0, [0.9, 0.9, 0.9])];
    // k = 2: from 0, both drafts pass (3 tokens, t = 3); from 3, two pass but only one token is
    // left before the end (2 tokens). Each pass verifies 3 tokens and drafts 2.
    expect(replay([trace], fixedK(2), unit)).toEqual({ tokens: 5, passes: 2, ms: 2 * (3 + 0.2), arMs: 5 });
    // The oracle verifies exactly the drafts that pass: 0 -> 3 (2 drafts), 3 -> 5 (3 drafts, one used).
    expect(replay([trace], stopOracle(3), unit)).toEqual({ tokens: 5, passes: 2, ms: 3 + 0.2 + 4 + 0.3, arMs: 5 });
    // Decoding alone: one pass per token.
    expect(replay([trace], fixedK(0), unit).passes).toBe(5);
  });

  test('confidence stop: stops where a later proposal is unsure, paying the forward that showed it', () => {
    const s = [step(3, [0.2, 0.9, 0.4, 0.9])];
    expect(confidenceStop(4, 0.5)(s, 0)).toEqual({ drafts: 2, forwards: 3, accepted: 2 });
    expect(confidenceStop(4, 0.1)(s, 0)).toEqual({ drafts: 4, forwards: 4, accepted: 3 });
    // The first proposal is always drafted.
    expect(confidenceStop(4, 0.95)(s, 0)).toEqual({ drafts: 1, forwards: 2, accepted: 1 });
  });

  test('calibration and the expected-value stop', () => {
    // Position 0 (conf 0.95) passed, position 1 (0.95) failed; position 2 never reached.
    const pass = calibrate([[step(1, [0.95, 0.95, 0.15])]]);
    expect(pass).toHaveLength(CONF_BINS);
    expect(pass[CONF_BINS - 1]).toBeCloseTo(1.5 / 3, 10);
    expect(pass[1]).toBeCloseTo(0.5, 10);
    const flat: Costs = { verifyMs: () => 1, draftMs: 0 };
    const s = [step(2, [0.95, 0.95, 0.95])];
    // Free verification: the longest draft. Each draft certain to fail: none.
    expect(expectedValueStop(3, new Array(CONF_BINS).fill(0.9), 0.01, 0.5, flat)(s, 0).drafts).toBe(3);
    expect(expectedValueStop(3, new Array(CONF_BINS).fill(0), 0.5, 0.5, unit)(s, 0).drafts).toBe(0);
  });

  test('Max-Gram where unsure, and the oracle that takes whichever proposal is right', () => {
    // Position 1: the draft is wrong and unsure, Max-Gram (matched 3 tokens) is right.
    const trace = [step(1, [0.9, 0.9, 0.9]), step(0, [0.2, 0.9], true, 3), step(1, [0.9, 0.9]), step(0, [0.9, 0.9])];
    expect(fixedK(2)(trace, 0).accepted).toBe(1);
    expect(maxGramWhereUnsure(2, 0.5, 2)(trace, 0).accepted).toBe(2);
    expect(maxGramWhereUnsure(2, 0.5, 3)(trace, 0).accepted).toBe(2);
    expect(maxGramWhereUnsure(2, 0.5, 4)(trace, 0).accepted).toBe(1);
    expect(maxGramWhereUnsure(2, 0.1, 2)(trace, 0).accepted).toBe(1);
    expect(eitherOracle(3)(trace, 0).accepted).toBe(3);
  });
});

describe('bench/draft-temperature.ts: overlap of target and draft distributions by draft temperature scale', () => {
  const settings = [
    { temperature: 0.9, topK: 0, topP: 1 },
    { temperature: 0.7, topK: 20, topP: 0.9 },
  ];

  test('a draft identical to the target overlaps it fully at scale 1 only', async () => {
    const r = await measureDraftOverlap(sameFamily, PROMPTS, { settings, scales: [0.5, 1, 2], maxNewTokens: 8 });
    for (const label of settings.map(settingLabel)) {
      expect(r.positions[label]).toBeGreaterThan(10);
      const [cold, one, hot] = r.overlap.same[label];
      expect(one).toBeCloseTo(1, 4);
      expect(cold).toBeLessThan(0.99);
      expect(hot).toBeLessThan(0.99);
    }
    expect(r.best.same).toBe(1);
  });

  test('overlaps equal a float64 computation from the reference forward (temperature x scale, top-k / top-p, draft vocabulary)', async () => {
    const V = TINY_FAMILY_VOCAB;
    const evens = Array.from({ length: V / 2 }, (_, i) => 2 * i);
    const mid = Model.loadSync(family.drafts.mid.dir, { draftVocabulary: evens });
    const fam: Family = { target: family.target, drafts: { mid } };
    const scales = [1, 1.5];
    const prompts = PROMPTS.slice(0, 2);
    const r = await measureDraftOverlap(fam, prompts, { settings, scales, maxNewTokens: 8, seed: 3 });
    const refTarget = ReferenceLlama.load(family.target.dir), refMid = ReferenceLlama.load(mid.dir);
    for (const s of settings) {
      const sums = scales.map(() => 0);
      let n = 0;
      for (const [i, text] of prompts.entries()) {
        // The same continuation as the script's: the target's own sample with seed 3 + i.
        const g = await family.target.generate(text, { maxNewTokens: 8, ...s, seed: 3 + i, stopOnEos: true });
        const all = [...g.promptTokens, ...g.tokens];
        const pRows = refTarget.forward(all.slice(0, -1)), qRows = refMid.forward(all.slice(0, -1));
        for (let row = g.promptTokens.length - 1; row < all.length - 1; row++) {
          const p = processedDistribution(pRows[row], s.temperature, s.topK, s.topP);
          const masked = qRows[row].map((l, t) => (t % 2 === 0 ? l : -Infinity));
          scales.forEach((scale, j) => {
            const q = processedDistribution(masked, s.temperature * scale, s.topK, s.topP);
            let o = 0;
            for (let t = 0; t < V; t++) o += Math.min(p[t], q[t]);
            sums[j] += o;
          });
          n++;
        }
      }
      expect(r.positions[settingLabel(s)]).toBe(n);
      scales.forEach((_, j) => expect(r.overlap.mid[settingLabel(s)][j]).toBeCloseTo(sums[j] / n, 3));
    }
  });

  test('settings parsing and writing the scale into a folder keep what is there', () => {
    expect(parseSettings('0.8/0/0.95,1/40/1')).toEqual([
      { temperature: 0.8, topK: 0, topP: 0.95 },
      { temperature: 1, topK: 40, topP: 1 },
    ]);
    for (const bad of ['0/0/1', '1/x/1', '1/0/0', '1/0/1.5', '1/-1/1']) expect(() => parseSettings(bad)).toThrow(/--settings: .* is not T\/topK\/topP/);
    const dir = path.join(tinyDir, 'mid');
    fs.writeFileSync(path.join(dir, 'cascade-spec.json'), JSON.stringify({ promptTemplate: 'Q: {prompt}' }));
    writeScale(dir, 1.4);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'cascade-spec.json'), 'utf8'))).toEqual({ promptTemplate: 'Q: {prompt}', draftTemperatureScale: 1.4 });
    expect(Model.loadSync(dir).draftTemperatureScale).toBe(1.4);
    fs.rmSync(path.join(dir, 'cascade-spec.json'));
  });
});

describe('bench/block-verification.ts', () => {
  test('expected tokens per pass equal the means of the exact outcome distributions (test reference)', () => {
    const rand = mulberry32(31);
    const V = 5;
    const dist = () => {
      const r = Array.from({ length: V }, () => rand() ** 2 + 0.01);
      const z = r.reduce((a, b) => a + b, 0);
      return r.map((v) => v / z);
    };
    for (let trial = 0; trial < 20; trial++) {
      const k = 1 + (trial % 4);
      const p = Array.from({ length: k + 1 }, dist);
      const q = Array.from({ length: k }, dist);
      const drafts = q.map((row) => row.indexOf(Math.max(...row)));
      const mean = (outcome: Float64Array) => outcome.reduce((s, pr, cell) => s + pr * (Math.floor(cell / V) + 1), 0);
      const e = expectedTokens(p, q, drafts);
      expect(e.token).toBeCloseTo(mean(ruleOutcome(p, drafts, q)), 12);
      expect(e.block).toBeCloseTo(mean(blockRuleOutcome(p, drafts, q)), 12);
    }
  });

  test('a draft identical to the target keeps every draft under both tests; another keeps more jointly', async () => {
    const sampling = { temperature: 1, topK: 0, topP: 1 };
    const same = await measureBlockGain(sameFamily, PROMPTS, { sampling, draft: 'same', k: 3, maxNewTokens: 12, stride: 3, draws: 2 });
    expect(same.blocks).toBeGreaterThan(5);
    expect(same.tokensPerPassToken).toBeCloseTo(4, 3);
    expect(same.tokensPerPassBlock).toBeCloseTo(4, 3);
    // One draft: the two tests are the same rule.
    const one = await measureBlockGain(family, PROMPTS, { sampling, draft: 'small', k: 1, maxNewTokens: 12, stride: 2, draws: 3 });
    expect(one.tokensPerPassBlock).toBeCloseTo(one.tokensPerPassToken, 9);
    // Four drafts of the mid (the target perturbed): some pass, some fail, and jointly more
    // pass. (The paper's guarantee is in expectation over the drafts; these seeded draws are
    // fixed, so the comparison is deterministic.)
    const mid = await measureBlockGain(family, PROMPTS, { sampling, draft: 'mid', k: 4, maxNewTokens: 16, stride: 2, draws: 8 });
    expect(mid.tokensPerPassToken).toBeGreaterThan(1.2);
    expect(mid.tokensPerPassToken).toBeLessThan(4.8);
    expect(mid.tokensPerPassBlock).toBeGreaterThan(mid.tokensPerPassToken);
    await expect(measureBlockGain(family, PROMPTS, { sampling: { ...sampling, temperature: 0 }, draft: 'small', k: 2, maxNewTokens: 4 })).rejects.toThrow('the temperature must be > 0');
    await expect(measureBlockGain(family, PROMPTS, { sampling, draft: 'nope', k: 2, maxNewTokens: 4 })).rejects.toThrow('no draft model "nope" (have: mid, small)');
  });
});
