import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng, sharedPath, sharedSkipReason } from '@xlt/core';
import { applyLoraMixture, loadPeftAdapter, type MixtureOptions, setRoutingContext } from '@xlt/lora';
import { exportToOnnx, OnnxModel } from '@xlt/onnx';
import * as xmod from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import { onnxSupport } from './engine.js';
import { modelLoss, type TokenBatch } from './objectives.js';
import { applyTrainable, type ParameterSource } from './params.js';
import { fit } from './run.js';
import { LORA } from './stages.js';

// LoRA and LoRA mixtures with routers kept live in the compiled graphs: the onnxruntime engine
// against PyTorch (PEFT LoRA curve) and against @xlt/lora's tfjs layers (mixtures, every routing mode).
type Model = ParameterSource &
  xmod.Module & {
    dispose(): void;
    config: xmod.XmodConfig;
    forward(inputs: {
      inputIds: tf.Tensor;
      attentionMask?: tf.Tensor;
      langIds?: tf.Tensor;
      labels?: tf.Tensor;
    }): {
      logits: tf.Tensor;
      loss?: tf.Tensor | null;
    };
  };
type ModelClass = { fromPretrained(dir: string): Promise<Model> };
const MLM = (xmod as unknown as Record<string, ModelClass>).XmodForMaskedLM as ModelClass;

const skip = sharedSkipReason('fixtures');

interface Inputs {
  input_ids: number[][];
  attention_mask: number[][];
  mlm_labels: number[][];
}

describe.skipIf(skip !== undefined)(
  `live LoRA in the compiled engine (${skip ?? 'fixtures available'})`,
  () => {
    let inputs: Inputs;
    let ref: Record<
      string,
      { losses: number[]; grad_norms_before_clip: number[]; final: Record<string, number[]> }
    >;
    beforeAll(async () => {
      await initBackend({ backend: 'cpu' });
      inputs = JSON.parse(
        readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'),
      ).inputs;
      ref = JSON.parse(readFileSync(sharedPath('fixtures', 'training', 'reference.json'), 'utf8'));
    });
    const hyper = {
      lr: 1e-3,
      totalSteps: 20,
      weightDecay: 0.01,
      schedule: { kind: 'linear' as const, warmupSteps: 5 },
      maxGradNorm: 1.0,
    };

    it('PEFT LoRA on query/value: the onnxruntime engine reproduces the PyTorch curve lora_qv_only', async () => {
      const base = await MLM.fromPretrained(sharedPath('fixtures', 'xlmr-lora', 'base'));
      const model = (await loadPeftAdapter(
        base,
        sharedPath('fixtures', 'xlmr-lora', 'lora_qv'),
      )) as unknown as Model;
      applyTrainable(model, { include: [LORA] });
      const batch: TokenBatch = {
        inputIds: inputs.input_ids,
        attentionMask: inputs.attention_mask,
        labels: inputs.mlm_labels,
      };
      const s = await fit(model, modelLoss(model), { ...hyper, engine: 'onnxruntime', data: () => batch });
      const want = ref.lora_qv_only as { losses: number[]; grad_norms_before_clip: number[] };
      for (let i = 0; i < 20; i++) {
        expect(Math.abs((s.losses[i] as number) - (want.losses[i] as number)), `loss ${i + 1}`).toBeLessThan(
          1e-3,
        );
        const g = want.grad_norms_before_clip[i] as number;
        expect(Math.abs((s.gradNorms[i] as number) - g) / g, `grad norm ${i + 1}`).toBeLessThan(1e-3);
      }
      model.dispose();
    });

    const modes: Array<Pick<MixtureOptions, 'mode' | 'k' | 'pooling'>> = [
      { mode: 'language' },
      { mode: 'router' },
      { mode: 'router', pooling: 'mean' },
      { mode: 'topk', k: 2 },
      { mode: 'static' },
    ];
    const LANGS = ['en', 'de', 'sw'];
    const langIds = [0, 2, 1, 2];
    const mixtureModel = async (opts: Pick<MixtureOptions, 'mode' | 'k' | 'pooling'>): Promise<Model> => {
      const model = await MLM.fromPretrained(sharedPath('fixtures', 'xlmr-lora', 'base'));
      applyLoraMixture(model, {
        r: 2,
        alpha: 4,
        languages: LANGS,
        targetModules: ['query', 'value'],
        rng: new Rng(3),
        ...opts,
      });
      // non-zero B (PEFT starts it at 0) and router weights, so every path carries gradient
      const rng = new Rng(7);
      for (const [name, p] of model.namedParameters())
        if (name.includes('lora_B') || name.includes('mix_logits'))
          p.assign(
            tf.tensor(
              new Float32Array(p.size).map(() => rng.normal(0, 0.3)),
              p.shape,
            ),
          );
      setRoutingContext(model, { langIds });
      return model;
    };

    for (const opts of modes) {
      const label = `${opts.mode}${opts.k ? ` k=${opts.k}` : ''}${opts.pooling ? ` ${opts.pooling}` : ''}`;
      it(`mixture (${label}): exported logits equal tfjs, and 10 steps of both engines give the same losses`, async () => {
        const model = await mixtureModel(opts);
        const support = onnxSupport(model, modelLoss(model), hyper);
        expect(support.ok).toBe(true);
        if (!support.ok) return;
        expect([...support.loraMixtures.keys()].length).toBe(4);
        // inference: the exported graph with the mixture live
        const onnx = await OnnxModel.load(
          exportToOnnx({
            config: support.config,
            weights: (await import('@xlt/onnx')).moduleWeights(model),
            head: 'masked-lm',
            loraMixtures: support.loraMixtures,
          }).model,
        );
        const out = await onnx.run({
          inputIds: inputs.input_ids,
          attentionMask: inputs.attention_mask,
          langIds,
        });
        model.eval();
        const want = tf.tidy(() =>
          model
            .forward({
              inputIds: tf.tensor2d(inputs.input_ids, undefined, 'int32'),
              attentionMask: tf.tensor2d(inputs.attention_mask, undefined, 'int32'),
            })
            .logits.dataSync(),
        );
        const got = out.logits?.data as Float32Array;
        let worst = 0;
        for (let i = 0; i < want.length; i++)
          worst = Math.max(worst, Math.abs((got[i] as number) - (want[i] as number)));
        expect(worst).toBeLessThan(1e-4);
        await onnx.release();
        model.dispose();
        // training: routers and experts train; both engines from the same start
        const losses: number[][] = [];
        for (const engine of ['tfjs', 'onnxruntime'] as const) {
          const m = await mixtureModel(opts);
          const batch: TokenBatch = {
            inputIds: inputs.input_ids,
            attentionMask: inputs.attention_mask,
            langIds,
            labels: inputs.mlm_labels,
          };
          const s = await fit(m, modelLoss(m), {
            ...hyper,
            lr: 1e-2,
            totalSteps: 10,
            engine,
            data: () => batch,
          });
          expect(s.engine).toBe(engine);
          if (opts.mode !== 'language')
            expect(s.trainableParameters.some((n) => n.includes('router') || n.includes('mix_logits'))).toBe(
              true,
            );
          losses.push(s.losses);
          m.dispose();
        }
        const [a, b] = losses as [number[], number[]];
        expect(a[9] as number).toBeLessThan(a[0] as number);
        for (let i = 0; i < 10; i++)
          expect(Math.abs((a[i] as number) - (b[i] as number)), `step ${i + 1}`).toBeLessThan(1e-3);
      });
    }
  },
);
