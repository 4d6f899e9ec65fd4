// Cascade configuration: the paper's K matrix, and a readable form of the same thing.
//
// With neural drafters D1 > D2 > ... > Dn and Max-Gram (MaG) last, K is (n+1) x (n+1) and upper
// triangular. Row r configures the level whose reviewer is the target (r = 0) or D_r; entry
// K[r][c] is the size of the band of positions that D_{c+1} (or MaG when c = n) fills in that
// level's draft, bands in column order (larger drafters first: the horizontal cascade). A D_r
// that fills a band never drafts alone: it reviews blocks from the drafters of row r (the
// vertical cascade). Reviews below the target may be lenient (lenience >= 1).

export interface CascadeBand {
  /** A drafter name from `drafters`, or "maxgram". */
  drafter: string;
  size: number;
}

export interface CascadeLevelSpec {
  /** "target" or a drafter name. */
  reviewer: string;
  bands: CascadeBand[];
}

export interface ReadableCascade {
  /** Neural drafter names, largest first (Max-Gram is implicit, always last). */
  drafters: string[];
  levels: CascadeLevelSpec[];
  /** Lenience of the draft-level reviews (never the target's). Default 1 (strict). */
  lenience?: number;
  /** See CascadeMatrix.confidence. */
  confidence?: number;
}

export interface CascadeMatrix {
  drafters: string[];
  K: number[][];
  lenience: number;
  /**
   * Beyond the paper: a level that drafts alone (an all-zero row of K) ends its band before a
   * token to which its model gives a probability below this, and the next band starts there.
   * In [0, 1); 0 or absent: bands are always filled.
   */
  confidence?: number;
}

export const MAXGRAM = 'maxgram';
export const TARGET = 'target';

export class CascadeConfigError extends Error {}

/** Checks a K matrix against its drafters; returns it normalised (lenience defaulted). */
export function validateMatrix(m: { drafters: string[]; K: number[][]; lenience?: number; confidence?: number }): CascadeMatrix {
  const fail = (what: string): never => {
    throw new CascadeConfigError(`invalid cascade: ${what}`);
  };
  if (!Array.isArray(m.drafters) || !m.drafters.every((d) => typeof d === 'string' && d.length > 0))
    fail('drafters must be an array of names');
  const names = new Set(m.drafters);
  if (names.size !== m.drafters.length) fail('drafter names must be unique');
  if (names.has(MAXGRAM) || names.has(TARGET)) fail(`"${MAXGRAM}" and "${TARGET}" are reserved names`);
  const n = m.drafters.length + 1;
  if (!Array.isArray(m.K) || m.K.length !== n) fail(`K must have ${n} rows (one per reviewer: target + ${n - 1} drafters), got ${Array.isArray(m.K) ? m.K.length : 'none'}`);
  m.K.forEach((row, r) => {
    if (!Array.isArray(row) || row.length !== n) fail(`K row ${r} must have ${n} entries`);
    row.forEach((v, c) => {
      if (!Number.isInteger(v) || v < 0 || v > 256) fail(`K[${r}][${c}] must be an integer in [0, 256], got ${String(v)}`);
      if (c < r && v !== 0) fail(`K must be upper triangular: K[${r}][${c}] = ${v} (a reviewer can only use smaller drafters)`);
    });
  });
  if (m.K[0].every((v) => v === 0)) fail('K row 0 (the target\'s draft) is all zeros: nothing would be drafted');
  const lenience = m.lenience ?? 1;
  if (typeof lenience !== 'number' || !Number.isFinite(lenience) || lenience < 1) fail(`lenience must be a number >= 1, got ${String(lenience)}`);
  const confidence = m.confidence ?? 0;
  if (typeof confidence !== 'number' || !(confidence >= 0 && confidence < 1)) fail(`confidence must be a number in [0, 1), got ${String(confidence)}`);
  return { drafters: [...m.drafters], K: m.K.map((row) => [...row]), lenience, ...(confidence > 0 ? { confidence } : {}) };
}

export function matrixToReadable(m: CascadeMatrix): ReadableCascade {
  const v = validateMatrix(m);
  const columnName = (c: number) => (c < v.drafters.length ? v.drafters[c] : MAXGRAM);
  const levels: CascadeLevelSpec[] = v.K.map((row, r) => ({
    reviewer: r === 0 ? TARGET : v.drafters[r - 1],
    bands: row.map((size, c) => ({ drafter: columnName(c), size })).filter((b) => b.size > 0),
  }));
  return { drafters: v.drafters, levels: levels.filter((l, r) => r === 0 || l.bands.length > 0), lenience: v.lenience, ...(v.confidence ? { confidence: v.confidence } : {}) };
}

export function readableToMatrix(c: ReadableCascade): CascadeMatrix {
  const fail = (what: string): never => {
    throw new CascadeConfigError(`invalid cascade: ${what}`);
  };
  if (typeof c !== 'object' || c === null || !Array.isArray(c.drafters) || !Array.isArray(c.levels)) fail('expected { drafters, levels }');
  const n = c.drafters.length + 1;
  const K = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  const rowOf = (name: string): number => (name === TARGET ? 0 : c.drafters.indexOf(name) + 1);
  const colOf = (name: string): number => (name === MAXGRAM ? n - 1 : c.drafters.indexOf(name));
  const seen = new Set<string>();
  for (const level of c.levels) {
    const r = rowOf(level.reviewer);
    if (level.reviewer !== TARGET && r === 0) fail(`unknown reviewer "${level.reviewer}"`);
    if (seen.has(level.reviewer)) fail(`reviewer "${level.reviewer}" configured twice`);
    seen.add(level.reviewer);
    if (!Array.isArray(level.bands)) fail(`level "${level.reviewer}" needs a bands array`);
    let lastCol = -1;
    for (const band of level.bands) {
      const col = colOf(band.drafter);
      if (col < 0) fail(`unknown drafter "${band.drafter}" in level "${level.reviewer}"`);
      if (col < r) fail(`level "${level.reviewer}" cannot use "${band.drafter}": a reviewer only uses drafters smaller than itself`);
      if (col <= lastCol) fail(`level "${level.reviewer}": bands must go from larger to smaller drafters, each drafter once`);
      lastCol = col;
      K[r][col] = band.size;
    }
  }
  return validateMatrix({ drafters: c.drafters, K, lenience: c.lenience, confidence: c.confidence });
}

/** Accepts either form (an object with K, or one with levels). */
export function parseCascade(input: unknown): CascadeMatrix {
  if (typeof input !== 'object' || input === null) throw new CascadeConfigError('invalid cascade: expected an object');
  const o = input as Record<string, unknown>;
  if ('K' in o) return validateMatrix(o as unknown as CascadeMatrix);
  if ('levels' in o) return readableToMatrix(o as unknown as ReadableCascade);
  throw new CascadeConfigError('invalid cascade: expected "K" (matrix form) or "levels" (readable form)');
}

/**
 * Human-readable one-liner, e.g. "target[mid:5 small:2 maxgram:3] mid(l=2)[maxgram:10]";
 * " ~0.3" at the end when bands of drafters drafting alone stop below that probability.
 */
export function describeCascade(m: CascadeMatrix): string {
  const levels = matrixToReadable(m)
    .levels.map((l) => `${l.reviewer}${l.reviewer !== TARGET && m.lenience > 1 ? `(l=${m.lenience})` : ''}[${l.bands.map((b) => `${b.drafter}:${b.size}`).join(' ')}]`)
    .join(' ');
  return m.confidence ? `${levels} ~${m.confidence}` : levels;
}
