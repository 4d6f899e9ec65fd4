// `cascade-spec bench-kernels`: the forward pass's cost per token count, stock libtorch fp32 vs
// the native kernels, on Llama configs of about 2M, 7M, 30M and 90M parameters (random weights).
// Speculation on a CPU pays only when a block of k + 1 tokens costs little more than one token:
// beta8 = (T(8) - T(1)) / (7 T(1)) is the marginal cost of each extra verified token.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Bench } from 'tinybench';

import { BENCH_CONFIGS, BENCH_VOCAB, nativeConfig, randomWeights } from '../bench/configs';
import { loadNative, type Dtype } from '../native';
import { formatHelp, parseArgs, UsageError, type FlagSpec } from './args';

export const BENCH_KERNELS_FLAGS: Record<string, FlagSpec> = {
  threads: { type: 'int', help: 'CPU threads', default: 1, min: 1, max: 256 },
  configs: { type: 'string', help: 'comma-separated configs', default: BENCH_CONFIGS.map((c) => c.name).join(',') },
  variants: {
    type: 'string',
    help: 'comma-separated: fp32 (libtorch float32), bf16 / f16 (kernels), bf16-stock (libtorch bfloat16)',
    default: 'fp32,bf16',
  },
  time: { type: 'int', help: 'milliseconds of samples per measurement (split over the rounds)', default: 1500, min: 1 },
  rounds: { type: 'int', help: 'rounds over all measurements, interleaved against drifting load', default: 3, min: 1 },
  position: { type: 'int', help: 'tokens already in the cache when a pass starts', default: 64, min: 1, max: 400 },
  json: { type: 'boolean', help: 'print ONE JSON object with a "rows" array' },
  out: { type: 'string', help: 'also write the JSON object to this file' },
  help: { type: 'boolean', help: 'show this help' },
};

const VARIANTS: Record<string, { dtype: Dtype; kernels: boolean }> = {
  fp32: { dtype: 'float32', kernels: false },
  bf16: { dtype: 'bfloat16', kernels: true },
  f16: { dtype: 'float16', kernels: true },
  'bf16-stock': { dtype: 'bfloat16', kernels: false },
};

export const BLOCKS = [2, 4, 8, 16] as const;

export interface KernelBenchRow {
  config: string;
  params: number;
  dtype: Dtype;
  kernels: boolean;
  threads: number;
  /** Median ms of a single-token decode (last-position logits). */
  decodeMs: number;
  /** Median ms of a block pass (all logits), by block size. */
  blockMs: Record<'2' | '4' | '8' | '16', number>;
  beta8: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const round3 = (x: number) => Math.round(x * 1000) / 1000;

export async function runKernelBench(options: {
  configs: string[];
  variants: string[];
  threads: number;
  time: number;
  rounds: number;
  position: number;
  onRow?: (row: KernelBenchRow) => void;
}): Promise<KernelBenchRow[]> {
  const native = loadNative();
  const rows: KernelBenchRow[] = [];
  for (const name of options.configs) {
    const c = BENCH_CONFIGS.find((x) => x.name === name)!;
    const file = randomWeights(c);
    try {
      for (const v of options.variants) {
        const { dtype, kernels } = VARIANTS[v];
        const model = new native.Model(nativeConfig(c), [file], { dtype, threads: options.threads, kernels });
        const seq = new native.Sequence(model, options.position + 32, 0);
        const prefix = Int32Array.from({ length: options.position }, (_, i) => (i * 37 + 1) % BENCH_VOCAB);
        seq.forward(prefix, false);
        const one = Int32Array.from([11]);
        const blocks = BLOCKS.map((k) => Int32Array.from({ length: k }, (_, i) => (100 + 7 * i) % BENCH_VOCAB));
        const samples = new Map<string, number[]>();
        // Rounds of every measurement in turn, so a change in the machine's load (shared cores)
        // lands on all of them; the median over every round's samples is reported.
        for (let r = 0; r < options.rounds; r++) {
          const bench = new Bench({ time: options.time / options.rounds, warmupTime: r === 0 ? 200 : 50 });
          bench.add('1', () => {
            seq.forward(one, false);
            seq.truncate(options.position);
          });
          blocks.forEach((b) =>
            bench.add(String(b.length), () => {
              seq.forward(b, true);
              seq.truncate(options.position);
            }),
          );
          await bench.run();
          for (const t of bench.tasks) samples.set(t.name, [...(samples.get(t.name) ?? []), ...(t.result?.samples ?? [])]);
        }
        const ms = (k: string) => median(samples.get(k) ?? []);
        const row: KernelBenchRow = {
          config: c.name,
          params: model.numParams,
          dtype,
          kernels: model.kernels !== null,
          threads: options.threads,
          decodeMs: round3(ms('1')),
          blockMs: { '2': round3(ms('2')), '4': round3(ms('4')), '8': round3(ms('8')), '16': round3(ms('16')) },
          beta8: round3((ms('8') - ms('1')) / (7 * ms('1'))),
        };
        rows.push(row);
        options.onRow?.(row);
      }
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  }
  return rows;
}

export function formatKernelTable(rows: KernelBenchRow[]): string {
  const head = ['config', 'params', 'variant', 'decode ms', ...BLOCKS.map((k) => `T(${k}) ms`), 'beta8'];
  const body = rows.map((r) => [
    r.config,
    `${(r.params / 1e6).toFixed(1)}M`,
    `${r.dtype}${r.kernels ? ' kernels' : ''}`,
    r.decodeMs.toFixed(3),
    ...BLOCKS.map((k) => r.blockMs[String(k) as '2'].toFixed(3)),
    r.beta8.toFixed(3),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((x, i) => (i < 3 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
  return [line(head), ...body.map(line)].join('\n') + '\n';
}

export async function benchKernelsCommand(argv: string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const { flags, positional } = parseArgs(argv, BENCH_KERNELS_FLAGS);
  if (flags.help) {
    out.write(formatHelp('Usage: cascade-spec bench-kernels [--threads N] [--json]', BENCH_KERNELS_FLAGS));
    return 0;
  }
  if (positional.length) throw new UsageError(`unexpected argument "${positional[0]}"`);
  const configs = (flags.configs as string).split(',').filter(Boolean);
  for (const c of configs)
    if (!BENCH_CONFIGS.some((x) => x.name === c)) throw new UsageError(`--configs: unknown config "${c}" (known: ${BENCH_CONFIGS.map((x) => x.name).join(', ')})`);
  const variants = (flags.variants as string).split(',').filter(Boolean);
  for (const v of variants) if (!(v in VARIANTS)) throw new UsageError(`--variants: unknown variant "${v}" (known: ${Object.keys(VARIANTS).join(', ')})`);
  if (!configs.length || !variants.length) throw new UsageError('nothing to measure');
  const native = loadNative();
  const rows = await runKernelBench({
    configs,
    variants,
    threads: flags.threads as number,
    time: flags.time as number,
    rounds: flags.rounds as number,
    position: flags.position as number,
    onRow: (r) => err.write(`bench-kernels: ${r.config} ${r.dtype}${r.kernels ? ' kernels' : ''}: decode ${r.decodeMs} ms, T(8) ${r.blockMs['8']} ms, beta8 ${r.beta8}\n`),
  });
  const info = native.kernelTest.info();
  const report = {
    bench: 'kernels',
    date: new Date().toISOString(),
    cpu: os.cpus()[0]?.model ?? 'unknown',
    torch: native.torchInfo().version,
    kernelIsa: { bf16: info.bf16, f16: info.f16 },
    position: flags.position,
    timeMsPerMeasurement: flags.time,
    rounds: flags.rounds,
    statistic: 'median of all samples',
    rows,
  };
  if (flags.out) {
    fs.mkdirSync(path.dirname(path.resolve(flags.out as string)), { recursive: true });
    fs.writeFileSync(flags.out as string, JSON.stringify(report, null, 2) + '\n');
  }
  out.write(flags.json ? JSON.stringify(report) + '\n' : formatKernelTable(rows));
  return 0;
}
