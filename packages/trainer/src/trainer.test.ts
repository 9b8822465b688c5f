import * as tf from '@tensorflow/tfjs-core';
import { initBackend, isXltError, Rng } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { modelLoss, type TokenBatch } from './objectives.js';
import { fit } from './run.js';
import { Node, snapshot, TinyModel, tinyBatch } from './test-model.js';
import { Trainer } from './trainer.js';

beforeAll(async () => {
  await initBackend();
});

describe('Trainer', () => {
  it('keeps tf.memory().numTensors flat across 100 steps', () => {
    const model = new TinyModel(3);
    model.train();
    const trainer = new Trainer<TokenBatch>(model, modelLoss(model), {
      lr: 1e-2,
      totalSteps: 100,
      weightDecay: 0.01,
    });
    const batch = tinyBatch(new Rng(1));
    trainer.trainStep(batch); // creates the optimiser moments
    const before = tf.memory().numTensors;
    const losses: number[] = [];
    for (let i = 0; i < 99; i++) losses.push(trainer.trainStep(batch).loss);
    expect(tf.memory().numTensors).toBe(before);
    // the same batch every step: the loss must go down
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] as number);
    trainer.dispose();
    model.dispose();
  });

  it('trains only trainable variables and leaves frozen ones bit-identical', () => {
    const model = new TinyModel(4);
    model.setTrainable(false);
    model.classifier.setTrainable(true);
    const before = snapshot(model);
    const trainer = new Trainer<TokenBatch>(model, modelLoss(model), {
      lr: 1e-2,
      totalSteps: 3,
      weightDecay: 0.1,
    });
    expect(trainer.parameterNames()).toEqual(['classifier.weight', 'classifier.bias']);
    for (let i = 0; i < 3; i++) trainer.trainStep(tinyBatch(new Rng(i)));
    const after = snapshot(model);
    for (const [name, v] of before) {
      const same = v.every((x, i) => x === after.get(name)?.[i]);
      expect(same, name).toBe(!name.startsWith('classifier'));
    }
    trainer.dispose();
    model.dispose();
  });

  it('gradient accumulation over two halves equals one step on the whole batch', () => {
    const full = tinyBatch(new Rng(7), 4);
    const half = (lo: number): TokenBatch => ({
      inputIds: full.inputIds.slice(lo, lo + 2),
      attentionMask: full.attentionMask.slice(lo, lo + 2),
      labels: full.labels.slice(lo, lo + 2),
      langIds: full.langIds.slice(lo, lo + 2),
    });
    const a = new TinyModel(5);
    const b = new TinyModel(5);
    const ta = new Trainer<TokenBatch>(a, modelLoss(a), { lr: 1e-2, totalSteps: 2, maxGradNorm: 0.5 });
    const tb = new Trainer<TokenBatch>(b, modelLoss(b), { lr: 1e-2, totalSteps: 2, maxGradNorm: 0.5 });
    const ra = ta.trainStep(full);
    const rb = tb.trainStep([half(0), half(2)]);
    expect(rb.loss).toBeCloseTo(ra.loss, 5);
    expect(rb.gradNorm).toBeCloseTo(ra.gradNorm, 5);
    const sa = snapshot(a);
    const sb = snapshot(b);
    for (const [n, v] of sa)
      for (const [i, x] of v.entries())
        expect(Math.abs(x - (sb.get(n)?.[i] ?? Number.NaN))).toBeLessThan(1e-6);
    ta.dispose();
    tb.dispose();
    a.dispose();
    b.dispose();
  });

  it('is deterministic: two seeded runs give bit-identical losses', async () => {
    const run = async () => {
      const m = new TinyModel(9);
      const s = await fit<TokenBatch>(m, modelLoss(m), {
        lr: 5e-3,
        totalSteps: 6,
        seed: 42,
        data: ({ rng }) => tinyBatch(rng),
      });
      m.dispose();
      return s.losses;
    };
    const first = await run();
    expect(await run()).toEqual(first);
    expect(new Set(first).size).toBeGreaterThan(1);
  });

  it('stops with a NUMERIC error naming the step and the parameter whose gradient is not finite', () => {
    const m = new Node();
    const good = m.param('good.weight', tf.tensor1d([1, 2]));
    const bad = m.param('bad.weight', tf.tensor1d([1, 1]));
    let step = 0;
    const trainer = new Trainer<null>(
      m,
      () => {
        step++;
        // d/dx sqrt(x) at 0 is Inf: on the third step `bad` reaches 0 (set below)
        return tf.add(tf.sum(tf.square(good)), tf.sum(tf.sqrt(bad))) as tf.Scalar;
      },
      { lr: 1e-3, totalSteps: 5 },
    );
    trainer.trainStep(null);
    trainer.trainStep(null);
    bad.assign(tf.tensor1d([0, 1]));
    const n = tf.memory().numTensors;
    let err: unknown;
    try {
      trainer.trainStep(null);
    } catch (e) {
      err = e;
    }
    expect(isXltError(err, 'NUMERIC')).toBe(true);
    expect((err as Error).message).toMatch(/step 3/);
    expect((err as { tensor?: string }).tensor).toBe('bad.weight');
    expect(tf.memory().numTensors).toBe(n);
    expect(step).toBe(3);
    trainer.dispose();
    m.dispose();
  });

  it('reports a NaN loss as NUMERIC with the step', () => {
    const m = new Node();
    const w = m.param('w', tf.tensor1d([-1]));
    const trainer = new Trainer<null>(m, () => tf.sum(tf.log(w)) as tf.Scalar, { lr: 1e-3, totalSteps: 5 });
    expect(() => trainer.trainStep(null)).toThrow(/loss is NaN at step 1/);
    trainer.dispose();
    m.dispose();
  });
});
