import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SafetensorsReader, sharedPath, sharedSkipReason } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildTrainGraph } from './autodiff/train-graph.js';
import type { HeadKind } from './export.js';
import { readEncoderConfig, safetensorsWeights } from './runner.js';

type Nested = number | Nested[];
const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);
const i64 = (x: Nested, dims: number[]) =>
  new ort.Tensor('int64', BigInt64Array.from(flat(x).map((v) => BigInt(v))), dims);

/** Max over elements of |a-b| / max(|b|, 1e-2): relative error with a floor for tiny values. */
function relErr(a: ArrayLike<number>, b: number[]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number));
    if (d > 1e-5) m = Math.max(m, d / Math.max(Math.abs(b[i] as number), 1e-2));
  }
  return m;
}

const skip = sharedSkipReason('fixtures') !== undefined;

describe.skipIf(skip)('compiled train step: gradients against PyTorch (xmod-postnorm)', () => {
  // biome-ignore lint/suspicious/noExplicitAny: reference JSON
  let ref: any;
  beforeAll(() => {
    ref = JSON.parse(readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'));
  });

  const cases: Array<[string, HeadKind]> = [
    ['mlm', 'masked-lm'],
    ['seqcls', 'sequence-classification'],
    ['tokcls', 'token-classification'],
    ['qa', 'question-answering'],
  ];
  it.each(cases)(
    '%s: loss within 1e-4 and every listed gradient within 1e-3 relative',
    async (dirName, head) => {
      const dir = sharedPath('fixtures', 'xmod-postnorm', dirName);
      const config = readEncoderConfig(dir);
      const file = path.join(dir, 'model.safetensors');
      const r = SafetensorsReader.open(file);
      const names = r.names().filter((n) => n !== 'lm_head.decoder.weight');
      r.close();
      const weights = safetensorsWeights(file);
      const { model, signature } = buildTrainGraph({
        config,
        weights,
        head,
        trainable: names,
        mode: 'grads',
      });
      const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
      const B = ref.inputs.input_ids.length;
      const S = ref.inputs.input_ids[0].length;
      const feeds: Record<string, ort.Tensor> = {
        input_ids: i64(ref.inputs.input_ids, [B, S]),
        attention_mask: i64(ref.inputs.attention_mask, [B, S]),
        lang_ids: i64(ref.inputs.lang_ids, [B]),
      };
      if (head === 'masked-lm') feeds.labels = i64(ref.inputs.mlm_labels, [B, S]);
      if (head === 'token-classification') feeds.labels = i64(ref.inputs.tag_labels, [B, S]);
      if (head === 'sequence-classification') feeds.labels = i64(ref.inputs.cls_labels, [B]);
      if (head === 'question-answering') {
        feeds.start_positions = i64(ref.inputs.start_positions, [B]);
        feeds.end_positions = i64(ref.inputs.end_positions, [B]);
      }
      for (const p of signature.params) {
        const w = weights.get(p.name);
        feeds[p.input] = new ort.Tensor('float32', w.data, w.shape);
      }
      const out = await session.run(feeds);
      weights.close();
      expect(Math.abs((out.loss!.data[0] as number) - ref[dirName].loss)).toBeLessThan(1e-4);
      for (const [name, want] of Object.entries(ref[dirName].grads as Record<string, Nested>)) {
        const got = out[`grad:${name}`];
        expect(got, name).toBeDefined();
        const e = relErr(got!.data as Float32Array, flat(want));
        expect(e, name).toBeLessThan(1e-3);
      }
    },
  );
});

describe.skipIf(skip)(
  'compiled train step: 20 AdamW steps reproduce the PyTorch curves (training/reference.json)',
  () => {
    const runs: Array<[string, (n: string) => boolean]> = [
      ['xmod_full', () => true],
      // transformers' freeze_embeddings_and_language_adapters
      [
        'xmod_frozen_emb_and_modules',
        (n) =>
          !n.startsWith('roberta.embeddings.') &&
          !n.includes('adapter_modules') &&
          !n.includes('adapter_layer_norm'),
      ],
      ['xmod_modules_only', (n) => n.includes('.adapter_modules.')],
    ];
    it.each(runs)('%s', async (run, isTrainable) => {
      const { CompiledTrainStep, linearWarmupDecay } = await import('./step.js');
      const ref = JSON.parse(readFileSync(sharedPath('fixtures', 'training', 'reference.json'), 'utf8'));
      const inputs = JSON.parse(
        readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'),
      ).inputs;
      const dir = sharedPath('fixtures', 'xmod-postnorm', 'mlm');
      const file = path.join(dir, 'model.safetensors');
      const r = SafetensorsReader.open(file);
      const trainable = r.names().filter((n) => n !== 'lm_head.decoder.weight' && isTrainable(n));
      r.close();
      const s = ref.settings;
      const step = await CompiledTrainStep.create({
        config: readEncoderConfig(dir),
        weights: safetensorsWeights(file),
        head: 'masked-lm',
        trainable,
        adamw: {
          beta1: s.betas[0],
          beta2: s.betas[1],
          eps: s.eps,
          weightDecay: s.weight_decay,
          maxGradNorm: s.clip_grad_norm,
        },
        threads: 1,
      });
      const batch = {
        inputIds: inputs.input_ids,
        attentionMask: inputs.attention_mask,
        langIds: inputs.lang_ids,
        labels: inputs.mlm_labels,
      };
      for (let t = 0; t < s.steps; t++) {
        const { loss, gradNorm } = await step.run(batch, linearWarmupDecay(s.lr, t, 5, s.steps));
        expect(Math.abs(loss - ref[run].losses[t]), `loss at step ${t + 1}`).toBeLessThan(1e-3);
        expect(
          Math.abs(gradNorm - ref[run].grad_norms_before_clip[t]) / ref[run].grad_norms_before_clip[t],
          `grad norm at step ${t + 1}`,
        ).toBeLessThan(1e-3);
      }
      for (const [name, first16] of Object.entries(ref[run].final as Record<string, number[]>)) {
        // frozen parameters must still hold their initial values
        const got = Array.from(
          (trainable.includes(name) ? step.parameter(name) : safetensorsWeights(file).get(name).data).slice(
            0,
            16,
          ),
        );
        for (const [i, v] of got.entries())
          expect(Math.abs(v - (first16[i] as number)), `${name}[${i}]`).toBeLessThan(1e-4);
      }
      await step.release();
    });
  },
);

describe.skipIf(skip)('compiled train step with live LoRA (PEFT lora_qv on the XLM-R base)', () => {
  it('lora_qv_only: 20 steps reproduce the PyTorch curve and final LoRA values; the base stays frozen', async () => {
    const { CompiledTrainStep, linearWarmupDecay } = await import('./step.js');
    const { peftAdapterWeights } = await import('./weights.js');
    const ref = JSON.parse(readFileSync(sharedPath('fixtures', 'training', 'reference.json'), 'utf8'));
    const inputs = JSON.parse(
      readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'),
    ).inputs;
    const dir = sharedPath('fixtures', 'xlmr-lora', 'base');
    const base = safetensorsWeights(path.join(dir, 'model.safetensors'));
    const { weights, lora, names } = peftAdapterWeights(base, sharedPath('fixtures', 'xlmr-lora', 'lora_qv'));
    expect(names).toHaveLength(2 * 2 * 2); // 2 layers x {query, value} x {A, B}
    const s = ref.settings;
    const step = await CompiledTrainStep.create({
      config: readEncoderConfig(dir),
      weights,
      head: 'masked-lm',
      trainable: names,
      lora,
      adamw: {
        beta1: s.betas[0],
        beta2: s.betas[1],
        eps: s.eps,
        weightDecay: s.weight_decay,
        maxGradNorm: s.clip_grad_norm,
      },
      threads: 1,
    });
    const batch = {
      inputIds: inputs.input_ids,
      attentionMask: inputs.attention_mask,
      labels: inputs.mlm_labels,
    };
    for (let t = 0; t < s.steps; t++) {
      const { loss, gradNorm } = await step.run(batch, linearWarmupDecay(s.lr, t, 5, s.steps));
      expect(Math.abs(loss - ref.lora_qv_only.losses[t]), `loss at step ${t + 1}`).toBeLessThan(1e-3);
      expect(
        Math.abs(gradNorm - ref.lora_qv_only.grad_norms_before_clip[t]) /
          ref.lora_qv_only.grad_norms_before_clip[t],
      ).toBeLessThan(1e-3);
    }
    for (const [peftName, first16] of Object.entries(ref.lora_qv_only.final as Record<string, number[]>)) {
      const name = peftName.replace(/^base_model\.model\./, '').replace('.default.weight', '.weight');
      const got = Array.from(step.parameter(name).slice(0, 16));
      for (const [i, v] of got.entries())
        expect(Math.abs(v - (first16[i] as number)), `${name}[${i}]`).toBeLessThan(1e-4);
    }
    await step.release();
    base.close();
  });
});
