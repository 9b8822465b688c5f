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
  options: {
    seed?: number;
    shuffle?: boolean;
    dropLast?: boolean;
    /**
     * Length-bucketed batches: the shuffled examples are cut into windows of `bucketWindow` batches,
     * each window sorted by `lengthOf`, cut into batches, and the epoch's batches shuffled. Batches
     * then hold examples of similar length, so padding to a batch's longest wastes little.
     */
    lengthOf?: (example: E) => number;
    /** Batches per sorting window (default 50). */
    bucketWindow?: number;
  } = {},
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
  let batches: number[][] = [];
  const lengthOf = options.lengthOf;
  const data: BatchFn<B> = ({ index, rng }) => {
    const epoch = Math.floor(index / batchesPerEpoch);
    if (epoch !== cachedEpoch) {
      const order = examples.map((_, i) => i);
      const epochRng = root.fork(`epoch${epoch}`);
      if (options.shuffle !== false) epochRng.shuffle(order);
      if (lengthOf !== undefined) {
        const window = batchSize * (options.bucketWindow ?? 50);
        for (let w = 0; w < order.length; w += window) {
          const part = order.slice(w, w + window);
          part.sort((a, b) => lengthOf(examples[a] as E) - lengthOf(examples[b] as E));
          order.splice(w, part.length, ...part);
        }
      }
      batches = [];
      for (let b = 0; b < batchesPerEpoch; b++) batches.push(order.slice(b * batchSize, (b + 1) * batchSize));
      if (lengthOf !== undefined && options.shuffle !== false) epochRng.fork('batches').shuffle(batches);
      cachedEpoch = epoch;
    }
    const items = (batches[index % batchesPerEpoch] as number[]).map((i) => examples[i] as E);
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
