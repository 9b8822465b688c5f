import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { hasRedisServer, type LocalRedis, startLocalRedis } from '@xlt/jobs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BinProcess, buildBin, listeningPort, runBin } from './bin.test-helper.js';
import { writeTinyModel, writeTinyModule } from './testing.js';

// the bin loads a real tokenizer.json: the fixture's (2002 pieces), so the tiny model has that vocabulary
const skip =
  sharedSkipReason('fixtures', 'tokenizer') ??
  (hasRedisServer() ? undefined : 'no redis-server installed (Debian: apt-get install redis-server)');
const root = mkdtempSync(path.join(tmpdir(), 'xlt-fleet-bin-'));
const modelDir = path.join(root, 'model');
const shared = path.join(root, 'modules');
const SYNC_INTERVAL_MS = 500;
let bin = '';
let redis: LocalRedis | undefined;
const replicas: BinProcess[] = [];

beforeAll(async () => {
  if (skip !== undefined) return;
  bin = await buildBin('xlt-serve-fleet-test');
  await writeTinyModel(modelDir, 'sequence-classification', ['en_XX', 'de_DE'], 0, { vocab_size: 2002 });
  mkdirSync(shared);
  // a fresh Redis: nothing published by another test
  redis = await startLocalRedis();
});
afterAll(async () => {
  for (const r of replicas) if (r.child.exitCode === null) r.child.kill('SIGKILL');
  await redis?.stop();
  rmSync(root, { recursive: true, force: true });
});

async function replica(modulesDir: string): Promise<{ p: BinProcess; base: string }> {
  mkdirSync(modulesDir, { recursive: true });
  const p = runBin(
    bin,
    [
      '--model',
      modelDir,
      '--tokenizer',
      sharedPath('fixtures', 'tokenizer'),
      '--modules',
      modulesDir,
      '--sync',
      (redis as LocalRedis).url,
      '--sync-interval-ms',
      String(SYNC_INTERVAL_MS),
      '--port',
      '0',
      '--threads',
      '1',
    ],
    { XLT_ADMIN_TOKEN: 's3cret' },
  );
  replicas.push(p);
  const port = await listeningPort(p);
  expect(port, p.stderr()).toBeGreaterThan(0);
  return { p, base: `http://127.0.0.1:${port}` };
}

const languagesOf = async (base: string): Promise<string[]> =>
  ((await (await fetch(`${base}/v1/info`)).json()) as { languages: string[] }).languages;
const classify = async (base: string, lang: string) => {
  const r = await fetch(`${base}/v1/classify`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'the cat sat on the mat', lang }),
  });
  return { status: r.status, body: (await r.json()) as { lang?: string; scores?: Record<string, number> } };
};

/** Milliseconds until `base` lists `code` (throws after `ms`). */
async function hasWithin(base: string, code: string, ms: number): Promise<number> {
  const t0 = Date.now();
  while (!(await languagesOf(base)).includes(code)) {
    if (Date.now() - t0 > ms) throw new Error(`${base} has no '${code}' after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return Date.now() - t0;
}

describe.skipIf(skip !== undefined)(
  'xlt-serve --sync: two replicas on one Redis',
  { timeout: 300_000 },
  () => {
    it('a module added on replica A is answered by replica B within the documented delay; a later replica gets it', async () => {
      const [a, b] = await Promise.all([replica(shared), replica(shared)]);
      await writeTinyModule(path.join(shared, 'sw_KE.safetensors'), 'sw_KE');
      expect((await classify(b.base, 'sw_KE')).status).toBe(400);
      const t0 = Date.now();
      const added = await fetch(`${a.base}/admin/languages`, {
        method: 'POST',
        headers: { authorization: 'Bearer s3cret', 'content-type': 'application/json' },
        body: JSON.stringify({ code: 'sw_KE' }),
      });
      expect(added.status).toBe(201);
      expect(await added.json()).toEqual({ languages: ['en_XX', 'de_DE', 'sw_KE'], fleet: { replicas: 2 } });
      // documented: usually within a second, at most --sync-interval-ms plus the graph rebuild
      const ms = await hasWithin(b.base, 'sw_KE', SYNC_INTERVAL_MS + 10_000);
      console.log(
        `[xlt-serve --sync] module added on A answered by B ${Date.now() - t0} ms after the POST (${ms} ms after A answered)`,
      );
      const onA = await classify(a.base, 'sw_KE');
      const onB = await classify(b.base, 'sw_KE');
      expect(onB.status).toBe(200);
      expect(onB.body.lang).toBe('sw_KE');
      expect(onB.body).toEqual(onA.body);
      expect(b.p.stderr()).toMatch(/\[xlt-serve\] fleet: added module 'sw_KE' published by \S+ \d+ ms ago/);

      // a replica started later, whose own modules folder receives the file after it started
      const late = path.join(root, 'late-modules');
      const c = await replica(late);
      expect(await languagesOf(c.base)).toEqual(['en_XX', 'de_DE']);
      expect(c.p.stderr()).toMatch(/module 'sw_KE' .* not loaded yet: no sw_KE.safetensors/);
      copyFileSync(path.join(shared, 'sw_KE.safetensors'), path.join(late, 'sw_KE.safetensors'));
      await hasWithin(c.base, 'sw_KE', SYNC_INTERVAL_MS + 10_000);
      expect((await classify(c.base, 'sw_KE')).body).toEqual(onA.body);

      // SIGTERM still ends every replica
      const exits = replicas.map((r) => r.done);
      for (const r of replicas) r.child.kill('SIGTERM');
      for (const e of await Promise.all(exits)) expect(e.code).toBe(0);
    });
  },
);
