import * as tf from '@tensorflow/tfjs-core';
import { type Rng, XltShapeError } from '@xlt/core';
import { Module } from './module.js';

/** Anything that maps [..., in] to [..., out]: a {@link Linear}, or a wrapper such as a LoRA layer. */
export interface LinearLike extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;
  apply(x: tf.Tensor): tf.Tensor;
}

/** Initialiser for new weights: N(0, std) from a seeded {@link Rng}. */
export function normalInit(shape: number[], std: number, rng: Rng): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rng.normal(0, std);
  return tf.tensor(data, shape, 'float32');
}

/**
 * y = x W^T + b with `weight` [out, in] as PyTorch stores it (so checkpoints load without transposes).
 */
export class Linear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  weight: tf.Variable;
  bias: tf.Variable | null;

  constructor(
    inFeatures: number,
    outFeatures: number,
    options: { bias?: boolean; std?: number; rng?: Rng } = {},
  ) {
    super();
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const std = options.std ?? 0.02;
    const w =
      options.rng !== undefined
        ? normalInit([outFeatures, inFeatures], std, options.rng)
        : tf.randomNormal([outFeatures, inFeatures], 0, std, 'float32');
    this.weight = this.registerParameter('weight', w);
    this.bias = options.bias === false ? null : this.registerParameter('bias', tf.zeros([outFeatures]));
  }

  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const last = x.shape[x.shape.length - 1];
      if (last !== this.inFeatures) {
        throw new XltShapeError('Linear input has the wrong last dimension', {
          expected: [this.inFeatures],
          got: [last ?? 0],
        });
      }
      const lead = x.shape.slice(0, -1);
      const x2 = tf.reshape(x, [-1, this.inFeatures]);
      let y = tf.matMul(x2, this.weight, false, true);
      if (this.bias !== null) y = tf.add(y, this.bias);
      return tf.reshape(y, [...lead, this.outFeatures]);
    });
  }
}

/** A lookup table `weight` [num, dim]. */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  weight: tf.Variable;

  constructor(numEmbeddings: number, embeddingDim: number, options: { std?: number; rng?: Rng } = {}) {
    super();
    this.numEmbeddings = numEmbeddings;
    this.embeddingDim = embeddingDim;
    const std = options.std ?? 0.02;
    const w =
      options.rng !== undefined
        ? normalInit([numEmbeddings, embeddingDim], std, options.rng)
        : tf.randomNormal([numEmbeddings, embeddingDim], 0, std, 'float32');
    this.weight = this.registerParameter('weight', w);
  }

  /** ids: int32 tensor of any shape; returns [...shape, dim]. */
  apply(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const flat = tf.cast(tf.reshape(ids, [-1]), 'int32');
      return tf.reshape(tf.gather(this.weight, flat), [...ids.shape, this.embeddingDim]);
    });
  }
}

/** LayerNorm over the last dimension with `weight` and `bias`, biased variance as PyTorch computes it. */
export class LayerNorm extends Module {
  readonly dim: number;
  readonly eps: number;
  weight: tf.Variable;
  bias: tf.Variable;

  constructor(dim: number, eps = 1e-5) {
    super();
    this.dim = dim;
    this.eps = eps;
    this.weight = this.registerParameter('weight', tf.ones([dim]));
    this.bias = this.registerParameter('bias', tf.zeros([dim]));
  }

  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const mean = tf.mean(x, -1, true);
      const centered = tf.sub(x, mean);
      const variance = tf.mean(tf.square(centered), -1, true);
      const normed = tf.mul(centered, tf.rsqrt(tf.add(variance, this.eps)));
      return tf.add(tf.mul(normed, this.weight), this.bias);
    });
  }
}

/**
 * Inverted dropout, active only when `training` is true. Draws its mask from a seeded {@link Rng}
 * fork when one is given (reproducible runs), else from tfjs's random source.
 */
export function dropout(x: tf.Tensor, rate: number, training: boolean, rng?: Rng): tf.Tensor {
  if (!training || rate <= 0) return x;
  return tf.tidy(() => {
    const seed = rng !== undefined ? rng.seed() : undefined;
    const keep = tf.greaterEqual(tf.randomUniform(x.shape, 0, 1, 'float32', seed), rate);
    return tf.mul(x, tf.mul(tf.cast(keep, 'float32'), 1 / (1 - rate)));
  });
}

/** Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as PyTorch's default `gelu`. */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}
