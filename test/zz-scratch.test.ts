import { MaxGram } from '../lib/drafters/maxgram';
test('coll', () => {
  const M = 1000003, MOD = 2 ** 32;
  const key = (u: number, v: number, w: number) => { let k = 0; for (const t of [w, v, u]) k = (k * M + t + 1) % MOD; return k; };
  const u = 500, v = 600, w = 700;
  for (const [dw, dv, du] of [[109, 1321, 240], [109, 1321, -240], [-109, -1321, -240], [109,-1321,240]]) {
    console.log(dw, dv, du, key(u, v, w), key(u + du, v + dv, w + dw));
  }
});
