import { availableParallelism } from 'node:os';
import { cellKey, type GridCell, type JobHandlers } from './cell.js';
import { executeCell } from './execute.js';
import type { CellRunner } from './fork-pool.js';
import { DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_MS, type GridProgress, type RetryOptions } from './options.js';
import type { RunStore } from './store.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Options of the in-process pool. */
export interface LocalPoolOptions extends RetryOptions {
  store: RunStore;
  handlers: JobHandlers;
  /** Cells in flight at once (default: the number of cores). */
  concurrency?: number;
  onProgress?: (p: GridProgress) => void;
  log?: (line: string) => void;
  /** Runs cells elsewhere (e.g. {@link forkedCellRunner}: a child process per lane) instead of in this process. */
  runner?: CellRunner;
}

/**
 * Runs cells in this process with at most `concurrency` in flight, retrying failures with backoff;
 * a cell that fails every attempt goes to the store's dead-letter list. In this process, cells are
 * async functions: I/O-bound ones (LLM annotation) overlap, CPU-bound ones share the process; with
 * a `runner` from {@link forkedCellRunner}, each lane is a child process (one per core).
 */
export async function runLocalPool(
  cells: readonly GridCell[],
  opts: LocalPoolOptions,
): Promise<GridProgress> {
  const attempts = opts.attempts ?? DEFAULT_ATTEMPTS;
  const backoff = opts.backoffMs ?? DEFAULT_BACKOFF_MS;
  const log = opts.log ?? (() => {});
  const progress: GridProgress = { total: cells.length, done: 0, failed: 0, skipped: 0 };
  const pending: GridCell[] = [];
  for (const c of cells) {
    if (opts.store.read(cellKey(c)) !== undefined) {
      progress.done++;
      progress.skipped++;
    } else pending.push(c);
  }
  opts.onProgress?.({ ...progress });
  let next = 0;
  const lane = async () => {
    while (next < pending.length) {
      const cell = pending[next++] as GridCell;
      const key = cellKey(cell);
      opts.store.clearFailure(key);
      for (let attempt = 1; ; attempt++) {
        const t0 = performance.now();
        try {
          if (opts.runner !== undefined) await opts.runner.run(cell);
          else await executeCell(cell, opts.store, opts.handlers, log);
          log(`job ${key} completed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
          progress.done++;
          break;
        } catch (e) {
          const error = e instanceof Error ? e.message : String(e);
          if (attempt >= attempts) {
            opts.store.fail({ key, cell, error, attempts: attempt });
            log(`job ${key} failed after ${attempt} attempts: ${error}`);
            progress.failed++;
            break;
          }
          log(`job ${key} attempt ${attempt} failed (${error}); retrying`);
          await sleep(backoff * 2 ** (attempt - 1));
        }
      }
      opts.onProgress?.({ ...progress });
    }
  };
  const n = Math.max(1, Math.min(opts.concurrency ?? availableParallelism(), pending.length));
  await Promise.all(Array.from({ length: n }, lane));
  return progress;
}
