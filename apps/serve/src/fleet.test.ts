import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hasRedisServer, startLocalRedis, testRedis } from '@xlt/jobs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModuleSync, startModuleSync } from './fleet.js';
import { ServedModel } from './model.js';
import { createServer, type XltServer } from './server.js';
import { whitespaceTokenizer, writeTinyModel, writeTinyModule } from './testing.js';

const redisReason = 'no redis-server installed and no XLT_REDIS_URL (Debian: apt-get install redis-server)';
const root = mkdtempSync(path.join(tmpdir(), 'xlt-fleet-'));
const modelDir = path.join(root, 'model');
const channel = `test-fleet-${process.pid}`;
const INTERVAL_MS = 200;
let redis: Awaited<ReturnType<typeof testRedis>>;
const open: Array<{ server: XltServer; sync: ModuleSync }> = [];

beforeAll(async () => {
  redis = await testRedis(5);
  await writeTinyModel(modelDir, 'sequence-classification');
});
afterAll(async () => {
  for (const r of open) {
    await r.sync.close();
    await r.server.shutdown();
  }
  await redis?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** A replica: the tiny model with the modules of `modulesDir`, kept in sync through `url`. */
async function replica(modulesDir: string, url: string, logs: string[] = []) {
  mkdirSync(modulesDir, { recursive: true });
  const model = await ServedModel.load(modelDir, { threads: 1, modulesDir });
  const sync = await startModuleSync({
    url,
    model,
    modulesDir,
    maxModuleBytes: 1 << 20,
    intervalMs: INTERVAL_MS,
    channel,
    log: (level, m) => logs.push(`${level}: ${m}`),
  });
  const server = await createServer({
    model,
    tokenizer: whitespaceTokenizer(),
    maxWaitMs: 1,
    adminToken: 'secret',
    modulesDir,
    fleet: sync,
  });
  open.push({ server, sync });
  return { server, sync, logs };
}

const languages = async (s: XltServer): Promise<string[]> =>
  (await s.app.inject({ url: '/v1/info' })).json().languages;
const classify = async (s: XltServer, lang: string) =>
  s.app.inject({ method: 'POST', url: '/v1/classify', payload: { text: 'a b c d', lang } });
const addOn = (s: XltServer, code: string) =>
  s.app.inject({
    method: 'POST',
    url: '/admin/languages',
    headers: { authorization: 'Bearer secret' },
    payload: { code },
  });

/** Milliseconds until `cond` holds (throws after `ms`). */
async function within(ms: number, cond: () => Promise<boolean>, what: string): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

describe('language modules kept the same on every replica (Redis)', () => {
  it('a module added on replica A is answered with by replica B, with the same scores', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    const shared = path.join(root, 'shared-modules');
    const a = await replica(shared, redis.url);
    const b = await replica(shared, redis.url);
    await writeTinyModule(path.join(shared, 'sw_KE.safetensors'), 'sw_KE');
    expect((await classify(b.server, 'sw_KE')).statusCode).toBe(400);
    const added = await addOn(a.server, 'sw_KE');
    expect(added.statusCode).toBe(201);
    expect(added.json()).toEqual({ languages: ['en_XX', 'de_DE', 'fr_XX', 'sw_KE'], fleet: { replicas: 2 } });
    const ms = await within(
      5000,
      async () => (await languages(b.server)).includes('sw_KE'),
      'replica B has sw_KE',
    );
    console.log(`[fleet] module added on A answered by B after ${ms} ms`);
    const onA = await classify(a.server, 'sw_KE');
    const onB = await classify(b.server, 'sw_KE');
    expect(onB.statusCode).toBe(200);
    expect(onB.json()).toEqual(onA.json());
    expect(onB.json().lang).toBe('sw_KE');
    expect(b.logs.join('\n')).toMatch(/fleet: added module 'sw_KE' published by \S+ \d+ ms ago/);
  });

  it('a replica that starts later gets the current set, loading a file only with the published checksum', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    const own = path.join(root, 'late-modules');
    const c = await replica(own, redis.url);
    // published before C started; C's own directory does not hold the file yet
    expect(await languages(c.server)).toEqual(['en_XX', 'de_DE', 'fr_XX']);
    expect(c.logs.join('\n')).toMatch(
      /warn: fleet: module 'sw_KE' \(published by \S+\) not loaded yet: no sw_KE.safetensors in this replica's modules directory/,
    );
    // another file under that name (another checksum) is never loaded
    await writeTinyModule(path.join(own, 'sw_KE.safetensors'), 'sw_KE', 10);
    await within(
      3000,
      async () => c.logs.some((l) => l.includes('has another checksum')),
      'C reports the checksum',
    );
    expect(await languages(c.server)).not.toContain('sw_KE');
    // the published file arrives: C loads it within the interval and answers as A does
    copyFileSync(path.join(root, 'shared-modules', 'sw_KE.safetensors'), path.join(own, 'sw_KE.safetensors'));
    const ms = await within(
      INTERVAL_MS * 5 + 3000,
      async () => (await languages(c.server)).includes('sw_KE'),
      'C has sw_KE',
    );
    console.log(`[fleet] published module reached a late replica ${ms} ms after its file did`);
    const a = open[0] as (typeof open)[number];
    expect((await classify(c.server, 'sw_KE')).json()).toEqual((await classify(a.server, 'sw_KE')).json());
  });

  it('answers 503 FLEET_UNAVAILABLE within the bound when Redis is gone, and refuses to start without it', async (t) => {
    if (!hasRedisServer()) return t.skip(redisReason);
    const own = await startLocalRedis();
    const dir = path.join(root, 'lonely-modules');
    const d = await replica(dir, own.url);
    await writeTinyModule(path.join(dir, 'yo_NG.safetensors'), 'yo_NG');
    await own.stop();
    // publishing waits at most 5 s for Redis (the admin route also rebuilds the graph first)
    const t0 = Date.now();
    await expect(d.sync.added('yo_NG', path.join(dir, 'yo_NG.safetensors'))).rejects.toThrow(
      /publishing module 'yo_NG' to Redis: no answer within 5000 ms|Command timed out/,
    );
    expect(Date.now() - t0).toBeLessThan(7000);
    const r = await addOn(d.server, 'yo_NG');
    expect(r.statusCode).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.json().error).toEqual({
      code: 'FLEET_UNAVAILABLE',
      message:
        "language module 'yo_NG' was added on this replica but could not be published to the other replicas (Redis did not answer); retry",
      field: 'code',
    });
    const model = await ServedModel.load(modelDir, { threads: 1 });
    const t1 = Date.now();
    await expect(
      startModuleSync({
        url: own.url,
        model,
        modulesDir: dir,
        maxModuleBytes: 1 << 20,
        startTimeoutMs: 1000,
      }),
    ).rejects.toThrow(
      /language module sync: Redis at redis:\/\/127\.0\.0\.1:\d+: subscribing: no answer within 1000 ms/,
    );
    expect(Date.now() - t1).toBeLessThan(5000);
    await model.close();
  });
});
