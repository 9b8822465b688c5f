import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cellKey, type GridCell, type JobHandlers } from './cell.js';
import { runGrid } from './grid.js';
import { testRedis } from './redis-server.js';
import { DirectoryStore } from './store.js';
import { startWorker } from './worker.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-jobs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A deterministic CPU-bound "training": a seeded walk whose end value depends on config and seed. */
const handlers: JobHandlers = {
  train: async (cell, ctx) => {
    const steps = cell.config.steps as number;
    let x = cell.seed + 1;
    for (let i = 0; i < steps * 1000; i++) x = (x * 1103515245 + 12345) % 2147483648;
    if (cell.config.fail === true) throw new Error(`cell ${cell.seed} always fails`);
    writeFileSync(path.join(ctx.workDir, 'weights.txt'), `${x}\n`);
    return { final: x, lr: cell.config.lr as number };
  },
};
const cells: GridCell[] = [0, 1, 2].flatMap((seed) =>
  [0.1, 0.01].map((lr) => ({ kind: 'train' as const, seed, config: { steps: 5, lr } })),
);

describe('cell keys and the run directory', () => {
  it('gives a key that ignores object key order and changes with config or seed', () => {
    const a = cellKey({ kind: 'train', seed: 1, config: { lr: 1, steps: 2 } });
    expect(cellKey({ kind: 'train', seed: 1, config: { steps: 2, lr: 1 } })).toBe(a);
    expect(cellKey({ kind: 'train', seed: 2, config: { steps: 2, lr: 1 } })).not.toBe(a);
    expect(cellKey({ kind: 'evaluate', seed: 1, config: { steps: 2, lr: 1 } })).not.toBe(a);
  });

  it('commits a result once (first writer wins) and rejects a record that fails its checksum', () => {
    const store = new DirectoryStore(path.join(dir, 'store'));
    const cell = cells[0] as GridCell;
    const key = cellKey(cell);
    const base = { key, cell, artifacts: {}, seconds: 1 };
    const first = store.commit({ ...base, result: 1, artifactsDir: 'cells/a' });
    const second = store.commit({ ...base, result: 2, artifactsDir: 'cells/b' });
    expect(second).toEqual(first);
    expect(readdirSync(path.join(dir, 'store', 'results'))).toEqual([`${key}.json`]);
    const file = path.join(dir, 'store', 'results', `${key}.json`);
    writeFileSync(file, readFileSync(file, 'utf8').replace('"result": 1', '"result": 3'));
    expect(() => store.read(key)).toThrow(/fails its checksum/);
  });
});

describe('in-process grid', () => {
  it('runs every cell, retries then lists a failing one with its error, and resumes', async () => {
    const runDir = path.join(dir, 'local');
    const bad: GridCell = { kind: 'train', seed: 9, config: { steps: 1, lr: 1, fail: true } };
    const lines: string[] = [];
    const r = await runGrid([...cells, bad], {
      runDir,
      handlers,
      attempts: 2,
      backoffMs: 10,
      log: (l) => lines.push(l),
    });
    expect(r.records.size).toBe(cells.length);
    expect(r.failed.map((f) => [f.key, f.error, f.attempts])).toEqual([
      [cellKey(bad), 'cell 9 always fails', 2],
    ]);
    expect(lines.filter((l) => /^job \w+ completed in \d+\.\d s$/.test(l))).toHaveLength(cells.length);
    const again = await runGrid(cells, { runDir, handlers });
    expect(again.progress).toMatchObject({ total: cells.length, done: cells.length, skipped: cells.length });
  });
});

const redisReason = 'no redis-server installed and no XLT_REDIS_URL (Debian: apt-get install redis-server)';
let redis: Awaited<ReturnType<typeof testRedis>>;
beforeAll(async () => {
  redis = await testRedis(1);
  if (redis === undefined) console.warn(`skipping the Redis tests: ${redisReason}`);
});
afterAll(async () => redis?.stop());

describe('grid over Redis (BullMQ workers)', () => {
  it('gives the same records as the in-process pool, lists failures, and skips finished cells on a re-run', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    const url = redis.url;
    const log: string[] = [];
    const workers = await Promise.all(
      [0, 1].map(() => startWorker({ queue: url, handlers, concurrency: 2, log: (l) => log.push(l) })),
    );
    try {
      const runDir = path.join(dir, 'redis');
      const bad: GridCell = { kind: 'train', seed: 8, config: { steps: 1, lr: 1, fail: true } };
      const r = await runGrid([...cells, bad], { runDir, queue: url, attempts: 2, backoffMs: 10 });
      const local = await runGrid(cells, { runDir: path.join(dir, 'local2'), handlers });
      expect(r.records.size).toBe(cells.length);
      for (const [key, rec] of local.records) {
        expect(r.records.get(key)?.result).toEqual(rec.result);
        expect(r.records.get(key)?.artifacts).toEqual(rec.artifacts);
      }
      expect(r.failed).toHaveLength(1);
      expect(r.failed[0]?.error).toBe('cell 8 always fails');
      expect(log.filter((l) => / completed in \d+\.\d s/.test(l))).toHaveLength(cells.length);
      const again = await runGrid(cells, { runDir, queue: url });
      expect(again.progress.skipped).toBe(cells.length);
      // a worker confined to other run roots fails such a job at once, without retries
      await Promise.all(workers.splice(0).map((w) => w.close()));
      workers.push(await startWorker({ queue: url, handlers, runRoots: [path.join(dir, 'elsewhere')] }));
      const outside = await runGrid([{ kind: 'train', seed: 7, config: { steps: 1, lr: 1 } }], {
        runDir: path.join(dir, 'outside'),
        queue: url,
        attempts: 3,
      });
      expect(outside.failed[0]?.error).toMatch(/outside this worker's run roots/);
      expect(outside.failed[0]?.attempts).toBe(1);
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
  });

  it('on close() finishes the current job; on close(true) hands it back to another worker', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    // a database of its own: BullMQ skips stalled checks for a while after any worker's check, and
    // the workers above check every 30 s
    const url = redis.url.replace(/\/\d+$/, '/5');
    let release: () => void = () => {};
    const started: string[] = [];
    const slow: JobHandlers = {
      train: async (cell) => {
        started.push(`seed ${cell.seed}`);
        if (cell.seed === 1) await new Promise<void>((r) => (release = r));
        return { seed: cell.seed };
      },
    };
    const fast = { lockDurationMs: 1500, stalledIntervalMs: 300 };
    const until = async (cond: () => boolean) => {
      for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
      expect(cond()).toBe(true);
    };
    // graceful: close() waits for the job in flight, whose result is committed
    const a = await startWorker({ queue: url, handlers: slow, ...fast });
    const runA = runGrid([{ kind: 'train', seed: 1, config: { steps: 1 } }], {
      runDir: path.join(dir, 'graceful'),
      queue: url,
    });
    await until(() => started.length >= 1);
    let closed = false;
    const closing = a.close().then(() => {
      closed = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(closed).toBe(false);
    release();
    await closing;
    expect((await runA).records.size).toBe(1);
    // forced: close(true) returns at once; another worker takes the job when its lock expires
    started.length = 0;
    const b = await startWorker({ queue: url, handlers: slow, ...fast });
    const runB = runGrid([{ kind: 'train', seed: 1, config: { steps: 1 } }], {
      runDir: path.join(dir, 'forced'),
      queue: url,
    });
    await until(() => started.length >= 1);
    const firstRelease = release;
    await b.close(true);
    const c = await startWorker({ queue: url, handlers: slow, ...fast });
    await until(() => started.length >= 2);
    release();
    const r = await runB;
    expect(r.records.size).toBe(1);
    firstRelease();
    await c.close();
  });
});
