/**
 * Forward-pass benchmark (tinybench): ms per single-token decode and per 8-token block (all
 * logits) for Llama configs of about 2M, 7M, 30M and 90M parameters, fp32 and bf16 compute,
 * at a cache position of 64 tokens.
 *
 *   node dist/bench/forward.bench.js [--threads 1] [--time 1000] [--configs 2M,7M,30M,90M] [--out bench/results/forward.json]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

import { Bench } from 'tinybench';

import { loadNative, type Dtype } from '../lib/native';
import { BENCH_CONFIGS, nativeConfig, randomWeights } from '../lib/bench/configs';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
}

async function main(): Promise<void> {
  const threads = Number(arg('threads', '1'));
  const time = Number(arg('time', '1000'));
  const wanted = arg('configs', BENCH_CONFIGS.map((c) => c.name).join(',')).split(',');
  const out = arg('out', '');
  const native = loadNative();
  const rows: Record<string, unknown>[] = [];
  for (const c of BENCH_CONFIGS.filter((x) => wanted.includes(x.name))) {
    const file = randomWeights(c);
    for (const dtype of ['float32', 'bfloat16'] as Dtype[]) {
      const model = new native.Model(nativeConfig(c), [file], { dtype, threads });
      const seq = new native.Sequence(model, 512, 0);
      const prefix = Int32Array.from({ length: 64 }, (_, i) => (i * 37) % 4096);
      seq.forward(prefix, false);
      const one = Int32Array.from([11]);
      const block = Int32Array.from({ length: 8 }, (_, i) => 100 + i);
      const bench = new Bench({ time, warmupTime: 200 });
      bench
        .add('decode', () => {
          seq.forward(one, false);
          seq.truncate(64);
        })
        .add('block8', () => {
          seq.forward(block, true);
          seq.truncate(64);
        });
      await bench.run();
      const ms = (name: string) => bench.tasks.find((t) => t.name === name)!.result!.mean;
      const row = { config: c.name, params: model.numParams, dtype, threads, decodeMs: +ms('decode').toFixed(3), block8Ms: +ms('block8').toFixed(3), block8OverDecode: +(ms('block8') / ms('decode')).toFixed(2) };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
  const result = { bench: 'forward', date: new Date().toISOString(), cpu: os.cpus()[0]?.model, torch: native.torchInfo().version, rows };
  if (out) {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
