import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { initBackend } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { backward } from './backward.js';
import { attention, crossEntropy, gelu, linear } from './layers.js';
import * as op from './ops.js';
import { Tracer, type Value } from './tracer.js';

/** Deterministic values in [-scale, scale). */
function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale;
  });
}

type Params = Record<string, { shape: number[]; data: Float32Array }>;

/**
 * Traces `forward` over the parameters, derives the gradients with `backward`, runs the graph in
 * onnxruntime and returns the loss and the gradients by name.
 */
async function tracedGradients(
  params: Params,
  forward: (p: Record<string, Value>, t: Tracer) => Value,
): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
  const t = new Tracer();
  const values = Object.fromEntries(
    Object.entries(params).map(([n, p]) => [n, t.input(n, p.shape, 'float32', true)]),
  );
  const loss = forward(values, t);
  t.output(loss, 'loss');
  const names = Object.keys(params);
  for (const [i, g] of backward(
    loss,
    names.map((n) => values[n] as Value),
  ).entries())
    t.output(g, `grad:${names[i]}`);
  const session = await ort.InferenceSession.create(t.toBytes(), { intraOpNumThreads: 1 });
  const out = await session.run(
    Object.fromEntries(
      Object.entries(params).map(([n, p]) => [n, new ort.Tensor('float32', p.data, p.shape)]),
    ),
  );
  await session.release();
  return {
    loss: out.loss?.data[0] as number,
    grads: Object.fromEntries(names.map((n) => [n, out[`grad:${n}`]?.data as Float32Array])),
  };
}

/** The same loss in tfjs, differentiated by tfjs autograd. */
function tfjsGradients(
  params: Params,
  forward: (p: Record<string, tf.Tensor>) => tf.Scalar,
): { loss: number; grads: Record<string, Float32Array> } {
  return tf.tidy(() => {
    const names = Object.keys(params);
    const f = (...xs: tf.Tensor[]) =>
      forward(Object.fromEntries(names.map((n, i) => [n, xs[i] as tf.Tensor])));
    const tensors = names.map((n) => tf.tensor(params[n]?.data as Float32Array, params[n]?.shape));
    const { value, grads } = tf.valueAndGrads(f)(tensors);
    return {
      loss: value.dataSync()[0] as number,
      grads: Object.fromEntries(names.map((n, i) => [n, grads[i]?.dataSync() as Float32Array])),
    };
  });
}

function expectClose(
  a: { loss: number; grads: Record<string, Float32Array> },
  b: { loss: number; grads: Record<string, Float32Array> },
  tol: number,
): void {
  expect(Math.abs(a.loss - b.loss)).toBeLessThan(tol);
  for (const [name, g] of Object.entries(b.grads)) {
    const got = a.grads[name] as Float32Array;
    expect(got.length, name).toBe(g.length);
    let worst = 0;
    for (let i = 0; i < g.length; i++)
      worst = Math.max(worst, Math.abs((got[i] as number) - (g[i] as number)));
    expect(worst, name).toBeLessThan(tol);
  }
}

const tfGelu = (x: tf.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
const tfLinear = (x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor) => {
  const y = tf.matMul(tf.reshape(x, [-1, x.shape[x.rank - 1] as number]), w, false, true);
  return tf.reshape(b === undefined ? y : tf.add(y, b), [...x.shape.slice(0, -1), w.shape[0] as number]);
};

describe('traced gradients equal tfjs autograd', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });

  it('a tiny MLP with GELU and cross-entropy (one label ignored)', async () => {
    const params: Params = {
      w1: { shape: [5, 3], data: rand(15, 1) },
      b1: { shape: [5], data: rand(5, 2, 0.1) },
      w2: { shape: [4, 5], data: rand(20, 3) },
      b2: { shape: [4], data: rand(4, 4, 0.1) },
    };
    const x = rand(12, 5);
    const labels = [2, 0, -100, 3];
    const traced = await tracedGradients(params, (p, t) => {
      const h = gelu(linear(t.constant(x, [4, 3]), p.w1 as Value, p.b1));
      return crossEntropy(linear(h, p.w2 as Value, p.b2), t.ints(labels));
    });
    const reference = tfjsGradients(params, (p) => {
      const h = tfGelu(tfLinear(tf.tensor(x, [4, 3]), p.w1 as tf.Tensor, p.b1 as tf.Tensor));
      const logits = tfLinear(h, p.w2 as tf.Tensor, p.b2 as tf.Tensor);
      const logp = tf.logSoftmax(logits);
      const keep = [0, 1, 3];
      const picked = keep.map((i) => tf.reshape(tf.slice(logp, [i, labels[i] as number], [1, 1]), []));
      return tf.neg(tf.mean(tf.stack(picked))) as tf.Scalar;
    });
    expectClose(traced, reference, 1e-5);
  });

  it('a tiny attention block: q/k/v projections, masked softmax, output projection, residual LayerNorm', async () => {
    const [B, S, D, heads] = [2, 3, 4, 2];
    const params: Params = {
      wq: { shape: [D, D], data: rand(16, 11) },
      wk: { shape: [D, D], data: rand(16, 12) },
      wv: { shape: [D, D], data: rand(16, 13) },
      wo: { shape: [D, D], data: rand(16, 14) },
      bo: { shape: [D], data: rand(D, 15, 0.1) },
      gamma: { shape: [D], data: Float32Array.from(rand(D, 16, 0.1), (v) => 1 + v) },
      beta: { shape: [D], data: rand(D, 17, 0.1) },
      x: { shape: [B, S, D], data: rand(B * S * D, 18) },
    };
    const mask = [1, 1, 1, 1, 1, 0];
    const r = rand(B * S * D, 19);
    const traced = await tracedGradients(params, (p, t) => {
      const x = p.x as Value;
      const maskAdd = t.constant(
        mask.map((m) => (1 - m) * -1e9),
        [B, 1, 1, S],
      );
      const ctx = attention(
        linear(x, p.wq as Value),
        linear(x, p.wk as Value),
        linear(x, p.wv as Value),
        maskAdd,
        heads,
      );
      const y = op.layerNorm(
        op.add(linear(ctx, p.wo as Value, p.bo), x),
        p.gamma as Value,
        p.beta as Value,
        1e-5,
      );
      return op.reduceSum(op.mul(y, t.constant(r, [B, S, D])));
    });
    const reference = tfjsGradients(params, (p) => {
      const x = p.x as tf.Tensor;
      const split = (v: tf.Tensor) => tf.transpose(tf.reshape(v, [B, S, heads, D / heads]), [0, 2, 1, 3]);
      const proj = (w: tf.Tensor) => split(tfLinear(x, w));
      const scores = tf.add(
        tf.mul(
          tf.matMul(proj(p.wq as tf.Tensor), proj(p.wk as tf.Tensor), false, true),
          1 / Math.sqrt(D / heads),
        ),
        tf.tensor(
          mask.map((m) => (1 - m) * -1e9),
          [B, 1, 1, S],
        ),
      );
      const ctx = tf.reshape(
        tf.transpose(tf.matMul(tf.softmax(scores), proj(p.wv as tf.Tensor)), [0, 2, 1, 3]),
        [B, S, D],
      );
      const h = tf.add(tfLinear(ctx, p.wo as tf.Tensor, p.bo as tf.Tensor), x);
      const { mean, variance } = tf.moments(h, -1, true);
      const y = tf.add(
        tf.mul(tf.div(tf.sub(h, mean), tf.sqrt(tf.add(variance, 1e-5))), p.gamma as tf.Tensor),
        p.beta as tf.Tensor,
      );
      return tf.sum(tf.mul(y, tf.tensor(r, [B, S, D]))) as tf.Scalar;
    });
    expectClose(traced, reference, 1e-4);
  });

  it('a new layer needs no rule: a gated feed-forward block (the docs/architecture.md example)', async () => {
    const [M, D, inner] = [5, 4, 6];
    const params: Params = {
      gate: { shape: [inner, D], data: rand(inner * D, 31) },
      up: { shape: [inner, D], data: rand(inner * D, 32) },
      down: { shape: [D, inner], data: rand(D * inner, 33) },
      x: { shape: [M, D], data: rand(M * D, 34) },
    };
    const r = rand(M * D, 35);
    const traced = await tracedGradients(params, (p, t) => {
      const x = p.x as Value;
      const y = linear(
        op.mul(linear(x, p.up as Value), op.sigmoid(linear(x, p.gate as Value))),
        p.down as Value,
      );
      return op.reduceSum(op.mul(y, t.constant(r, [M, D])));
    });
    const reference = tfjsGradients(params, (p) => {
      const x = p.x as tf.Tensor;
      const h = tf.mul(tfLinear(x, p.up as tf.Tensor), tf.sigmoid(tfLinear(x, p.gate as tf.Tensor)));
      return tf.sum(tf.mul(tfLinear(h, p.down as tf.Tensor), tf.tensor(r, [M, D]))) as tf.Scalar;
    });
    expectClose(traced, reference, 1e-5);
  });
});
