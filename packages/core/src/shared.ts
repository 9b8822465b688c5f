import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Finds the root of the xlt repository (the folder with `pnpm-workspace.yaml`) by walking up from
 * `start` (default: the current directory). Returns undefined outside a checkout.
 */
export function findRepoRoot(start: string = process.cwd()): string | undefined {
  let dir = path.resolve(start);
  for (;;) {
    if (existsSync(path.join(dir, 'pnpm-workspace.yaml'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

/**
 * The shared reference folder (fixtures and data) used by tests and benchmarks: `XLT_SHARED_DIR`
 * when set, else `../shared` beside the repository root. Returns the path whether or not it exists;
 * see {@link hasSharedDir}.
 */
export function sharedDir(): string {
  const env = process.env.XLT_SHARED_DIR;
  if (env !== undefined && env !== '') return path.resolve(env);
  const root = findRepoRoot() ?? process.cwd();
  return path.resolve(root, '..', 'shared');
}

/** A path inside the shared folder, e.g. `sharedPath('fixtures', 'tokenizer', 'tokenizer.json')`. */
export function sharedPath(...parts: string[]): string {
  return path.join(sharedDir(), ...parts);
}

/** True when the shared folder (or the given path inside it) exists. */
export function hasSharedDir(...parts: string[]): boolean {
  return existsSync(sharedPath(...parts));
}

/**
 * The message tests print when they skip because shared/ is absent, or undefined when it is there.
 * Use as `describe.skipIf(sharedSkipReason('fixtures') !== undefined)`.
 */
export function sharedSkipReason(...parts: string[]): string | undefined {
  if (hasSharedDir(...parts)) return undefined;
  return `skipped: ${sharedPath(...parts)} not found (set XLT_SHARED_DIR to the shared/ folder with fixtures and data)`;
}
