import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { SourceExample } from '@xlt/augment';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { annotateHandler, annotationCells } from './annotate.js';
import { type FakeLlm, sentenceOf, startFakeLlm } from './fake-llm.test-helper.js';
import { runGrid } from './grid.js';
import { localRateLimiter } from './rate.js';
import { testRedis } from './redis-server.js';
import { startWorker } from './worker.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-jobs-annotate-'));
const redisReason = 'no redis-server installed and no XLT_REDIS_URL (Debian: apt-get install redis-server)';
let redis: Awaited<ReturnType<typeof testRedis>>;
let fake: FakeLlm;
beforeAll(async () => {
  redis = await testRedis(2);
  fake = await startFakeLlm({ errorRate: 0.3, seed: 7 });
});
afterAll(async () => {
  await fake.close();
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const examples: SourceExample[] = Array.from({ length: 40 }, (_, i) => ({
  id: `s${i}`,
  sentence: sentenceOf(i),
  spans: [
    { label: 'arg0', text: 'Sentence' },
    { label: 'rel', text: 'is' },
  ],
}));

/** Every (id, lang) pair either kept or listed as rejected in some cell's artifacts, or in a failed cell. */
function accountedPairs(r: Awaited<ReturnType<typeof runGrid>>, runDir: string) {
  const kept = new Set<string>();
  const rejected = new Map<string, string>();
  for (const rec of r.records.values()) {
    const d = path.join(runDir, rec.artifactsDir);
    const lines = (f: string) =>
      existsSync(f)
        ? readFileSync(f, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
            .map((l) => JSON.parse(l))
        : [];
    for (const k of lines(path.join(d, 'annotated.jsonl'))) kept.add(`${k.id}/${k.lang}`);
    for (const k of lines(path.join(d, 'annotated.jsonl.rejects.jsonl')))
      rejected.set(`${k.id}/${k.lang}`, k.reason);
  }
  const failedIds = r.failed.flatMap((f) =>
    (f.cell.config.examples as Array<{ id: string }>).map((e) => `${e.id}/de`),
  );
  return { kept, rejected, failedIds };
}

describe('LLM annotation as jobs over Redis', () => {
  it('finishes with every input annotated or listed as failed despite injected 429 and 500 replies', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    const url = redis.url;
    const cells = annotationCells(
      examples,
      {
        endpoint: { baseUrl: fake.url, model: 'fake', maxRetries: 2, backoffMs: 1, timeoutMs: 5000 },
        languages: [{ code: 'de', name: 'German' }],
        concurrency: 3,
      },
      5,
    );
    expect(cells).toHaveLength(8);
    const workers = await Promise.all(
      [0, 1].map(() =>
        startWorker({
          queue: url,
          handlers: { annotate: annotateHandler },
          concurrency: 2,
          annotateRate: { max: 20, durationMs: 1000 },
        }),
      ),
    );
    try {
      const runDir = path.join(dir, 'run');
      const r = await runGrid(cells, { runDir, queue: url, backoffMs: 10 });
      const { kept, rejected, failedIds } = accountedPairs(r, runDir);
      for (const ex of examples) {
        const pair = `${ex.id}/de`;
        expect(kept.has(pair) || rejected.has(pair) || failedIds.includes(pair), pair).toBe(true);
      }
      // with a 30 % error rate and 3 attempts per request some pairs are kept and some fail
      expect(kept.size).toBeGreaterThan(20);
      expect([...rejected.values()].every((reason) => reason === 'request_failed')).toBe(true);
      expect(r.unfinished).toEqual([]);
      // the records' counts agree with the files
      let keptInRecords = 0;
      for (const rec of r.records.values()) keptInRecords += (rec.result as { kept: number }).kept;
      expect(keptInRecords).toBe(kept.size);
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
  });

  it('gives the same annotations in-process when the server does not fail', async () => {
    fake.errorRate = 0;
    const cells = annotationCells(
      examples.slice(0, 6),
      { endpoint: { baseUrl: fake.url, model: 'fake' }, languages: [{ code: 'de', name: 'German' }] },
      2,
    );
    const runDir = path.join(dir, 'local');
    const r = await runGrid(cells, { runDir, handlers: { annotate: annotateHandler } });
    expect(r.records.size).toBe(3);
    const { kept } = accountedPairs(r, runDir);
    expect(kept.size).toBe(6);
    const one = [...r.records.values()][0];
    const text = readFileSync(path.join(runDir, one?.artifactsDir ?? '', 'annotated.jsonl'), 'utf8');
    expect(JSON.parse(text.split('\n')[0] as string)).toMatchObject({
      translation: 'Satz nummer 0 ist gut.',
      spans: [
        { label: 'arg0', text: 'Satz', start: 0, end: 4 },
        { label: 'rel', text: 'ist', start: 14, end: 17 },
      ],
    });
  });

  it('keeps to requestsPerSecond over all workers (a shared counter in Redis)', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    fake.errorRate = 0;
    const url = redis.url;
    const cells = annotationCells(
      examples.slice(0, 20),
      {
        endpoint: { baseUrl: fake.url, model: 'fake' },
        languages: [{ code: 'de', name: 'German' }],
        requestsPerSecond: 8,
      },
      5,
    );
    const workers = await Promise.all(
      [0, 1].map(() => startWorker({ queue: url, handlers: { annotate: annotateHandler }, concurrency: 2 })),
    );
    try {
      const before = fake.requests;
      const t0 = Date.now();
      const r = await runGrid(cells, { runDir: path.join(dir, 'rate'), queue: url });
      // 40 requests at 8 a second need 5 one-second windows: more than 3 s from the first request
      expect(fake.requests - before).toBe(40);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(3000);
      expect(accountedPairs(r, path.join(dir, 'rate')).kept.size).toBe(20);
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
  });
});

describe('a local rate limiter', () => {
  it('spaces permits evenly', async () => {
    const limiter = localRateLimiter(20);
    const t0 = Date.now();
    for (let i = 0; i < 11; i++) await limiter.acquire();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(490);
  });
});
