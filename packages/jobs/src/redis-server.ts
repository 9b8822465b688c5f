import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { XltNotFoundError } from '@xlt/core';

/** A `redis-server` started on a loopback port (tests, benchmarks, a laptop). */
export interface LocalRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Whether a `redis-server` binary is on the PATH. */
export function hasRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Starts `redis-server` on 127.0.0.1 and a free port, without persistence; resolves once it accepts
 * connections. Throws XltNotFoundError when no `redis-server` is installed.
 */
export async function startLocalRedis(): Promise<LocalRedis> {
  if (!hasRedisServer())
    throw new XltNotFoundError('redis-server is not installed (Debian: apt-get install redis-server)');
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`redis-server did not start: ${out.slice(-500)}`)),
      10_000,
    );
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (/ready to accept connections/i.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}: ${out.slice(-500)}`));
    });
  });
  child.stdout?.resume();
  child.stderr?.resume();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/**
 * The Redis of the tests: `$XLT_REDIS_URL` (as `.ci/run` sets it), else a fresh local one, else
 * undefined. `db` selects a database (0-15) so that test files running at once never share queues.
 */
export async function testRedis(db: number): Promise<{ url: string; stop(): Promise<void> } | undefined> {
  const env = process.env.XLT_REDIS_URL;
  if (env) return { url: `${env.replace(/\/\d*$/, '')}/${db}`, stop: async () => {} };
  if (!hasRedisServer()) return undefined;
  const r = await startLocalRedis();
  return { url: `${r.url}/${db}`, stop: r.stop };
}
