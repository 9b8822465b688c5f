import { fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { writeFileAtomic, XltError } from '@xlt/core';
import {
  cellKey,
  JOB_KINDS,
  progressLine,
  redactUrl,
  runGrid,
  serveForkedCells,
  startWorker,
} from '@xlt/jobs';
import { z } from 'zod';
import type { Command } from '../cli/main.js';
import { queueOption } from '../tasks/queue-runner.js';
import { expandGrid, gridFields } from './grid-file.js';
import { cliJobHandlers } from './handlers.js';

const gridRunSchema = z.strictObject({
  ...gridFields,
  queue: queueOption,
  /** In-process cells at once (default: the cores; cells that train run in child processes). */
  concurrency: z.number().int().positive().optional(),
  /** Redis mode: stop waiting after this many seconds (the jobs stay queued; re-run to resume). */
  timeoutS: z.number().positive().optional(),
});

export const gridRunCommand: Command<typeof gridRunSchema> = {
  name: 'grid run',
  summary: 'Run a grid of training / evaluation / augmentation / annotation cells, here or on Redis workers',
  help: `The config file lists cells; each entry expands to seeds x the combinations of 'vary':
  cells:
    - kind: train                 # train | evaluate | augment | annotate
      command: finetune           # the xlt command the cells run (train: finetune, pretrain, add-language, oie)
      config: { task: ner, model: /shared/models/xmod, train: /shared/data/train-en.tsv, steps: 500 }
      seeds: [1, 2, 3]
      vary: { lr: [1e-4, 3e-5] }
    - kind: annotate              # LLM annotation in slices (config as 'xlt augment llm': endpoint, languages)
      input: /shared/data/train-en.jsonl
      sliceSize: 100
      config: { endpoint: { baseUrl: http://10.0.0.5:8000/v1, model: m }, languages: [{ code: de, name: German }] }
  attempts: 3                     # executions of a cell before it is listed as failed
  backoffMs: 1000

Options:
  --queue local|redis://host:port   default local (in this process); with Redis, 'xlt worker' processes run the cells
  --concurrency N                   in-process cells at once (default: the cores; each training cell in a child process)
  --run-dir DIR                     where results go (shared by every worker); run again with the same DIR to resume
  --timeout-s S                     Redis mode: stop waiting after S seconds

Each cell's result is committed once to DIR/results/<key>.json (key = hash of its config and seed)
with checksums of its artifacts in DIR/cells/<key>/; failures go to DIR/failed/. Re-running skips
finished cells. Paths in configs are read by the workers: use paths on the shared storage.

Examples:
  xlt grid run --config grid.yaml --run-dir runs/claims
  xlt grid run --config grid.yaml --run-dir /shared/runs/claims --queue redis://10.0.0.2:6379`,
  schema: gridRunSchema,
  async run(cfg, ctx) {
    const cells = expandGrid(cfg.cells);
    // cells that train share a process badly: in-process, each lane is an 'xlt grid child' process
    const self = ctx.self;
    const lanes = cells.some((c) => c.kind !== 'annotate') && self !== undefined;
    let last = '';
    const result = await runGrid(cells, {
      runDir: ctx.runDir,
      queue: cfg.queue,
      handlers: cliJobHandlers(),
      ...(lanes
        ? { fork: () => fork(self, ['grid', 'child'], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }) }
        : {}),
      concurrency:
        cfg.concurrency ?? (lanes || cells.every((c) => c.kind === 'annotate') ? availableParallelism() : 1),
      attempts: cfg.attempts,
      backoffMs: cfg.backoffMs,
      ...(cfg.timeoutS !== undefined ? { timeoutMs: cfg.timeoutS * 1000 } : {}),
      log: ctx.log,
      onProgress: (p) => {
        const width = 20;
        const filled = p.total > 0 ? Math.round((width * (p.done + p.failed)) / p.total) : width;
        const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${progressLine(p)}`;
        if (line !== last) ctx.log(line);
        last = line;
      },
    });
    const rows = cells.map((c) => {
      const key = cellKey(c);
      const r = result.records.get(key);
      return {
        key,
        kind: c.kind,
        seed: c.seed,
        config: c.config,
        ...(r ? { result: r.result, artifacts: r.artifactsDir } : {}),
      };
    });
    writeFileAtomic(
      path.join(ctx.runDir, 'grid-results.json'),
      `${JSON.stringify({ cells: rows, failed: result.failed }, null, 2)}\n`,
    );
    ctx.log(
      `${result.records.size} cells finished, ${result.failed.length} failed; results in ${ctx.runDir}`,
    );
    for (const f of result.failed) ctx.log(`failed ${f.key} after ${f.attempts} attempts: ${f.error}`);
    if (result.unfinished.length > 0)
      throw new XltError(
        'IO',
        `${result.unfinished.length} cells not finished when waiting stopped; run again to resume`,
      );
    if (result.failed.length > 0)
      throw new XltError(
        'IO',
        `${result.failed.length} cells failed (see ${path.join(ctx.runDir, 'failed')})`,
      );
  },
};

export const gridChildCommand: Command<z.ZodObject> = {
  name: 'grid child',
  summary: "Internal: runs cells for a parent 'xlt grid run' over its IPC channel",
  help: "Started by 'xlt grid run' (one per lane); exits when the parent disconnects.",
  schema: z.strictObject({}),
  runDir: false,
  async run() {
    await serveForkedCells(cliJobHandlers());
  },
};

const workerSchema = z.strictObject({
  queue: z.string().regex(/^rediss?:\/\/.+/, 'expected redis://host:port'),
  concurrency: z.number().int().positive().default(1),
  kinds: z
    .union([z.array(z.enum(JOB_KINDS)), z.string().transform((s) => s.split(',').map((k) => k.trim()))])
    .pipe(z.array(z.enum(JOB_KINDS)).min(1))
    .default([...JOB_KINDS]),
  lockMs: z.number().int().min(1000).default(60_000),
  stalledMs: z.number().int().min(500).default(30_000),
  annotateRate: z.number().positive().optional(),
  shutdownS: z.number().positive().default(60),
  runRoot: z.union([z.string(), z.array(z.string())]).optional(),
});

export const workerCommand: Command<typeof workerSchema> = {
  name: 'worker',
  summary: 'Run grid cells from Redis (BullMQ) queues until SIGTERM; start one per machine or core',
  help: `Options:
  --queue redis://host:port     the Redis that 'xlt grid run --queue' fills
  --concurrency 1               cells at once in this process (CPU-bound cells: start one worker per core instead)
  --kinds train,evaluate        queues to serve (default: train, evaluate, annotate, augment)
  --lock-ms 60000               a cell whose worker is gone is retried after this long
  --stalled-ms 30000            how often stalled cells are looked for (the same on every worker of a Redis:
                                after any worker's check, BullMQ skips checks for that long)
  --annotate-rate N             at most N annotate slices started per second over all workers
  --run-root DIR                accept only jobs whose run directory is under DIR (repeatable)
  --shutdown-s 60               on SIGTERM, finish the current cells for up to this long, then hand them back

Logs one line per finished cell: 'job <id> completed in S s'. Workers read and write the run
directory each job names, so they need the shared storage at the same path.

Example:
  xlt worker --queue redis://10.0.0.2:6379 --concurrency 1`,
  schema: workerSchema,
  runDir: false,
  async run(cfg, ctx) {
    const worker = await startWorker({
      queue: cfg.queue,
      handlers: cliJobHandlers(),
      kinds: cfg.kinds,
      concurrency: cfg.concurrency,
      lockDurationMs: cfg.lockMs,
      stalledIntervalMs: cfg.stalledMs,
      ...(cfg.annotateRate !== undefined
        ? { annotateRate: { max: cfg.annotateRate, durationMs: 1000 } }
        : {}),
      ...(cfg.runRoot !== undefined ? { runRoots: [cfg.runRoot].flat() } : {}),
      log: ctx.log,
    });
    ctx.log(`worker ${process.pid} serving ${worker.kinds.join(', ')} from ${redactUrl(cfg.queue)}`);
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        ctx.log(
          `${signal}: finishing current cells (up to ${cfg.shutdownS} s, or a second signal hands them back)`,
        );
        const force = () => {
          ctx.log('handing the current cells back');
          void worker.close(true).then(resolve, resolve);
          setTimeout(resolve, 5000).unref(); // even if Redis does not answer
        };
        const timer = setTimeout(force, cfg.shutdownS * 1000);
        timer.unref();
        process.once('SIGTERM', force);
        process.once('SIGINT', force);
        void worker.close().then(() => {
          clearTimeout(timer);
          resolve();
        }, resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    ctx.log('worker stopped');
  },
};
