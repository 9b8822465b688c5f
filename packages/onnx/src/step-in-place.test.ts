import { normalizeConfig } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { loadNativeAdamw } from './adamw-native.js';
import { buildTracedTrainGraph } from './autodiff/train-graph.js';
import { randomWeights, weightShapes } from './random.js';
import {
  CompiledTrainStep,
  type CompiledTrainStepOptions,
  GRAD_BLOCK_ELEMENTS,
  type TrainBatch,
} from './step.js';

const config = normalizeConfig({
  model_type: 'xlm-roberta',
  vocab_size: 40,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 24,
  num_labels: 3,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  max_position_embeddings: 20,
});
const head = 'token-classification';
const batch: TrainBatch = {
  inputIds: [
    [0, 5, 6, 7, 8, 2],
    [0, 9, 10, 11, 2, 1],
  ],
  attentionMask: [
    [1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 0],
  ],
  labels: [
    [-100, 1, 2, 0, 1, -100],
    [-100, 2, 2, 1, -100, -100],
  ],
};
const i64 = (rows: number[][]) =>
  new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0]?.length ?? 0]);

describe('compiled step updates parameters and moments in place', () => {
  // no clipping: nothing but the finiteness gate orders the updates after the backward pass
  const adamw = { beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.01 };

  // fused: one graph written in place; sliced: this model's parameters packed whole into a few
  // runs, or cut by 97 elements into many slices written back through views at odd offsets
  type UpdateOptions = Pick<CompiledTrainStepOptions, 'update' | 'updateKernel' | 'updateChunk'>;
  it.each<[string, UpdateOptions]>([
    ['fused', { update: 'fused' }],
    ['sliced, wasm kernel', { update: 'sliced', updateKernel: 'wasm' }],
    ...(loadNativeAdamw().ok
      ? ([['sliced, native kernel', { update: 'sliced', updateKernel: 'native' }]] as Array<
          [string, UpdateOptions]
        >)
      : []),
    ['sliced, onnxruntime kernel, whole parameters', { update: 'sliced', updateKernel: 'onnxruntime' }],
    [
      'sliced, onnxruntime kernel, 97-element slices',
      { update: 'sliced', updateKernel: 'onnxruntime', updateChunk: 97 },
    ],
  ])(
    'gives the same parameters as the fused graph run with separate output buffers, over 3 steps (%s)',
    async (_, updateOptions) => {
      const trainable = [...weightShapes(config, head).keys()];
      const step = await CompiledTrainStep.create({
        config,
        weights: randomWeights(config, head, 3),
        head,
        trainable,
        adamw,
        threads: 1,
        dropoutSeed: 5,
        ...updateOptions,
      });
      expect(step.updateKernelName).toBe(updateOptions.updateKernel ?? 'fused');
      // the reference: the same traced graph, fed and fetched through fresh arrays every step
      const weights = randomWeights(config, head, 3);
      const { model, signature } = buildTracedTrainGraph({
        config,
        weights,
        head,
        trainable,
        adamw,
        mode: 'adamw',
      });
      const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
      const state = new Map(
        signature.params.map((p) => {
          const n = weights.get(p.name).data.length;
          return [
            p.name,
            {
              p: Float32Array.from(weights.get(p.name).data),
              m: new Float32Array(n),
              v: new Float32Array(n),
            },
          ];
        }),
      );
      for (let t = 1; t <= 3; t++) {
        const got = await step.run(batch, 1e-2);
        const seed = (5 * 1000003 + t * 7919) % 2147483647;
        const feeds: Record<string, ort.Tensor> = {
          input_ids: i64(batch.inputIds),
          attention_mask: i64(batch.attentionMask as number[][]),
          labels: i64(batch.labels as number[][]),
          dropout_seed: new ort.Tensor('int64', BigInt64Array.of(BigInt(seed)), []),
          lr: new ort.Tensor('float32', Float32Array.of(1e-2), []),
          step: new ort.Tensor('float32', Float32Array.of(t), []),
        };
        for (const p of signature.params) {
          const s = state.get(p.name) as { p: Float32Array; m: Float32Array; v: Float32Array };
          feeds[p.input] = new ort.Tensor('float32', s.p, p.shape);
          feeds[p.m as string] = new ort.Tensor('float32', s.m, p.shape);
          feeds[p.v as string] = new ort.Tensor('float32', s.v, p.shape);
        }
        const out = await session.run(feeds);
        expect(got.loss).toBeCloseTo(out.loss?.data[0] as number, 6);
        for (const p of signature.params)
          state.set(p.name, {
            p: Float32Array.from(out[p.newParam as string]?.data as Float32Array),
            m: Float32Array.from(out[p.newM as string]?.data as Float32Array),
            v: Float32Array.from(out[p.newV as string]?.data as Float32Array),
          });
      }
      let changed = 0;
      for (const [name, s] of state) {
        const mine = step.parameter(name);
        const start = weights.get(name).data;
        for (let j = 0; j < mine.length; j++) {
          expect(Math.abs((mine[j] as number) - (s.p[j] as number)), name).toBeLessThan(1e-6);
          if (mine[j] !== start[j]) changed++;
        }
      }
      expect(changed).toBeGreaterThan(1000);
      await Promise.all([step.release(), session.release()]);
    },
  );

  it.each(['fused', 'sliced'] as const)(
    'leaves parameters and moments unchanged after a non-finite loss, and updates the source with updateWeightsInPlace (%s)',
    async (update) => {
      const weights = randomWeights(config, head, 4);
      const trainable = [...weightShapes(config, head).keys()];
      const step = await CompiledTrainStep.create({
        config,
        weights,
        head,
        trainable,
        adamw,
        threads: 1,
        updateWeightsInPlace: true,
        update,
      });
      await step.run(batch, 1e-2);
      // the step's parameters are the source's arrays
      expect(step.parameter('classifier.weight')).toBe(weights.get('classifier.weight').data);
      expect(step.heldBytes.parameters).toBe(0);
      const before = step.getState();
      step.parameter('classifier.bias')[1] = Number.NaN;
      const bias = Float32Array.from(step.parameter('classifier.bias'));
      await expect(step.run(batch, 1e-2)).rejects.toThrow(
        /non-finite loss at step 2; parameters were not updated/,
      );
      const after = step.getState();
      for (const name of trainable) {
        const want = name === 'classifier.bias' ? bias : before.params.get(name);
        expect(Array.from(after.params.get(name) as Float32Array), name).toEqual(
          Array.from(want as Float32Array),
        );
        expect(after.m.get(name), name).toEqual(before.m.get(name));
        expect(after.v.get(name), name).toEqual(before.v.get(name));
      }
      await step.release();
    },
  );

  it('frozen parameters fed as graph inputs (frozenAsInputs) train as when baked in', async () => {
    const trainable = [...weightShapes(config, head).keys()].filter((n) => !n.includes('embeddings'));
    const run = async (frozenAsInputs: boolean) => {
      const step = await CompiledTrainStep.create({
        config,
        weights: randomWeights(config, head, 7),
        head,
        trainable,
        adamw,
        threads: 1,
        frozenAsInputs,
      });
      const fed = (step.signature.frozen ?? []).map((f) => f.name);
      const losses = [(await step.run(batch, 1e-2)).loss, (await step.run(batch, 1e-2)).loss];
      const state = step.getState();
      await step.release();
      return { fed, losses, state };
    };
    const baked = await run(false);
    const fed = await run(true);
    expect(baked.fed).toEqual([]);
    expect(fed.fed).toContain('roberta.embeddings.word_embeddings.weight');
    expect(fed.fed.every((n) => !trainable.includes(n))).toBe(true);
    expect(fed.losses[1]).toBeCloseTo(baked.losses[1] as number, 6);
    for (const n of trainable) {
      const a = fed.state.params.get(n) as Float32Array;
      const b = baked.state.params.get(n) as Float32Array;
      for (let j = 0; j < a.length; j++)
        expect(Math.abs((a[j] as number) - (b[j] as number)), n).toBeLessThan(1e-6);
    }
  });

  it('a sliced step without updateKernel runs the native kernel where it builds, else WebAssembly and says why', async () => {
    const native = loadNativeAdamw();
    const step = await CompiledTrainStep.create({
      config,
      weights: randomWeights(config, head, 3),
      head,
      trainable: [...weightShapes(config, head).keys()],
      adamw,
      threads: 1,
      update: 'sliced',
    });
    expect(step.updateKernelName).toBe(native.ok ? 'native' : 'wasm');
    expect(step.updateKernelNote).toBe(
      native.ok ? undefined : `native AdamW kernel not available (${native.reason})`,
    );
    await step.release();
  });

  it.each([
    ['wasm', GRAD_BLOCK_ELEMENTS],
    ...(loadNativeAdamw().ok ? [['native', GRAD_BLOCK_ELEMENTS] as const] : []),
    ['onnxruntime', GRAD_BLOCK_ELEMENTS],
    ['wasm', 64],
    ['onnxruntime', 64],
  ] as const)(
    "masked LM, sliced: the tied table's rows added to the decoder's gradient give the fused step's parameters over 3 steps (%s kernel, gradient outputs of at most %s elements)",
    async (updateKernel, gradBlockElements) => {
      const mlmConfig = { ...config, vocab_size: 60 };
      const trainable = [...weightShapes(mlmConfig, 'masked-lm').keys()];
      const make = (
        o:
          | { update: 'fused' }
          | { update: 'sliced'; updateKernel: 'native' | 'wasm' | 'onnxruntime'; gradBlockElements?: number },
      ) =>
        CompiledTrainStep.create({
          config: mlmConfig,
          weights: randomWeights(mlmConfig, 'masked-lm', 8),
          head: 'masked-lm',
          trainable,
          adamw: { ...adamw, maxGradNorm: 1 },
          threads: 1,
          dropoutSeed: 2,
          ...o,
        });
      const [fused, sliced] = [
        await make({ update: 'fused' }),
        await make({
          update: 'sliced',
          updateKernel,
          gradBlockElements,
        }),
      ];
      // token 17 in every row, token 12 twice in a row: the Gathers' rows repeat
      const ids = batch.inputIds.map((row) => row.map((v, j) => (j === 1 ? 17 : j === 3 ? 12 : v + 10)));
      const labels = ids.map((row) => row.map((v, j) => (j % 3 === 1 ? v : -100)));
      const mlmBatch = { inputIds: ids, attentionMask: batch.attentionMask, labels };
      for (let t = 1; t <= 3; t++) {
        const [a, b] = [await fused.run(mlmBatch, 1e-2), await sliced.run(mlmBatch, 1e-2)];
        expect(b.loss).toBeCloseTo(a.loss, 6);
        expect(b.gradNorm).toBeCloseTo(a.gradNorm, 5);
      }
      const word = 'roberta.embeddings.word_embeddings.weight';
      for (const n of trainable) {
        const x = fused.parameter(n);
        const y = sliced.parameter(n);
        for (let j = 0; j < x.length; j++)
          expect(Math.abs((x[j] as number) - (y[j] as number)), n).toBeLessThan(1e-6);
      }
      // the word embeddings trained (the decoder's gradient reaches every row)
      const start = randomWeights(mlmConfig, 'masked-lm', 8).get(word).data;
      expect(sliced.parameter(word).filter((v, j) => v !== start[j]).length).toBeGreaterThan(100);
      await Promise.all([fused.release(), sliced.release()]);
    },
  );

  it('masked LM: the labelled-positions head and the dense head give the same losses (1e-4) over 10 steps', async () => {
    const mlmConfig = { ...config, vocab_size: 60 };
    const trainable = [...weightShapes(mlmConfig, 'masked-lm').keys()];
    const run = async (maskedLmHead: 'dense' | 'labelled') => {
      const step = await CompiledTrainStep.create({
        config: mlmConfig,
        weights: randomWeights(mlmConfig, 'masked-lm', 6),
        head: 'masked-lm',
        trainable,
        adamw: { ...adamw, maxGradNorm: 1 },
        threads: 1,
        maskedLmHead,
      });
      const ids = batch.inputIds.map((row) => row.map((v) => v + 10));
      const labels = ids.map((row) => row.map((v, j) => (j % 3 === 1 ? v : -100)));
      const losses: number[] = [];
      for (let i = 0; i < 10; i++)
        losses.push(
          (await step.run({ inputIds: ids, attentionMask: batch.attentionMask, labels }, 1e-2)).loss,
        );
      await step.release();
      return losses;
    };
    const dense = await run('dense');
    const labelled = await run('labelled');
    expect(dense[9]).toBeLessThan((dense[0] as number) - 0.01); // it trains
    for (let i = 0; i < 10; i++)
      expect(Math.abs((dense[i] as number) - (labelled[i] as number))).toBeLessThan(1e-4);
  });
});
