import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { HttpError } from './errors.js';

/**
 * The module file for `code` in `modulesDir`: `<modulesDir>/<code>.safetensors`, a regular file whose
 * real path (links followed) lies inside the directory. Nothing else is ever opened.
 */
export function moduleFile(modulesDir: string, code: string): string {
  const dir = realpathSync(modulesDir);
  const notFound = () =>
    new HttpError(404, 'NOT_FOUND', `no language module '${code}' in the modules directory`, {
      field: 'code',
    });
  let real: string;
  try {
    real = realpathSync(path.join(dir, `${code}.safetensors`));
  } catch {
    throw notFound();
  }
  if (path.dirname(real) !== dir || !statSync(real).isFile()) throw notFound();
  return real;
}
