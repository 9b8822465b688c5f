import { normalizeConfig } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { exportToOnnx } from '../export.js';
import { randomWeights } from '../random.js';
import { bothGradients, expectSameGradients, i64, maxAbsDiff, tinyBatch } from './parity-helpers.js';
import { buildTracedTrainGraph } from './train-graph.js';

const config = normalizeConfig({
  vocab_size: 20,
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 12,
  oie: { pos_emb_dim: 4, n_arg_layers: 2, n_arg_heads: 2, d_feedforward: 6 },
  max_position_embeddings: 12,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});

const inputs = {
  ...tinyBatch(),
  pred_mask: i64(
    [
      [0, 0, 1, 1, 0, 0],
      [0, 1, 0, 0, 0, 0],
    ],
    [2, 6],
  ),
  pred_position: i64(
    [
      [2, 2, 1, 1, 2, 2],
      [2, 1, 2, 2, 0, 0],
    ],
    [2, 6],
  ),
};
const labels = {
  pred_labels: i64(
    [
      [-100, 0, 1, 2, 0, -100],
      [-100, 1, 0, -100, -100, -100],
    ],
    [2, 6],
  ),
  arg_labels: i64(
    [
      [-100, 1, 0, 0, 3, -100],
      [-100, 0, 3, -100, -100, -100],
    ],
    [2, 6],
  ),
};

describe('traced Open IE head (Multi2OIE)', () => {
  it('loss and every gradient (encoder, predicate tagger, argument extractor) agree for any shape within 1e-4, finite differences agree', async () => {
    const weights = randomWeights(config, 'open-ie', 1, 0.3);
    const trainable = weights.names();
    const res = await bothGradients(config, weights, 'open-ie', trainable, { ...inputs, ...labels });
    expectSameGradients(res, trainable, 1e-4);
    expect(res.signature.batch).toEqual(
      expect.arrayContaining(['pred_mask', 'pred_position', 'pred_labels', 'arg_labels']),
    );
  });

  it('predicate and argument logits equal the exported inference graph within 1e-5', async () => {
    const weights = randomWeights(config, 'open-ie', 2, 0.3);
    const traced = buildTracedTrainGraph({
      config,
      weights,
      head: 'open-ie',
      trainable: [],
      mode: 'logits',
      batchSize: 2,
      sequenceLength: 6,
    });
    const exported = exportToOnnx({ config, weights, head: 'open-ie' });
    const run = async (model: Uint8Array) => {
      const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
      const out = await s.run(inputs);
      await s.release();
      return out;
    };
    const a = await run(traced.model);
    const b = await run(exported.model);
    for (const name of ['pred_logits', 'arg_logits']) {
      expect(a[name]?.dims, name).toEqual(b[name]?.dims);
      expect(maxAbsDiff(a[name]?.data as Float32Array, b[name]?.data as Float32Array), name).toBeLessThan(
        1e-5,
      );
    }
  });
});
