import { readFileSync } from 'node:fs';
import { initBackend, sharedPath, sharedSkipReason } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyTrainable, type TrainableSpec } from './params.js';
import { LANGUAGE_MODULES, LORA, preset } from './stages.js';
import { type RobertaInputs, TestMaskedLM } from './test-roberta.js';
import { Trainer } from './trainer.js';

// PyTorch AdamW + transformers linear warm-up curves: shared/fixtures/training/reference.json.
// The model is the test-only TestMaskedLM (test-roberta.ts); xmod.test.ts runs the same check on
// @xlt/xmod's XmodForMaskedLM once that package exports it. Measured agreement (wasm backend):
// losses within 4e-6, grad norms within 6e-5 relative, final weights within 5e-7.
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

describe.skipIf(skip !== undefined)(`training curves match PyTorch (${skip ?? 'fixtures found'})`, () => {
  let ref: Record<string, RunRef> & { settings: Record<string, unknown> };
  let batch: RobertaInputs;
  let languages: string[];

  beforeAll(async () => {
    await initBackend();
    ref = JSON.parse(readFileSync(sharedPath('fixtures', 'training', 'reference.json'), 'utf8'));
    const inputs = JSON.parse(
      readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'),
    ).inputs;
    languages = inputs.languages;
    batch = {
      inputIds: inputs.input_ids,
      attentionMask: inputs.attention_mask,
      langIds: inputs.lang_ids,
      labels: inputs.mlm_labels,
    };
  });

  for (const { run, spec, lora } of RUNS) {
    it(`${run}: 20 steps of losses, grad norms before clipping and final weights`, async () => {
      const model = lora ? new TestMaskedLM({ loraRank: 4, loraAlpha: 8 }) : new TestMaskedLM({ languages });
      if (lora)
        await model.load(
          sharedPath('fixtures', 'xlmr-lora', 'base', 'model.safetensors'),
          sharedPath('fixtures', 'xlmr-lora', 'lora_qv', 'adapter_model.safetensors'),
        );
      else await model.load(sharedPath('fixtures', 'xmod-postnorm', 'mlm', 'model.safetensors'));
      applyTrainable(model, spec);
      const b = lora ? { ...batch, langIds: undefined } : batch;
      const trainer = new Trainer<RobertaInputs>(model, (x) => model.loss(x), {
        lr: 1e-3,
        totalSteps: 20,
        weightDecay: 0.01,
        betas: [0.9, 0.999],
        eps: 1e-8,
        schedule: { kind: 'linear', warmupSteps: 5 },
        maxGradNorm: 1.0,
      });
      const want = ref[run] as RunRef;
      const losses: number[] = [];
      const norms: number[] = [];
      for (let s = 0; s < 20; s++) {
        const r = trainer.trainStep(b);
        losses.push(r.loss);
        norms.push(r.gradNorm);
      }
      for (const [i, l] of losses.entries())
        expect(Math.abs(l - (want.losses[i] as number)), `loss at step ${i + 1}`).toBeLessThan(1e-4);
      norms.forEach((n, i) => {
        const w = want.grad_norms_before_clip[i] as number;
        expect(Math.abs(n - w) / w, `grad norm at step ${i + 1}`).toBeLessThan(1e-3);
      });
      for (const [name, values] of Object.entries(want.final)) {
        const got = Array.from(model.getParameter(name).dataSync().slice(0, 16));
        for (const [i, g] of got.entries())
          expect(Math.abs(g - (values[i] as number)), `${name}[${i}]`).toBeLessThan(1e-5);
      }
      trainer.dispose();
      model.dispose();
    });
  }
});
