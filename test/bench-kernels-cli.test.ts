/**
 * `cascade-spec bench-kernels` through main(argv, out, err): help, usage errors, and one quick
 * run (2M config, a few milliseconds per measurement) whose --json output has the documented
 * shape. The timings themselves are not checked (machine-dependent); beta8 is checked against
 * the row's own T(1) and T(8), which is its definition.
 */

import { cli } from './helpers/cli';


test('help lists the flags; the top-level usage lists the command', async () => {
  const h = await cli('bench-kernels', '--help');
  expect(h.code).toBe(0);
  for (const flag of ['--threads', '--json', '--configs', '--variants', '--time']) expect(h.out).toContain(flag);
  expect((await cli('help')).out).toContain('bench-kernels');
});

test.each([
  [['--configs', '3M'], /unknown config "3M"/],
  [['--variants', 'fp64'], /unknown variant "fp64"/],
  [['--threads', '0'], /--threads must be in/],
  [['extra'], /unexpected argument "extra"/],
])('usage error %j', async (argv, message) => {
  const r = await cli('bench-kernels', ...argv);
  expect(r.code).toBe(2);
  expect(r.err).toMatch(message);
});

test('--json prints one object with a rows array of the documented shape', async () => {
  const r = await cli('bench-kernels', '--configs', '2M', '--variants', 'fp32,bf16,f16', '--time', '30', '--rounds', '1', '--json');
  expect(r.code).toBe(0);
  const lines = r.out.trim().split('\n');
  expect(lines).toHaveLength(1);
  const report = JSON.parse(lines[0]) as { rows: Array<Record<string, unknown>> };
  expect(report.rows.map((x) => [x.config, x.dtype, x.kernels, x.threads])).toEqual([
    ['2M', 'float32', false, 1],
    ['2M', 'bfloat16', true, 1],
    ['2M', 'float16', true, 1],
  ]);
  for (const row of report.rows) {
    expect(Object.keys(row).sort()).toEqual(['beta8', 'blockMs', 'config', 'decodeMs', 'dtype', 'kernels', 'params', 'threads']);
    const b = row.blockMs as Record<string, number>;
    expect(Object.keys(b).sort()).toEqual(['16', '2', '4', '8']);
    const t1 = row.decodeMs as number;
    expect(t1).toBeGreaterThan(0);
    for (const k of ['2', '4', '8', '16']) expect(b[k]).toBeGreaterThan(0);
    expect(row.params).toBeGreaterThan(1.5e6);
    // Rounded to 3 decimals in the output: beta8 lies within what the rounded times allow
    // (each time off by up to 0.0005 ms, beta8 itself by 0.0005). The error grows with
    // T(8) / T(1)^2, which short noisy runs on a small model make large.
    const beta = (t8: number, tt1: number) => (t8 - tt1) / (7 * tt1);
    const lo = beta(b['8'] - 0.0005, t1 + 0.0005) - 0.0005 - 1e-9;
    const hi = beta(b['8'] + 0.0005, t1 - 0.0005) + 0.0005 + 1e-9;
    expect(row.beta8 as number).toBeGreaterThanOrEqual(lo);
    expect(row.beta8 as number).toBeLessThanOrEqual(hi);
  }
});
