import * as tf from '@tensorflow/tfjs-core';
import { afterEach, describe, expect, it } from 'vitest';
import { backendReport, initBackend } from './backend.js';
import { XltError } from './errors.js';

describe('initBackend', () => {
  const saved = process.env.XLT_BACKEND;
  afterEach(() => {
    if (saved === undefined) delete process.env.XLT_BACKEND;
    else process.env.XLT_BACKEND = saved;
  });

  it('falls back from tensorflow and reports why it was unavailable', async () => {
    delete process.env.XLT_BACKEND;
    const lines: string[] = [];
    const name = await initBackend({ log: (m) => lines.push(m) });
    expect(['tensorflow', 'wasm', 'cpu']).toContain(name);
    expect(tf.getBackend()).toBe(name);
    const report = backendReport()!;
    expect(report.name).toBe(name);
    expect(report.mode).toBe('auto');
    if (name !== 'tensorflow') {
      // on a machine without the native tfjs-node: the reason names both packages
      expect(report.unavailable.tensorflow).toMatch(/tfjs-node-gpu/);
      expect(report.unavailable.tensorflow).toMatch(/tfjs-node\b/);
      expect(lines.join('\n')).toMatch(new RegExp(`tfjs backend: ${name}; not used: tensorflow`));
    }
  });

  it.each(['cpu', 'wasm'] as const)('can be forced to %s and computes with it', async (b) => {
    const name = await initBackend({ backend: b, log: false });
    expect(name).toBe(b);
    expect(tf.getBackend()).toBe(b);
    const y = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
    expect(Array.from(await y.data())).toEqual([11]);
    y.dispose();
    expect(backendReport()!.mode).toBe('forced');
  });

  it('honours XLT_BACKEND', async () => {
    process.env.XLT_BACKEND = 'cpu';
    expect(await initBackend({ log: false })).toBe('cpu');
  });

  it('rejects an unknown backend name', async () => {
    process.env.XLT_BACKEND = 'gpu9000';
    await expect(initBackend({ log: false })).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof XltError && e.code === 'CONFIG' && /unknown backend 'gpu9000'/.test(e.message),
    );
  });

  it('fails with the reason when a forced backend is unavailable', async () => {
    await expect(initBackend({ backend: 'tensorflow', log: false })).rejects.toSatisfy(
      (e: unknown) => e instanceof XltError && e.code === 'BACKEND' && /tfjs-node/.test(e.message),
    );
  });
});
