import { readFileSync } from 'node:fs';
import type * as tf from '@tensorflow/tfjs-core';
import { initBackend, sharedPath, sharedSkipReason } from '@xlt/core';
import { loadPeftAdapter } from '@xlt/lora';
import { XmodForMaskedLM } from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import { modelLoss, type TokenBatch } from './objectives.js';
import { applyTrainable, type TrainableSpec } from './params.js';
import { LANGUAGE_MODULES, LORA, preset } from './stages.js';
import { Trainer } from './trainer.js';

// PyTorch AdamW + transformers linear warm-up curves (shared/fixtures/training/reference.json), on
// @xlt/xmod's XmodForMaskedLM, loaded from the fixture checkpoints: the post-norm X-Mod MLM for the full,
// frozen and module-only runs, XLM-R base + PEFT lora_qv (through @xlt/lora) for the LoRA run.
// Measured agreement (wasm backend): losses within 4e-6, grad norms within 6e-5 relative, final
// weights within 5e-7.
const skip = sharedSkipReason('fixtures');

interface RunRef {
  losses: number[];
  grad_norms_before_clip: number[];
  final: Record<string, number[]>;
}

const RUNS: Array<{ run: string; spec: TrainableSpec; lora: boolean }> = [
  { run: 'xmod_full', spec: {}, lora: false },
  {
    run: 'xmod_frozen_emb_and_modules',
    spec: preset('xmod-finetune')[0]?.trainable as TrainableSpec,
    lora: false,
  },
  { run: 'xmod_modules_only', spec: { include: [LANGUAGE_MODULES] }, lora: false },
  { run: 'lora_qv_only', spec: { include: [LORA] }, lora: true },
];

/** The fixture model of a run: X-Mod MLM, or XLM-R base with the PEFT LoRA adapter on query/value. */
async function fixtureModel(lora: boolean): Promise<XmodForMaskedLM> {
  if (!lora) return XmodForMaskedLM.fromPretrained(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
  const base = await XmodForMaskedLM.fromPretrained(sharedPath('fixtures', 'xlmr-lora', 'base'));
  return loadPeftAdapter(base, sharedPath('fixtures', 'xlmr-lora', 'lora_qv'));
}

describe.skipIf(skip !== undefined)(`training curves match PyTorch (${skip ?? 'fixtures found'})`, () => {
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

  for (const { run, spec, lora } of RUNS) {
    it(`${run}: 20 steps of losses, grad norms before clipping and final weights`, async () => {
      const model = await fixtureModel(lora);
      applyTrainable(model, spec);
      // XLM-R has no language modules: the LoRA run's batch carries no language ids
      const { langIds, ...noLang } = batch;
      const b: TokenBatch = lora ? noLang : { ...noLang, langIds };
      const trainer = new Trainer<TokenBatch>(model, modelLoss(model), {
        lr: 1e-3,
        totalSteps: 20,
        weightDecay: 0.01,
        betas: [0.9, 0.999],
        eps: 1e-8,
        schedule: { kind: 'linear', warmupSteps: 5 },
        maxGradNorm: 1.0,
      });
      const want = ref[run] as RunRef;
      for (let s = 0; s < 20; s++) {
        const r = trainer.trainStep(b);
        expect(Math.abs(r.loss - (want.losses[s] as number)), `loss at step ${s + 1}`).toBeLessThan(1e-4);
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
          expect(Math.abs(g - (values[i] as number)), `${name}[${i}]`).toBeLessThan(1e-5);
      }
      trainer.dispose();
      model.dispose();
    });
  }
});
