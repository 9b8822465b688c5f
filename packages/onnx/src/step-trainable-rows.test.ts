import { normalizeConfig } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { loadNativeAdamw } from './adamw-native.js';
import { randomWeights, weightShapes } from './random.js';
import { CompiledTrainStep, type CompiledTrainStepOptions, type TrainBatch } from './step.js';

const config = normalizeConfig({
  model_type: 'xlm-roberta',
  vocab_size: 40,
  hidden_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 24,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  max_position_embeddings: 20,
});
const head = 'masked-lm';
const word = 'roberta.embeddings.word_embeddings.weight';
// tokens 5-11 in the batch; labels at 6, 9 and 11: the tied decoder gives every row a gradient
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
    [-100, -100, 6, -100, -100, -100],
    [-100, 9, -100, 11, -100, -100],
  ],
};
/** The rows that train: two the batch uses (as inputs) and two it does not. */
const rows = [6, 10, 30, 31];

type UpdateOptions = Pick<CompiledTrainStepOptions, 'update' | 'updateKernel' | 'gradAccumulation'>;

describe('compiled step with trainableRows', () => {
  it.each<[string, UpdateOptions]>([
    ['fused', { update: 'fused' }],
    ['sliced, wasm kernel', { update: 'sliced', updateKernel: 'wasm' }],
    ['sliced, onnxruntime kernel', { update: 'sliced', updateKernel: 'onnxruntime' }],
    ...(loadNativeAdamw().ok
      ? ([['sliced, native kernel', { update: 'sliced', updateKernel: 'native' }]] as Array<
          [string, UpdateOptions]
        >)
      : []),
    ['2 micro-batches', { gradAccumulation: 2 }],
  ])(
    'trains only the listed rows of the table, the others bit-identical under weight decay (%s)',
    async (_, update) => {
      const weights = randomWeights(config, head, 5);
      const before = Float32Array.from(weights.get(word).data);
      const step = await CompiledTrainStep.create({
        config,
        weights,
        head,
        trainable: [word],
        adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1 },
        threads: 1,
        trainableRows: new Map([[word, rows]]),
        ...update,
      });
      const micro = update.gradAccumulation === 2 ? [batch, batch] : batch;
      for (let i = 0; i < 3; i++) await step.run(micro, 1e-2);
      const after = step.getState().params.get(word) as Float32Array;
      await step.release();
      const H = config.hidden_size;
      const changed: number[] = [];
      for (let r = 0; r < config.vocab_size; r++) {
        const a = after.subarray(r * H, (r + 1) * H);
        const b = before.subarray(r * H, (r + 1) * H);
        if (a.some((x, j) => !Object.is(x, b[j]))) changed.push(r);
      }
      // every listed row moves (inputs through the embedding, the others through the decoder)
      expect(changed).toEqual(rows);
    },
  );

  it('refuses rows outside the table and a table that does not train, naming the tensor', async () => {
    const create = (trainableRows: Map<string, number[]>) =>
      CompiledTrainStep.create({
        config,
        weights: randomWeights(config, head, 5),
        head,
        trainable: [...weightShapes(config, head).keys()].filter((n) => n !== 'lm_head.bias'),
        adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
        threads: 1,
        trainableRows,
      });
    await expect(create(new Map([[word, [3, 40]]]))).rejects.toThrow(
      `trainableRows of '${word}': row 40 is not in [0, 40)`,
    );
    await expect(create(new Map([['lm_head.bias', [1]]]))).rejects.toThrow(
      "trainableRows names 'lm_head.bias', which is not a trainable parameter",
    );
  });
});
