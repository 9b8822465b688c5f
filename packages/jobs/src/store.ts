import {
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, XltFormatError } from '@xlt/core';
import { canonicalJson, type GridCell, type Json, sha256 } from './cell.js';

/** A finished cell as stored: its result, its artifacts with checksums, and a checksum of the whole. */
export interface CellRecord {
  key: string;
  cell: GridCell;
  result: Json;
  /** Folder of the artifacts, relative to the run directory. */
  artifactsDir: string;
  /** SHA-256 of each artifact, by path relative to `artifactsDir`. */
  artifacts: Record<string, string>;
  seconds: number;
  /** SHA-256 of the canonical JSON of every other field. */
  sha256: string;
}

/** A cell given up after its last attempt (the dead-letter list). */
export interface FailedCell {
  key: string;
  cell: GridCell;
  error: string;
  attempts: number;
}

/**
 * Where results and artifacts go. {@link DirectoryStore} is a folder that every worker sees (a local
 * disk, NFS, a mounted bucket); an object store can implement the same interface.
 */
export interface RunStore {
  /** The committed record of a cell, or undefined. */
  read(key: string): CellRecord | undefined;
  /** A fresh, empty folder for one attempt's artifacts (a local path the handler writes into). */
  attemptDir(key: string, attempt: string): string;
  /** Commits a record unless one exists; returns the record that won (first writer wins). */
  commit(record: Omit<CellRecord, 'sha256'>): CellRecord;
  /** Records a cell given up, with its error. */
  fail(failed: FailedCell): void;
  /** The dead-letter list. */
  failed(): FailedCell[];
  /** Forgets a failure (before a retry). */
  clearFailure(key: string): void;
  /** Removes attempt folders that no committed record points to; returns how many. */
  prune(key: string): number;
}

const recordSum = (r: Omit<CellRecord, 'sha256'>) => sha256(canonicalJson(r));

/** SHA-256 of every file under `dir`, by relative path with `/` separators (sorted). */
export function checksumTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const full = path.join(d, name);
      const r = rel === '' ? name : `${rel}/${name}`;
      if (statSync(full).isDirectory()) walk(full, r);
      else out[r] = sha256(readFileSync(full));
    }
  };
  walk(dir, '');
  return out;
}

/**
 * A run directory: `results/<key>.json` (one committed record per cell, written once with a hard
 * link from a complete temp file, so it is never torn nor written twice), `cells/<key>/<attempt>/`
 * (artifacts of each attempt) and `failed/<key>.json` (the dead-letter list).
 */
export class DirectoryStore implements RunStore {
  constructor(readonly runDir: string) {
    mkdirSync(path.join(runDir, 'results'), { recursive: true });
  }

  private resultFile(key: string): string {
    return path.join(this.runDir, 'results', `${key}.json`);
  }

  read(key: string): CellRecord | undefined {
    const file = this.resultFile(key);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return undefined;
    }
    let r: CellRecord;
    try {
      r = JSON.parse(text) as CellRecord;
    } catch (cause) {
      throw new XltFormatError('result record is not JSON', { file, cause });
    }
    const { sha256: sum, ...rest } = r;
    if (sum !== recordSum(rest) || r.key !== key)
      throw new XltFormatError(`result record fails its checksum (expected key ${key})`, { file });
    return r;
  }

  attemptDir(key: string, attempt: string): string {
    const dir = path.join(this.runDir, 'cells', key, attempt);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    return dir;
  }

  commit(record: Omit<CellRecord, 'sha256'>): CellRecord {
    const full: CellRecord = { ...record, sha256: recordSum(record) };
    const file = this.resultFile(record.key);
    const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    writeFileAtomic(tmp, `${JSON.stringify(full, null, 2)}\n`);
    try {
      linkSync(tmp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      unlinkSync(tmp);
    }
    return this.read(record.key) as CellRecord;
  }

  fail(failed: FailedCell): void {
    writeFileAtomic(
      path.join(this.runDir, 'failed', `${failed.key}.json`),
      `${JSON.stringify(failed, null, 2)}\n`,
    );
  }

  failed(): FailedCell[] {
    const dir = path.join(this.runDir, 'failed');
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as FailedCell);
  }

  clearFailure(key: string): void {
    rmSync(path.join(this.runDir, 'failed', `${key}.json`), { force: true });
  }

  prune(key: string): number {
    const dir = path.join(this.runDir, 'cells', key);
    if (!existsSync(dir)) return 0;
    const keep = this.read(key)?.artifactsDir;
    let n = 0;
    for (const a of readdirSync(dir)) {
      if (keep !== undefined && path.join('cells', key, a) === keep) continue;
      rmSync(path.join(dir, a), { recursive: true, force: true });
      n++;
    }
    return n;
  }
}
