import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SafetensorsReader, sharedPath, sharedSkipReason } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadNativeAdamw } from './adamw-native.js';
import type { XmodConfig } from './export.js';
import { readEncoderConfig, safetensorsWeights } from './runner.js';
import { CompiledTrainStep, type CompiledTrainStepOptions, type TrainBatch } from './step.js';

const skip = sharedSkipReason('fixtures');

interface Inputs {
  input_ids: number[][];
  attention_mask: number[][];
  lang_ids: number[];
  cls_labels: number[];
}

/** How the accumulated (sliced) step is built: its update kernel and its gradient outputs' size. */
const VARIANTS: Array<[string, Partial<CompiledTrainStepOptions>]> = [
  ['wasm kernel', { updateKernel: 'wasm' }],
  ['onnxruntime kernel', { updateKernel: 'onnxruntime' }],
  ['wasm kernel, gradients in 64-element blocks', { updateKernel: 'wasm', gradBlockElements: 64 }],
  ...(loadNativeAdamw().ok
    ? ([['native kernel', { updateKernel: 'native' }]] as Array<[string, Partial<CompiledTrainStepOptions>]>)
    : []),
];

describe.skipIf(skip !== undefined)(
  `compiled step with gradient accumulation (${skip ?? 'fixtures'})`,
  () => {
    const dir = sharedPath('fixtures', 'xmod-postnorm', 'seqcls');
    const file = path.join(dir, 'model.safetensors');
    const mlmFile = sharedPath('fixtures', 'xmod-postnorm', 'mlm', 'model.safetensors');
    let inputs: Inputs;
    let trainable: string[];
    let mlmTrainable: string[];
    beforeAll(() => {
      inputs = JSON.parse(
        readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'),
      ).inputs;
      const r = SafetensorsReader.open(file);
      trainable = r.names();
      r.close();
      const m = SafetensorsReader.open(mlmFile);
      mlmTrainable = m.names();
      m.close();
    });
    const rows = (from: number, to: number, mlm = false): TrainBatch => ({
      inputIds: inputs.input_ids.slice(from, to),
      attentionMask: inputs.attention_mask.slice(from, to),
      langIds: inputs.lang_ids.slice(from, to),
      labels: mlm ? mlmLabels().slice(from, to) : inputs.cls_labels.slice(from, to),
    });
    /**
     * Masked-LM labels with as many labelled positions in every row (the first real tokens after
     * `<s>`), so the mean over two micro-batches equals the mean over the batch (the loss averages
     * labelled tokens, the accumulation micro-batches).
     */
    const mlmLabels = (): number[][] => {
      const m = Math.min(...inputs.attention_mask.map((r) => r.reduce((a, x) => a + x, 0))) - 2;
      return inputs.input_ids.map((r) => r.map((id, j) => (j >= 1 && j <= m ? id : -100)));
    };
    const create = async (
      extra: Partial<CompiledTrainStepOptions> & { config?: XmodConfig },
    ): Promise<CompiledTrainStep> => {
      const from = extra.head === 'masked-lm' ? mlmFile : file;
      const weights = safetensorsWeights(from);
      try {
        return await CompiledTrainStep.create({
          config: readEncoderConfig(path.dirname(from)),
          weights,
          head: 'sequence-classification',
          trainable: extra.head === 'masked-lm' ? mlmTrainable : trainable,
          // eps large enough that early Adam steps are smooth in the gradient (no sign(g) for tiny g)
          adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-3, weightDecay: 0.01, maxGradNorm: 0.5 },
          threads: 1,
          ...extra,
        });
      } finally {
        weights.close();
      }
    };

    /**
     * Three steps on the batch of 4 (the fused one-batch step) against the accumulated step on two
     * micro-batches of 2: the same losses, norms and parameters.
     */
    const sameAsOneBatch = async (extra: Partial<CompiledTrainStepOptions>, mlm: boolean) => {
      const head = mlm ? ({ head: 'masked-lm' } as const) : {};
      const full = await create({ ...head, update: 'fused' });
      const accum = await create({ ...head, ...extra, gradAccumulation: 2 });
      expect(accum.gradAccumulation).toBe(2);
      const lrs = [1e-3, 8e-4, 6e-4];
      for (const [i, lr] of lrs.entries()) {
        const a = await full.run(rows(0, 4, mlm), lr);
        const b = await accum.run([rows(0, 2, mlm), rows(2, 4, mlm)], lr);
        if (i === 0) expect(a.gradNorm).toBeGreaterThan(0.5); // clipping is exercised
        expect(Math.abs(a.loss - b.loss), `loss ${i + 1}`).toBeLessThan(1e-5);
        expect(Math.abs(a.gradNorm - b.gradNorm) / a.gradNorm, `grad norm ${i + 1}`).toBeLessThan(1e-4);
      }
      expect(accum.step).toBe(lrs.length); // AdamW's t counts optimiser steps, not micro-batches
      let changed = 0;
      const init = safetensorsWeights(mlm ? mlmFile : file);
      for (const n of mlm ? mlmTrainable : trainable) {
        const p = full.parameter(n);
        const q = accum.parameter(n);
        const start = init.get(n).data;
        let worst = 0;
        for (let j = 0; j < p.length; j++) {
          worst = Math.max(worst, Math.abs((p[j] as number) - (q[j] as number)));
          if (p[j] !== start[j]) changed++;
        }
        expect(worst, n).toBeLessThan(1e-5);
      }
      init.close();
      expect(changed).toBeGreaterThan(1000);
      await Promise.all([full.release(), accum.release()]);
    };

    it.each(VARIANTS)(
      'two micro-batches of 2 give the same losses, grad norms and parameters as steps on the batch of 4 (mean loss; %s)',
      async (_, extra) => {
        await sameAsOneBatch(extra, false);
      },
    );

    it.each(VARIANTS)(
      "masked LM: two micro-batches of 2 give the one-batch step's losses, norms and parameters, the tied table's rows added per micro-batch (%s)",
      async (_, extra) => {
        await sameAsOneBatch(extra, true);
      },
    );

    it('holds a scratch buffer per dense gradient, no dense buffer of the word embeddings (wasm kernel)', async () => {
      const one = await create({ update: 'sliced', updateKernel: 'wasm' });
      const accum = await create({ gradAccumulation: 2, updateKernel: 'wasm' });
      await one.run(rows(0, 4), 1e-3);
      await accum.run([rows(0, 2), rows(2, 4)], 1e-3);
      const word = trainable.find((n) => n.includes('word_embeddings')) as string;
      const table = 4 * one.parameter(word).length;
      const dense = trainable.filter((n) => n !== word).reduce((a, n) => a + 4 * one.parameter(n).length, 0);
      // one batch: the dense gradients and the batch's rows (a few of the table's)
      expect(one.heldBytes.gradients).toBeGreaterThan(dense);
      expect(one.heldBytes.gradients).toBeLessThan(dense + table / 2);
      // accumulated: + one scratch copy of the dense gradients, still no buffer of the table
      expect(accum.heldBytes.gradients).toBeGreaterThan(2 * dense);
      expect(accum.heldBytes.gradients).toBeLessThan(2 * dense + table / 2);
      await Promise.all([one.release(), accum.release()]);
    });

    it('with dropout, a step restored from getState continues with the same losses as an unbroken run', async () => {
      const config = {
        ...readEncoderConfig(dir),
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
      };
      const micro = [rows(0, 2), rows(2, 4)];
      const lrs = [1e-3, 1e-3, 1e-3, 1e-3];
      const unbroken = await create({ config, gradAccumulation: 2, dropoutSeed: 7 });
      const want: number[] = [];
      for (const lr of lrs) want.push((await unbroken.run(micro, lr)).loss);
      const first = await create({ config, gradAccumulation: 2, dropoutSeed: 7 });
      const got: number[] = [];
      for (const lr of lrs.slice(0, 2)) got.push((await first.run(micro, lr)).loss);
      const resumed = await create({ config, gradAccumulation: 2, dropoutSeed: 7 });
      resumed.setState(first.getState());
      for (const lr of lrs.slice(2)) got.push((await resumed.run(micro, lr)).loss);
      expect(got).toEqual(want);
      // the masks depend on the seed: another seed, other losses
      const other = await create({ config, gradAccumulation: 2, dropoutSeed: 8 });
      expect((await other.run(micro, 1e-3)).loss).not.toBe(want[0]);
      await Promise.all([unbroken, first, resumed, other].map((s) => s.release()));
    });

    it('refuses more micro-batches than it was compiled for, and a bad gradAccumulation', async () => {
      const accum = await create({ gradAccumulation: 2 });
      await expect(accum.run([rows(0, 1), rows(1, 2), rows(2, 3)], 1e-3)).rejects.toThrow(
        /1 to 2 micro-batches, got 3/,
      );
      expect(accum.step).toBe(0);
      await accum.release();
      await expect(create({ gradAccumulation: 0 })).rejects.toThrow(
        /gradAccumulation must be a positive integer/,
      );
    });
  },
);
