import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdamW, clipGradNorm } from './optim.js';
import { defaultNoDecay } from './params.js';

beforeAll(async () => {
  await initBackend();
});

/**
 * Reference AdamW in float64 written from the algorithm in the PyTorch docs
 * (https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html, decoupled decay).
 */
function refAdamW(
  p: number[],
  grads: number[][],
  lrs: number[],
  wd: number,
  b1 = 0.9,
  b2 = 0.999,
  eps = 1e-8,
): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const x = [...p];
  grads.forEach((g, k) => {
    const t = k + 1;
    const lr = lrs[k] as number;
    for (let i = 0; i < x.length; i++) {
      x[i] = (x[i] as number) * (1 - lr * wd);
      m[i] = b1 * (m[i] as number) + (1 - b1) * (g[i] as number);
      v[i] = b2 * (v[i] as number) + (1 - b2) * (g[i] as number) ** 2;
      const mh = (m[i] as number) / (1 - b1 ** t);
      const denom = Math.sqrt(v[i] as number) / Math.sqrt(1 - b2 ** t) + eps;
      x[i] = (x[i] as number) - (lr * mh) / denom;
    }
  });
  return x;
}

describe('AdamW', () => {
  it('first step moves each weight by lr * sign(g) after decoupled decay (bias-corrected m/sqrt(v) = g/|g|)', () => {
    const w = tf.variable(tf.tensor1d([1, -2, 0.5]));
    const opt = new AdamW([['w.weight', w]], { weightDecay: 0.1 });
    const g = tf.tensor1d([0.3, -4, 1e-3]);
    opt.step(new Map([['w.weight', g]]), 0.01);
    // p*(1 - 0.01*0.1) - 0.01 * g/(|g| + 1e-8): hand-computed from the update rule
    const want = [1 * 0.999 - 0.01, -2 * 0.999 + 0.01, 0.5 * 0.999 - 0.01 * (1e-3 / (1e-3 + 1e-8))];
    const got = Array.from(w.dataSync());
    for (const [i, x] of want.entries()) expect(got[i]).toBeCloseTo(x, 6);
    opt.dispose();
    tf.dispose([w, g]);
  });

  it('matches a float64 reference of torch AdamW over 10 steps with changing lr and gradients', () => {
    const p0 = [0.7, -1.3, 2.1, 0.05];
    const w = tf.variable(tf.tensor1d(p0));
    const opt = new AdamW([['x.weight', w]], { weightDecay: 0.01 });
    const grads: number[][] = [];
    const lrs: number[] = [];
    for (let k = 0; k < 10; k++) {
      const g = p0.map((_, i) => Math.sin(k * 1.7 + i) * (i + 1));
      grads.push(g);
      lrs.push(0.01 * (k + 1));
      const gt = tf.tensor1d(g);
      opt.step(new Map([['x.weight', gt]]), lrs[k] as number);
      gt.dispose();
    }
    const want = refAdamW(p0, grads, lrs, 0.01);
    const got = Array.from(w.dataSync());
    for (const [i, x] of want.entries()) expect(Math.abs((got[i] as number) - x)).toBeLessThan(1e-5);
    opt.dispose();
    w.dispose();
  });

  it('applies no weight decay to biases and LayerNorm weights, and skips parameters without a gradient', () => {
    const bias = tf.variable(tf.tensor1d([1, 1]));
    const ln = tf.variable(tf.tensor1d([1, 1]));
    const frozenish = tf.variable(tf.tensor1d([3, 3]));
    const opt = new AdamW(
      [
        ['a.bias', bias],
        ['a.LayerNorm.weight', ln],
        ['a.weight', frozenish],
      ],
      { weightDecay: 0.5 },
    );
    expect(opt.groups()).toEqual({ decay: ['a.weight'], noDecay: ['a.bias', 'a.LayerNorm.weight'] });
    const zero = tf.zeros([2]);
    opt.step(
      new Map([
        ['a.bias', zero],
        ['a.LayerNorm.weight', zero],
      ]),
      0.1,
    );
    // zero gradient and no decay: unchanged; no gradient at all: unchanged even though it decays
    expect(Array.from(bias.dataSync())).toEqual([1, 1]);
    expect(Array.from(ln.dataSync())).toEqual([1, 1]);
    expect(Array.from(frozenish.dataSync())).toEqual([3, 3]);
    expect(defaultNoDecay('roberta.encoder.layer.0.output.adapter_layer_norm.weight')).toBe(true);
    expect(defaultNoDecay('roberta.encoder.layer.0.output.dense.weight')).toBe(false);
    opt.dispose();
    tf.dispose([bias, ln, frozenish, zero]);
  });

  it('without bias correction uses lr * m / (sqrt(v) + eps)', () => {
    const w = tf.variable(tf.tensor1d([0]));
    const opt = new AdamW([['w', w]], { correctBias: false });
    const g = tf.tensor1d([2]);
    opt.step(new Map([['w', g]]), 1);
    // m = 0.1*2 = 0.2, v = 0.001*4 = 0.004 -> 0.2 / (sqrt(0.004) + 1e-8)
    expect(w.dataSync()[0]).toBeCloseTo(-0.2 / (Math.sqrt(0.004) + 1e-8), 5);
    opt.dispose();
    tf.dispose([w, g]);
  });
});

describe('clipGradNorm', () => {
  it('computes the global norm of per-parameter norms and scales by max/(norm+1e-6)', () => {
    const a = tf.tensor1d([3, 4]);
    const b = tf.tensor1d([12]);
    const r = clipGradNorm(
      new Map([
        ['a', a],
        ['b', b],
      ]),
      1,
    );
    // sqrt(5^2 + 12^2) = 13
    expect(r.norm).toBeCloseTo(13, 5);
    expect(r.paramNorms.map(([, n]) => n)).toEqual([5, 12]);
    const coef = 1 / (13 + 1e-6);
    expect(r.grads.get('a')?.dataSync()[0]).toBeCloseTo(3 * coef, 6);
    expect(r.grads.get('b')?.dataSync()[0]).toBeCloseTo(12 * coef, 6);
    tf.dispose([a, b, ...r.grads.values()]);
  });

  it('leaves gradients unchanged when the norm is below the limit', () => {
    const a = tf.tensor1d([0.3, 0.4]);
    const r = clipGradNorm(new Map([['a', a]]), 1);
    expect(r.norm).toBeCloseTo(0.5, 6);
    expect(Array.from(r.grads.get('a')?.dataSync() ?? [])).toEqual(Array.from(a.dataSync()));
    tf.dispose([a, ...r.grads.values()]);
  });
});
