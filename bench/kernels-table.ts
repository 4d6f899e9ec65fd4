/**
 * Markdown table of `cascade-spec bench-kernels --json` results: the median over several runs
 * of each row's decode time, block times and beta8 (for bench/KERNELS.md).
 *
 *   node dist/bench/kernels-table.js bench/results/kernels-1t-run1.json [more runs...]
 */
import * as fs from 'fs';

import type { KernelBenchRow } from '../lib/cli/bench-kernels';

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const files = process.argv.slice(2);
if (!files.length) {
  console.error('usage: kernels-table.js RESULT.json [RESULT.json...]');
  process.exit(2);
}
const groups = new Map<string, KernelBenchRow[]>();
for (const f of files) {
  const report = JSON.parse(fs.readFileSync(f, 'utf8')) as { rows: KernelBenchRow[] };
  for (const r of report.rows) {
    const key = `${r.config}|${r.dtype}|${r.kernels}|${r.threads}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
}
const label = (r: KernelBenchRow) => (r.kernels ? `${r.dtype} kernels` : `${r.dtype} libtorch`);
const ms = (x: number) => x.toFixed(3);
console.log('| config | params | variant | decode ms | T(2) ms | T(4) ms | T(8) ms | T(16) ms | beta8 |');
console.log('|---|---|---|---:|---:|---:|---:|---:|---:|');
for (const rows of groups.values()) {
  const r = rows[0];
  const block = (k: '2' | '4' | '8' | '16') => ms(median(rows.map((x) => x.blockMs[k])));
  console.log(
    `| ${r.config} | ${(r.params / 1e6).toFixed(1)}M | ${label(r)}${r.threads > 1 ? `, ${r.threads} threads` : ''} | ` +
      `${ms(median(rows.map((x) => x.decodeMs)))} | ${block('2')} | ${block('4')} | ${block('8')} | ${block('16')} | ` +
      `${median(rows.map((x) => x.beta8)).toFixed(3)} |`,
  );
}
console.log(`\nMedians over ${files.length} run(s) of each row (each run: the median of its samples).`);
