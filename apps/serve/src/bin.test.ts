import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBin, listeningPort, runBin as runBuilt } from './bin.test-helper.js';
import { writeTinyModel } from './testing.js';

const root = mkdtempSync(path.join(tmpdir(), 'xlt-serve-bin-'));
const modelDir = path.join(root, 'model');
let bin = '';

beforeAll(async () => {
  bin = await buildBin('xlt-serve-bin-test');
  await writeTinyModel(modelDir, 'sequence-classification');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const runBin = (args: string[]) => runBuilt(bin, args);

describe('xlt-serve', () => {
  it('exits 2 on a usage error, as xlt does, naming what was wrong', async () => {
    // started at once: each is a Node process, slow to start on a busy machine
    const [unknown, bad, q, sync, noModules, none, entries] = await Promise.all(
      [
        ['--model', modelDir, '--bogus'],
        ['--model', modelDir, '--max-queue', 'many'],
        ['--model', modelDir, '--quantize', 'int4'],
        ['--model', modelDir, '--sync', 'http://x'],
        ['--model', modelDir, '--sync', 'redis://127.0.0.1:1'],
        [],
        ['--model', modelDir, '--cache-dir', root, '--cache-entries', '0'],
      ].map((args) => runBin(args).done),
    );
    expect(unknown?.code).toBe(2);
    expect(unknown?.err).toMatch(/Unknown option '--bogus'/);
    expect(bad?.code).toBe(2);
    expect(bad?.err).toMatch(/--max-queue must be an integer of at least 1, got 'many'/);
    expect(q?.code).toBe(2);
    expect(q?.err).toMatch(/--quantize must be int8, got 'int4'/);
    expect(sync?.code).toBe(2);
    expect(sync?.err).toMatch(/--sync must be a redis:\/\/ or rediss:\/\/ URL/);
    expect(noModules?.code).toBe(2);
    expect(noModules?.err).toMatch(/--sync needs --modules DIR/);
    expect(none?.code).toBe(2);
    expect(none?.err).toMatch(/--model DIR is required/);
    expect(entries?.code).toBe(2);
    expect(entries?.err).toMatch(/--cache-entries must be an integer of at least 1, got '0'/);
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
      const port = await listeningPort({ child, stderr, done });
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
