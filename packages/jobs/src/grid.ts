import type { ChildProcess } from 'node:child_process';
import { cellKey, type GridCell, type JobHandlers } from './cell.js';
import { forkedCellRunner } from './fork-pool.js';
import { runLocalPool } from './local.js';
import { type GridProgress, parseRedisUrl, type RetryOptions } from './options.js';
import { runRedisGrid } from './redis-grid.js';
import { type CellRecord, DirectoryStore, type FailedCell, type RunStore } from './store.js';

/** Options of {@link runGrid}. */
export interface RunGridOptions extends RetryOptions {
  /** The run directory (shared by every worker in Redis mode). */
  runDir: string;
  /** `local` (default: an in-process pool) or `redis://host:port` (workers run the jobs). */
  queue?: 'local' | string;
  /** Handlers for the in-process pool (workers bring their own in Redis mode). */
  handlers?: JobHandlers;
  /** In-process mode: start a child process per lane (it calls `serveForkedCells`) instead of running cells here. */
  fork?: () => ChildProcess;
  /** Cells in flight in the in-process pool (default: the number of cores). */
  concurrency?: number;
  /** Another store than the run directory (e.g. object storage). */
  store?: RunStore;
  onProgress?: (p: GridProgress) => void;
  log?: (line: string) => void;
  /** Redis mode: stop waiting after this long (the jobs stay queued; re-run to resume). */
  timeoutMs?: number;
}

/** What a grid run ended with: a record per finished cell (in input order) and the dead-letter list. */
export interface GridResult {
  progress: GridProgress;
  /** By cell key; a cell listed twice in the input has one record. */
  records: Map<string, CellRecord>;
  failed: FailedCell[];
  /** Cells neither finished nor failed (only when waiting timed out). */
  unfinished: GridCell[];
}

/**
 * Runs a grid of cells, in-process or through Redis workers, and returns their records. Resumable:
 * cells with a committed result are skipped; the same cells give the same keys and the same results
 * in either mode.
 */
export async function runGrid(cells: readonly GridCell[], opts: RunGridOptions): Promise<GridResult> {
  const store = opts.store ?? new DirectoryStore(opts.runDir);
  const queue = opts.queue ?? 'local';
  const common = {
    store,
    ...(opts.attempts !== undefined ? { attempts: opts.attempts } : {}),
    ...(opts.backoffMs !== undefined ? { backoffMs: opts.backoffMs } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  };
  const runner =
    queue === 'local' && opts.fork !== undefined
      ? forkedCellRunner(opts.fork, opts.runDir, opts.log)
      : undefined;
  let progress: GridProgress;
  try {
    progress =
      queue === 'local'
        ? await runLocalPool(cells, {
            ...common,
            handlers: opts.handlers ?? {},
            ...(runner ? { runner } : {}),
            ...(opts.concurrency !== undefined ? { concurrency: opts.concurrency } : {}),
            ...(opts.log ? { log: opts.log } : {}),
          })
        : await runRedisGrid(cells, {
            ...common,
            url: parseRedisUrl(queue),
            runDir: opts.runDir,
            ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
          });
  } finally {
    await runner?.close();
  }
  const records = new Map<string, CellRecord>();
  const unfinished: GridCell[] = [];
  const failedKeys = new Set(store.failed().map((f) => f.key));
  const failed: FailedCell[] = [];
  for (const cell of cells) {
    const key = cellKey(cell);
    if (records.has(key)) continue;
    const r = store.read(key);
    if (r !== undefined) {
      records.set(key, r);
      store.prune(key);
    } else if (!failedKeys.has(key)) unfinished.push(cell);
  }
  for (const f of store.failed()) if (!records.has(f.key)) failed.push(f);
  return { progress, records, failed, unfinished };
}
