#!/usr/bin/env node
// The cascade-spec command line: thin over the library API.
import { types } from 'util';

import { benchCommand } from './bench';
import { benchKernelsCommand } from './bench-kernels';
import { generateCommand } from './generate';
import { tuneCommand } from './tune';
import { UsageError } from './args';

const USAGE = `Usage: cascade-spec <command> [options]

Commands:
  generate [PROMPT]   generate text with a model (default: the embedded default family)
  bench               every method on the same prompts: speed, SWI, exactness vs AR
  tune                search the cascade's K matrix on a prompt set; writes models/cascade.json
  bench-kernels       forward-pass cost per block size, libtorch fp32 vs the native kernels (beta8)

Run \`cascade-spec <command> --help\` for a command's options.
`;

export async function main(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'generate':
        await generateCommand(rest, out, err);
        return 0;
      case 'tune':
        return await tuneCommand(rest, out, err);
      case 'bench':
        return await benchCommand(rest, out, err);
      case 'bench-kernels':
        return await benchKernelsCommand(rest, out, err);
      case undefined:
      case '--help':
      case 'help':
        out.write(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    // isNativeError, not instanceof: errors thrown by the addon may come from another realm (jest, vm).
    const message = types.isNativeError(e) ? e.message : String(e);
    err.write(`cascade-spec: error: ${message}\n`);
    if (e instanceof UsageError) err.write(`Run \`cascade-spec ${command === 'generate' ? `${command} ` : ''}--help\` for usage.\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
