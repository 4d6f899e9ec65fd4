/**
 * A GGUF reader for tests, written from the format's specification independently of
 * scripts/export-gguf.ts: header, metadata of every value type, tensor infos, and each tensor's
 * bytes at its aligned offset.
 */
import * as fs from 'fs';

export interface GgufTensor {
  dims: number[];
  type: number;
  data: Buffer;
}

export interface GgufFile {
  version: number;
  meta: Map<string, unknown>;
  tensors: Map<string, GgufTensor>;
}

export function readGguf(file: string): GgufFile {
  const b = fs.readFileSync(file);
  let at = 0;
  const u32 = (): number => ((at += 4), b.readUInt32LE(at - 4));
  const u64 = (): number => ((at += 8), Number(b.readBigUInt64LE(at - 8)));
  const str = (): string => {
    const n = u64();
    at += n;
    return b.toString('utf8', at - n, at);
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 0: return b.readUInt8((at += 1) - 1);
      case 1: return b.readInt8((at += 1) - 1);
      case 2: return b.readUInt16LE((at += 2) - 2);
      case 3: return b.readInt16LE((at += 2) - 2);
      case 4: return u32();
      case 5: return b.readInt32LE((at += 4) - 4);
      case 6: return b.readFloatLE((at += 4) - 4);
      case 7: return b.readUInt8((at += 1) - 1) !== 0;
      case 8: return str();
      case 9: {
        const t = u32(), n = u64();
        return Array.from({ length: n }, () => value(t));
      }
      case 10: return u64();
      case 11: return Number(b.readBigInt64LE((at += 8) - 8));
      case 12: return b.readDoubleLE((at += 8) - 8);
      default: throw new Error(`${file}: unknown value type ${type} at byte ${at - 4}`);
    }
  };
  if (b.toString('ascii', 0, 4) !== 'GGUF') throw new Error(`${file}: no GGUF magic`);
  at = 4;
  const version = u32(), nTensors = u64(), nMeta = u64();
  const meta = new Map<string, unknown>();
  for (let i = 0; i < nMeta; ++i) {
    const key = str();
    meta.set(key, value(u32()));
  }
  const infos: Array<{ name: string; dims: number[]; type: number; offset: number }> = [];
  for (let i = 0; i < nTensors; ++i) {
    const name = str(), nd = u32();
    const dims = Array.from({ length: nd }, () => u64());
    infos.push({ name, dims, type: u32(), offset: u64() });
  }
  const alignment = (meta.get('general.alignment') as number | undefined) ?? 32;
  const dataStart = Math.ceil(at / alignment) * alignment;
  const elemBytes: Record<number, number> = { 0: 4, 1: 2, 30: 2 };
  const tensors = new Map<string, GgufTensor>();
  for (const t of infos) {
    if (t.offset % alignment !== 0) throw new Error(`${file}: tensor ${t.name} at unaligned offset ${t.offset}`);
    const bytes = t.dims.reduce((a, d) => a * d, 1) * elemBytes[t.type];
    if (dataStart + t.offset + bytes > b.length) throw new Error(`${file}: tensor ${t.name} runs past the end`);
    tensors.set(t.name, { dims: t.dims, type: t.type, data: b.subarray(dataStart + t.offset, dataStart + t.offset + bytes) });
  }
  return { version, meta, tensors };
}
