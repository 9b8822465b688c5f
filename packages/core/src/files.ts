import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { XltError } from './errors.js';

/**
 * Writes `data` (a string, bytes, or a list of byte chunks written in order) to `file` atomically:
 * to a temp file beside it, flushed, then renamed over `file`. On failure the temp file is removed
 * and `file` is left as it was. Missing parent folders are created.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  const chunks =
    typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
  const tmp = `${file}.tmp-${process.pid}-${Date.now().toString(36)}`;
  let fd: number | null = null;
  try {
    mkdirSync(dirname(file), { recursive: true });
    fd = openSync(tmp, 'w');
    for (const c of chunks) {
      let off = 0;
      while (off < c.byteLength) off += writeSync(fd, c, off, Math.min(c.byteLength - off, 1 << 30));
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = null;
    renameSync(tmp, file);
  } catch (cause) {
    if (fd !== null) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file was never created
    }
    if (cause instanceof XltError) throw cause;
    throw new XltError('IO', `writing failed: ${(cause as Error).message}`, { file, cause });
  }
}
