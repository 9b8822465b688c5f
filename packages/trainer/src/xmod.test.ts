import { readFileSync } from 'node:fs';
import type * as tf from '@tensorflow/tfjs-core';
import { initBackend, sharedPath, sharedSkipReason } from '@xlt/core';
import * as lora from '@xlt/lora';
import * as xmod from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import { type ForwardModel, modelLoss, type TokenBatch } from './objectives.js';
import { applyTrainable, type ParameterSource, type TrainableSpec } from './params.js';
import { LANGUAGE_MODULES, LORA, preset } from './stages.js';
import { Trainer } from './trainer.js';

// The same PyTorch curves as reference.test.ts, on @xlt/xmod's own XmodForMaskedLM
// (fromPretrained(dir); forward({ inputIds, attentionMask, langIds, labels }) -> { logits, loss }).
type Model = ParameterSource & ForwardModel & { dispose(): void; getParameter(name: string): tf.Variable };
type ModelClass = { fromPretrained(dir: string): Model | Promise<Model> };
const XmodForMaskedLM = (xmod as Record<string, unknown>).XmodForMaskedLM as ModelClass | undefined;
type LoadPeft = (model: Model, dir: string) => Promise<Model>;
const loadPeftAdapter = (lora as Record<string, unknown>).loadPeftAdapter as LoadPeft | undefined;

const skip =
  sharedSkipReason('fixtures') ??
  (XmodForMaskedLM === undefined
    ? '@xlt/xmod does not export XmodForMaskedLM yet (dist built without it)'
    : undefined);

interface RunRef {
  losses: number[];
  grad_norms_before_clip: number[];
  final: Record<string, number[]>;
}

describe.skipIf(skip !== undefined)(
  `@xlt/xmod XmodForMaskedLM trains like PyTorch (${skip ?? 'available'})`,
  () => {
    let ref: Record<string, RunRef>;
    let batch: TokenBatch;
    beforeAll(async () => {
      await initBackend();
      ref = JSON.parse(readFileSync(sharedPath('fixtures', 'training', 'reference.json'), 'utf8'));
      const inputs = JSON.parse(
        readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'),
      ).inputs;
      batch = {
        inputIds: inputs.input_ids,
        attentionMask: inputs.attention_mask,
        langIds: inputs.lang_ids,
        labels: inputs.mlm_labels,
      };
    });

    const runs: Array<[string, TrainableSpec]> = [
      ['xmod_full', {}],
      ['xmod_frozen_emb_and_modules', preset('xmod-finetune')[0]?.trainable as TrainableSpec],
      ['xmod_modules_only', { include: [LANGUAGE_MODULES] }],
    ];
    for (const [run, spec] of runs) {
      it(`${run}: losses, grad norms and final weights`, async () => {
        const model = await (XmodForMaskedLM as ModelClass).fromPretrained(
          sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
        );
        applyTrainable(model, spec);
        const trainer = new Trainer<TokenBatch>(model, modelLoss(model), {
          lr: 1e-3,
          totalSteps: 20,
          weightDecay: 0.01,
          schedule: { kind: 'linear', warmupSteps: 5 },
          maxGradNorm: 1.0,
        });
        const want = ref[run] as RunRef;
        for (let s = 0; s < 20; s++) {
          const r = trainer.trainStep(batch);
          expect(Math.abs(r.loss - (want.losses[s] as number)), `loss at step ${s + 1}`).toBeLessThan(1e-3);
          const w = want.grad_norms_before_clip[s] as number;
          expect(Math.abs(r.gradNorm - w) / w, `grad norm at step ${s + 1}`).toBeLessThan(1e-3);
        }
        for (const [name, values] of Object.entries(want.final)) {
          const got = Array.from(model.getParameter(name).dataSync().slice(0, 16));
          for (const [i, g] of got.entries())
            expect(Math.abs(g - (values[i] as number)), `${name}[${i}]`).toBeLessThan(1e-4);
        }
        trainer.dispose();
        model.dispose();
      });
    }

    const loraSkip =
      loadPeftAdapter === undefined ? '@xlt/lora does not export loadPeftAdapter yet' : undefined;
    it.skipIf(loraSkip !== undefined)(
      `lora_qv_only: XLM-R base + PEFT lora_qv (${loraSkip ?? 'available'})`,
      async () => {
        const base = await (XmodForMaskedLM as ModelClass).fromPretrained(
          sharedPath('fixtures', 'xlmr-lora', 'base'),
        );
        const model = await (loadPeftAdapter as LoadPeft)(
          base,
          sharedPath('fixtures', 'xlmr-lora', 'lora_qv'),
        );
        applyTrainable(model, { include: [LORA] });
        const trainer = new Trainer<TokenBatch>(model, modelLoss(model), {
          lr: 1e-3,
          totalSteps: 20,
          weightDecay: 0.01,
          schedule: { kind: 'linear', warmupSteps: 5 },
          maxGradNorm: 1.0,
        });
        const want = ref.lora_qv_only as RunRef;
        const { langIds: _l, ...noLang } = batch;
        for (let s = 0; s < 20; s++) {
          const r = trainer.trainStep(noLang);
          expect(Math.abs(r.loss - (want.losses[s] as number)), `loss at step ${s + 1}`).toBeLessThan(1e-3);
          const w = want.grad_norms_before_clip[s] as number;
          expect(Math.abs(r.gradNorm - w) / w, `grad norm at step ${s + 1}`).toBeLessThan(1e-3);
        }
        const names = new Map(model.namedParameters());
        for (const [name, values] of Object.entries(want.final)) {
          // PEFT names carry `base_model.model.` and the adapter name `.default.`; @xlt/lora's do not
          const v =
            names.get(name) ?? names.get(name.replace(/^base_model\.model\./, '').replace('.default.', '.'));
          expect(v, name).toBeDefined();
          const got = Array.from((v as tf.Variable).dataSync().slice(0, 16));
          for (const [i, g] of got.entries())
            expect(Math.abs(g - (values[i] as number)), `${name}[${i}]`).toBeLessThan(1e-4);
        }
        trainer.dispose();
        model.dispose();
      },
    );
  },
);
