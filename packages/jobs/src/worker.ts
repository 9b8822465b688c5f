import { existsSync } from 'node:fs';
import path from 'node:path';
import { XltConfigError } from '@xlt/core';
import { type Job, UnrecoverableError, Worker } from 'bullmq';
import { cellKey, checkCell, JOB_KINDS, type JobHandlers, type JobKind } from './cell.js';
import { executeCell } from './execute.js';
import { connectionOf } from './options.js';
import { DEFAULT_PREFIX, type JobPayload, queueName } from './redis-grid.js';
import { DirectoryStore, type RunStore } from './store.js';

/** Options of a worker process that serves xlt queues. */
export interface WorkerOptions {
  /** `redis://host:port`. */
  queue: string;
  handlers: JobHandlers;
  /** Kinds to serve (default: every kind with a handler). */
  kinds?: readonly JobKind[];
  /** Jobs in flight per kind (default 1). */
  concurrency?: number;
  /** A job whose worker has not renewed its lock for this long is handed to another (default 60,000). */
  lockDurationMs?: number;
  /**
   * How often stalled jobs are looked for (default 30,000). Give every worker of a Redis the same value:
   * after any worker's check, BullMQ skips checks for that long.
   */
  stalledIntervalMs?: number;
  /** Times a job may stall before it fails (default 2). */
  maxStalledCount?: number;
  /** Rate limit of `annotate` jobs over all workers: at most `max` started per `durationMs`. */
  annotateRate?: { max: number; durationMs: number };
  prefix?: string;
  /** Accept only jobs whose run directory lies under one of these folders (default: any). */
  runRoots?: readonly string[];
  /** The store of a job's run directory (default: a {@link DirectoryStore} on that path). */
  storeFor?: (runDir: string) => RunStore;
  log?: (line: string) => void;
}

function isUnder(dir: string, root: string): boolean {
  const rel = path.relative(path.resolve(root), path.resolve(dir));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** A running worker. */
export interface XltWorker {
  readonly kinds: readonly JobKind[];
  /**
   * Stops taking jobs and waits for the current ones to finish; with `force`, returns at once and
   * the current jobs are handed back (another worker takes them when their lock expires).
   */
  close(force?: boolean): Promise<void>;
}

/**
 * Starts BullMQ workers for the given kinds. Each job runs {@link executeCell} against the run
 * directory it names (a path every worker must see); the worker logs `job <id> completed in S s`.
 * A job that fails its last attempt is written to the run's dead-letter list with its error.
 */
export async function startWorker(opts: WorkerOptions): Promise<XltWorker> {
  const connection = connectionOf(opts.queue);
  const log = opts.log ?? (() => {});
  const kinds = (opts.kinds ?? JOB_KINDS).filter((k) => opts.handlers[k] !== undefined);
  if (kinds.length === 0)
    throw new XltConfigError(`no handler for any of the kinds ${(opts.kinds ?? JOB_KINDS).join(', ')}`, {
      field: 'kinds',
    });
  const storeFor = opts.storeFor ?? ((runDir: string) => new DirectoryStore(runDir));
  const runJob = async (job: Job<JobPayload>) => {
    const { runDir } = job.data;
    const cell = checkCell(job.data.cell, `job ${job.id}`);
    if (typeof runDir !== 'string' || (opts.storeFor === undefined && !existsSync(runDir)))
      throw new XltConfigError(
        `job ${job.id}: run directory ${String(runDir)} does not exist here (workers need the shared storage at the same path)`,
        { field: 'runDir' },
      );
    if (opts.runRoots !== undefined && !opts.runRoots.some((root) => isUnder(runDir, root)))
      throw new UnrecoverableError(
        `job ${job.id}: run directory ${runDir} is outside this worker's run roots (${opts.runRoots.join(', ')})`,
      );
    log(`job ${job.id} started (${cell.kind}, attempt ${job.attemptsMade + 1})`);
    const t0 = performance.now();
    const { reused } = await executeCell(cell, storeFor(runDir), opts.handlers, log, opts.queue);
    log(
      `job ${job.id} completed in ${((performance.now() - t0) / 1000).toFixed(1)} s${reused ? ' (result already committed)' : ''}`,
    );
    return { key: cellKey(cell) };
  };
  const workers = kinds.map((kind) => {
    const w = new Worker<JobPayload>(queueName(kind), runJob, {
      connection,
      prefix: opts.prefix ?? DEFAULT_PREFIX,
      concurrency: opts.concurrency ?? 1,
      lockDuration: opts.lockDurationMs ?? 60_000,
      stalledInterval: opts.stalledIntervalMs ?? 30_000,
      maxStalledCount: opts.maxStalledCount ?? 2,
      ...(kind === 'annotate' && opts.annotateRate
        ? { limiter: { max: opts.annotateRate.max, duration: opts.annotateRate.durationMs } }
        : {}),
    });
    w.on('failed', (job, err) => {
      if (job === undefined) return;
      const last = err instanceof UnrecoverableError || job.attemptsMade >= (job.opts.attempts ?? 1);
      log(
        `job ${job.id} ${last ? 'failed' : `attempt ${job.attemptsMade} failed, will retry`}: ${err.message}`,
      );
      if (!last) return;
      try {
        const cell = checkCell(job.data.cell, `job ${job.id}`);
        storeFor(job.data.runDir).fail({
          key: cellKey(cell),
          cell,
          error: err.message,
          attempts: job.attemptsMade,
        });
      } catch (e) {
        log(`job ${job.id}: could not record the failure: ${(e as Error).message}`);
      }
    });
    w.on('error', (err) => log(`worker error (${kind}): ${err.message}`));
    return w;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  return {
    kinds,
    async close(force = false) {
      await Promise.all(workers.map((w) => w.close(force)));
    },
  };
}
