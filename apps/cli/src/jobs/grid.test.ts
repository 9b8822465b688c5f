import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { DirectoryStore, testRedis } from '@xlt/jobs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';
import { startWorkerProcess, type WorkerProcess } from './worker.test-helper.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-grid-'));
const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/bin.js');
const fixtures = sharedSkipReason('fixtures');
const redisReason = 'no redis-server installed and no XLT_REDIS_URL (Debian: apt-get install redis-server)';
let redis: Awaited<ReturnType<typeof testRedis>>;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  redis = await testRedis(4);
});
afterAll(async () => {
  for (const w of workers)
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('grid files', () => {
  it('names the cell and the key of a bad config, and rejects a bad queue (exit 2)', async () => {
    const g = path.join(dir, 'bad.yaml');
    writeFileSync(
      g,
      'cells:\n  - kind: train\n    command: finetune\n    config: { task: ner, model: m, train: t, steps: 0 }\n',
    );
    const r = await cli('grid', 'run', '--config', g, '--run-dir', path.join(dir, 'bad'));
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/cells\[0\] \(seed 0\)[\s\S]*steps:/);
    const q = await cli(
      'grid',
      'run',
      '--config',
      g,
      '--queue',
      'http://x',
      '--run-dir',
      path.join(dir, 'bad'),
    );
    expect(q.code).toBe(EXIT.usage);
    expect(q.err).toMatch(/queue: expected 'local' or redis:\/\/host:port/);
  });
});

/** 12 tiny fine-tuning cells on the fixture model: 6 seeds x 2 learning rates, 3 steps each. */
function writeGrid(): string {
  const data = path.join(dir, 'train-en.tsv');
  const sents = [
    ['Angela\tB-PER', 'Merkel\tI-PER', 'visited\tO', 'Paris\tB-LOC', '.\tO'],
    ['The\tO', 'cat\tO', 'sat\tO', '.\tO'],
  ];
  writeFileSync(
    data,
    `${Array.from({ length: 3 }, () => sents.map((s) => s.join('\n')).join('\n\n')).join('\n\n')}\n`,
  );
  const config = {
    task: 'ner',
    model: sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
    tokenizer: sharedPath('fixtures', 'tokenizer', 'tokenizer.json'),
    train: data,
    steps: 3,
    batchSize: 2,
    warmupRatio: 0,
    engine: 'tfjs',
    backend: 'cpu',
  };
  const g = path.join(dir, 'grid.json');
  writeFileSync(
    g,
    JSON.stringify({
      cells: [
        { kind: 'train', command: 'finetune', config, seeds: [0, 1, 2, 3, 4, 5], vary: { lr: [0.01, 0.03] } },
      ],
      backoffMs: 100,
    }),
  );
  return g;
}

const startWorker = (url: string) =>
  startWorkerProcess(bin, url, ['--lock-ms', '8000', '--stalled-ms', '1000'], workers);

const until = async (cond: () => boolean, ms: number, what: string) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

/** Checks a run directory: 12 committed records, each once and intact, one artifact folder per cell. */
function checkRun(runDir: string): Map<string, { result: unknown; weights: string | undefined }> {
  const files = readdirSync(path.join(runDir, 'results'));
  expect(files.filter((f) => !f.endsWith('.json'))).toEqual([]);
  expect(files).toHaveLength(12);
  const store = new DirectoryStore(runDir);
  const out = new Map<string, { result: unknown; weights: string | undefined }>();
  for (const f of files) {
    const key = f.replace(/\.json$/, '');
    const r = store.read(key);
    expect(r?.key).toBe(key);
    expect(readdirSync(path.join(runDir, 'cells', key))).toHaveLength(1);
    expect(existsSync(path.join(runDir, r?.artifactsDir ?? '', 'model', 'model.safetensors'))).toBe(true);
    out.set(key, { result: r?.result, weights: r?.artifacts['model/model.safetensors'] });
  }
  return out;
}

// each test starts Node processes: generous limits for a loaded 2-core machine
describe.skipIf(fixtures !== undefined)('a grid of 12 tiny fine-tuning cells', { timeout: 600_000 }, () => {
  let local: Map<string, { result: unknown; weights: string | undefined }>;

  it('runs in-process, prints progress over jobs, and skips finished cells when run again', async () => {
    const g = writeGrid();
    const runDir = path.join(dir, 'local');
    const r = await cli('grid', 'run', '--config', g, '--run-dir', runDir);
    expect(r.err).toBe('');
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toMatch(/\[#{20}\] 12\/12 done, 0 failed/);
    expect(r.out.match(/^job \w+ completed in \d+\.\d s$/gm)).toHaveLength(12);
    local = checkRun(runDir);
    // seeds and learning rates give different cells with different weights
    expect(new Set([...local.values()].map((v) => v.weights)).size).toBe(12);
    const again = await cli('grid', 'run', '--config', g, '--run-dir', runDir);
    expect(again.out).toMatch(/12\/12 done, 0 failed, 12 skipped/);
    expect(again.out).not.toMatch(/completed in/);
  });

  it('runs from the xlt binary with a child process per lane, with the same results', async () => {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: build the CLI first (pnpm build)`);
    const runDir = path.join(dir, 'lanes');
    const child = spawn(
      process.execPath,
      [bin, 'grid', 'run', '--config', writeGrid(), '--run-dir', runDir, '--concurrency', '2'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr?.resume();
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    expect(code).toBe(0);
    expect(out).toMatch(/12\/12 done, 0 failed/);
    expect(checkRun(runDir)).toEqual(local);
  });

  it('runs over 3 worker processes on Redis with the same results as in-process', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    if (!existsSync(bin)) throw new Error(`${bin} is missing: build the CLI first (pnpm build)`);
    const url = redis.url;
    const ws = [startWorker(url), startWorker(url), startWorker(url)];
    await until(
      () => ws.every((w) => w.out.some((l) => l.includes('serving'))),
      120_000,
      'the workers to start',
    );
    const runDir = path.join(dir, 'redis');
    const r = await cli('grid', 'run', '--config', writeGrid(), '--run-dir', runDir, '--queue', url);
    expect(r.err).toBe('');
    expect(r.code).toBe(EXIT.ok);
    expect(checkRun(runDir)).toEqual(local);
    const completed = ws.flatMap((w) => w.out.filter((l) => / completed in \d+\.\d s/.test(l)));
    expect(completed.length).toBeGreaterThanOrEqual(12);
    // SIGTERM: a worker stops taking jobs and exits cleanly
    const w0 = ws[0] as (typeof ws)[number];
    const exited = new Promise<number | null>((res) => w0.child.once('exit', (code) => res(code)));
    w0.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(w0.out.join('\n')).toMatch(/SIGTERM: finishing current cells[\s\S]*worker stopped/);
  });

  it('ends with every result once and intact when a worker is killed with SIGKILL mid-job', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    const url = redis.url;
    const ws = workers.filter((w) => w.child.exitCode === null);
    const victim = startWorker(url);
    await until(() => victim.out.some((l) => l.includes('serving')), 120_000, 'the new worker to start');
    const runDir = path.join(dir, 'killed');
    mkdirSync(runDir, { recursive: true });
    const run = cli('grid', 'run', '--config', writeGrid(), '--run-dir', runDir, '--queue', url);
    await until(() => victim.out.some((l) => / started /.test(l)), 120_000, 'the victim to start a job');
    const killedJob = /job (\S+) started/.exec(victim.out.find((l) => / started /.test(l)) ?? '')?.[1];
    victim.child.kill('SIGKILL');
    const r = await run;
    expect(r.code).toBe(EXIT.ok);
    checkRun(runDir);
    expect(victim.out.some((l) => l.startsWith(`job ${killedJob} completed`))).toBe(false);
    // another worker ran the killed job again after its lock expired
    expect(ws.some((w) => w.out.some((l) => l.startsWith(`job ${killedJob} completed`)))).toBe(true);
    const grid = JSON.parse(readFileSync(path.join(runDir, 'grid-results.json'), 'utf8'));
    expect(grid.failed).toEqual([]);
    expect(grid.cells.every((c: { result?: unknown }) => c.result !== undefined)).toBe(true);
  });
});
