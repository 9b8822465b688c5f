import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { type ParamBuffers, SlicedUpdate } from './sliced-update.js';
import type { AdamWSettings, TrainGraphSignature } from './train-types.js';

const adamw: AdamWSettings = { beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.1, maxGradNorm: 1 };
const build = async (bytes: Uint8Array) => ({ session: await ort.InferenceSession.create(bytes) });

/** torch.optim.AdamW after clip_grad_norm_, in float64, for one parameter. */
function referenceAdamW(
  b: ParamBuffers,
  g: Float32Array,
  decay: boolean,
  lr: number,
  t: number,
  norm: number,
) {
  const coef = Math.min(1, (adamw.maxGradNorm as number) / (norm + 1e-6));
  const out = {
    p: new Float64Array(b.p.length),
    m: new Float64Array(b.p.length),
    v: new Float64Array(b.p.length),
  };
  for (let i = 0; i < b.p.length; i++) {
    const gi = (g[i] as number) * coef;
    const m = adamw.beta1 * (b.m[i] as number) + (1 - adamw.beta1) * gi;
    const v = adamw.beta2 * (b.v[i] as number) + (1 - adamw.beta2) * gi * gi;
    const p = decay ? (b.p[i] as number) * (1 - lr * adamw.weightDecay) : (b.p[i] as number);
    const mHat = m / (1 - adamw.beta1 ** t);
    const vHat = v / (1 - adamw.beta2 ** t);
    out.p[i] = p - (lr * mHat) / (Math.sqrt(vHat) + adamw.eps);
    out.m[i] = m;
    out.v[i] = v;
  }
  return out;
}

describe('SlicedUpdate', () => {
  // 40 small weights and 5 biases (no decay) are packed; the 1,000-element weight is cut into slices
  const shapes: Array<[string, number[]]> = [
    ...Array.from({ length: 40 }, (_, i): [string, number[]] => [`layer.${i}.weight`, [2, 5]]),
    ...Array.from({ length: 5 }, (_, i): [string, number[]] => [`layer.${i}.bias`, [7]]),
    ['big.weight', [10, 100]],
  ];
  const signature: TrainGraphSignature = {
    batch: [],
    params: shapes.map(([name, shape]) => ({ name, shape, input: name })),
  };

  it('packs small parameters into few runs and slices large ones, with the results of AdamW per parameter', async () => {
    const update = await SlicedUpdate.create(signature, adamw, build, 300);
    // decay: 400 small elements and 1,000 in slices of 300 -> runs of <= 300 elements; no decay: 1 run of 35
    expect(update.runCount).toBeLessThanOrEqual(7);
    expect(update.runCount).toBeGreaterThanOrEqual(6);
    let seed = 1;
    const rand = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647 - 0.5;
    };
    const bufs: ParamBuffers[] = shapes.map(([, shape]) => {
      const n = shape.reduce((a, d) => a * d, 1);
      const fill = (scale: number) => Float32Array.from({ length: n }, () => rand() * scale);
      return { p: fill(1), m: fill(0.01), v: fill(0.001).map(Math.abs) };
    });
    update.grads.forEach((g) => {
      for (let i = 0; i < g.length; i++) g[i] = rand();
    });
    const norm = Math.sqrt(update.grads.reduce((a, g) => a + g.reduce((b, x) => b + x * x, 0), 0));
    const want = bufs.map((b, i) =>
      referenceAdamW(
        b,
        update.grads[i] as Float32Array,
        !(shapes[i] as [string, number[]])[0].endsWith('.bias'),
        1e-2,
        3,
        norm,
      ),
    );
    await update.apply(bufs, 1e-2, 3, norm);
    bufs.forEach((b, i) => {
      const w = want[i] as (typeof want)[number];
      for (let k = 0; k < b.p.length; k++) {
        expect(Math.abs((b.p[k] as number) - (w.p[k] as number))).toBeLessThan(1e-6);
        expect(Math.abs((b.m[k] as number) - (w.m[k] as number))).toBeLessThan(1e-7);
        expect(Math.abs((b.v[k] as number) - (w.v[k] as number))).toBeLessThan(1e-7);
      }
    });
    await update.release();
  });

  it('refuses a chunk that is not a positive whole number', async () => {
    await expect(SlicedUpdate.create(signature, adamw, build, 0)).rejects.toThrow(/updateChunk/);
  });
});
