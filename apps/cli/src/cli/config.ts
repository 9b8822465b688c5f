import { readFileSync } from 'node:fs';
import { XltConfigError } from '@xlt/core';
import YAML from 'yaml';
import type { z } from 'zod';

/** Reads a YAML or JSON config file (by extension; YAML is a superset of JSON). */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new XltConfigError(`cannot read config: ${(cause as Error).message}`, { file, cause });
  }
  let value: unknown;
  try {
    value = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (cause) {
    const line = (cause as { linePos?: Array<{ line: number }> }).linePos?.[0]?.line;
    throw new XltConfigError(
      `config is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(cause as Error).message.split('\n')[0]}`,
      {
        file,
        ...(line !== undefined ? { line } : {}),
        cause,
      },
    );
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    throw new XltConfigError('config must be a mapping of keys to values', { file });
  return value as Record<string, unknown>;
}

/** Parses an override value: JSON when it parses (numbers, booleans, arrays), else the string. */
function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** Applies `key.path=value` overrides to a config object (returns a new object). */
export function applyOverrides(
  config: Record<string, unknown>,
  overrides: readonly string[],
): Record<string, unknown> {
  const out = structuredClone(config);
  for (const o of overrides) {
    const eq = o.indexOf('=');
    if (eq <= 0) throw new XltConfigError(`override '${o}' must look like key.path=value`, { field: o });
    const path = o.slice(0, eq).split('.');
    let cur: Record<string, unknown> = out;
    for (const k of path.slice(0, -1)) {
      const next = cur[k];
      if (next === undefined) cur[k] = {};
      else if (typeof next !== 'object' || next === null || Array.isArray(next)) {
        throw new XltConfigError(`override '${o}': '${k}' is not a mapping`, { field: o.slice(0, eq) });
      }
      cur = cur[k] as Record<string, unknown>;
    }
    cur[path.at(-1) as string] = parseValue(o.slice(eq + 1));
  }
  return out;
}

/** Validates a config with a zod schema; every problem is reported with its key path. */
export function validateConfig<S extends z.ZodType>(schema: S, config: unknown, source: string): z.infer<S> {
  const r = schema.safeParse(config);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const path = i.path.length > 0 ? i.path.join('.') : '(top level)';
    const keys = (i as { keys?: string[] }).keys;
    if (i.code === 'unrecognized_keys' && keys)
      return `  ${keys.map((k) => (i.path.length ? `${path}.${k}` : k)).join(', ')}: unknown key`;
    return `  ${path}: ${i.message}`;
  });
  throw new XltConfigError(`invalid config in ${source}:\n${lines.join('\n')}`, { file: source });
}
