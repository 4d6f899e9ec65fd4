// Runs the CLI in-process with its output captured: one helper for every CLI test file.
import { Writable } from 'stream';

import { main } from '../../lib/cli/main';

export class Capture extends Writable {
  text = '';
  _write(chunk: Buffer | string, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.text += chunk.toString();
    done();
  }
}

export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new Capture();
  const err = new Capture();
  const code = await main(argv, out, err);
  return { code, out: out.text, err: err.text };
}
