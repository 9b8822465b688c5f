import path from 'node:path';
import { Queue } from 'bullmq';
import { cellKey, type GridCell, type JobKind, sha256 } from './cell.js';
import {
  connectionOf,
  DEFAULT_ATTEMPTS,
  DEFAULT_BACKOFF_MS,
  type GridProgress,
  type RetryOptions,
} from './options.js';
import type { RunStore } from './store.js';

/** Prefix of BullMQ's Redis keys for xlt queues. */
export const DEFAULT_PREFIX = 'xlt';

/** The BullMQ queue of a kind of job. */
export const queueName = (kind: JobKind): string => `xlt-${kind}`;

/** What a queued job carries: the cell and the (shared) run directory its result goes to. */
export interface JobPayload {
  cell: GridCell;
  runDir: string;
}

/** The job id of a cell in a run: the same cell in another run directory is another job. */
export function jobIdOf(key: string, runDir: string): string {
  return `${key}-${sha256(path.resolve(runDir)).slice(0, 8)}`;
}

/** Options of a grid run over Redis. */
export interface RedisGridOptions extends RetryOptions {
  url: string;
  runDir: string;
  store: RunStore;
  prefix?: string;
  /** How often to look at the jobs' states (default 500 ms). */
  pollMs?: number;
  /** Give up waiting after this long (default: wait until every cell is done or failed). */
  timeoutMs?: number;
  onProgress?: (p: GridProgress) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Enqueues the cells that have no committed result yet (a job per cell, its id derived from the
 * cell's key and the run directory, so enqueueing twice adds nothing) and waits until each has a
 * result or has failed its last attempt. Cells finished earlier are skipped; a failed one is retried.
 */
export async function runRedisGrid(
  cells: readonly GridCell[],
  opts: RedisGridOptions,
): Promise<GridProgress> {
  const connection = connectionOf(opts.url);
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const runDir = path.resolve(opts.runDir);
  const attempts = opts.attempts ?? DEFAULT_ATTEMPTS;
  const queues = new Map<JobKind, Queue>();
  const queueOf = (kind: JobKind) => {
    let q = queues.get(kind);
    if (q === undefined) {
      q = new Queue(queueName(kind), { connection, prefix });
      queues.set(kind, q);
    }
    return q;
  };
  const progress: GridProgress = { total: cells.length, done: 0, failed: 0, skipped: 0 };
  try {
    const pending = new Map<string, GridCell>();
    const add = async (cell: GridCell, id: string) => {
      await queueOf(cell.kind).add(cell.kind, { cell, runDir } satisfies JobPayload, {
        jobId: id,
        attempts,
        backoff: { type: 'exponential', delay: opts.backoffMs ?? DEFAULT_BACKOFF_MS },
        removeOnComplete: true,
        removeOnFail: false,
      });
    };
    for (const cell of cells) {
      const key = cellKey(cell);
      if (opts.store.read(key) !== undefined) {
        progress.done++;
        progress.skipped++;
        continue;
      }
      const id = jobIdOf(key, runDir);
      if (pending.has(id)) continue;
      pending.set(id, cell);
      opts.store.clearFailure(key);
      const existing = await queueOf(cell.kind).getJob(id);
      const state = existing ? await existing.getState() : 'unknown';
      // a job that failed before, or completed without a result here (removed since), runs again
      if (existing && (state === 'failed' || state === 'completed')) await existing.remove();
      if (!existing || state === 'failed' || state === 'completed' || state === 'unknown')
        await add(cell, id);
    }
    progress.total = progress.skipped + pending.size;
    opts.onProgress?.({ ...progress });
    const deadline = opts.timeoutMs !== undefined ? Date.now() + opts.timeoutMs : Number.POSITIVE_INFINITY;
    while (pending.size > 0) {
      if (Date.now() > deadline) break;
      await sleep(opts.pollMs ?? 500);
      let changed = false;
      for (const [id, cell] of [...pending]) {
        const key = cellKey(cell);
        if (opts.store.read(key) !== undefined) {
          pending.delete(id);
          progress.done++;
          changed = true;
          continue;
        }
        const job = await queueOf(cell.kind).getJob(id);
        const state = job ? await job.getState() : 'unknown';
        if (job && state === 'failed') {
          pending.delete(id);
          progress.failed++;
          changed = true;
          if (!opts.store.failed().some((f) => f.key === key))
            opts.store.fail({ key, cell, error: job.failedReason ?? 'failed', attempts: job.attemptsMade });
        } else if (!job || state === 'unknown') {
          // removed from Redis (e.g. completed, but its result is not visible here yet): look again
          if (opts.store.read(key) === undefined) await add(cell, id);
        }
      }
      if (changed) opts.onProgress?.({ ...progress });
    }
    return progress;
  } finally {
    await Promise.all([...queues.values()].map((q) => q.close()));
  }
}
