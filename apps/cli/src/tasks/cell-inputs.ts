/**
 * What a grid cell's figures depend on besides its own config: the files built once per run (the
 * tokenizer, the held-out text), recorded as SHA-256 digests in `<cell>/inputs.json` when the cell
 * finishes. A long grid can then be assembled over several machines or sessions: a finished cell is
 * its folder's small files (`done.json`, `results.json`, `config.json`, `inputs.json`; not the
 * model), copied into a new run directory; the rerun rebuilds the corpus and tokenizer, skips the
 * cell, and refuses it if what it was measured on differs from what the other cells are.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, XltError, XltFormatError } from '@xlt/core';

/** The file a cell's input digests are kept in. */
export const CELL_INPUTS_FILE = 'inputs.json';

/** SHA-256 (hex) of each named file: `{ name: digest }`. */
export function inputDigests(files: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(files).map(([name, file]) => [
      name,
      createHash('sha256').update(readFileSync(file)).digest('hex'),
    ]),
  );
}

/** Records `digests` in `<dir>/inputs.json` (written atomically). */
export function recordCellInputs(dir: string, digests: Record<string, string>): void {
  writeFileAtomic(path.join(dir, CELL_INPUTS_FILE), `${JSON.stringify(digests, null, 2)}\n`);
}

/**
 * Checks a finished cell's recorded inputs against this run's `digests` (every name the cell
 * recorded must have the same digest here): `'same'`, or `'unrecorded'` for a cell from before
 * inputs were recorded. Throws an {@link XltError} naming the cell's file and the input that differs.
 */
export function checkCellInputs(cellDir: string, digests: Record<string, string>): 'same' | 'unrecorded' {
  const file = path.join(cellDir, CELL_INPUTS_FILE);
  if (!existsSync(file)) return 'unrecorded';
  let recorded: unknown;
  try {
    recorded = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new XltFormatError(`a cell's inputs file is not JSON (${(e as Error).message})`, { file });
  }
  if (typeof recorded !== 'object' || recorded === null || Array.isArray(recorded))
    throw new XltFormatError(`a cell's inputs file must hold an object of input name to SHA-256 digest`, {
      file,
    });
  for (const [name, digest] of Object.entries(recorded)) {
    const here = digests[name];
    if (here === undefined)
      throw new XltError('STATE', `the cell was measured on input "${name}", which this run does not have`, {
        file,
        field: name,
      });
    if (digest !== here)
      throw new XltError(
        'STATE',
        `the cell was measured on a different ${name} (SHA-256 ${String(digest).slice(0, 12)}…, this run's ${here.slice(0, 12)}…); its figures do not compare with this run's cells: delete ${cellDir} to run it again`,
        { file, field: name },
      );
  }
  return 'same';
}
