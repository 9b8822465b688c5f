import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedSkipReason } from '@xlt/core';
import { testRedis } from '@xlt/jobs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { startWorkerProcess, type WorkerProcess } from '../jobs/worker.test-helper.js';
import { cli } from '../test-cli.js';

const skip = sharedSkipReason('data', 'panx');
const redisReason = 'no redis-server installed and no XLT_REDIS_URL (Debian: apt-get install redis-server)';
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-experiment-queue-'));
const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/bin.js');
let redis: Awaited<ReturnType<typeof testRedis>>;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  redis = await testRedis(7);
});
afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

// 2 languages (1 and 2 of them), both architectures, one seed, 4 steps each: 4 models
const tiny = [
  '--languages',
  '["en","ru"]',
  '--vocab-size',
  '1000',
  '--hidden-size',
  '32',
  '--layers',
  '1',
  '--pretrain-steps',
  '4',
  '--pretrain-batch-size',
  '4',
  '--block-size',
  '32',
  '--max-sentences-per-language',
  '200',
  '--seeds',
  '1',
  '--threads',
  '1',
];

const startWorker = (url: string) => startWorkerProcess(bin, url, [], workers);

/** The experiment's results without wall times (which differ from run to run). */
function results(run: string): unknown {
  const r = JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8'));
  return { ...r, cells: r.cells.map(({ seconds: _, ...c }: { seconds: number }) => c) };
}

const completed = () => workers.flatMap((w) => w.out.filter((l) => / completed in \d+\.\d s/.test(l))).length;

describe.skipIf(skip !== undefined)(
  'xlt experiment xmod-curse --queue redis://',
  { timeout: 1_200_000 },
  () => {
    const local = path.join(dir, 'local');
    const queued = path.join(dir, 'queued');

    it('runs its models as jobs on 2 worker processes with the results of an in-process run', async (t) => {
      if (redis === undefined) return t.skip(redisReason);
      if (!existsSync(bin)) throw new Error(`${bin} is missing: build the CLI first (pnpm build)`);
      const url = redis.url;
      const ws = [startWorker(url), startWorker(url)];
      let t0 = performance.now();
      const here = await cli('experiment', 'xmod-curse', ...tiny, '--run-dir', local);
      const inProcessS = (performance.now() - t0) / 1000;
      if (here.code !== EXIT.ok) console.error(here.out, here.err);
      expect(here.code).toBe(EXIT.ok);
      t0 = performance.now();
      const r = await cli('experiment', 'xmod-curse', ...tiny, '--queue', url, '--run-dir', queued);
      console.log(
        `[experiment --queue] 4 tiny models: in-process ${inProcessS.toFixed(1)} s, on 2 workers ${((performance.now() - t0) / 1000).toFixed(1)} s (corpus and tokenizer included in both)`,
      );
      if (r.code !== EXIT.ok)
        console.error(
          r.out,
          r.err,
          ws.map((w) => w.out.join('\n')),
        );
      expect(r.code).toBe(EXIT.ok);
      expect(r.out).toMatch(/4 models as jobs on redis:\/\/127\.0\.0\.1:\d+\/7/);
      expect(r.out).toMatch(/\[#{20}\] 4\/4 queued steps done/);
      expect(r.out).not.toMatch(/\[pretrain\] step/);
      expect(completed()).toBe(4);
      expect(results(queued)).toEqual(results(local));
      // each model folder holds what the worker wrote (linked from the committed cell)
      const cfg = JSON.parse(
        readFileSync(path.join(queued, 'pretrain-xmod-02lang-seed0', 'model', 'config.json'), 'utf8'),
      );
      expect(cfg.languages).toEqual(['en', 'ru']);
      expect(existsSync(path.join(queued, 'results'))).toBe(true);
    });

    it('a re-run enqueues nothing finished: a model whose step was lost is taken from the committed cell', async (t) => {
      if (redis === undefined) return t.skip(redisReason);
      const before = readFileSync(path.join(queued, 'results.json'), 'utf8');
      const jobs = completed();
      // as if the command had been stopped after the worker committed the cell, before the step was recorded
      rmSync(path.join(queued, 'pretrain-shared-02lang-seed0'), { recursive: true });
      const r = await cli('experiment', 'xmod-curse', ...tiny, '--queue', redis.url, '--run-dir', queued);
      expect(r.code).toBe(EXIT.ok);
      expect(r.out.match(/done before, skipped/g)?.length).toBe(5);
      expect(r.out).toMatch(/\[#{20}\] 1\/1 queued steps done/);
      expect(completed()).toBe(jobs);
      expect(results(queued)).toEqual(results(local));
      expect(
        JSON.parse(readFileSync(path.join(queued, 'results.json'), 'utf8')).cells.map(
          (c: { heldOut: unknown }) => c.heldOut,
        ),
      ).toEqual(JSON.parse(before).cells.map((c: { heldOut: unknown }) => c.heldOut));
    });

    it('rejects a queue that is not a Redis URL as a usage error', async () => {
      const r = await cli(
        'experiment',
        'xmod-curse',
        '--queue',
        'http://x',
        '--run-dir',
        path.join(dir, 'bad'),
      );
      expect(r.code).toBe(EXIT.usage);
      expect(r.err).toMatch(/queue: expected 'local' or redis:\/\/host:port/);
    });
  },
);
