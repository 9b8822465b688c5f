import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { build } from 'tsup';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyModel } from './testing.js';

const here = path.dirname(new URL(import.meta.url).pathname);
// built next to the package's node_modules, so that its imports resolve as the published bin's do
const outDir = path.join(here, '..', 'node_modules', '.cache', 'xlt-serve-bin-test');
const root = mkdtempSync(path.join(tmpdir(), 'xlt-serve-bin-'));
const modelDir = path.join(root, 'model');

beforeAll(async () => {
  await build({
    entry: { bin: path.join(here, 'bin.ts') },
    outDir,
    format: ['esm'],
    target: 'node20',
    dts: false,
    silent: true,
    config: false,
  });
  await writeTinyModel(modelDir, 'sequence-classification');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Runs xlt-serve with `args`; resolves its exit status and stderr once it exits. */
function runBin(args: string[]): {
  child: ChildProcess;
  stderr: () => string;
  done: Promise<{ code: number | null; err: string }>;
} {
  const child = spawn(process.execPath, [path.join(outDir, 'bin.js'), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const done = new Promise<{ code: number | null; err: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, err })),
  );
  return { child, stderr: () => err, done };
}

describe('xlt-serve', () => {
  it('exits 2 on a usage error, as xlt does, naming what was wrong', async () => {
    const unknown = await runBin(['--model', modelDir, '--bogus']).done;
    expect(unknown.code).toBe(2);
    expect(unknown.err).toMatch(/Unknown option '--bogus'/);
    const bad = await runBin(['--model', modelDir, '--max-queue', 'many']).done;
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--max-queue must be an integer of at least 1, got 'many'/);
    const q = await runBin(['--model', modelDir, '--quantize', 'int4']).done;
    expect(q.code).toBe(2);
    expect(q.err).toMatch(/--quantize must be int8, got 'int4'/);
    const none = await runBin([]).done;
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/--model DIR is required/);
  });

  // the bin loads a real tokenizer.json: the fixture's (the model never runs here)
  it.skipIf(sharedSkipReason('fixtures', 'tokenizer') !== undefined)(
    'exits within 15 s of SIGTERM while 50 clients send their headers slowly',
    async () => {
      const { child, stderr, done } = runBin([
        '--model',
        modelDir,
        '--tokenizer',
        sharedPath('fixtures', 'tokenizer'),
        '--port',
        '0',
        '--threads',
        '1',
      ]);
      let port = 0;
      for (let i = 0; i < 600 && port === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr())?.[1] ?? 0);
      }
      expect(port, stderr()).toBeGreaterThan(0);
      const sockets: Socket[] = [];
      const trickles: NodeJS.Timeout[] = [];
      await Promise.all(
        Array.from(
          { length: 50 },
          () =>
            new Promise<void>((resolve) => {
              const s = connect(port, '127.0.0.1', () => {
                s.write('POST /v1/classify HTTP/1.1\r\n');
                // one header byte every 200 ms: never a whole request
                trickles.push(setInterval(() => s.write('X'), 200));
                resolve();
              });
              s.on('error', () => undefined);
              s.resume();
              sockets.push(s);
            }),
        ),
      );
      const t0 = performance.now();
      child.kill('SIGTERM');
      const exit = await Promise.race([
        done,
        new Promise<{ code: null; err: string }>((r) =>
          setTimeout(() => r({ code: null, err: 'hung' }), 20_000),
        ),
      ]);
      const seconds = (performance.now() - t0) / 1000;
      for (const t of trickles) clearInterval(t);
      for (const s of sockets) s.destroy();
      console.log(
        `[xlt-serve] 50 slow-header clients, SIGTERM: exited ${exit.code} after ${seconds.toFixed(2)} s`,
      );
      if (exit.code === null) child.kill('SIGKILL');
      expect(exit.code).toBe(0);
      expect(seconds).toBeLessThan(15);
    },
  );
});
