import { readFileSync } from 'node:fs';
import path from 'node:path';
import { normalizeConfig, SafetensorsReader, sharedPath, sharedSkipReason } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { HeadKind, XmodConfig } from '../export.js';
import { randomWeights } from '../random.js';
import { readEncoderConfig, safetensorsWeights } from '../runner.js';
import { peftAdapterWeights } from '../weights.js';
import {
  bothGradients,
  expectSameGradients,
  flat,
  i64,
  maxAbsDiff,
  type Nested,
  tinyBatch,
} from './parity-helpers.js';
import { buildTracedTrainGraph } from './train-graph.js';

const skip = sharedSkipReason('fixtures') !== undefined;

describe.skipIf(skip)('traced X-Mod encoder on the xmod-postnorm fixtures', () => {
  // biome-ignore lint/suspicious/noExplicitAny: reference JSON
  let ref: any;
  let batch: Record<string, ort.Tensor>;
  beforeAll(() => {
    ref = JSON.parse(readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'));
    const [B, S] = [ref.inputs.input_ids.length, ref.inputs.input_ids[0].length];
    batch = {
      input_ids: i64(ref.inputs.input_ids, [B, S]),
      attention_mask: i64(ref.inputs.attention_mask, [B, S]),
      lang_ids: i64(ref.inputs.lang_ids, [B]),
    };
  });
  const cases: Array<[string, HeadKind, string]> = [
    ['mlm', 'masked-lm', 'mlm_labels'],
    ['tokcls', 'token-classification', 'tag_labels'],
    ['seqcls', 'sequence-classification', 'cls_labels'],
  ];

  it.each(cases)('%s: logits equal the PyTorch reference within 1e-4', async (dir, head) => {
    const folder = sharedPath('fixtures', 'xmod-postnorm', dir);
    const weights = safetensorsWeights(path.join(folder, 'model.safetensors'));
    const [B, S] = batch.input_ids!.dims as [number, number];
    const { model } = buildTracedTrainGraph({
      config: readEncoderConfig(folder),
      weights,
      head,
      trainable: [],
      mode: 'logits',
      batchSize: B,
      sequenceLength: S,
    });
    weights.close();
    const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
    const out = await session.run(batch);
    expect(maxAbsDiff(out.logits!.data as Float32Array, flat(ref[dir].logits))).toBeLessThan(1e-4);
    await session.release();
  });

  it('qa: start and end logits equal the PyTorch reference within 1e-4', async () => {
    const folder = sharedPath('fixtures', 'xmod-postnorm', 'qa');
    const weights = safetensorsWeights(path.join(folder, 'model.safetensors'));
    const [B, S] = batch.input_ids!.dims as [number, number];
    const { model } = buildTracedTrainGraph({
      config: readEncoderConfig(folder),
      weights,
      head: 'question-answering',
      trainable: [],
      mode: 'logits',
      batchSize: B,
      sequenceLength: S,
    });
    weights.close();
    const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
    const out = await session.run(batch);
    await session.release();
    for (const k of ['start_logits', 'end_logits'])
      expect(maxAbsDiff(out[k]?.data as Float32Array, flat(ref.qa[k])), k).toBeLessThan(1e-4);
  });

  it('qa: loss and every gradient equal PyTorch within 1e-4 (any-shape graph = static graph, finite differences)', async () => {
    const folder = sharedPath('fixtures', 'xmod-postnorm', 'qa');
    const file = path.join(folder, 'model.safetensors');
    const r = SafetensorsReader.open(file);
    const trainable = r.names();
    r.close();
    const weights = safetensorsWeights(file);
    const B = ref.inputs.start_positions.length;
    const res = await bothGradients(readEncoderConfig(folder), weights, 'question-answering', trainable, {
      ...batch,
      start_positions: i64(ref.inputs.start_positions, [B]),
      end_positions: i64(ref.inputs.end_positions, [B]),
    });
    weights.close();
    expectSameGradients(res, trainable, 1e-4);
    expect(Math.abs((res.traced.loss?.data[0] as number) - ref.qa.loss)).toBeLessThan(1e-4);
    for (const [name, want] of Object.entries(ref.qa.grads as Record<string, Nested>))
      expect(maxAbsDiff(res.traced[`grad:${name}`]?.data as Float32Array, flat(want)), name).toBeLessThan(
        1e-4,
      );
  });

  it('live PEFT LoRA (lora_qv on the XLM-R base): LoRA gradients of the any-shape graph equal the static graph within 1e-4, finite differences agree', async () => {
    const dir = sharedPath('fixtures', 'xlmr-lora', 'base');
    const base = safetensorsWeights(path.join(dir, 'model.safetensors'));
    const { weights, lora, names } = peftAdapterWeights(base, sharedPath('fixtures', 'xlmr-lora', 'lora_qv'));
    const { input_ids, attention_mask } = batch;
    const [B, S] = input_ids!.dims as [number, number];
    const res = await bothGradients(
      readEncoderConfig(dir),
      weights,
      'masked-lm',
      names,
      { input_ids: input_ids!, attention_mask: attention_mask!, labels: i64(ref.inputs.mlm_labels, [B, S]) },
      { lora },
    );
    base.close();
    expect(names).toHaveLength(8);
    expectSameGradients(res, names, 1e-4);
  });

  it.each(['lora_qv', 'lora_all'])(
    'live PEFT %s: loss and every LoRA gradient equal PyTorch within 1e-4',
    async (adapter) => {
      const lref = JSON.parse(readFileSync(sharedPath('fixtures', 'xlmr-lora', 'reference.json'), 'utf8'));
      const dir = sharedPath('fixtures', 'xlmr-lora', 'base');
      const base = safetensorsWeights(path.join(dir, 'model.safetensors'));
      const { weights, lora, names } = peftAdapterWeights(base, sharedPath('fixtures', 'xlmr-lora', adapter));
      const ids = lref.inputs.input_ids as number[][];
      const [B, S] = [ids.length, (ids[0] as number[]).length];
      const { model, signature } = buildTracedTrainGraph({
        config: readEncoderConfig(dir),
        weights,
        head: 'masked-lm',
        trainable: names,
        mode: 'grads',
        lora,
        batchSize: B,
        sequenceLength: S,
      });
      const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
      const feeds: Record<string, ort.Tensor> = {
        input_ids: i64(ids, [B, S]),
        attention_mask: i64(lref.inputs.attention_mask, [B, S]),
        labels: i64(lref.inputs.mlm_labels, [B, S]),
      };
      for (const q of signature.params)
        feeds[q.input] = new ort.Tensor('float32', weights.get(q.name).data, q.shape);
      const out = await session.run(feeds);
      await session.release();
      base.close();
      expect(Math.abs((out.loss?.data[0] as number) - lref[adapter].loss)).toBeLessThan(1e-4);
      const grads = Object.entries(lref[adapter].grads as Record<string, Nested>);
      expect(grads.length).toBeGreaterThan(0);
      for (const [peftName, want] of grads) {
        const name = peftName.replace(/^base_model\.model\./, '').replace('.default.weight', '.weight');
        expect(maxAbsDiff(out[`grad:${name}`]?.data as Float32Array, flat(want)), name).toBeLessThan(1e-4);
      }
    },
  );

  it.each(cases)(
    '%s: loss and every gradient equal PyTorch within 1e-4 (any-shape graph = static graph, finite differences)',
    async (dir, head, labelKey) => {
      const folder = sharedPath('fixtures', 'xmod-postnorm', dir);
      const file = path.join(folder, 'model.safetensors');
      const r = SafetensorsReader.open(file);
      const trainable = r.names().filter((n) => n !== 'lm_head.decoder.weight');
      r.close();
      const weights = safetensorsWeights(file);
      const labels = ref.inputs[labelKey] as Nested[];
      const dims = head === 'sequence-classification' ? [labels.length] : [labels.length, 24];
      const res = await bothGradients(readEncoderConfig(folder), weights, head, trainable, {
        ...batch,
        labels: i64(labels, dims),
      });
      weights.close();
      expectSameGradients(res, trainable, 1e-4);
      expect(Math.abs((res.traced.loss?.data[0] as number) - ref[dir].loss)).toBeLessThan(1e-4);
      for (const [name, want] of Object.entries(ref[dir].grads as Record<string, Nested>)) {
        const got = res.traced[`grad:${name}`]?.data as Float32Array;
        expect(maxAbsDiff(got, flat(want)), name).toBeLessThan(1e-4);
      }
    },
  );
});

const tinyXlmr = normalizeConfig({
  vocab_size: 30,
  hidden_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 12,
  max_position_embeddings: 12,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});

describe('traced encoder for any shape against the static-shape graph and finite differences (random weights)', () => {
  const batch = {
    ...tinyBatch(),
    lang_ids: i64([1, 0], [2]),
    labels: i64(
      [
        [-100, 3, 4, -100, 7, -100],
        [-100, 11, -100, -100, -100, -100],
      ],
      [2, 6],
    ),
  };
  const variants: Array<[string, XmodConfig]> = [
    ['XLM-R (post-norm)', tinyXlmr],
    ['pre-norm with a final LayerNorm', { ...tinyXlmr, pre_norm: true }],
    [
      'X-Mod with its own adapter LayerNorm, residual before it',
      {
        ...tinyXlmr,
        languages: ['en_XX', 'de_DE'],
        adapter_layer_norm: true,
        ln_before_adapter: false,
      },
    ],
  ];
  it.each(variants)('%s: masked-LM loss and gradients within 1e-4', async (_, config) => {
    const weights = randomWeights(config, 'masked-lm', 3, 0.3);
    const trainable = weights.names().filter((n) => n !== 'lm_head.decoder.weight');
    const res = await bothGradients(config, weights, 'masked-lm', trainable, batch);
    expectSameGradients(res, trainable, 1e-4);
  });

  it('frozen parameters get no gradient input or output', async () => {
    const config = { ...tinyXlmr, languages: ['en_XX', 'de_DE'] };
    const weights = randomWeights(config, 'masked-lm', 4, 0.3);
    const trainable = weights
      .names()
      .filter((n) => n.includes('adapter_modules') || n.startsWith('lm_head.d'));
    const res = await bothGradients(config, weights, 'masked-lm', trainable, batch);
    expect(res.signature.params.map((p) => p.name)).toEqual(trainable);
    expect(Object.keys(res.traced).filter((k) => k.startsWith('grad:'))).toHaveLength(trainable.length);
    expectSameGradients(res, trainable, 1e-4);
  });

  const dropoutConfig: XmodConfig = {
    ...tinyXlmr,
    languages: ['en_XX', 'de_DE'],
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.15,
    classifier_dropout: 0.2,
    num_labels: 3,
  };
  const dropoutHeads: Array<[HeadKind, ort.Tensor]> = [
    ['masked-lm', batch.labels],
    [
      'token-classification',
      i64(
        [
          [-100, 0, 2, -100, 1, -100],
          [-100, 2, -100, -100, -100, -100],
        ],
        [2, 6],
      ),
    ],
    ['sequence-classification', i64([2, 0], [2])],
  ];
  it.each(dropoutHeads)(
    '%s with dropout: the same seed drops the same elements for any shape (loss and gradients within 1e-4), finite differences agree',
    async (head, labels) => {
      const weights = randomWeights(dropoutConfig, head, 5, 0.3);
      const trainable = weights.names().filter((n) => n !== 'lm_head.decoder.weight');
      const withSeed = { ...batch, labels, dropout_seed: i64(12345, []) };
      const res = await bothGradients(dropoutConfig, weights, head, trainable, withSeed, { dropout: true });
      expect(res.signature.batch).toContain('dropout_seed');
      expectSameGradients(res, trainable, 1e-4);
      // and dropout changed the result: without it the loss differs
      const plain = await bothGradients(dropoutConfig, weights, head, trainable, { ...batch, labels });
      expect(
        Math.abs((plain.traced.loss?.data[0] as number) - (res.traced.loss?.data[0] as number)),
      ).toBeGreaterThan(1e-4);
    },
  );
});
