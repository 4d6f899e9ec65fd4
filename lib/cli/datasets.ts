// Prompt sets for bench and tune: GSM8K jsonl, MMLU csv, or jsonl with a "prompt" field.
import * as fs from 'fs';

export type DatasetFormat = 'gsm8k' | 'mmlu' | 'jsonl';

function parseCsvRow(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

/** CSV records, honouring quoted fields that span lines. */
function csvRecords(text: string): string[][] {
  const rows: string[][] = [];
  let buf = '';
  for (const line of text.split('\n')) {
    buf = buf ? `${buf}\n${line}` : line;
    if ((buf.match(/"/g)?.length ?? 0) % 2 === 0) {
      if (buf.trim()) rows.push(parseCsvRow(buf.replace(/\r$/, '')));
      buf = '';
    }
  }
  return rows;
}

/** The question texts (bare: the model's prompt template is applied by the caller). */
export function readPrompts(file: string, format: DatasetFormat, limit: number, skip = 0): string[] {
  if (!fs.existsSync(file)) throw new Error(`${file}: dataset file not found`);
  const text = fs.readFileSync(file, 'utf8');
  const prompts: string[] = [];
  if (format === 'mmlu') {
    const rows = csvRecords(text);
    const header = rows.shift();
    if (!header || header[0] !== 'question' || header.length < 5) throw new Error(`${file}: expected an MMLU csv with header question,choice0..choice3,answer`);
    for (const r of rows) {
      if (r.length < 5) throw new Error(`${file}: malformed MMLU row "${r.join(',').slice(0, 60)}"`);
      prompts.push(`${r[0]}\nA. ${r[1]}\nB. ${r[2]}\nC. ${r[3]}\nD. ${r[4]}`);
      if (prompts.length >= limit + skip) break;
    }
  } else {
    const lines = text.split('\n');
    for (let i = 0; i < lines.length && prompts.length < limit + skip; i++) {
      if (!lines[i].trim()) continue;
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(lines[i]);
      } catch (e) {
        throw new Error(`${file}:${i + 1}: malformed JSON: ${(e as Error).message}`);
      }
      const field = format === 'gsm8k' ? 'question' : 'prompt';
      if (typeof rec[field] !== 'string') throw new Error(`${file}:${i + 1}: missing string field "${field}"`);
      prompts.push(rec[field] as string);
    }
  }
  prompts.splice(0, skip);
  if (prompts.length === 0) throw new Error(`${file}: no prompts found${skip ? ` after skipping ${skip}` : ''}`);
  return prompts;
}
