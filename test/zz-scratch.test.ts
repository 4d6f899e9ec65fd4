test('m', () => {
  const a = new Float64Array(260).fill(0.5);
  let t = performance.now(); let s = 0;
  for (let i = 0; i < 67600; i++) for (let y = 0; y < 260; y++) s += Math.max(0, a[y] - 0.1);
  console.log('mathmax', performance.now() - t);
  t = performance.now(); s = 0;
  for (let i = 0; i < 67600; i++) for (let y = 0; y < 260; y++) { const d = a[y] - 0.1; s += d > 0 ? d : 0; }
  console.log('ternary', performance.now() - t);
});
