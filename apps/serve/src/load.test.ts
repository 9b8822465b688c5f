import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTest } from './load.js';
import { ServedModel } from './model.js';
import { createServer } from './server.js';
import { whitespaceTokenizer, writeTinyModel } from './testing.js';

const root = mkdtempSync(path.join(tmpdir(), 'xlt-load-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('load on loopback', () => {
  it('answers 2,000 concurrent requests without an error, with batching, and counts them in /metrics', async () => {
    await writeTinyModel(root, 'sequence-classification');
    const s = await createServer({
      model: await ServedModel.load(root, { threads: 1 }),
      tokenizer: whitespaceTokenizer(),
      maxBatchSize: 16,
      maxWaitMs: 2,
    });
    await s.app.listen({ port: 0, host: '127.0.0.1' });
    const langs = ['en_XX', 'de_DE', 'fr_XX'];
    const r = await loadTest(
      s,
      (i) => ({ text: `request ${i} with some words`, lang: langs[i % 3] }),
      '/v1/classify',
      {
        total: 2000,
        concurrency: 32,
        maxSeconds: 120,
      },
    );
    expect(r.errors).toBe(0);
    expect(r.requests).toBe(2000);
    const m = (await s.app.inject({ url: '/metrics' })).body;
    expect(Number(/xlt_requests_total\{route="\/v1\/classify",status="200"\} (\d+)/.exec(m)?.[1])).toBe(2000);
    // with 32 clients in flight, batches of more than one example must have formed
    const batches = Number(/xlt_batch_size_count (\d+)/.exec(m)?.[1]);
    expect(batches).toBeLessThan(2000);
    await s.shutdown();
  });
});
