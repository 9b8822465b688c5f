import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { epochBatches, evaluateLoss } from './data.js';
import { modelLoss } from './objectives.js';
import { TinyModel, tinyBatch } from './test-model.js';

beforeAll(async () => {
  await initBackend();
});

describe('epochBatches', () => {
  it('visits every example once per epoch, reshuffles per epoch, and depends only on seed and index', () => {
    const xs = Array.from({ length: 10 }, (_, i) => i);
    const { data, batchesPerEpoch } = epochBatches(xs, 4, (items) => items, { seed: 3 });
    expect(batchesPerEpoch).toBe(3); // ceil(10 / 4)
    const draw = (i: number) => data({ index: i, rng: new Rng(i) });
    const epoch0 = [0, 1, 2].flatMap(draw);
    const epoch1 = [3, 4, 5].flatMap(draw);
    expect([...epoch0].sort((a, b) => a - b)).toEqual(xs);
    expect([...epoch1].sort((a, b) => a - b)).toEqual(xs);
    expect(epoch1).not.toEqual(epoch0);
    // a fresh instance (a resumed run) asked for index 4 first gives the same batch
    const again = epochBatches(xs, 4, (items) => items, { seed: 3 });
    expect(again.data({ index: 4, rng: new Rng(4) })).toEqual(draw(4));
    expect(epochBatches(xs, 4, (items) => items, { dropLast: true }).batchesPerEpoch).toBe(2);
    expect(() => epochBatches([], 4, (items) => items)).toThrow(/no examples/);
  });

  it('length buckets: every example once per epoch, batches of similar lengths (less padding), resumable', () => {
    const rng = new Rng(7);
    const xs = Array.from({ length: 400 }, (_, i) => ({ i, len: 1 + rng.int(60) }));
    const padding = (batches: Array<typeof xs>) =>
      batches.reduce(
        (a, b) => a + b.length * Math.max(...b.map((x) => x.len)) - b.reduce((s, x) => s + x.len, 0),
        0,
      );
    const opts = { seed: 1, lengthOf: (x: { len: number }) => x.len, bucketWindow: 10 };
    const bucketed = epochBatches(xs, 8, (items) => items, opts);
    const plain = epochBatches(xs, 8, (items) => items, { seed: 1 });
    const draw = (d: typeof bucketed, e: number) =>
      Array.from({ length: 50 }, (_, k) => d.data({ index: e * 50 + k, rng: new Rng(k) }));
    const epoch0 = draw(bucketed, 0);
    expect(
      epoch0
        .flat()
        .map((x) => x.i)
        .sort((a, b) => a - b),
    ).toEqual(xs.map((x) => x.i));
    expect(padding(epoch0)).toBeLessThan(padding(draw(plain, 0)) / 4);
    // batch order is shuffled (not sorted by length across the epoch) and differs between epochs
    const maxLens = epoch0.map((b) => Math.max(...b.map((x) => x.len)));
    expect(maxLens).not.toEqual([...maxLens].sort((a, b) => a - b));
    expect(draw(bucketed, 1)).not.toEqual(epoch0);
    const again = epochBatches(xs, 8, (items) => items, opts);
    expect(again.data({ index: 57, rng: new Rng(0) })).toEqual(bucketed.data({ index: 57, rng: new Rng(0) }));
  });
});

describe('evaluateLoss', () => {
  it('is the mean of per-batch losses and frees its tensors', () => {
    const m = new TinyModel(51);
    const batches = [tinyBatch(new Rng(1)), tinyBatch(new Rng(2))];
    const loss = modelLoss(m);
    const ctx = { step: 0, micro: 0, rng: new Rng(0) };
    const each = batches.map((b) => tf.tidy(() => loss(b, ctx).dataSync()[0] as number));
    const n = tf.memory().numTensors;
    expect(evaluateLoss(loss, batches)).toBeCloseTo(((each[0] as number) + (each[1] as number)) / 2, 6);
    expect(tf.memory().numTensors).toBe(n);
    m.dispose();
  });
});
