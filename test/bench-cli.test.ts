/**
 * `cascade-spec bench` and `tune` on a tiny model family: runBench / parseMethod / formatTable
 * with a Family built from tiny random models (the repo's models/ folder is never written),
 * the commands' help and usage errors through main(argv, out, err), and readPrompts' dataset
 * formats. Expected values come from AR generations run here, from counting, or from the
 * documented flag lists -- never from the code under test.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { UsageError } from '../lib/cli/args';
import { formatTable, runBench, type MethodResult } from '../lib/cli/bench';
import { readPrompts } from '../lib/cli/datasets';
import { FALLBACK_CASCADE, familyCascade, familyCascadeEntry, tunedKey, withTunedEntry, type Family } from '../lib/cli/family';
import { cli } from './helpers/cli';
import { parseMethod, type MethodSpec } from '../lib/cli/methods';
import { canonicalCascade, measureSpeedup, measureSpeedups, seedConfigurations } from '../lib/cli/tune';
import { describeCascade, validateMatrix } from '../lib/cascade/config';
import { CascadeConfigError, type CascadeMatrix } from '../lib/cascade/config';
import type { Model } from '../lib/model';
import { makeTinyFamily, TINY_FAMILY_VOCAB } from './helpers/tiny-family';

const ROOT = path.resolve(__dirname, '..');
const V = TINY_FAMILY_VOCAB;
const EOS = 257;


let tmp: string;
let targetDir: string;
let family: Family;
/** A family whose only draft is the target's own weights: every draft is accepted. */
let sameFamily: Family;
const CASCADE: CascadeMatrix = { drafters: ['mid', 'small'], K: [[2, 1, 1], [0, 1, 1], [0, 0, 2]], lenience: 2 };
const DEFAULTS = { k: 4, draft: 'mid', cascade: CASCADE };
const PROMPTS = ['Hello', 'abc abc abc', 'The cat sat on the mat. The cat'];
const MAX_NEW = 16;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-'));
  ({ targetDir, family, sameFamily } = makeTinyFamily(tmp));
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** What bench compares against: greedy AR, EOS stops, MAX_NEW tokens. */
async function arTokens(fam: Family, prompt: string, maxNewTokens = MAX_NEW, extra = {}): Promise<number[]> {
  return (await fam.target.generate(prompt, { maxNewTokens, temperature: 0, stopOnEos: true, ...extra })).tokens;
}

describe('runBench on a tiny family', () => {
  let rows: MethodResult[];
  let specs: MethodSpec[];
  beforeAll(async () => {
    specs = ['ar', 'mag', 'mag@2', 'sd', 'sd:small@3', 'csd', 'acsd'].map((s) => parseMethod(s, family, DEFAULTS));
    rows = await runBench(family, specs, PROMPTS, { maxNewTokens: MAX_NEW, warmup: 1 });
  });

  test('every method is reported, in order, and every greedy output is identical to AR', async () => {
    expect(rows.map((r) => r.name)).toEqual(specs.map((s) => s.name));
    expect(rows.map((r) => r.name)).toEqual(['ar', 'mag@4', 'mag@2', 'sd:mid@4', 'sd:small@3', 'csd', 'acsd']);
    let total = 0;
    for (const p of PROMPTS) total += (await arTokens(family, p)).length;
    for (const r of rows) {
      expect({ name: r.name, identicalToAR: r.identicalToAR, mismatches: r.mismatches }).toEqual({ name: r.name, identicalToAR: true, mismatches: 0 });
      // Identical outputs: the same number of tokens as AR over the prompt set.
      expect({ name: r.name, tokens: r.tokens }).toEqual({ name: r.name, tokens: total });
      expect(r.wallMs).toBeGreaterThan(0);
      expect(r.tokensPerSecond).toBeGreaterThan(0);
      expect(Number.isFinite(r.tokensPerSecond)).toBe(true);
      expect(r.tokensPerSecond).toBeCloseTo((r.tokens * 1000) / r.wallMs, 6);
      expect(r.speedupVsAR).toBeCloseTo(r.tokensPerSecond / rows[0].tokensPerSecond, 9);
      // One round: its speedup is the pooled one.
      expect(r.speedupVsARByRound).toHaveLength(1);
      expect(r.speedupVsARByRound[0]).toBeCloseTo(r.speedupVsAR, 9);
      expect(r.meanAcceptedLength).toBeGreaterThanOrEqual(1);
      expect(r.targetForwards).toBeGreaterThanOrEqual(PROMPTS.length);
      expect(r.targetForwards).toBeLessThanOrEqual(r.tokens);
      for (const a of r.acceptanceByPosition) expect(a >= 0 && a <= 1).toBe(true);
      // The step breakdown: drafting and verification are parts of a step; the decode steps and
      // the prompt passes are parts of the wall time.
      expect(r.verifyMsPerStep).toBeGreaterThan(0);
      expect(r.draftMsPerStep).toBeGreaterThanOrEqual(0);
      expect(r.draftMsPerStep + r.verifyMsPerStep).toBeLessThanOrEqual(r.msPerStep + 1e-9);
      expect(r.promptMs).toBeGreaterThan(0);
      expect(r.promptMs + r.msPerStep * (r.targetForwards - PROMPTS.length)).toBeLessThanOrEqual(r.wallMs + 1e-6);
      expect(r.decodeTokensPerSecond).toBeGreaterThan(0);
      expect(r.ewif).toBeGreaterThan(0);
      if (r.name === 'ar') expect(r.ewif).toBe(1);
      // Per-level counters exist exactly for the cascades, and are consistent.
      expect(r.levels.length > 0).toBe(r.name === 'csd' || r.name === 'acsd');
      for (const l of r.levels) {
        expect(l.accepted).toBeLessThanOrEqual(l.proposed);
        expect(l.acceptance).toBeCloseTo(l.proposed ? l.accepted / l.proposed : 0, 12);
        expect(l.produced).toBeGreaterThanOrEqual(l.accepted); // accepted drafts + a correction each pass
      }
      if (r.name === 'csd') expect(r.levels.some((l) => l.produced > 0)).toBe(true);
      // The adaptive method reports its plans: one count per draft (a draft per verification
      // pass that had room for one), band sizes for the cascade's three top-level drafters.
      expect(r.adaptivePlans !== undefined).toBe(r.name === 'acsd');
      if (r.adaptivePlans) {
        const counts = Object.values(r.adaptivePlans);
        expect(Object.keys(r.adaptivePlans).every((k) => /^\d+\/\d+\/\d+$/.test(k))).toBe(true);
        expect(counts.reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
        expect(counts.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(r.targetForwards);
        expect(counts).toEqual([...counts].sort((a, b) => b - a));
      }
      expect(r.decodeSpeedupVsAR).toBeCloseTo(r.decodeTokensPerSecond / rows[0].decodeTokensPerSecond, 9);
      if (r.name === 'ar') expect(r.draftMsPerStep).toBeLessThan(0.01); // no drafter: only the bare call's time
      else expect(r.draftMsPerStep).toBeGreaterThan(0);
    }
    const ar = rows[0];
    expect(ar.speedupVsAR).toBe(1);
    // AR: one target pass per token, one token per pass, SWI 1.
    expect(ar.targetForwards).toBe(total);
    expect(ar.meanAcceptedLength).toBe(1);
    expect(ar.swi).toBeCloseTo(1, 12);
    expect(ar.describe).toBe('target alone');
  });

  test('--rounds: the prompts run again, results pool over the rounds, each round has its own speedup', async () => {
    const specs2 = ['ar', 'sd:small@3'].map((x) => parseMethod(x, family, DEFAULTS));
    const prompts = PROMPTS.slice(0, 2);
    const one = await runBench(family, specs2, prompts, { maxNewTokens: MAX_NEW, warmup: 0 });
    const three = await runBench(family, specs2, prompts, { maxNewTokens: MAX_NEW, warmup: 0, rounds: 3 });
    three.forEach((r, i) => {
      expect(r.identicalToAR).toBe(true);
      expect(r.tokens).toBe(3 * one[i].tokens);
      expect(r.targetForwards).toBe(3 * one[i].targetForwards);
      expect(r.speedupVsARByRound).toHaveLength(3);
      // Every round makes the same tokens, so the pooled speedup is a ratio of summed wall
      // times: between the rounds' smallest and largest.
      expect(r.speedupVsAR).toBeGreaterThanOrEqual(Math.min(...r.speedupVsARByRound) - 1e-12);
      expect(r.speedupVsAR).toBeLessThanOrEqual(Math.max(...r.speedupVsARByRound) + 1e-12);
    });
    expect(three[0].speedupVsARByRound).toEqual([1, 1, 1]);
    const table = formatTable(three).split('\n');
    expect(table[0]).toContain('rounds');
    const sd = three[1];
    expect(table[3]).toContain(`${Math.min(...sd.speedupVsARByRound).toFixed(2)}-${Math.max(...sd.speedupVsARByRound).toFixed(2)}x`);
  });

  test('sampling: every method samples with the same seed per prompt, no token check, results reproduce', async () => {
    const specs2 = ['ar', 'sd:small@3', 'csd'].map((x) => parseMethod(x, family, DEFAULTS));
    const prompts = PROMPTS.slice(0, 2);
    const sampling = { temperature: 0.9, topK: 0, topP: 0.95, seed: 11 };
    const a = await runBench(family, specs2, prompts, { maxNewTokens: MAX_NEW, warmup: 0, sampling });
    const b = await runBench(family, specs2, prompts, { maxNewTokens: MAX_NEW, warmup: 0, sampling });
    for (const r of a) {
      expect({ name: r.name, identicalToAR: r.identicalToAR, mismatches: r.mismatches }).toEqual({ name: r.name, identicalToAR: null, mismatches: 0 });
      expect(r.tokens).toBeGreaterThan(0);
    }
    // Seeded: the same tokens again (AR's token count is a sum over its sampled outputs).
    expect(b.map((r) => r.tokens)).toEqual(a.map((r) => r.tokens));
    // AR samples with seed + prompt index: the same as generate with that seed.
    let arTotal = 0;
    for (const [i, p] of prompts.entries())
      arTotal += (await family.target.generate(p, { maxNewTokens: MAX_NEW, stopOnEos: true, temperature: 0.9, topP: 0.95, seed: 11 + i })).tokens.length;
    expect(a[0].tokens).toBe(arTotal);
    expect(formatTable(a)).toContain('n/a (sampled)');
  });

  test('formatTable lists every method with its verdict', () => {
    const table = formatTable(rows);
    const lines = table.trimEnd().split('\n');
    expect(table.endsWith('\n')).toBe(true);
    expect(lines).toHaveLength(2 + rows.length);
    for (const h of ['method', 'tok/s', 'speedup', 'SWI', 'tok/pass', 'ms/step', 'draft', 'verify', 'identical', 'config']) expect(lines[0]).toContain(h);
    expect(lines[1]).toMatch(/^[- ]+$/);
    rows.forEach((r, i) => {
      const line = lines[2 + i];
      expect(line.startsWith(r.name + ' ')).toBe(true);
      expect(line).toContain(' yes ');
      expect(line).toContain(`${r.speedupVsAR.toFixed(2)}x`);
      expect(line).toContain(r.describe);
    });
    expect(lines[2]).toContain('1.00x');
  });

  test('AR is added first when the method list lacks it', async () => {
    const csd = parseMethod('csd', family, DEFAULTS);
    const r = await runBench(family, [csd], PROMPTS.slice(0, 1), { maxNewTokens: 8, warmup: 0 });
    expect(r.map((x) => x.name)).toEqual(['ar', 'csd']);
    expect(r[1].identicalToAR).toBe(true);
    expect(r[0].speedupVsAR).toBe(1);
    // AR listed later in the list is moved first, not run twice.
    const r2 = await runBench(family, [csd, parseMethod('ar', family, DEFAULTS)], PROMPTS.slice(0, 1), { maxNewTokens: 8, warmup: 0 });
    expect(r2.map((x) => x.name)).toEqual(['ar', 'csd']);
  });

  test('a method whose output differs from AR is flagged, with the number of differing prompts', async () => {
    // Without BOS the prompt is different, so (for most prompts) the greedy output is too.
    const noBos: MethodSpec = { name: 'ar-no-bos', options: { method: 'ar', addBos: false }, describe: 'target alone, no BOS' };
    let differing = 0;
    for (const p of PROMPTS) {
      const a = await arTokens(family, p);
      const b = await arTokens(family, p, MAX_NEW, { addBos: false });
      if (a.length !== b.length || a.some((t, i) => t !== b[i])) differing++;
    }
    expect(differing).toBeGreaterThan(0);
    const r = await runBench(family, [parseMethod('ar', family, DEFAULTS), noBos, parseMethod('mag', family, DEFAULTS)], PROMPTS, { maxNewTokens: MAX_NEW, warmup: 0 });
    expect(r[1]).toMatchObject({ name: 'ar-no-bos', identicalToAR: false, mismatches: differing });
    expect(r[2]).toMatchObject({ identicalToAR: true, mismatches: 0 });
    const line = formatTable(r).split('\n').find((l) => l.startsWith('ar-no-bos'))!;
    expect(line).toContain(`NO (${differing})`);
  });

  test('tokens per pass counts every verification pass, the prompt pass that carried the first draft included (an always-right draft)', async () => {
    // `same` drafts exactly the target's tokens: the prompt's pass verifies the first draft and
    // every verification pass emits min(k + 1, remaining) tokens. AR's prompt pass verifies
    // nothing: its tokens per pass are those of the passes after it (1).
    const k = 3;
    const n = 21;
    let generated = 0, verifies = 0;
    for (const p of PROMPTS) {
      const toks = await arTokens(sameFamily, p, n);
      generated += toks.length;
      verifies += Math.ceil(toks.length / (k + 1));
      if (toks.includes(EOS)) expect(toks.indexOf(EOS)).toBe(toks.length - 1);
    }
    const r = await runBench(sameFamily, [parseMethod('ar', sameFamily, DEFAULTS), parseMethod(`sd:same@${k}`, sameFamily, { ...DEFAULTS, draft: 'same' })], PROMPTS, { maxNewTokens: n, warmup: 0 });
    expect(r[1].identicalToAR).toBe(true);
    expect(r[1].targetForwards).toBe(verifies);
    expect(r[1].meanAcceptedLength).toBeCloseTo(generated / verifies, 12);
    expect(r[1].acceptanceByPosition.every((a) => a === 1)).toBe(true);
    expect(r[0].targetForwards).toBe(generated);
    expect(r[0].meanAcceptedLength).toBe(1);
  });
});

describe('parseMethod', () => {
  const bad = (spec: string, message: string | RegExp, defaults: typeof DEFAULTS = DEFAULTS) => {
    let caught: unknown;
    try {
      parseMethod(spec, family, defaults);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(UsageError);
    if (typeof message === 'string') expect((caught as Error).message).toBe(message);
    else expect((caught as Error).message).toMatch(message);
  };

  test('valid specs', () => {
    expect(parseMethod('ar', family, DEFAULTS)).toEqual({ name: 'ar', options: { method: 'ar' }, describe: 'target alone' });
    expect(parseMethod(' mag@2 ', family, DEFAULTS).options).toEqual({ method: 'mag', k: 2 });
    expect(parseMethod('mag', family, DEFAULTS).options).toEqual({ method: 'mag', k: 4 });
    const sd = parseMethod('sd:small@3', family, DEFAULTS);
    expect(sd.options.method).toBe('sd');
    expect(sd.options.draftModel).toBe(family.drafts.small);
    expect(sd.options.k).toBe(3);
    expect(parseMethod('sd', family, DEFAULTS).options.draftModel).toBe(family.drafts.mid);
    const csd = parseMethod('csd', family, DEFAULTS);
    expect(csd.options).toMatchObject({ method: 'csd', cascade: CASCADE, adaptive: false });
    expect(csd.options.draftModels).toBe(family.drafts);
    expect(parseMethod('acsd', family, DEFAULTS).options).toMatchObject({ method: 'csd', cascade: CASCADE, adaptive: true });
    // A cascade file, matrix form or wrapped as tune writes it ({ cascade: ... }).
    const file = path.join(tmp, 'c.json');
    fs.writeFileSync(file, JSON.stringify({ cascade: { drafters: ['small'], K: [[3, 1], [0, 2]], lenience: 3 } }));
    const fromFile = parseMethod(`csd:${file}`, family, DEFAULTS);
    expect(fromFile.name).toBe(`csd:${file}`);
    expect(fromFile.options.cascade).toEqual({ drafters: ['small'], K: [[3, 1], [0, 2]], lenience: 3 });
    // "/token": the same method with sampled drafts tested token by token (a file path too).
    const tokenSd = parseMethod('sd:small@5/token', family, DEFAULTS);
    expect(tokenSd.name).toBe('sd:small@5/token');
    expect(tokenSd.options).toMatchObject({ method: 'sd', draftModel: family.drafts.small, k: 5, blockVerification: false });
    expect(parseMethod('sd:small@5', family, DEFAULTS).options.blockVerification).toBeUndefined(); // the default: jointly
    expect(parseMethod(`acsd:${file}/token`, family, DEFAULTS).options).toMatchObject({ adaptive: true, blockVerification: false });
  });

  test('bad specs are clear usage errors', () => {
    bad('xyz', 'bad method "xyz": expected ar, mag[@K], sd[:DRAFT][@K][~C], csd[:FILE] or acsd[:FILE], each but ar with an optional /token');
    bad('ar/token', 'bad method "ar/token": ar verifies no drafts (/token is for speculative methods)');
    bad('sd/tokens', /^bad method "sd\/tokens": expected/);
    bad('', /^bad method "": expected ar, mag/);
    bad('sd:nope', 'bad method "sd:nope": no draft model "nope" (have: mid, small)');
    bad('sd@3', 'bad method "sd@3": no draft model "big" (have: mid, small)', { ...DEFAULTS, draft: 'big' });
    bad('mag:foo', 'bad method "mag:foo": mag takes no draft');
    bad('ar@3', 'bad method "ar@3": ar takes no draft or K');
    bad('ar:mid', 'bad method "ar:mid": ar takes no draft or K');
    bad('mag@0', 'bad method "mag@0": K must be in [1, 64]');
    bad('sd:mid@65', 'bad method "sd:mid@65": K must be in [1, 64]');
    bad('mag@-1', /^bad method "mag@-1": expected ar, mag/);
    bad('mag@2.5', /^bad method "mag@2.5": expected/);
    bad('csd@3', /^bad method "csd@3": csd takes no K/);
    bad('acsd@3', /^bad method "acsd@3": acsd takes no K/);
    const missing = path.join(tmp, 'no-such-cascade.json');
    bad(`csd:${missing}`, `bad method "csd:${missing}": cascade file ${missing} not found`);
    bad('csd', 'bad method "csd": the cascade uses drafter "big", which is not loaded', { ...DEFAULTS, cascade: { drafters: ['big'], K: [[1, 1], [0, 1]], lenience: 1 } });
  });

  test('a cascade file with an invalid cascade or malformed JSON names the problem', () => {
    const invalid = path.join(tmp, 'invalid.json');
    fs.writeFileSync(invalid, JSON.stringify({ drafters: ['mid'], K: [[0, 0], [0, 1]] }));
    expect(() => parseMethod(`csd:${invalid}`, family, DEFAULTS)).toThrow(CascadeConfigError);
    expect(() => parseMethod(`csd:${invalid}`, family, DEFAULTS)).toThrow(/row 0 .* all zeros/);
    const broken = path.join(tmp, 'broken.json');
    fs.writeFileSync(broken, '{ "K": [[1]');
    expect(() => parseMethod(`csd:${broken}`, family, DEFAULTS)).toThrow(new RegExp(broken.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
  });
});

describe('familyCascade: the cascade.json that tune writes', () => {
  test('reads the tuned file (matrix with a readable copy), falls back without one, and names a bad file', () => {
    const dir = path.join(tmp, 'family-dir');
    fs.mkdirSync(dir, { recursive: true });
    expect(familyCascade(dir)).toEqual(FALLBACK_CASCADE);
    // The format tune writes: { cascade: { drafters, K, lenience, readable }, measured }.
    const tuned = {
      cascade: {
        drafters: ['mid', 'small'], K: [[4, 0, 2], [0, 1, 1], [0, 0, 3]], lenience: 2,
        readable: { drafters: ['mid', 'small'], lenience: 2, levels: [{ reviewer: 'target', bands: [{ drafter: 'mid', size: 4 }, { drafter: 'maxgram', size: 2 }] }] },
      },
      measured: { tokensPerSecond: 1 },
    };
    fs.writeFileSync(path.join(dir, 'cascade.json'), JSON.stringify(tuned));
    expect(familyCascade(dir)).toEqual({ drafters: ['mid', 'small'], K: [[4, 0, 2], [0, 1, 1], [0, 0, 3]], lenience: 2 });
    // A bare readable form works too.
    fs.writeFileSync(path.join(dir, 'cascade.json'), JSON.stringify({ drafters: ['mid'], levels: [{ reviewer: 'target', bands: [{ drafter: 'mid', size: 3 }] }] }));
    expect(familyCascade(dir)).toEqual({ drafters: ['mid'], K: [[3, 0], [0, 0]], lenience: 1 });
    fs.writeFileSync(path.join(dir, 'cascade.json'), JSON.stringify({ cascade: { drafters: ['mid'], K: [[1, 1], [1, 1]], lenience: 1 } }));
    expect(() => familyCascade(dir)).toThrow(`${path.join(dir, 'cascade.json')}: invalid cascade: K must be upper triangular: K[1][0] = 1 (a reviewer can only use smaller drafters)`);
  });
});

describe('familyCascade: entries tuned per machine kind and mode', () => {
  const file = (dir: string) => path.join(dir, 'cascade.json');
  const top = { drafters: ['mid', 'small'], K: [[0, 7, 0], [0, 0, 0], [0, 0, 0]], lenience: 1 };
  const avx2 = { drafters: ['mid', 'small'], K: [[0, 3, 0], [0, 0, 0], [0, 0, 0]], lenience: 1 };
  const avx2Sampling = { drafters: ['mid', 'small'], K: [[0, 2, 1], [0, 0, 0], [0, 0, 0]], lenience: 1 };
  const write = (dir: string, o: unknown) => fs.writeFileSync(file(dir), JSON.stringify(o));

  test('tunedKey names the kernels and the mode', () => {
    expect(tunedKey({ kernels: 'avx2', sampling: false })).toBe('avx2');
    expect(tunedKey({ kernels: 'avx512', sampling: true })).toBe('avx512/sampling');
    expect(tunedKey({ kernels: null, sampling: false })).toBe('libtorch');
  });

  test('the entry for the machine and mode, then the machine greedy, then the top-level configuration', () => {
    const dir = path.join(tmp, 'tuned-entries');
    fs.mkdirSync(dir, { recursive: true });
    write(dir, { cascade: top, measured: {}, tuned: { avx2: { cascade: avx2, measured: {} }, 'avx2/sampling': { cascade: avx2Sampling, measured: {} } } });
    expect(familyCascadeEntry(dir, { kernels: 'avx2', sampling: false })).toEqual({ cascade: avx2, key: 'avx2' });
    expect(familyCascadeEntry(dir, { kernels: 'avx2', sampling: true })).toEqual({ cascade: avx2Sampling, key: 'avx2/sampling' });
    expect(familyCascadeEntry(dir, { kernels: 'avx512', sampling: true })).toEqual({ cascade: top, key: null });
    expect(familyCascadeEntry(dir, { kernels: null, sampling: false })).toEqual({ cascade: top, key: null });
    expect(familyCascade(dir)).toEqual(top); // no machine given: the top-level one
    // Without a sampling entry, sampling takes the machine's greedy one.
    write(dir, { cascade: top, tuned: { avx2: { cascade: avx2 } } });
    expect(familyCascadeEntry(dir, { kernels: 'avx2', sampling: true })).toEqual({ cascade: avx2, key: 'avx2' });
  });

  test('a bad "tuned" section or entry names the file and the entry', () => {
    const dir = path.join(tmp, 'tuned-bad');
    fs.mkdirSync(dir, { recursive: true });
    const machine = { kernels: 'avx2', sampling: false };
    write(dir, { cascade: top, tuned: [avx2] });
    expect(() => familyCascade(dir, machine)).toThrow(`${file(dir)}: "tuned" must be an object of { cascade, measured } entries keyed by machine kind`);
    write(dir, { cascade: top, tuned: { 'AVX 2': { cascade: avx2 } } });
    expect(() => familyCascade(dir, machine)).toThrow(`${file(dir)}: tuned entry "AVX 2": the key must be a kernels name`);
    write(dir, { cascade: top, tuned: { avx2: avx2 } });
    expect(() => familyCascade(dir, machine)).toThrow(`${file(dir)}: tuned entry "avx2" must be an object with a "cascade"`);
    write(dir, { cascade: top, tuned: { avx2: { cascade: { drafters: ['mid'], K: [[1, 1], [1, 1]], lenience: 1 } } } });
    expect(() => familyCascade(dir, machine)).toThrow(`${file(dir)} (tuned entry "avx2"): invalid cascade: K must be upper triangular`);
    // An entry for another machine is still checked: a broken file fails on every machine.
    write(dir, { cascade: top, tuned: { avx512: 3 } });
    expect(() => familyCascade(dir, machine)).toThrow(`${file(dir)}: tuned entry "avx512" must be an object with a "cascade"`);
  });

  test('withTunedEntry (what tune writes) adds or replaces its key, keeps the rest, and seeds an empty file', () => {
    const a = { cascade: avx2, measured: { speedupVsAR: 1.9 } }, b = { cascade: avx2Sampling, measured: { speedupVsAR: 1.7 } };
    const fresh = withTunedEntry(undefined, 'avx2', a);
    expect(fresh).toEqual({ cascade: avx2, measured: { speedupVsAR: 1.9 }, tuned: { avx2: a } });
    const shipped = { cascade: top, measured: { speedupVsAR: 2.6 } };
    const one = withTunedEntry(shipped, 'avx2/sampling', b);
    expect(one).toEqual({ ...shipped, tuned: { 'avx2/sampling': b } });
    const two = withTunedEntry(one, 'avx2', a);
    expect(two).toEqual({ ...shipped, tuned: { 'avx2/sampling': b, avx2: a } });
    expect(withTunedEntry(two, 'avx2', b).tuned).toEqual({ 'avx2/sampling': b, avx2: b });
    // A bare matrix written by hand stays the top-level configuration.
    expect(withTunedEntry(top, 'avx2', a)).toEqual({ cascade: top, tuned: { avx2: a } });
    // What it writes reads back through familyCascade.
    const dir = path.join(tmp, 'tuned-roundtrip');
    fs.mkdirSync(dir, { recursive: true });
    write(dir, two);
    expect(familyCascade(dir, { kernels: 'avx2', sampling: true })).toEqual(avx2Sampling);
    expect(familyCascade(dir, { kernels: 'portable', sampling: true })).toEqual(top);
  });
});

describe('tune on a tiny family', () => {
  test('measureSpeedup (what tune maximises): AR and the cascade back to back, positive rates that agree', async () => {
    const m = await measureSpeedup(family, CASCADE, PROMPTS.slice(0, 2), 12);
    for (const v of [m.speedup, m.tokensPerSecond, m.arTokensPerSecond]) {
      expect(Number.isFinite(v)).toBe(true);
      expect(v).toBeGreaterThan(0);
    }
    expect(m.speedup).toBeCloseTo(m.tokensPerSecond / m.arTokensPerSecond, 9);
  });

  test('measureSpeedups (tune\'s final comparison): candidates interleaved against one AR run per prompt', async () => {
    const other = { drafters: CASCADE.drafters, K: CASCADE.K.map((row, i) => row.map((v, j) => (i === 0 && j === CASCADE.drafters.length ? v + 1 : v))), lenience: CASCADE.lenience };
    const calls: string[] = [];
    const spy = {
      generate: async (p: string, o: { method?: string; cascade?: unknown }) => {
        calls.push(o.method === 'ar' ? 'ar' : o.cascade === CASCADE ? 'a' : 'b');
        return family.target.generate(p, o as Parameters<Model['generate']>[1]);
      },
    };
    const [a, b] = await measureSpeedups({ target: spy as unknown as Model, drafts: family.drafts }, [CASCADE, other], PROMPTS.slice(0, 2), 10, 2);
    // Per prompt one AR run, then both candidates, the order turning from prompt to prompt.
    expect(calls).toEqual(['ar', 'a', 'b', 'ar', 'b', 'a', 'ar', 'a', 'b', 'ar', 'b', 'a']);
    // The same AR runs (and the same tokens, AR's) stand behind both candidates' ratios.
    expect(a.arTokensPerSecond).toBe(b.arTokensPerSecond);
    for (const m of [a, b]) expect(m.speedup).toBeCloseTo(m.tokensPerSecond / m.arTokensPerSecond, 9);
  });

  test('measureSpeedups sampled (tune --temperature): every run samples with the prompt\'s seed, and the rates of unequal outputs are compared', async () => {
    const seen: Array<{ method?: string; temperature?: number; topP?: number; topK?: number; seed?: number }> = [];
    const spy = {
      generate: async (p: string, o: { method?: string; temperature?: number; topP?: number; topK?: number; seed?: number }) => {
        seen.push({ method: o.method, temperature: o.temperature, topP: o.topP, topK: o.topK, seed: o.seed });
        const r = await family.target.generate(p, o as Parameters<Model['generate']>[1]);
        // A sampled cascade's tokens are not AR's: a shorter output must not fail the run.
        return o.method === 'csd' ? { ...r, tokens: r.tokens.slice(0, Math.max(1, r.tokens.length - 2)) } : r;
      },
    };
    const sampling = { temperature: 0.8, topP: 0.9, topK: 5, seed: 7 };
    const [m] = await measureSpeedups({ target: spy as unknown as Model, drafts: family.drafts }, [CASCADE], PROMPTS.slice(0, 2), 10, 1, sampling);
    expect(seen).toEqual([
      { method: 'ar', temperature: 0.8, topP: 0.9, topK: 5, seed: 7 },
      { method: 'csd', temperature: 0.8, topP: 0.9, topK: 5, seed: 7 },
      { method: 'ar', temperature: 0.8, topP: 0.9, topK: 5, seed: 8 },
      { method: 'csd', temperature: 0.8, topP: 0.9, topK: 5, seed: 8 },
    ]);
    expect(m.speedup).toBeCloseTo(m.tokensPerSecond / m.arTokensPerSecond, 9);
    expect(m.speedup).toBeGreaterThan(0);
  });

  test('measureSpeedup fails loudly when the cascade does not reproduce AR', async () => {
    // A target whose csd output differs from its AR output: the check must name the config.
    const liar = {
      generate: async (p: string, o: { method?: string }) => {
        const r = await family.target.generate(p, { maxNewTokens: 4, temperature: 0 });
        return o.method === 'csd' ? { ...r, tokens: r.tokens.map((t) => (t + 1) % V) } : r;
      },
    };
    await expect(measureSpeedup({ target: liar as unknown as Model, drafts: family.drafts }, CASCADE, PROMPTS.slice(0, 1), 4)).rejects.toThrow(
      `tune: ${describeCascade(CASCADE)} produced other tokens than AR`,
    );
  });

  test('canonicalCascade: unused levels zeroed, lenience 1 without reviews below the target', () => {
    const d = ['mid', 'small'];
    // mid is unused (row 0 gives it no band): its row goes; small reviews Max-Gram, lenience stays.
    expect(canonicalCascade({ drafters: d, K: [[0, 3, 1], [0, 2, 1], [0, 0, 1]], lenience: 2 })).toEqual({ drafters: d, K: [[0, 3, 1], [0, 0, 0], [0, 0, 1]], lenience: 2 });
    // Nothing below the target reviews: lenience cannot matter.
    expect(canonicalCascade({ drafters: d, K: [[0, 4, 0], [0, 1, 0], [0, 0, 0]], lenience: 3 })).toEqual({ drafters: d, K: [[0, 4, 0], [0, 0, 0], [0, 0, 0]], lenience: 1 });
    // Used through a level below the target: small is reached through mid's row.
    const deep = { drafters: d, K: [[2, 0, 0], [0, 2, 0], [0, 0, 1]], lenience: 3 };
    expect(canonicalCascade(deep)).toEqual(deep);
    // A confidence stop matters only where a used level drafts alone (an all-zero row).
    expect(canonicalCascade({ drafters: d, K: [[0, 8, 0], [0, 0, 0], [0, 0, 0]], lenience: 1, confidence: 0.3 })).toEqual({ drafters: d, K: [[0, 8, 0], [0, 0, 0], [0, 0, 0]], lenience: 1, confidence: 0.3 });
    expect(canonicalCascade({ drafters: d, K: [[0, 0, 3], [0, 0, 0], [0, 0, 0]], lenience: 1, confidence: 0.3 })).toEqual({ drafters: d, K: [[0, 0, 3], [0, 0, 0], [0, 0, 0]], lenience: 1 });
    expect(canonicalCascade({ drafters: d, K: [[0, 3, 0], [0, 0, 0], [0, 0, 2]], lenience: 1, confidence: 0.5 })).toEqual({ drafters: d, K: [[0, 3, 0], [0, 0, 0], [0, 0, 2]], lenience: 1 });
    // The same run, the same description.
    expect(describeCascade(canonicalCascade({ drafters: d, K: [[0, 3, 1], [0, 2, 1], [0, 0, 1]], lenience: 2 }))).toBe(
      describeCascade({ drafters: d, K: [[0, 3, 1], [0, 9, 9], [0, 0, 1]], lenience: 2 }).replace(/ mid\S*\[[^\]]*\]/, ''),
    );
  });

  test('seed configurations: valid, distinct, and include every drafter alone and Max-Gram alone', () => {
    const seeds = seedConfigurations(['mid', 'small']);
    for (const m of seeds) expect(() => validateMatrix(m)).not.toThrow();
    const described = seeds.map(describeCascade);
    expect(new Set(described).size).toBe(described.length);
    expect(described).toContain('target[maxgram:2]');
    expect(described).toContain('target[mid:3]');
    expect(described).toContain('target[small:3]');
    for (const k of [2, 3, 4, 6, 8]) for (const d of ['mid', 'small']) expect(described).toContain(`target[${d}:${k}]`);
    for (const d of ['mid', 'small']) expect(described).toContain(`target[${d}:8] ~0.3`);
    expect(described).toContain('target[mid:3] mid[small:2] small[maxgram:1]');
  });
});

describe('bench and tune commands', () => {
  const BENCH = ['dataset', 'format', 'limit', 'methods', 'max-new-tokens', 'threads', 'dtype', 'k', 'draft', 'model', 'draft-temperature-scale', 'full-draft-vocabulary', 'warmup', 'rounds', 'temperature', 'top-k', 'top-p', 'seed', 'json', 'out', 'help'];
  const TUNE = ['dataset', 'format', 'limit', 'max-new-tokens', 'budget', 'threads', 'dtype', 'margin', 'confirm', 'confirm-rounds', 'restart', 'dry-run', 'help'];

  test('bench --help exits 0 and lists its flags', async () => {
    const r = await cli('bench', '--help');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^Usage: cascade-spec bench --dataset FILE/);
    for (const f of BENCH) expect(r.out).toMatch(new RegExp(`^  --${f}\\b`, 'm'));
    expect(r.out).toContain('ar,mag,sd,csd,acsd');
  });

  test('tune --help exits 0 and lists its flags', async () => {
    const r = await cli('tune', '--help');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^Usage: cascade-spec tune --dataset FILE/);
    for (const f of TUNE) expect(r.out).toMatch(new RegExp(`^  --${f}\\b`, 'm'));
  });

  test('bench / tune without --dataset exit 2 naming --dataset', async () => {
    for (const cmd of ['bench', 'tune']) {
      const r = await cli(cmd);
      expect(r.code).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toMatch(/^cascade-spec: error: --dataset FILE is required\n/);
    }
  });

  test('usage errors in flags exit 2 and name the flag', async () => {
    const a = await cli('bench', '--dataset', 'x.jsonl', '--format', 'csv');
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--format must be one of gsm8k, mmlu, jsonl, got "csv"/);
    const b = await cli('bench', '--dataset', 'x.jsonl', '--limit', '0');
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/--limit must be in \[1, inf\], got 0/);
    const c = await cli('tune', '--dataset', 'x.jsonl', '--frobnicate');
    expect(c.code).toBe(2);
    expect(c.err).toMatch(/unknown option --frobnicate/);
    const e = await cli('tune', '--dataset', 'x.jsonl', '--confirm', '0');
    expect(e.code).toBe(2);
    expect(e.err).toMatch(/--confirm must be in \[1, inf\], got 0/);
    const d = await cli('bench', 'extra', '--dataset', 'x.jsonl');
    expect(d.code).toBe(2);
    expect(d.err).toMatch(/unexpected argument "extra"/);
    const rounds = await cli('bench', '--dataset', 'x.jsonl', '--rounds', '0');
    expect(rounds.code).toBe(2);
    expect(rounds.err).toMatch(/--rounds must be in \[1, 100\], got 0/);
    const cr = await cli('tune', '--dataset', 'x.jsonl', '--confirm-rounds', '0');
    expect(cr.code).toBe(2);
    expect(cr.err).toMatch(/--confirm-rounds must be in \[1, inf\], got 0/);
    // The sampling flags of bench.
    for (const [flag, value, message] of [
      ['--temperature', '-0.5', /--temperature must be in \[0, inf\], got -0.5/],
      ['--top-k', '-1', /--top-k must be in \[0, inf\], got -1/],
      ['--top-p', '1.5', /--top-p must be in \[0, 1\], got 1.5/],
      ['--seed', '-3', /--seed must be in \[0, inf\], got -3/],
      ['--temperature', 'hot', /--temperature/],
    ] as Array<[string, string, RegExp]>) {
      const r = await cli('bench', '--dataset', 'x.jsonl', flag, value);
      expect({ flag, code: r.code }).toEqual({ flag, code: 2 });
      expect(r.err).toMatch(message);
    }
    // tune's (it tunes the machine's sampling entry with --temperature > 0).
    for (const [args, message] of [
      [['--temperature', '-1'], /--temperature must be in \[0, inf\], got -1/],
      [['--top-p', '2'], /--top-p must be in \[0, 1\], got 2/],
      [['--top-k', '-2'], /--top-k must be in \[0, inf\], got -2/],
      [['--seed', '1.5'], /--seed/],
      [['--temperature', '0.8', '--top-p', '0'], /--top-p must be in \(0, 1\] when sampling/],
    ] as Array<[string[], RegExp]>) {
      const r = await cli('tune', '--dataset', 'x.jsonl', ...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.err).toMatch(message);
    }
  });

  test('bench end to end with --model: --json report, --out files, a bad --methods entry', async () => {
    const data = path.join(tmp, 'e2e.jsonl');
    fs.writeFileSync(data, PROMPTS.map((p) => JSON.stringify({ prompt: p })).join('\n') + '\n');
    const outDir = path.join(tmp, 'bench-out');
    const args = ['bench', '--dataset', data, '--format', 'jsonl', '--model', targetDir, '--max-new-tokens', '10', '--warmup', '0'];
    const r = await cli(...args, '--methods', 'ar,mag@2', '--json', '--out', outDir);
    expect({ code: r.code, err: r.err.includes('error') ? r.err : '' }).toEqual({ code: 0, err: '' });
    expect(r.out.trimEnd().split('\n')).toHaveLength(1);
    const report = JSON.parse(r.out) as { prompts: number; rounds: number; greedy: boolean; methods: MethodResult[]; models: { target: { dir: string } } };
    expect(report.prompts).toBe(PROMPTS.length);
    expect(report.rounds).toBe(1);
    expect(report.greedy).toBe(true);
    expect(report.models.target.dir).toBe(targetDir);
    expect(report.methods.map((m) => [m.name, m.identicalToAR])).toEqual([['ar', true], ['mag@2', true]]);
    let total = 0;
    for (const p of PROMPTS) total += (await arTokens(family, p, 10)).length;
    expect(report.methods[0].tokens).toBe(total);
    expect(JSON.parse(fs.readFileSync(path.join(outDir, 'bench.json'), 'utf8')).methods).toHaveLength(2);
    expect(fs.readFileSync(path.join(outDir, 'bench.svg'), 'utf8')).toMatch(/^<svg[\s\S]*mag@2[\s\S]*<\/svg>\s*$/);
    const bad = await cli(...args, '--methods', 'ar,xyz');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/cascade-spec: error: bad method "xyz": expected ar, mag/);
    // Sampled: the report says so, identicalToAR is null, and the command succeeds.
    const sampled = await cli(...args, '--methods', 'ar,mag@2', '--json', '--temperature', '0.8', '--top-k', '20', '--top-p', '0.9', '--min-p', '0.05', '--seed', '5');
    expect({ code: sampled.code, err: sampled.err.includes('error') ? sampled.err : '' }).toEqual({ code: 0, err: '' });
    const sr = JSON.parse(sampled.out) as { greedy: boolean; sampling: unknown; methods: MethodResult[] };
    expect(sr.greedy).toBe(false);
    expect(sr.sampling).toEqual({ temperature: 0.8, topK: 20, topP: 0.9, minP: 0.05, seed: 5 });
    expect(sr.methods.map((m) => [m.name, m.identicalToAR])).toEqual([['ar', null], ['mag@2', null]]);
    const p0 = await cli(...args, '--temperature', '0.8', '--top-p', '0');
    expect(p0.code).toBe(2);
    expect(p0.err).toMatch(/--top-p must be in \(0, 1\]/);
  });

  test('a dataset file that does not exist: exit 1 with a clear error', async () => {
    const missing = path.join(tmp, 'no-such-dataset.jsonl');
    const haveFamily = fs.existsSync(path.join(ROOT, 'models', 'target'));
    // bench with a tiny --model (the family's drafts, if any, still load from models/).
    for (const argv of [['bench', '--dataset', missing, '--model', targetDir], ['tune', '--dataset', missing, '--dry-run']]) {
      const r = await cli(...argv);
      expect(r.code).toBe(1);
      expect(r.out).toBe('');
      expect(r.err.split('\n').filter(Boolean)).toHaveLength(1);
      if (r.err.includes(missing)) expect(r.err).toBe(`cascade-spec: error: ${missing}: dataset file not found\n`);
      else if (!haveFamily && argv[0] === 'tune') expect(r.err).toMatch(/^cascade-spec: error: no default model family is installed \(.*models\/target is missing\); pass --model DIR\n$/);
      else {
        // The family itself failed to load (e.g. a model file being rewritten): the error names it.
        expect(r.err).toMatch(/^cascade-spec: error: .*models\/(target|mid|small)/);
        console.warn(`dataset-not-found check fell back to a family load error: ${r.err}`);
      }
    }
  });
});

describe('readPrompts', () => {
  const write = (name: string, text: string) => {
    const f = path.join(tmp, name);
    fs.writeFileSync(f, text);
    return f;
  };

  test('GSM8K jsonl: the questions, blank lines skipped, limit honoured', () => {
    const f = write('gsm8k.jsonl', [
      JSON.stringify({ question: 'Janet has 3 apples, "red" ones.\nHow many?', answer: '3 #### 3' }),
      '',
      JSON.stringify({ question: 'Q2', answer: 'x' }),
      '   ',
      JSON.stringify({ question: 'Q3 ünïcödé', answer: 'y' }),
      '',
    ].join('\n'));
    expect(readPrompts(f, 'gsm8k', 10)).toEqual(['Janet has 3 apples, "red" ones.\nHow many?', 'Q2', 'Q3 ünïcödé']);
    expect(readPrompts(f, 'gsm8k', 2)).toEqual(['Janet has 3 apples, "red" ones.\nHow many?', 'Q2']);
    // CRLF line endings.
    const crlf = write('gsm8k-crlf.jsonl', `${JSON.stringify({ question: 'A' })}\r\n${JSON.stringify({ question: 'B' })}\r\n`);
    expect(readPrompts(crlf, 'gsm8k', 10)).toEqual(['A', 'B']);
  });

  test('jsonl with "prompt"', () => {
    const f = write('prompts.jsonl', `${JSON.stringify({ prompt: 'Once upon a time' })}\n${JSON.stringify({ prompt: 'x, "y"', extra: 1 })}\n`);
    expect(readPrompts(f, 'jsonl', 5)).toEqual(['Once upon a time', 'x, "y"']);
  });

  test('MMLU csv: quoted commas, escaped quotes and multi-line fields', () => {
    const f = write('mmlu.csv', [
      'question,choice0,choice1,choice2,choice3,answer',
      '"Which of these, if any, is prime?",4,"6, or 8",9,11,3',
      '"He said ""hi"".\nThen what?",a,b,"c\nstill c",d,0',
      'Plain question,w,x,y,z,1',
      '',
    ].join('\n'));
    expect(readPrompts(f, 'mmlu', 10)).toEqual([
      'Which of these, if any, is prime?\nA. 4\nB. 6, or 8\nC. 9\nD. 11',
      'He said "hi".\nThen what?\nA. a\nB. b\nC. c\nstill c\nD. d',
      'Plain question\nA. w\nB. x\nC. y\nD. z',
    ]);
    expect(readPrompts(f, 'mmlu', 1)).toHaveLength(1);
  });

  test('malformed input: errors name the file (and line)', () => {
    const f = write('bad.jsonl', `${JSON.stringify({ question: 'ok' })}\n\n{"question": "unterminated\n`);
    expect(() => readPrompts(f, 'gsm8k', 10)).toThrow(new RegExp(`^${f}:3: malformed JSON`));
    const g = write('nofield.jsonl', `${JSON.stringify({ question: 'ok' })}\n${JSON.stringify({ prompt: 'wrong field' })}\n`);
    expect(() => readPrompts(g, 'gsm8k', 10)).toThrow(`${g}:2: missing string field "question"`);
    expect(() => readPrompts(g, 'jsonl', 10)).toThrow(`${g}:1: missing string field "prompt"`);
    const h = write('number.jsonl', `${JSON.stringify({ prompt: 42 })}\n`);
    expect(() => readPrompts(h, 'jsonl', 10)).toThrow(`${h}:1: missing string field "prompt"`);
    // Lines past the limit are not read.
    expect(readPrompts(f, 'gsm8k', 1)).toEqual(['ok']);
    const missing = path.join(tmp, 'missing.jsonl');
    expect(() => readPrompts(missing, 'gsm8k', 10)).toThrow(`${missing}: dataset file not found`);
    const empty = write('empty.jsonl', '\n\n');
    expect(() => readPrompts(empty, 'gsm8k', 10)).toThrow(`${empty}: no prompts found`);
    const noHeader = write('noheader.csv', 'What?,a,b,c,d,0\n');
    expect(() => readPrompts(noHeader, 'mmlu', 10)).toThrow(new RegExp(`^${noHeader}: expected an MMLU csv with header`));
    const shortRow = write('short.csv', 'question,choice0,choice1,choice2,choice3,answer\nQ,a,b,c,d,0\nonly,two\n');
    expect(() => readPrompts(shortRow, 'mmlu', 10)).toThrow(new RegExp(`^${shortRow}(:3)?: malformed MMLU row "only,two"`));
  });
});
