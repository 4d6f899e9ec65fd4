/**
 * The `cascade-spec` command line, run in-process through main(argv, out, err) with capturing
 * streams against a tiny model folder, plus one spawn of the compiled entry (dist/) end to end.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { GENERATE_FLAGS } from '../lib/cli/generate';
import { cli } from './helpers/cli';
import { Model } from '../lib/model';
import { makeTinyModel } from './helpers/tiny-model';

const ROOT = path.resolve(__dirname, '..');
const DIST_MAIN = path.join(ROOT, 'dist', 'lib', 'cli', 'main.js');
const DEFAULT_MODEL = path.join(ROOT, 'models', 'target');
const PROMPT = 'hello';


interface JsonResult {
  text: string;
  tokens: number[];
  promptTokens: number[];
  finishReason: string;
  stats: { wallMs: number; targetForwards: number; seed: number; [k: string]: unknown };
  model: { dir: string };
}

/** Runs with --json; the whole of stdout must be exactly one JSON object. */
async function cliJson(...argv: string[]): Promise<JsonResult> {
  const r = await cli(...argv, '--json');
  expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
  expect(r.out.endsWith('\n')).toBe(true);
  expect(r.out.trimEnd().split('\n')).toHaveLength(1);
  const parsed: unknown = JSON.parse(r.out);
  expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)).toBe(true);
  return parsed as JsonResult;
}

let tmp: string;
let dir: string;
let model: Model;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-cli-'));
  dir = path.join(tmp, 'tiny');
  makeTinyModel(dir);
  model = Model.loadSync(dir);
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('generate', () => {
  test('--json prints exactly one JSON object with the documented fields', async () => {
    const r = await cliJson('generate', '--model', dir, '--prompt', PROMPT, '--max-new-tokens', '5');
    expect(typeof r.text).toBe('string');
    expect(r.tokens).toHaveLength(5);
    for (const t of r.tokens) expect(Number.isInteger(t) && t >= 0 && t < 300).toBe(true);
    // The tiny tokenizer maps byte b to id b, and its config adds BOS (id 256) first.
    const tokConfig = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as { add_bos_token: boolean };
    expect(tokConfig.add_bos_token).toBe(true);
    expect(r.promptTokens).toEqual([256, ...Buffer.from(PROMPT)]);
    expect(r.stats.wallMs).toBeGreaterThan(0);
    expect(r.stats.targetForwards).toBe(5);
    expect(r.finishReason).toBe('length');
    expect(r.model.dir).toBe(dir);
  });

  test('the positional prompt equals the --prompt form', async () => {
    const a = await cliJson('generate', PROMPT, '--model', dir, '--max-new-tokens', '5');
    const b = await cliJson('generate', '--model', dir, '--prompt', PROMPT, '--max-new-tokens', '5');
    expect(a.promptTokens).toEqual(b.promptTokens);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.text).toBe(b.text);
    // --flag=value is the same as --flag value.
    const c = await cliJson('generate', PROMPT, `--model=${dir}`, '--max-new-tokens=5');
    expect(c.tokens).toEqual(a.tokens);
  });

  test('sampling flags with --seed reproduce the same tokens', async () => {
    const args = ['generate', PROMPT, '--model', dir, '--max-new-tokens', '8', '--temperature', '0.9', '--top-k', '40', '--top-p', '0.95', '--min-p', '0.05', '--seed', '7'];
    const a = await cliJson(...args);
    const b = await cliJson(...args);
    expect(a.tokens.length).toBeGreaterThan(0);
    expect(b.tokens).toEqual(a.tokens);
    expect(a.stats.seed).toBe(7);
    const lib = await model.generate(PROMPT, { maxNewTokens: 8, temperature: 0.9, topK: 40, topP: 0.95, minP: 0.05, seed: 7 });
    expect(lib.tokens).toEqual(a.tokens);
  });

  test('--min-p 1 keeps only the most likely token: sampling at temperature 1.5 returns the greedy tokens', async () => {
    const greedy = await cliJson('generate', PROMPT, '--model', dir, '--max-new-tokens', '10');
    for (const seed of ['1', '2', '3']) {
      const sampled = await cliJson('generate', PROMPT, '--model', dir, '--max-new-tokens', '10', '--temperature', '1.5', '--min-p', '1', '--seed', seed);
      expect(sampled.tokens).toEqual(greedy.tokens);
    }
    // Without it, those seeds do not all follow the greedy path.
    const free = await Promise.all(['1', '2', '3'].map((seed) => cliJson('generate', PROMPT, '--model', dir, '--max-new-tokens', '10', '--temperature', '1.5', '--seed', seed)));
    expect(free.some((r) => r.tokens.join() !== greedy.tokens.join())).toBe(true);
  });

  test('--token-verification tests sampled drafts token by token, as blockVerification: false does', async () => {
    const draftDir = path.join(tmp, 'tiny-draft');
    makeTinyModel(draftDir, { seed: 99 });
    const draftModel = Model.loadSync(draftDir);
    const args = ['generate', PROMPT, '--model', dir, '--method', 'sd', '--draft', draftDir, '--k', '3', '--max-new-tokens', '12', '--temperature', '1'];
    const lib = { method: 'sd', draftModel, k: 3, maxNewTokens: 12, temperature: 1 } as const;
    let differ = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const jointly = await cliJson(...args, '--seed', String(seed));
      const byToken = await cliJson(...args, '--seed', String(seed), '--token-verification');
      expect(jointly.tokens).toEqual((await model.generate(PROMPT, { ...lib, seed })).tokens);
      expect(byToken.tokens).toEqual((await model.generate(PROMPT, { ...lib, seed, blockVerification: false })).tokens);
      if (jointly.tokens.join() !== byToken.tokens.join()) differ++;
    }
    // The two tests draw differently: the flag reached the verification.
    expect(differ).toBeGreaterThan(0);
  });

  test('--temperature 0 is greedy and matches model.generate', async () => {
    const r = await cliJson('generate', PROMPT, '--model', dir, '--max-new-tokens', '8', '--temperature', '0');
    const lib = await model.generate(PROMPT, { maxNewTokens: 8 });
    expect(r.tokens).toEqual(lib.tokens);
    expect(r.text).toBe(lib.text);
    // Greedy ignores the seed.
    const seeded = await cliJson('generate', PROMPT, '--model', dir, '--max-new-tokens', '8', '--seed', '123');
    expect(seeded.tokens).toEqual(lib.tokens);
  });

  test('without --json: the text on stdout, a stats line on stderr', async () => {
    const r = await cli('generate', PROMPT, '--model', dir, '--max-new-tokens', '5');
    const lib = await model.generate(PROMPT, { maxNewTokens: 5 });
    expect(r.code).toBe(0);
    expect(r.out).toBe(lib.text + '\n');
    expect(r.err).toMatch(/^\[5 tokens, length; [\d.]+ ms, .*5 target passes, float32, 1 thread\(s\), seed \d+\]\n$/);
  });

  test('--max-new-tokens 0 generates nothing', async () => {
    const r = await cliJson('generate', PROMPT, '--model', dir, '--max-new-tokens', '0');
    expect(r.tokens).toEqual([]);
    expect(r.finishReason).toBe('length');
  });
});

describe('help', () => {
  test('generate --help documents every flag', async () => {
    const r = await cli('generate', '--help');
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^Usage: cascade-spec generate/);
    const flags = Object.keys(GENERATE_FLAGS);
    expect(flags.length).toBeGreaterThan(10);
    for (const flag of flags) expect(r.out).toMatch(new RegExp(`^  --${flag}\\b.* ${GENERATE_FLAGS[flag].help.slice(0, 12).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
  });

  test('cascade-spec --help lists the commands', async () => {
    for (const arg of ['--help', 'help']) {
      const r = await cli(arg);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/Commands:\n\s+generate/);
    }
  });

  test('no command prints usage and exits 2', async () => {
    const r = await cli();
    expect(r.code).toBe(2);
    expect(r.out).toMatch(/Usage: cascade-spec <command>/);
  });
});

describe('usage errors exit 2 and name the flag', () => {
  test.each<[string, string[], RegExp]>([
    ['unknown flag', ['generate', PROMPT, '--bogus'], /unknown option --bogus/],
    ['misspelt flag', ['generate', PROMPT, '--max_new_tokens', '5'], /unknown option --max_new_tokens/],
    ['--max-new-tokens abc', ['generate', PROMPT, '--max-new-tokens', 'abc'], /--max-new-tokens must be an integer, got "abc"/],
    ['--max-new-tokens 2.5', ['generate', PROMPT, '--max-new-tokens', '2.5'], /--max-new-tokens must be an integer, got "2.5"/],
    ['--max-new-tokens -1', ['generate', PROMPT, '--max-new-tokens', '-1'], /--max-new-tokens must be in \[0, inf\], got -1/],
    ['--top-p 2', ['generate', PROMPT, '--top-p', '2'], /--top-p must be in \[1e-9, 1\], got 2/],
    ['--top-p 0', ['generate', PROMPT, '--top-p', '0'], /--top-p must be in \[1e-9, 1\], got 0/],
    ['--min-p 1.5', ['generate', PROMPT, '--min-p', '1.5'], /--min-p must be in \[0, 1\], got 1.5/],
    ['--temperature -1', ['generate', PROMPT, '--temperature', '-1'], /--temperature must be in \[0, inf\], got -1/],
    ['--temperature NaN', ['generate', PROMPT, '--temperature', 'NaN'], /--temperature must be a number, got "NaN"/],
    ['--seed -3', ['generate', PROMPT, '--seed', '-3'], /--seed must be in \[0, inf\], got -3/],
    ['--threads 0', ['generate', PROMPT, '--threads', '0'], /--threads must be in \[1, 256\], got 0/],
    ['--draft-temperature-scale 0', ['generate', PROMPT, '--draft-temperature-scale', '0'], /--draft-temperature-scale must be in \[1e-9, 10\], got 0/],
    ['--draft-temperature-scale 11', ['generate', PROMPT, '--draft-temperature-scale', '11'], /--draft-temperature-scale must be in \[1e-9, 10\], got 11/],
    ['--dtype float64', ['generate', PROMPT, '--dtype', 'float64'], /--dtype must be one of float32, bfloat16, float16, got "float64"/],
    ['missing value at the end', ['generate', PROMPT, '--model'], /--model needs a value/],
    ['empty numeric value', ['generate', PROMPT, '--top-k='], /--top-k must be an integer, got ""/],
    ['value given to a boolean flag', ['generate', PROMPT, '--json=yes'], /--json takes no value/],
    ['missing prompt', ['generate', '--max-new-tokens', '5'], /no prompt: pass one as an argument or with --prompt/],
    ['both positional and --prompt', ['generate', PROMPT, '--prompt', 'other'], /either positionally or with --prompt, not both/],
    ['two positional prompts', ['generate', 'one', 'two'], /at most one positional prompt, got 2/],
  ])('%s', async (_name, argv, re) => {
    const r = await cli(...argv);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^cascade-spec: error: /);
    expect(r.err).toMatch(re);
    expect(r.err).toMatch(/Run `cascade-spec generate --help` for usage\./);
  });

  test('unknown command', async () => {
    const r = await cli('gen', PROMPT);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/cascade-spec: error: unknown command "gen"/);
    // Points at the top-level help, not at `cascade-spec gen --help` (which would fail the same way).
    expect(r.err).toMatch(/Run `cascade-spec --help` for usage\./);
  });
});

describe('runtime errors exit 1 and name the path', () => {
  test('missing model folder', async () => {
    const missing = path.join(tmp, 'no-such-model');
    const r = await cli('generate', PROMPT, '--model', missing);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toBe(`cascade-spec: error: model folder ${missing} does not exist\n`);
  });

  test('relative --model is reported as an absolute path', async () => {
    const rel = path.relative(process.cwd(), path.join(tmp, 'no-such-model'));
    const r = await cli('generate', PROMPT, '--model', rel);
    expect(r.code).toBe(1);
    expect(r.err).toContain(path.resolve(rel));
  });

  test('broken config.json', async () => {
    const broken = path.join(tmp, 'broken');
    fs.cpSync(dir, broken, { recursive: true });
    fs.writeFileSync(path.join(broken, 'config.json'), '{');
    const r = await cli('generate', PROMPT, '--model', broken);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^cascade-spec: error: .*\/broken\/config\.json: malformed JSON/);
    expect(r.err).not.toMatch(/--help/);
  });

  test('corrupt weights (an error raised by the native loader)', async () => {
    const corrupt = path.join(tmp, 'corrupt');
    fs.cpSync(dir, corrupt, { recursive: true });
    fs.writeFileSync(path.join(corrupt, 'model.safetensors'), Buffer.alloc(3));
    const r = await cli('generate', PROMPT, '--model', corrupt);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`^cascade-spec: error: ${path.join(corrupt, 'model.safetensors')}: file is too short`));
  });

  test('prompt longer than the context', async () => {
    const r = await cli('generate', 'x'.repeat(200), '--model', dir);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/cascade-spec: error: prompt is 201 tokens; the context length is 128/);
  });

  test('bad --stop value from the library', async () => {
    const r = await cli('generate', PROMPT, '--model', dir, '--stop', '');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/stop must be an array of non-empty strings/);
  });

  const hasDefault = fs.existsSync(DEFAULT_MODEL);
  (hasDefault ? test.skip : test)('no --model and no default model family: a clear error', async () => {
    const r = await cli('generate', PROMPT, '--max-new-tokens', '1');
    expect(r.code).toBe(1);
    expect(r.err).toBe(`cascade-spec: error: no default model family is installed (${DEFAULT_MODEL} is missing); pass --model DIR\n`);
  });
});

describe('compiled CLI (dist/)', () => {
  const hasDist = fs.existsSync(DIST_MAIN);
  if (!hasDist) console.warn(`skipping the spawned-CLI tests: ${DIST_MAIN} is missing (run \`npx tsc -p tsconfig.build.json\`)`);
  const spawnTest = hasDist ? test : test.skip;
  const node = (...args: string[]) => spawnSync(process.execPath, [DIST_MAIN, ...args], { encoding: 'utf8', timeout: 60_000, cwd: tmp });

  spawnTest('node dist/lib/cli/main.js generate --json works end to end', async () => {
    const r = node('generate', '--model', dir, '--prompt', PROMPT, '--max-new-tokens', '5', '--json');
    expect({ status: r.status, signal: r.signal, stderr: r.stderr }).toEqual({ status: 0, signal: null, stderr: '' });
    const parsed = JSON.parse(r.stdout) as JsonResult;
    const lib = await model.generate(PROMPT, { maxNewTokens: 5 });
    expect(parsed.tokens).toEqual(lib.tokens);
    expect(parsed.promptTokens).toEqual(lib.promptTokens);
    expect(parsed.stats.targetForwards).toBe(5);
  });

  spawnTest('the package bin (what `npx cascade-spec` runs) is executable and runs by its shebang', () => {
    expect(fs.readFileSync(DIST_MAIN, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    expect(fs.statSync(DIST_MAIN).mode & 0o111).not.toBe(0);
    const r = spawnSync(DIST_MAIN, ['generate', '--help'], { encoding: 'utf8', timeout: 60_000, cwd: tmp });
    expect({ status: r.status, error: r.error?.message }).toEqual({ status: 0, error: undefined });
    expect(r.stdout).toMatch(/^Usage: cascade-spec generate/);
  });

  spawnTest('exit codes: 2 for a usage error, 1 for a runtime error', () => {
    const usage = node('generate', PROMPT, '--top-p', '2');
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/--top-p must be in/);
    const missing = path.join(tmp, 'no-such-model');
    const runtime = node('generate', PROMPT, '--model', missing);
    expect(runtime.status).toBe(1);
    expect(runtime.stderr).toBe(`cascade-spec: error: model folder ${missing} does not exist\n`);
  });
});
