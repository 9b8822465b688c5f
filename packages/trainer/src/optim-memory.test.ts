import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdamW } from './optim.js';

beforeAll(async () => {
  await initBackend({ backend: 'cpu', log: false });
});

describe('AdamW tensor bookkeeping', () => {
  it('holds exactly two moment tensors per parameter, and none after dispose (also after setState)', async () => {
    const w = tf.variable(
      tf.tensor2d([
        [1, 2],
        [3, 4],
      ]),
      true,
      'w',
    );
    const b = tf.variable(tf.tensor1d([0.5, -0.5]), true, 'b');
    const base = tf.memory().numTensors;
    const opt = new AdamW(
      [
        ['w', w],
        ['b', b],
      ],
      { weightDecay: 0.01 },
    );
    const grads = new Map<string, tf.Tensor>([
      ['w', tf.ones([2, 2])],
      ['b', tf.ones([2])],
    ]);
    opt.step(grads, 1e-2);
    expect(tf.memory().numTensors).toBe(base + 2 + 4); // the 2 gradients + m and v of each parameter
    const state = await opt.getState();
    const restored = new AdamW([
      ['w', w],
      ['b', b],
    ]);
    restored.setState(state);
    restored.setState(state); // replacing restored moments frees the old ones
    expect(tf.memory().numTensors).toBe(base + 2 + 8);
    opt.dispose();
    restored.dispose();
    tf.dispose([...grads.values()]);
    expect(tf.memory().numTensors).toBe(base);
    w.dispose();
    b.dispose();
  });
});
