import { describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';
import { serveCommand, serveOptionsOf } from './serve.js';

describe('xlt serve options', () => {
  it('takes every limit and timeout xlt-serve takes, and passes each to the server', () => {
    const cfg = serveCommand.schema.parse({
      model: 'm',
      modules: 'mods',
      maxText: 100,
      maxBody: 2000,
      maxItems: 3,
      maxQueue: 40,
      maxModuleBytes: 5000,
      timeoutMs: 6000,
      headersTimeoutMs: 700,
      requestTimeoutMs: 800,
      keepAliveTimeoutMs: 900,
      connectionTimeoutMs: 1000,
      shutdownTimeoutMs: 1100,
    });
    expect(serveOptionsOf(cfg, { XLT_ADMIN_TOKEN: 't' })).toEqual({
      maxBatchSize: 16,
      maxWaitMs: 5,
      limits: { textChars: 100, bodyBytes: 2000, batchItems: 3, queueItems: 40 },
      timeouts: {
        modelWaitMs: 6000,
        headersMs: 700,
        requestMs: 800,
        keepAliveMs: 900,
        connectionMs: 1000,
        shutdownMs: 1100,
      },
      maxModuleBytes: 5000,
      modulesDir: 'mods',
      adminToken: 't',
    });
  });

  it('refuses a bad limit or an unknown option with exit 2, before loading anything', async () => {
    for (const args of [
      ['--max-queue', '0'],
      ['--max-text', '-1'],
      ['--shutdown-timeout-ms', 'soon'],
      ['--max-bodies', '5'],
      ['--quantize', 'int4'],
      ['--sync', 'http://x'],
      ['--sync', 'redis://127.0.0.1:1'],
      ['--sync', 'redis://127.0.0.1:1', '--sync-interval-ms', '10', '--modules', '/nonexistent'],
    ]) {
      const r = await cli('serve', '--model', '/nonexistent', ...args);
      expect(r.code, args.join(' ')).toBe(EXIT.usage);
      expect(r.err).not.toMatch(/config\.json/);
    }
    const h = await cli('serve', '--help');
    for (const flag of [
      '--max-text',
      '--max-body',
      '--max-items',
      '--max-queue',
      '--headers-timeout-ms',
      '--shutdown-timeout-ms',
      '--quantize',
      '--sync',
    ])
      expect(h.out).toContain(flag);
    const sync = await cli('serve', '--model', '/nonexistent', '--sync', 'redis://127.0.0.1:1');
    expect(sync.err).toMatch(/sync: needs modules/);
  });
});
