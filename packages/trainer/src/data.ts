import * as tf from '@tensorflow/tfjs-core';
import { Rng, XltConfigError } from '@xlt/core';
import type { BatchFn } from './run.js';
import type { LossFn } from './trainer.js';

/** What {@link epochBatches} returns: the batch function and how many batches one epoch has. */
export interface EpochBatches<B> {
  data: BatchFn<B>;
  /** Batches per epoch (the last one may be smaller unless `dropLast`). */
  batchesPerEpoch: number;
}

/**
 * Epoch-wise batches over a fixed list of examples: each epoch visits every example once in an
 * order shuffled by `Rng(seed).fork('epoch<e>')`, so batch i depends only on the seed and i (a
 * resumed run draws the same batches). `collate` gets the examples of a batch and a per-batch Rng
 * (e.g. for MLM masking). Use `stepsPerEpoch = batchesPerEpoch / gradAccumulation` for stages.
 */
export function epochBatches<E, B>(
  examples: readonly E[],
  batchSize: number,
  collate: (items: E[], rng: Rng) => B,
  options: { seed?: number; shuffle?: boolean; dropLast?: boolean } = {},
): EpochBatches<B> {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new XltConfigError(`batchSize must be a positive integer, got ${batchSize}`, {
      field: 'batchSize',
    });
  if (examples.length === 0)
    throw new XltConfigError('no examples to draw batches from', { field: 'examples' });
  const full = Math.floor(examples.length / batchSize);
  const batchesPerEpoch = options.dropLast === true ? full : Math.ceil(examples.length / batchSize);
  if (batchesPerEpoch === 0)
    throw new XltConfigError(
      `fewer examples (${examples.length}) than one batch (${batchSize}) with dropLast`,
      {
        field: 'batchSize',
      },
    );
  const root = new Rng(options.seed ?? 0);
  let cachedEpoch = -1;
  let order: number[] = [];
  const data: BatchFn<B> = ({ index, rng }) => {
    const epoch = Math.floor(index / batchesPerEpoch);
    if (epoch !== cachedEpoch) {
      order = examples.map((_, i) => i);
      if (options.shuffle !== false) root.fork(`epoch${epoch}`).shuffle(order);
      cachedEpoch = epoch;
    }
    const start = (index % batchesPerEpoch) * batchSize;
    const items = order.slice(start, start + batchSize).map((i) => examples[i] as E);
    return collate(items, rng);
  };
  return { data, batchesPerEpoch };
}

/**
 * Mean loss over evaluation batches without gradients (weighted equally per batch), e.g. for
 * `fit`'s `evaluate`. Every intermediate tensor is freed.
 */
export function evaluateLoss<B>(loss: LossFn<B>, batches: Iterable<B>): number {
  let sum = 0;
  let n = 0;
  const rng = new Rng(0);
  for (const b of batches) {
    const v = tf.tidy(() => loss(b, { step: -1, micro: n, rng }).dataSync()[0] as number);
    sum += v;
    n++;
  }
  if (n === 0) throw new XltConfigError('evaluateLoss needs at least one batch', { field: 'batches' });
  return sum / n;
}
