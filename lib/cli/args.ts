// A small, strict argument parser: every flag is declared, values are typed and checked, and a
// mistake names the flag.
export type FlagType = 'string' | 'int' | 'number' | 'boolean' | 'list';

export interface FlagSpec {
  type: FlagType;
  help: string;
  default?: string | number | boolean;
  /** For int/number: inclusive bounds. */
  min?: number;
  max?: number;
  /** For string: the accepted values. */
  choices?: readonly string[];
  /** May be given several times (type 'list' collects strings). */
}

export type ParsedFlags = Record<string, string | number | boolean | string[] | undefined>;

export class UsageError extends Error {}

export function parseArgs(argv: string[], spec: Record<string, FlagSpec>): { flags: ParsedFlags; positional: string[] } {
  const flags: ParsedFlags = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('--') || arg === '--') {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const s = spec[name];
    if (!s) throw new UsageError(`unknown option --${name}`);
    if (s.type === 'boolean') {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      flags[name] = true;
      continue;
    }
    let value: string | undefined;
    if (eq >= 0) value = arg.slice(eq + 1);
    else value = argv[++i];
    if (value === undefined) throw new UsageError(`--${name} needs a value`);
    if (s.type === 'string') {
      if (s.choices && !s.choices.includes(value)) throw new UsageError(`--${name} must be one of ${s.choices.join(', ')}, got "${value}"`);
      flags[name] = value;
    } else if (s.type === 'list') flags[name] = [...((flags[name] as string[] | undefined) ?? []), value];
    else {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n) || (s.type === 'int' && !Number.isInteger(n)))
        throw new UsageError(`--${name} must be ${s.type === 'int' ? 'an integer' : 'a number'}, got "${value}"`);
      if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max))
        throw new UsageError(`--${name} must be in [${s.min ?? '-inf'}, ${s.max ?? 'inf'}], got ${value}`);
      flags[name] = n;
    }
  }
  for (const [name, s] of Object.entries(spec)) if (flags[name] === undefined && s.default !== undefined) flags[name] = s.default;
  return { flags, positional };
}

export function formatHelp(usage: string, spec: Record<string, FlagSpec>): string {
  const rows = Object.entries(spec).map(([name, s]) => {
    const left = `  --${name}${s.type === 'boolean' ? '' : ` ${s.type === 'int' || s.type === 'number' ? 'N' : 'VALUE'}`}`;
    const def = s.default !== undefined ? ` (default: ${String(s.default)})` : '';
    return `${left.padEnd(28)} ${s.help}${def}`;
  });
  return `${usage}\n\nOptions:\n${rows.join('\n')}\n`;
}

/**
 * A bench script's flags: parsed, or undefined after printing its help for --help. A missing
 * `required` flag prints the help too, then throws a UsageError naming the flag (the scripts
 * exit with status 2 on a UsageError).
 */
export function scriptFlags(argv: string[], spec: Record<string, FlagSpec>, usage: string, required: string[] = []): ParsedFlags | undefined {
  const { flags } = parseArgs(argv, spec);
  const missing = required.find((name) => flags[name] === undefined || flags[name] === '');
  if (!flags.help && !missing) return flags;
  process.stdout.write(formatHelp(usage, spec));
  if (!flags.help) throw new UsageError(`--${missing} is required`);
  return undefined;
}

/**
 * Runs a bench script's main(): an error goes to stderr as "NAME: message", and the process
 * exits with status 2 for a UsageError, 1 for any other.
 */
export function runScript(name: string, main: () => Promise<void>): void {
  main().catch((e: Error) => {
    process.stderr.write(`${name}: ${e.message}\n`);
    process.exit(e instanceof UsageError ? 2 : 1);
  });
}
