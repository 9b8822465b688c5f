import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LanguageModuleEvent, publishLanguageModule, subscribeLanguageModules } from './modules.js';
import { testRedis } from './redis-server.js';

const redisReason = 'no redis-server installed and no XLT_REDIS_URL (Debian: apt-get install redis-server)';
let redis: Awaited<ReturnType<typeof testRedis>>;
beforeAll(async () => {
  redis = await testRedis(3);
});
afterAll(async () => redis?.stop());

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
};

describe('language modules across replicas (Redis pub/sub)', () => {
  it('reaches every live replica and a replica that starts later, and rejects a bad event', async (t) => {
    if (redis === undefined) return t.skip(redisReason);
    const url = redis.url;
    const channel = `test-modules-${process.pid}`;
    const seen: Array<Map<string, LanguageModuleEvent>> = [new Map(), new Map()];
    const subs = await Promise.all(
      seen.map((m) => subscribeLanguageModules(url, (e) => void m.set(e.language, e), { channel })),
    );
    try {
      const sw = { language: 'sw', location: '/shared/modules/sw.safetensors', sha256: 'a'.repeat(64) };
      const t0 = Date.now();
      expect(await publishLanguageModule(url, sw, channel)).toBe(2);
      await until(() => seen.every((m) => m.has('sw')));
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(seen[0]?.get('sw')).toMatchObject(sw);
      const errors: Error[] = [];
      const late = new Map<string, LanguageModuleEvent>();
      const lateSub = await subscribeLanguageModules(url, (e) => void late.set(e.language, e), {
        channel,
        onError: (e) => errors.push(e),
      });
      expect([...late.keys()]).toEqual(['sw']);
      await expect(publishLanguageModule(url, { ...sw, sha256: 'nope' }, channel)).rejects.toThrow(/sha256/);
      await lateSub.close();
      expect(errors).toEqual([]);
    } finally {
      await Promise.all(subs.map((s) => s.close()));
    }
  });
});
