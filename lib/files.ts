// Reading the files of a model folder, with errors that name the file and the problem.
import * as fs from 'fs';
import * as path from 'path';

export function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${file}: file not found` : `${file}: cannot read (${code ?? String(e)})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: malformed JSON: ${(e as Error).message}`);
  }
}

export function readJsonObject(file: string): Record<string, unknown> {
  const v = readJsonFile(file);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Record<string, unknown>;
}

export function readOptionalJsonObject(file: string): Record<string, unknown> | undefined {
  return fs.existsSync(file) ? readJsonObject(file) : undefined;
}

export function checkModelDir(dir: string): string {
  const abs = path.resolve(dir);
  if (!fs.existsSync(abs)) throw new Error(`model folder ${abs} does not exist`);
  if (!fs.statSync(abs).isDirectory()) throw new Error(`model folder ${abs} is not a directory`);
  return abs;
}

// Native code would open a directory and fail on mmap with a bare "No such device".
function checkRegularFile(file: string): string {
  if (!fs.statSync(file).isFile()) throw new Error(`${file}: not a regular file`);
  return file;
}

// The safetensors files of a model: model.safetensors, or the shards an index lists.
export function weightFiles(dir: string): string[] {
  const single = path.join(dir, 'model.safetensors');
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(indexFile)) {
    const index = readJsonObject(indexFile);
    const map = index.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error(`${indexFile}: missing "weight_map" object`);
    const shards: string[] = [];
    for (const [tensor, file] of Object.entries(map as Record<string, unknown>)) {
      if (typeof file !== 'string' || file.includes('/') || file.includes('\\') || file.startsWith('.'))
        throw new Error(`${indexFile}: tensor "${tensor}" maps to an invalid file name ${JSON.stringify(file)}`);
      if (!shards.includes(file)) shards.push(file);
    }
    if (shards.length === 0) throw new Error(`${indexFile}: "weight_map" is empty`);
    return shards.map((f) => {
      const p = path.join(dir, f);
      if (!fs.existsSync(p)) throw new Error(`${indexFile}: shard ${p} listed in weight_map does not exist`);
      return checkRegularFile(p);
    });
  }
  if (fs.existsSync(single)) return [checkRegularFile(single)];
  throw new Error(`model folder ${dir}: no model.safetensors or model.safetensors.index.json`);
}

/** Writes `value` as indented JSON (and a newline) to `file`, creating its folder. */
export function writeJsonFile(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

/** Writes little-endian int32 values (the format of the token-id files a model folder holds). */
export function writeInt32File(file: string, values: Int32Array): void {
  const buf = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => buf.writeInt32LE(v, i * 4));
  fs.writeFileSync(file, buf);
}

/** Reads a set of token ids (little-endian int32, strictly increasing), e.g. a draft vocabulary. */
export function readTokenIdSet(file: string, vocabSize: number): Int32Array {
  const buf = fs.readFileSync(file);
  if (buf.length === 0 || buf.length % 4 !== 0) throw new Error(`${file}: expected a non-empty list of int32 token ids, got ${buf.length} bytes`);
  const ids = new Int32Array(buf.length / 4);
  for (let i = 0; i < ids.length; i++) {
    const v = buf.readInt32LE(i * 4);
    if (v < 0 || v >= vocabSize) throw new Error(`${file}: entry ${i} = ${v} is not a token id in [0, ${vocabSize})`);
    if (i > 0 && v <= ids[i - 1]) throw new Error(`${file}: token ids must be strictly increasing (entry ${i} = ${v} after ${ids[i - 1]})`);
    ids[i] = v;
  }
  return ids;
}
