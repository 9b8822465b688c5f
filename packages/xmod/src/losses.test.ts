import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { crossEntropy, XmodForQuestionAnswering, XmodForSequenceClassification } from './index.js';
import { tinyConfig } from './test-config.js';

describe('head losses follow transformers', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });

  it('cross-entropy by hand: mean over non-ignored labels', () => {
    // logits [[0, ln 3], [1, 1]], labels [1, -100]: -log(3/4) (PyTorch CrossEntropyLoss, mean reduction)
    const l = crossEntropy(
      tf.tensor2d([
        [0, Math.log(3)],
        [1, 1],
      ]),
      [1, -100],
    );
    expect(Math.abs((l.dataSync()[0] ?? 0) - -Math.log(3 / 4))).toBeLessThan(1e-6);
    l.dispose();
  });

  it('num_labels 1 is MSE regression on the single logit', () => {
    const model = new XmodForSequenceClassification({ ...tinyConfig(), num_labels: 1 });
    const x = {
      inputIds: [
        [0, 5, 6, 2],
        [0, 7, 2, 1],
      ],
      labels: [0.5, -1.5],
    };
    const out = model.forward(x);
    expect(out.logits.shape).toEqual([2, 1]);
    const z = Array.from(out.logits.dataSync());
    const want = (((z[0] ?? 0) - 0.5) ** 2 + ((z[1] ?? 0) + 1.5) ** 2) / 2; // MSELoss, mean
    expect(Math.abs((out.loss?.dataSync()[0] ?? 0) - want)).toBeLessThan(1e-5);
    model.dispose();
  });

  it('QA positions outside the sequence are clamped and ignored; loss = (start + end) / 2', () => {
    const model = new XmodForQuestionAnswering(tinyConfig());
    const x = {
      inputIds: [
        [0, 5, 6, 2],
        [0, 7, 8, 2],
      ],
    };
    const out = model.forward({ ...x, startPositions: [1, 99], endPositions: [2, 3] });
    const s = crossEntropy(out.startLogits, [1, -100]);
    const e = crossEntropy(out.endLogits, [2, 3]);
    const want = ((s.dataSync()[0] ?? 0) + (e.dataSync()[0] ?? 0)) / 2;
    expect(Math.abs((out.loss?.dataSync()[0] ?? 0) - want)).toBeLessThan(1e-6);
    model.dispose();
  });
});
