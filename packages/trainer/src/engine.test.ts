import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, sharedPath, sharedSkipReason } from '@xlt/core';
import * as xmod from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTrainer, onnxSupport } from './engine.js';
import { type ForwardModel, modelLoss, type TokenBatch } from './objectives.js';
import { applyTrainable, type ParameterSource, type TrainableSpec } from './params.js';
import { type FitSummary, fit } from './run.js';
import { LANGUAGE_MODULES, preset } from './stages.js';

// The compiled onnxruntime engine against the tfjs engine and the PyTorch curves of
// ../shared/fixtures/training/reference.json, through the same `fit` a user calls.
type Model = ParameterSource &
  ForwardModel & {
    dispose(): void;
    getParameter(name: string): tf.Variable;
    namedParameters(): Array<[string, tf.Variable]>;
  };
type ModelClass = { fromPretrained(dir: string): Promise<Model> };
const cls = (name: string) => (xmod as unknown as Record<string, ModelClass>)[name] as ModelClass;

const skip = sharedSkipReason('fixtures');

interface RunRef {
  losses: number[];
  grad_norms_before_clip: number[];
  final: Record<string, number[]>;
}

interface Inputs {
  input_ids: number[][];
  attention_mask: number[][];
  lang_ids: number[];
  mlm_labels: number[][];
  tag_labels: number[][];
  cls_labels: number[];
  start_positions: number[];
  end_positions: number[];
}

const hyper = {
  lr: 1e-3,
  totalSteps: 20,
  weightDecay: 0.01,
  schedule: { kind: 'linear' as const, warmupSteps: 5 },
  maxGradNorm: 1.0,
};

describe.skipIf(skip !== undefined)(`engine switch (${skip ?? 'fixtures available'})`, () => {
  let ref: Record<string, RunRef>;
  let inputs: Inputs;
  beforeAll(async () => {
    await initBackend({ backend: 'cpu' });
    ref = JSON.parse(readFileSync(sharedPath('fixtures', 'training', 'reference.json'), 'utf8'));
    inputs = JSON.parse(
      readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'),
    ).inputs;
  });
  const base = (): TokenBatch => ({
    inputIds: inputs.input_ids,
    attentionMask: inputs.attention_mask,
    langIds: inputs.lang_ids,
  });

  const runs: Array<[string, TrainableSpec]> = [
    ['xmod_full', {}],
    ['xmod_frozen_emb_and_modules', preset('xmod-finetune')[0]?.trainable as TrainableSpec],
    ['xmod_modules_only', { include: [LANGUAGE_MODULES] }],
  ];
  for (const [run, spec] of runs) {
    it(`onnxruntime engine reproduces the PyTorch curve ${run} (losses 1e-3, grad norms 1e-3 rel, weights 1e-4)`, async () => {
      const model = await cls('XmodForMaskedLM').fromPretrained(
        sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
      );
      applyTrainable(model, spec);
      const before = new Map(model.namedParameters().map(([n, v]) => [n, v.dataSync().slice()]));
      const batch = { ...base(), labels: inputs.mlm_labels };
      const summary = await fit(model, modelLoss(model), {
        ...hyper,
        engine: 'onnxruntime',
        data: () => batch,
      });
      expect(summary.engine).toBe('onnxruntime');
      const want = ref[run] as RunRef;
      for (let s = 0; s < 20; s++) {
        expect(
          Math.abs((summary.losses[s] as number) - (want.losses[s] as number)),
          `loss ${s + 1}`,
        ).toBeLessThan(1e-3);
        const w = want.grad_norms_before_clip[s] as number;
        expect(Math.abs((summary.gradNorms[s] as number) - w) / w, `grad norm ${s + 1}`).toBeLessThan(1e-3);
      }
      // fit copied the trained parameters back into the tfjs variables
      for (const [name, values] of Object.entries(want.final)) {
        const got = model.getParameter(name).dataSync().slice(0, 16);
        for (const [i, g] of Array.from(got).entries())
          expect(Math.abs(g - (values[i] as number)), `${name}[${i}]`).toBeLessThan(1e-4);
      }
      // frozen parameters are bit-identical
      const trained = new Set(summary.trainableParameters);
      for (const [n, v] of model.namedParameters()) {
        if (trained.has(n)) continue;
        expect(
          Buffer.from(v.dataSync().buffer).equals(Buffer.from((before.get(n) as Float32Array).buffer)),
          n,
        ).toBe(true);
      }
      model.dispose();
    });
  }

  const heads: Array<[string, string, (b: TokenBatch) => TokenBatch]> = [
    ['seqcls', 'XmodForSequenceClassification', (b) => ({ ...b, labels: inputs.cls_labels })],
    ['tokcls', 'XmodForTokenClassification', (b) => ({ ...b, labels: inputs.tag_labels })],
    [
      'qa',
      'XmodForQuestionAnswering',
      (b) => ({ ...b, startPositions: inputs.start_positions, endPositions: inputs.end_positions }),
    ],
  ];
  for (const [dir, name, withTargets] of heads) {
    it(`${dir}: 20 steps of tfjs and onnxruntime from the same start give the same losses (1e-3)`, async () => {
      const losses: number[][] = [];
      for (const engine of ['tfjs', 'onnxruntime'] as const) {
        const model = await cls(name).fromPretrained(sharedPath('fixtures', 'xmod-postnorm', dir));
        applyTrainable(model, preset('xmod-finetune')[0]?.trainable as TrainableSpec);
        const batch = withTargets(base());
        const s = await fit(model, modelLoss(model), { ...hyper, lr: 3e-3, engine, data: () => batch });
        expect(s.engine).toBe(engine);
        losses.push(s.losses);
        model.dispose();
      }
      const [a, b] = losses as [number[], number[]];
      expect(a.length).toBe(20);
      expect((a[19] as number) < (a[0] as number)).toBe(true);
      for (let s = 0; s < 20; s++)
        expect(Math.abs((a[s] as number) - (b[s] as number)), `step ${s + 1}`).toBeLessThan(1e-3);
    });
  }

  it('gradAccumulation 2: onnxruntime over micro-batches A, B gives the losses, grad norms and parameters of tfjs (1e-4)', async () => {
    const half = (from: number, to: number): TokenBatch => ({
      inputIds: inputs.input_ids.slice(from, to),
      attentionMask: inputs.attention_mask.slice(from, to),
      langIds: inputs.lang_ids.slice(from, to),
      labels: inputs.tag_labels.slice(from, to),
    });
    const micro = [half(0, 2), half(2, 4)];
    const realTokens = (b: TokenBatch) => b.attentionMask.flat().reduce((a, v) => a + v, 0);
    const stepTokens: number[] = [];
    const runs: Array<{ summary: FitSummary; params: Map<string, Float32Array> }> = [];
    for (const engine of ['tfjs', 'onnxruntime'] as const) {
      const model = await cls('XmodForTokenClassification').fromPretrained(
        sharedPath('fixtures', 'xmod-postnorm', 'tokcls'),
      );
      applyTrainable(model, preset('xmod-finetune')[0]?.trainable as TrainableSpec);
      const summary = await fit(model, modelLoss(model), {
        ...hyper,
        totalSteps: 4,
        lr: 3e-3,
        // attention key biases have a gradient of exactly 0 up to float noise, which Adam with a
        // tiny eps blows up to lr-sized steps that differ per engine; 1e-6 keeps noise as noise
        eps: 1e-6,
        gradAccumulation: 2,
        engine,
        data: ({ index }) => micro[index % 2] as TokenBatch,
        tokens: realTokens,
        callbacks: { onStep: (r) => stepTokens.push(r.tokens) },
      });
      expect(summary.engine).toBe(engine);
      // tokens/s counts every micro-batch of a step
      expect(stepTokens.splice(0)).toEqual(
        [1, 2, 3, 4].map(() => realTokens(micro[0] as TokenBatch) + realTokens(micro[1] as TokenBatch)),
      );
      runs.push({
        summary,
        params: new Map(model.namedParameters().map(([n, v]) => [n, v.dataSync().slice() as Float32Array])),
      });
      model.dispose();
    }
    const [tfjsRun, ortRun] = runs as [(typeof runs)[0], (typeof runs)[0]];
    expect(ortRun.summary.steps).toBe(4);
    for (let s = 0; s < 4; s++) {
      const want = tfjsRun.summary.losses[s] as number;
      expect(Math.abs((ortRun.summary.losses[s] as number) - want), `loss ${s + 1}`).toBeLessThan(1e-4);
      const norm = tfjsRun.summary.gradNorms[s] as number;
      expect(
        Math.abs((ortRun.summary.gradNorms[s] as number) - norm) / norm,
        `grad norm ${s + 1}`,
      ).toBeLessThan(1e-4);
    }
    for (const [n, want] of tfjsRun.params) {
      const got = ortRun.params.get(n) as Float32Array;
      let worst = 0;
      for (let i = 0; i < want.length; i++)
        worst = Math.max(worst, Math.abs((got[i] as number) - (want[i] as number)));
      expect(worst, n).toBeLessThan(1e-4);
    }
  });

  it('auto picks onnxruntime with gradAccumulation > 1 (no tfjs fallback)', async () => {
    const model = await cls('XmodForSequenceClassification').fromPretrained(
      sharedPath('fixtures', 'xmod-postnorm', 'seqcls'),
    );
    const auto = await createTrainer(model, modelLoss(model), { ...hyper, gradAccumulation: 3 });
    expect(auto.decision.engine).toBe('onnxruntime');
    // accumulation runs the sliced step: the reason names its update kernel
    expect(auto.decision.reason).toMatch(
      /^supported model and head loss; sliced update on the (native|wasm) kernel/,
    );
    const tiny: TokenBatch = { inputIds: [[0]], attentionMask: [[1]], labels: [0] };
    await expect(auto.trainer.trainStep([tiny, tiny, tiny, tiny])).rejects.toThrow(/1 to 3 batches per step/);
    await auto.trainer.dispose();
    model.dispose();
  });

  it('onnxruntime engine: reports the memory estimate for the batch shape and refuses a run over maxMemoryBytes before building it', async () => {
    const model = await cls('XmodForSequenceClassification').fromPretrained(
      sharedPath('fixtures', 'xmod-postnorm', 'seqcls'),
    );
    const lines: string[] = [];
    const onnx = {
      batchShape: { batchSize: 8, sequenceLength: 64 },
      onMemoryEstimate: (e: { totalBytes: number }) => lines.push(`needs ${e.totalBytes}`),
    };
    const ok = await createTrainer(model, modelLoss(model), { ...hyper, engine: 'onnxruntime', onnx });
    expect(lines).toHaveLength(1);
    await ok.trainer.dispose();
    await expect(
      createTrainer(model, modelLoss(model), {
        ...hyper,
        engine: 'onnxruntime',
        onnx: { ...onnx, maxMemoryBytes: 1024 },
      }),
    ).rejects.toThrow(/needs ~.* more than the 0\.00 GiB of maxMemory; the largest part is/);
    expect(lines).toHaveLength(2);
    model.dispose();
  });

  it('auto picks onnxruntime for a head loss, tfjs for custom or extra losses, with the reason', async () => {
    const model = await cls('XmodForMaskedLM').fromPretrained(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
    expect(onnxSupport(model, modelLoss(model), hyper).ok).toBe(true);
    const custom = onnxSupport(model, () => tf.scalar(0), hyper);
    expect(custom.ok).toBe(false);
    expect(custom.ok ? '' : custom.reason).toMatch(/head loss/);
    expect(onnxSupport(model, modelLoss(model), { ...hyper, gradAccumulation: 2 }).ok).toBe(true);
    const withExtra = onnxSupport(model, modelLoss(model, [() => tf.scalar(0)]), hyper);
    expect(withExtra.ok).toBe(false);
    const auto = await createTrainer(model, modelLoss(model), hyper);
    expect(auto.decision.engine).toBe('onnxruntime');
    await auto.trainer.dispose();
    await expect(
      createTrainer(model, () => tf.scalar(0), { ...hyper, engine: 'onnxruntime' }),
    ).rejects.toThrow(/cannot train this setup: the loss is not the model head loss/);
    model.dispose();
  });

  it('dropout: the compiled engine applies the config probabilities with masks drawn from the seed', async () => {
    const run = async (dropout: number, seed: number, engine: 'tfjs' | 'onnxruntime' = 'onnxruntime') => {
      const model = await cls('XmodForMaskedLM').fromPretrained(
        sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
      );
      const cfg = (model as unknown as { config: Record<string, number> }).config;
      cfg.hidden_dropout_prob = dropout;
      cfg.attention_probs_dropout_prob = dropout;
      const batch = { ...base(), labels: inputs.mlm_labels };
      const s = await fit(model, modelLoss(model), { ...hyper, lr: 3e-3, seed, engine, data: () => batch });
      model.dispose();
      return s;
    };
    const plain = await run(0, 1);
    const a = await run(0.1, 1);
    const b = await run(0.1, 1);
    const c = await run(0.1, 2);
    expect(a.engine).toBe('onnxruntime');
    expect(a.losses).toEqual(b.losses); // same seed, same masks
    expect(a.losses).not.toEqual(c.losses);
    expect(a.losses).not.toEqual(plain.losses);
    // masks differ from step to step: the loss curve is not the no-dropout curve shifted
    const diffs = a.losses.map((l, i) => l - (plain.losses[i] as number));
    expect(new Set(diffs.map((d) => d.toFixed(4))).size).toBeGreaterThan(10);
    // both engines regularise by about the same amount: mean loss over 20 steps within 10%
    const t = await run(0.1, 1, 'tfjs');
    const mean = (x: number[]) => x.reduce((p, q) => p + q, 0) / x.length;
    expect(Math.abs(mean(t.losses) - mean(a.losses)) / mean(t.losses)).toBeLessThan(0.1);
  });

  it('SALT objective through fit: originals then augmented rows; identical rows give twice the task loss', async () => {
    const load = () =>
      cls('XmodForTokenClassification').fromPretrained(sharedPath('fixtures', 'xmod-postnorm', 'tokcls'));
    const b = base();
    const labels = inputs.tag_labels;
    const plainModel = await load();
    const plain = await fit(plainModel, modelLoss(plainModel), {
      ...hyper,
      totalSteps: 1,
      engine: 'onnxruntime',
      data: () => ({ ...b, labels }),
    });
    const twice = (x: number[][]) => [...x, ...x];
    const same: TokenBatch = {
      inputIds: twice(b.inputIds),
      attentionMask: twice(b.attentionMask),
      langIds: [...(b.langIds as number[]), ...(b.langIds as number[])],
      labels: twice(labels),
    };
    const m1 = await load();
    const s1 = await fit(m1, modelLoss(m1), {
      ...hyper,
      totalSteps: 1,
      engine: 'auto',
      onnx: { salt: { augWeight: 1, klWeight: 1 } },
      data: () => same,
    });
    expect(s1.engine).toBe('onnxruntime');
    expect(s1.engineReason).toMatch(/SALT/);
    expect(Math.abs((s1.losses[0] as number) - 2 * (plain.losses[0] as number))).toBeLessThan(1e-5);
    // augmented rows: one token per row replaced; the KL term makes the loss larger than the two task losses
    const aug = b.inputIds.map((r) => r.map((t, j) => (j === 2 ? 5 + ((t + 7) % 50) : t)));
    const m2 = await load();
    const s2 = await fit(m2, modelLoss(m2), {
      ...hyper,
      lr: 3e-3,
      totalSteps: 15,
      engine: 'onnxruntime',
      onnx: { salt: { klWeight: 1 } },
      data: () => ({ ...same, inputIds: [...b.inputIds, ...aug] }),
    });
    expect(s2.losses[14] as number).toBeLessThan(s2.losses[0] as number);
    const m3 = await load();
    await expect(
      fit(m3, modelLoss(m3), { ...hyper, engine: 'tfjs', onnx: { salt: {} }, data: () => same }),
    ).rejects.toThrow(/onnxruntime engine only/);
    for (const m of [plainModel, m1, m2, m3]) m.dispose();
  });

  for (const gradAccumulation of [1, 2])
    it(`onnxruntime engine, gradAccumulation ${gradAccumulation}: interrupt and resume from a checkpoint continues with the same losses (dropout on)`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'xlt-engine-'));
      try {
        // a different batch every other step (first two examples only), so the resumed run must draw by index
        const batchAt = (i: number): TokenBatch => {
          const b: TokenBatch = { ...base(), labels: inputs.mlm_labels };
          if (i % 2 === 0) return b;
          return {
            inputIds: b.inputIds.slice(0, 2),
            attentionMask: b.attentionMask.slice(0, 2),
            langIds: (b.langIds as number[]).slice(0, 2),
            labels: inputs.mlm_labels.slice(0, 2),
          };
        };
        const load = () =>
          cls('XmodForMaskedLM').fromPretrained(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
        const full = await load();
        const a = await fit(full, modelLoss(full), {
          ...hyper,
          totalSteps: 8,
          engine: 'onnxruntime',
          gradAccumulation,
          data: ({ index }) => batchAt(index),
        });
        const first = await load();
        await fit(first, modelLoss(first), {
          ...hyper,
          totalSteps: 4,
          engine: 'onnxruntime',
          gradAccumulation,
          data: ({ index }) => batchAt(index),
          runDir: dir,
          checkpointEvery: 2,
        });
        // a fresh process: new model from the original weights, resumed from the step-4 checkpoint
        const second = await load();
        const b = await fit(second, modelLoss(second), {
          ...hyper,
          totalSteps: 8,
          engine: 'onnxruntime',
          gradAccumulation,
          data: ({ index }) => batchAt(index),
          runDir: dir,
          checkpointEvery: 2,
          resume: true,
        });
        expect(b.resumedFrom).toBe(4);
        expect(b.losses.length).toBe(4);
        for (let s = 0; s < 4; s++)
          expect(
            Math.abs((b.losses[s] as number) - (a.losses[s + 4] as number)),
            `step ${s + 5}`,
          ).toBeLessThan(1e-6);
        const w = 'roberta.encoder.layer.0.attention.self.query.weight';
        const x = full.getParameter(w).dataSync();
        const y = second.getParameter(w).dataSync();
        for (let i = 0; i < x.length; i++)
          expect(Math.abs((x[i] as number) - (y[i] as number))).toBeLessThan(1e-6);
        for (const m of [full, first, second]) m.dispose();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
});
