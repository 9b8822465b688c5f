import { describe, expect, it } from 'vitest';
import { DynamicBatcher } from './batcher.js';

describe('DynamicBatcher', () => {
  it('groups concurrent requests up to the max batch size and answers each with its own output', async () => {
    const sizes: number[] = [];
    const b = new DynamicBatcher<number, number>(async (xs) => xs.map((x) => x * 10), {
      maxBatchSize: 4,
      maxWaitMs: 20,
      onBatch: (n) => sizes.push(n),
    });
    const outs = await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit(i)));
    expect(outs).toEqual(Array.from({ length: 10 }, (_, i) => i * 10));
    expect(sizes.reduce((a, n) => a + n, 0)).toBe(10);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(4);
    expect(sizes[0]).toBe(4);
  });

  it('runs a lone request after the wait instead of waiting for a full batch', async () => {
    const b = new DynamicBatcher<string, string>(async (xs) => xs.map((x) => x.toUpperCase()), {
      maxBatchSize: 8,
      maxWaitMs: 5,
    });
    await expect(b.submit('a')).resolves.toBe('A');
  });

  it('rejects every request of a failing batch, and keeps serving later ones', async () => {
    let fail = true;
    const b = new DynamicBatcher<number, number>(
      async (xs) => {
        if (fail) throw new Error('boom');
        return xs;
      },
      { maxBatchSize: 2, maxWaitMs: 1 },
    );
    const r = await Promise.allSettled([b.submit(1), b.submit(2)]);
    expect(r.map((x) => x.status)).toEqual(['rejected', 'rejected']);
    fail = false;
    await expect(b.submit(3)).resolves.toBe(3);
  });

  it('drains queued work on shutdown and refuses new work', async () => {
    const b = new DynamicBatcher<number, number>(
      async (xs) => {
        await new Promise((r) => setTimeout(r, 10));
        return xs;
      },
      { maxBatchSize: 2, maxWaitMs: 1000 },
    );
    const pending = [b.submit(1), b.submit(2), b.submit(3)];
    await b.drain();
    await expect(Promise.all(pending)).resolves.toEqual([1, 2, 3]);
    await expect(b.submit(4)).rejects.toThrow(/shutting down/);
  });
});
