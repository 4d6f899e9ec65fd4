/**
 * Minimal safetensors writer/reader for tests.
 *
 * Independent of the native loader on purpose: the fixtures it writes are what the native code is
 * tested against, and the reader feeds the plain-TS reference forward the *stored* values (so a
 * BF16/F16 model's reference sees the same rounded weights the addon loads).
 *
 * File layout (https://github.com/huggingface/safetensors):
 *   u64 little-endian N | N bytes of UTF-8 JSON header | raw little-endian tensor bytes
 * The header maps tensor name -> {dtype, shape, data_offsets: [begin, end)} where offsets are
 * relative to the first byte after the header; an optional "__metadata__" maps string -> string.
 */
import * as fs from 'fs';

export type FloatDType = 'F32' | 'F16' | 'BF16';

export interface TensorSpec {
  dtype: FloatDType;
  shape: number[];
  /** Row-major values; converted to `dtype` on write. Length must equal prod(shape). */
  data: Float32Array;
}

/** What readSafetensors returns: the stored dtype, and the stored values decoded to float32. */
export type LoadedTensor = TensorSpec;

const BYTES: Record<FloatDType, number> = { F32: 4, F16: 2, BF16: 2 };

// Shared scratch views to get at float32 bit patterns without allocating per value.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round half to even; x is always exactly representable here (float32 value times 2^k). */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** float32 -> bfloat16 bits, round-to-nearest-even (what torch's .to(bfloat16) does). */
export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  const u = u32[0];
  if (Number.isNaN(f32[0])) return ((u >>> 16) & 0x8000) | 0x7fc0; // keep NaN a (quiet) NaN
  // Adding 0x7fff + lsb rounds half to even on the truncated 16 bits; the sum stays < 2^32 for
  // all non-NaN inputs (largest is -inf = 0xff800000), so `>>> 16` is exact.
  return (u + 0x7fff + ((u >>> 16) & 1)) >>> 16;
}

export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/**
 * float32 -> IEEE 754 binary16 bits with round-to-nearest-even, overflow to ±inf and gradual
 * underflow to subnormals. Done in double arithmetic: every float32 is exact in a double and the
 * scalings are by powers of two, so the only rounding is the explicit roundHalfEven.
 */
export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const x = f32[0];
  if (Number.isNaN(x)) return sign | 0x7e00;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -14) {
    // Subnormal range: value = m * 2^-24. m may round up to 1024, which is exactly the bit
    // pattern of the smallest normal, so no special case is needed.
    return sign | roundHalfEven(a * 2 ** 24);
  }
  // Normal float32 here (float32 subnormals are < 2^-126 and were handled above): read its
  // exponent directly instead of trusting Math.log2 near powers of two.
  const e = ((bits >>> 23) & 0xff) - 127;
  if (e > 15) return sign | 0x7c00;
  const q = roundHalfEven(a * 2 ** (10 - e)); // 1024..2048 (2048 = carry into the exponent)
  // ((e+15)<<10) + (q-1024): a carry (q=2048) bumps the exponent field naturally, and a carry out
  // of e=15 lands exactly on 0x7c00 (inf), which is the correct overflow result.
  return sign | (((e + 15) << 10) + (q - 1024));
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1024 + m) * 2 ** (e - 25);
}

function encodeTensor(t: TensorSpec): Uint8Array {
  const n = t.shape.reduce((p, d) => p * d, 1);
  if (n !== t.data.length) {
    throw new Error(`tensor data has ${t.data.length} values, shape [${t.shape}] needs ${n}`);
  }
  const out = new Uint8Array(n * BYTES[t.dtype]);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < n; i++) {
    const v = t.data[i];
    if (t.dtype === 'F32') dv.setFloat32(i * 4, v, true);
    else if (t.dtype === 'F16') dv.setUint16(i * 2, f32ToF16Bits(v), true);
    else dv.setUint16(i * 2, f32ToBf16Bits(v), true);
  }
  return out;
}

/** JSON header bytes padded with spaces to a multiple of 8 (as the reference writer does). */
function paddedHeader(json: string): Uint8Array {
  const raw = Buffer.from(json, 'utf8');
  const len = Math.ceil(raw.length / 8) * 8;
  const out = Buffer.alloc(len, 0x20);
  raw.copy(out);
  return out;
}

/**
 * Low-level writer for crafting valid *or corrupt* files. An object header is JSON-serialized and
 * space-padded; a string header is written verbatim (so tests can write unpadded or broken JSON).
 * The length prefix is the header's byte length unless headerLenOverride is given (e.g. a length
 * pointing past the end of the file). dataBytes follow the header unchanged.
 */
export function writeRawSafetensors(
  path: string,
  header: object | string,
  dataBytes: Uint8Array,
  opts: { headerLenOverride?: bigint } = {},
): void {
  const hdr = typeof header === 'string' ? Buffer.from(header, 'utf8') : paddedHeader(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(opts.headerLenOverride ?? BigInt(hdr.length));
  fs.writeFileSync(path, Buffer.concat([prefix, hdr, dataBytes]));
}

/** Write a valid safetensors file; tensors are laid out contiguously in insertion order. */
export function writeSafetensors(
  path: string,
  tensors: Record<string, TensorSpec>,
  metadata?: Record<string, string>,
): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const bytes = encodeTensor(t);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  writeRawSafetensors(path, header, Buffer.concat(chunks));
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** Read a safetensors file, decoding F32/F16/BF16 to float32. Throws on anything malformed. */
export function readSafetensors(path: string): Record<string, LoadedTensor> {
  const buf = fs.readFileSync(path);
  if (buf.length < 8) throw new Error(`${path}: shorter than the 8-byte header length`);
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(buf.length - 8)) throw new Error(`${path}: header length ${n} past end of file`);
  const dataStart = 8 + Number(n);
  const header = JSON.parse(buf.subarray(8, dataStart).toString('utf8')) as Record<string, HeaderEntry>;
  const dataLen = buf.length - dataStart;
  const out: Record<string, LoadedTensor> = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (e.dtype !== 'F32' && e.dtype !== 'F16' && e.dtype !== 'BF16') {
      throw new Error(`${path}: tensor ${name} has unsupported dtype ${e.dtype}`);
    }
    const dtype: FloatDType = e.dtype;
    const count = e.shape.reduce((p, d) => p * d, 1);
    const [b, end] = e.data_offsets;
    if (!(b >= 0 && end <= dataLen && end - b === count * BYTES[dtype])) {
      throw new Error(`${path}: tensor ${name} has bad data_offsets [${b}, ${end}]`);
    }
    // DataView over the file buffer: offsets need not be aligned for the element size.
    const dv = new DataView(buf.buffer, buf.byteOffset + dataStart + b, end - b);
    const data = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      if (dtype === 'F32') data[i] = dv.getFloat32(i * 4, true);
      else if (dtype === 'F16') data[i] = f16BitsToF32(dv.getUint16(i * 2, true));
      else data[i] = bf16BitsToF32(dv.getUint16(i * 2, true));
    }
    out[name] = { dtype, shape: [...e.shape], data };
  }
  return out;
}
