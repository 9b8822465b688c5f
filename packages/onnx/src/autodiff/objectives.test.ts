import { normalizeConfig } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { HeadKind } from '../export.js';
import { randomWeights } from '../random.js';
import { bothGradients, expectSameGradients, i64, maxAbsDiff } from './parity-helpers.js';
import { buildTracedTrainGraph } from './train-graph.js';

const config = normalizeConfig({
  vocab_size: 30,
  hidden_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 12,
  languages: ['en_XX', 'de_DE'],
  num_labels: 3,
  max_position_embeddings: 12,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});

// four rows: two originals, then their augmented versions
const batch = {
  input_ids: i64(
    [
      [0, 5, 6, 7, 8, 2],
      [0, 9, 10, 2, 1, 1],
      [0, 5, 16, 7, 18, 2],
      [0, 19, 10, 2, 1, 1],
    ],
    [4, 6],
  ),
  attention_mask: i64(
    [
      [1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 0, 0],
      [1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 0, 0],
    ],
    [4, 6],
  ),
  lang_ids: i64([0, 1, 1, 0], [4]),
};

describe('traced objectives: any-shape graph against the static-shape graph and finite differences', () => {
  const saltCases: Array<[HeadKind, ort.Tensor]> = [
    ['sequence-classification', i64([2, 0, 2, 0], [4])],
    [
      'token-classification',
      i64(
        [
          [-100, 0, 2, 1, 1, -100],
          [-100, 2, 0, -100, -100, -100],
          [-100, 0, 2, 1, 1, -100],
          [-100, 2, 0, -100, -100, -100],
        ],
        [4, 6],
      ),
    ],
  ];
  it.each(saltCases)(
    'SALT (task + augmented + KL) with %s: loss and gradients within 1e-4',
    async (head, labels) => {
      const weights = randomWeights(config, head, 7, 0.3);
      const trainable = weights.names();
      const salt = { augWeight: 0.5, klWeight: 2 };
      const res = await bothGradients(config, weights, head, trainable, { ...batch, labels }, { salt });
      expectSameGradients(res, trainable, 1e-4);
      // the KL and augmented terms count: the plain cross-entropy differs
      const plain = await bothGradients(config, weights, head, trainable, { ...batch, labels });
      const loss = (o: typeof res.traced) => o.loss?.data[0] as number;
      expect(Math.abs(loss(res.traced) - loss(plain.traced))).toBeGreaterThan(1e-3);
    },
  );

  it('embedding mixup (soft code-switching): loss and gradients, the word embeddings included, within 1e-4', async () => {
    const weights = randomWeights(config, 'masked-lm', 8, 0.3);
    const trainable = weights.names().filter((n) => n !== 'lm_head.decoder.weight');
    const [B, S, K] = [4, 6, 2];
    const ids = Array.from({ length: B * S * K }, (_, i) => 3 + ((i * 7) % 25));
    const probs = Array.from({ length: B * S }, (_, i) => [
      0.25 + (i % 3) * 0.25,
      0.75 - (i % 3) * 0.25,
    ]).flat();
    const lambda = Array.from({ length: B * S }, (_, i) => (i % 4 === 1 ? 0 : 0.2 + (i % 5) * 0.1));
    const mixBatch = {
      ...batch,
      labels: i64(
        Array.from({ length: B * S }, (_, i) => (i % 3 === 0 ? 4 + (i % 20) : -100)),
        [B, S],
      ),
      mix_ids: i64(ids, [B, S, K]),
      mix_probs: new ort.Tensor('float32', Float32Array.from(probs), [B, S, K]),
      mix_lambda: new ort.Tensor('float32', Float32Array.from(lambda), [B, S]),
    };
    const res = await bothGradients(config, weights, 'masked-lm', trainable, mixBatch, { mixup: K });
    expect(res.signature.batch).toEqual(expect.arrayContaining(['mix_ids', 'mix_probs', 'mix_lambda']));
    expectSameGradients(res, trainable, 1e-4);
  });

  it('masked-LM head: the labelled positions found in the graph and given as mlm_positions (padded) agree within 1e-5', async () => {
    const weights = randomWeights(config, 'masked-lm', 9, 0.3);
    const trainable = weights.names().filter((n) => n !== 'lm_head.decoder.weight');
    const [B, S] = [4, 6];
    const flatLabels = Array.from({ length: B * S }, (_, i) => (i % 5 === 1 ? 3 + (i % 17) : -100));
    const labelled = flatLabels.flatMap((l, i) => (l === -100 ? [] : [i]));
    // padded to a fixed count with an unlabelled position (ignored by the loss)
    const positions = [...labelled, 0, 0];
    const run = async (maskedPositions?: number) => {
      const g = buildTracedTrainGraph({
        config,
        weights,
        head: 'masked-lm',
        trainable,
        mode: 'grads',
        batchSize: B,
        sequenceLength: S,
        ...(maskedPositions !== undefined ? { maskedPositions } : {}),
      });
      const session = await ort.InferenceSession.create(g.model, { intraOpNumThreads: 1 });
      const feeds: Record<string, ort.Tensor> = { ...batch, labels: i64(flatLabels, [B, S]) };
      if (maskedPositions !== undefined) feeds.mlm_positions = i64(positions, [positions.length]);
      for (const q of g.signature.params)
        feeds[q.input] = new ort.Tensor('float32', weights.get(q.name).data, q.shape);
      const out = await session.run(feeds);
      await session.release();
      return out;
    };
    const dense = await run();
    const sparse = await run(positions.length);
    expect(Math.abs((dense.loss?.data[0] as number) - (sparse.loss?.data[0] as number))).toBeLessThan(1e-5);
    for (const n of trainable)
      expect(
        maxAbsDiff(dense[`grad:${n}`]?.data as Float32Array, sparse[`grad:${n}`]?.data as Float32Array),
        n,
      ).toBeLessThan(1e-5);
  });
});
