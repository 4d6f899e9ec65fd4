// Where the embedded default model family lives, and a model folder's prompt template.
import * as fs from 'fs';
import * as path from 'path';

import { readJsonObject } from '../files';
import { packageRoot } from '../native';

export function defaultModelDir(): string {
  return path.join(packageRoot(), 'models', 'target');
}

/** The default family's mid-size draft model. */
export function defaultDraftDir(): string {
  return path.join(packageRoot(), 'models', 'mid');
}

/**
 * A model folder may carry cascade-spec.json with {"promptTemplate": "...{prompt}..."}: the
 * format its training text used, which the CLI wraps a bare prompt in.
 */
export function promptTemplate(dir: string): string | undefined {
  const file = path.join(dir, 'cascade-spec.json');
  if (!fs.existsSync(file)) return undefined;
  const t = readJsonObject(file).promptTemplate;
  if (t === undefined) return undefined;
  if (typeof t !== 'string' || !t.includes('{prompt}')) throw new Error(`${file}: "promptTemplate" must be a string containing {prompt}`);
  return t;
}
