// The embedded default model family (models/target, models/mid, models/small): it loads, the
// three share one vocabulary and special tokens, and greedy generation is reproducible across
// runs and processes.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { describeCascade } from '../lib/cascade/config';
import { familyCascadeEntry } from '../lib/cli/family';
import { assertSameVocabulary, Model } from '../lib/model';

const root = path.resolve(__dirname, '..');
const models = path.join(root, 'models');
const names = ['target', 'mid', 'small'];
const question = 'A baker makes 12 cakes a day. How many cakes does she make in 5 days?';

interface BenchReport {
  methods: Array<{ name: string; describe: string; identicalToAR: boolean | null }>;
  kernels: string | null;
  familyCascade: { entry: string | null; describe: string };
  models: Record<string, { draftVocabularySize?: number; draftTemperatureScale?: number }>;
}

/**
 * `cascade-spec bench --json` on the family for the one question above, once per entry of
 * `variants` (extra arguments); null when dist/ is not built (npm ci builds it).
 */
function benchReports(args: string[], variants: string[][]): BenchReport[] | null {
  const cli = path.join(root, 'dist', 'lib', 'cli', 'main.js');
  if (!fs.existsSync(cli)) {
    console.warn('dist/ not built: skipping the bench check (npm ci builds it)');
    return null;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-family-'));
  try {
    const data = path.join(tmp, 'q.jsonl');
    fs.writeFileSync(data, JSON.stringify({ question, answer: '' }) + '\n');
    return variants.map((extra) => {
      const r = spawnSync(process.execPath, [cli, 'bench', '--dataset', data, '--limit', '1', '--warmup', '0', '--json', ...args, ...extra], { encoding: 'utf8' });
      expect(r.status).toBe(0);
      return JSON.parse(r.stdout) as BenchReport;
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

describe('default model family', () => {
  const loaded: Record<string, Model> = {};
  beforeAll(() => {
    for (const n of names) loaded[n] = Model.loadSync(path.join(models, n), { contextLength: 256 });
  });

  test('the three models load as Llama checkpoints within the size budget', () => {
    for (const n of names) {
      expect(loaded[n].config.architecture).toBe('LlamaForCausalLM');
      expect(fs.existsSync(path.join(models, n, 'tokenizer.json'))).toBe(true);
    }
    expect(loaded.target.numParams).toBeGreaterThanOrEqual(10_000_000);
    expect(loaded.target.numParams).toBeGreaterThan(3 * loaded.mid.numParams);
    expect(loaded.target.numParams).toBeGreaterThan(8 * loaded.small.numParams);
    const bytes = names.reduce((s, n) => s + fs.readdirSync(path.join(models, n)).reduce((t, f) => t + fs.statSync(path.join(models, n, f)).size, 0), 0);
    expect(bytes).toBeLessThanOrEqual(80 * 1024 * 1024);
  });

  test('drafts share the target vocabulary and special tokens', () => {
    for (const d of ['mid', 'small']) {
      expect(() => assertSameVocabulary(loaded.target, loaded[d])).not.toThrow();
      expect(loaded[d].tokenizer.eosIds).toEqual(loaded.target.tokenizer.eosIds);
      expect(loaded[d].tokenizer.bosId).toBe(loaded.target.tokenizer.bosId);
      expect(loaded[d].config.vocabSize).toBe(loaded.target.config.vocabSize);
    }
    // Token texts: a sample of ids decodes the same everywhere (assertSameVocabulary checks all).
    for (const id of [0, 5, 100, 1000, 4000]) expect(loaded.mid.tokenizer.tokenText(id)).toBe(loaded.target.tokenizer.tokenText(id));
  });

  test('the prompt template is the training format and the model answers in GSM8K form', async () => {
    const tpl = JSON.parse(fs.readFileSync(path.join(models, 'target', 'cascade-spec.json'), 'utf8')).promptTemplate as string;
    expect(tpl).toBe('Question: {prompt}\nAnswer:');
    // GSM8K solutions end with "#### N"; at this scale arithmetic is mostly wrong and some
    // continuations loop, but most keep the form.
    const questions = [
      'Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?',
      'Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?',
      'Betty is saving money for a new wallet which costs $100. Betty has only half of the money she needs. How much more money does Betty need?',
      'James writes a 3-page letter to 2 different friends twice a week. How many pages does he write a year?',
      'Mark has a garden with flowers. He planted plants of three different colors in it. How many flowers does Mark have in his garden?',
    ];
    let formed = 0;
    for (const q of questions) {
      const r = await loaded.target.generate(tpl.replace('{prompt}', q), { maxNewTokens: 160 });
      if (/####\s*-?[\d,.]+/.test(r.text)) formed++;
    }
    expect(formed).toBeGreaterThanOrEqual(3);
  });

  test('greedy generation is identical across runs and processes', async () => {
    const prompt = `Question: ${question}\nAnswer:`;
    const a = await loaded.target.generate(prompt, { maxNewTokens: 48 });
    const b = await loaded.target.generate(prompt, { maxNewTokens: 48 });
    expect(b.tokens).toEqual(a.tokens);
    const cli = path.join(root, 'dist', 'lib', 'cli', 'main.js');
    if (!fs.existsSync(cli)) {
      console.warn('dist/ not built: skipping the cross-process check (npm ci builds it)');
      return;
    }
    const child = spawnSync(process.execPath, [cli, 'generate', '--model', path.join(models, 'target'), '--raw', '--prompt', prompt, '--max-new-tokens', '48', '--json', '--method', 'ar'], { encoding: 'utf8' });
    expect(child.status).toBe(0);
    expect(JSON.parse(child.stdout).tokens).toEqual(a.tokens);
  });

  test('generate with no options runs csd on the configuration tuned for this machine\'s kernels, names it, and prints AR\'s text', () => {
    const cli = path.join(root, 'dist', 'lib', 'cli', 'main.js');
    if (!fs.existsSync(cli)) {
      console.warn('dist/ not built: skipping the default-command check (npm ci builds it)');
      return;
    }
    const kernels = Model.loadSync(path.join(models, 'target'), { dtype: 'bfloat16' }).kernels;
    const entry = familyCascadeEntry(models, { kernels, sampling: false });
    // The shipped file has an AVX2 entry: on such a CPU it is the one that runs.
    if (kernels === 'avx2') expect(entry.key).toBe('avx2');
    const run = (...extra: string[]) => spawnSync(process.execPath, [cli, 'generate', '--prompt', question, '--max-new-tokens', '24', ...extra], { encoding: 'utf8' });
    const csd = run(), ar = run('--method', 'ar');
    expect(csd.status).toBe(0);
    expect(ar.status).toBe(0);
    expect(csd.stdout).toBe(ar.stdout);
    expect(csd.stderr).toContain(`(csd ${describeCascade(entry.cascade)}, ${entry.key ? `tuned for ${entry.key}` : 'models/cascade.json'}, `);
    // bench's plain csd runs the same entry, greedy and sampled, and its report says which.
    const [greedy, sampled] = benchReports(['--methods', 'ar,csd', '--max-new-tokens', '12'], [[], ['--temperature', '0.8']])!;
    const sampledEntry = familyCascadeEntry(models, { kernels, sampling: true });
    for (const [r, e] of [[greedy, entry], [sampled, sampledEntry]] as const) {
      expect(r.kernels).toBe(kernels);
      expect(r.familyCascade).toEqual({ entry: e.key, describe: describeCascade(e.cascade) });
      expect(r.methods.find((m) => m.name === 'csd')!.describe).toBe(describeCascade(e.cascade));
    }
    if (kernels === 'avx2') expect(sampled.familyCascade.entry).toBe('avx2/sampling');
    expect(greedy.methods.every((m) => m.identicalToAR === true)).toBe(true);
  });

  test("the drafts sample at their folders' draftTemperatureScale; bench --draft-temperature-scale overrides it", async () => {
    // The committed calibration (bench/draft-temperature.ts): both drafts draw hotter than the target.
    for (const d of ['mid', 'small']) expect(loaded[d].draftTemperatureScale).toBeGreaterThan(1);
    const reports = benchReports(['--max-new-tokens', '16', '--methods', 'ar,sd:small@4', '--temperature', '0.8'], [[], ['--draft-temperature-scale', '1']]);
    if (!reports) return;
    expect(reports.map((r) => r.models.small.draftTemperatureScale)).toEqual([loaded.small.draftTemperatureScale, 1]);
  });

  test('the drafts load their draft vocabularies; bench --full-draft-vocabulary turns them off', async () => {
    for (const d of ['mid', 'small']) {
      const ids = loaded[d].draftVocabulary!;
      expect(ids.length).toBe(512);
      // EOS and the prompt template's tokens are always in it.
      for (const t of [...loaded[d].tokenizer.eosIds, ...loaded[d].tokenizer.encode('Question: \nAnswer:', { addBos: false })]) expect(ids.includes(t)).toBe(true);
    }
    const reports = benchReports(['--max-new-tokens', '24', '--methods', 'ar,sd:small@4,csd'], [[], ['--full-draft-vocabulary']]);
    if (!reports) return;
    for (const report of reports) expect(report.methods.every((m) => m.identicalToAR)).toBe(true);
    expect(reports.map((r) => r.models.small.draftVocabularySize)).toEqual([512, 4096]);
  });
});
