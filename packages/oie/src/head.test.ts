import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng } from '@xlt/core';
import { applyLoraMixture } from '@xlt/lora';
import { exportToOnnx, moduleWeights, OnnxModel } from '@xlt/onnx';
import type { XltTokenizer } from '@xlt/tokenizer';
import { fit, modelLoss, preset, runStages, type TokenBatch } from '@xlt/trainer';
import { XmodForMaskedLM } from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import { XmodForOpenIE } from './head.js';
import { OieModel } from './model.js';

// The tfjs Open IE head against the ONNX graphs @xlt/onnx builds for it (inference and the compiled
// training step), and trained through @xlt/trainer's fit on both engines.

const tiny = (extra: Record<string, unknown> = {}) => ({
  model_type: 'xlm-roberta',
  vocab_size: 60,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 64,
  max_position_embeddings: 40,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
  oie: { pos_emb_dim: 16, n_arg_layers: 2, n_arg_heads: 4, d_feedforward: 48 },
  ...extra,
});

const xmodTiny = () => tiny({ model_type: 'xmod', languages: ['en_XX', 'de_DE'], default_language: 'en_XX' });

/** A padded batch of rows: random ids, one predicate span per row, random tags on some tokens. */
function batch(seed: number, B = 4, S = 12): TokenBatch & Required<Pick<TokenBatch, 'predMask'>> {
  const rng = new Rng(seed);
  const inputIds: number[][] = [];
  const attentionMask: number[][] = [];
  const predMask: number[][] = [];
  const predPosition: number[][] = [];
  const predLabels: number[][] = [];
  const argLabels: number[][] = [];
  for (let b = 0; b < B; b++) {
    const n = S - 3 + rng.int(4); // 9..12 real tokens, then padding
    const p0 = 1 + rng.int(n - 3);
    const p1 = p0 + 1 + rng.int(2);
    const row = (f: (t: number) => number, pad: number) =>
      Array.from({ length: S }, (_, t) => (t < n ? f(t) : pad));
    inputIds.push(row((t) => (t === 0 ? 0 : t === n - 1 ? 2 : 3 + rng.int(57)), 1));
    attentionMask.push(row(() => 1, 0));
    predMask.push(row((t) => (t >= p0 && t < p1 ? 1 : 0), 0));
    predPosition.push(row((t) => (t >= p0 && t < p1 ? 1 : 2), 0));
    predLabels.push(
      row((t) => (t === 0 || t === n - 1 ? -100 : t === p0 ? 0 : t > p0 && t < p1 ? 1 : 2), -100),
    );
    argLabels.push(row((t) => (t === 0 || t === n - 1 || t % 3 === 0 ? -100 : rng.int(9)), -100));
  }
  return {
    inputIds,
    attentionMask,
    predMask,
    predPosition,
    predLabels,
    argLabels,
    langIds: inputIds.map((_, i) => i % 2),
  };
}

async function onnxLogits(model: XmodForOpenIE, b: TokenBatch) {
  const { model: bytes } = exportToOnnx({
    config: { ...model.config, architectures: [model.architecture] },
    weights: moduleWeights(model),
    head: 'open-ie',
  });
  const onnx = await OnnxModel.load(bytes, { threads: 1 });
  const out = await onnx.run({
    inputIds: b.inputIds,
    attentionMask: b.attentionMask,
    predMask: b.predMask as number[][],
    predPosition: b.predPosition as number[][],
    ...((model.config.languages ?? []).length > 0 ? { langIds: b.langIds as number[] } : {}),
  });
  await onnx.release();
  return {
    pred: (out.pred_logits as { data: Float32Array }).data,
    arg: (out.arg_logits as { data: Float32Array }).data,
  };
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
};

describe('XmodForOpenIE (tfjs) against the ONNX open-ie graphs', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu' });
  });

  for (const [name, cfg] of [
    ['XLM-R encoder', tiny()],
    ['X-Mod encoder with language modules', xmodTiny()],
  ] as const) {
    it(`${name}: predicate and argument logits equal the exported graph's within 1e-4`, async () => {
      const model = new XmodForOpenIE(cfg, { seed: 1 });
      expect(model.architecture).toBe(cfg.model_type === 'xmod' ? 'XmodForOpenIE' : 'XLMRobertaForOpenIE');
      // perturb the zero biases and unit norms so that a dropped tensor shows
      const rng = new Rng(7);
      for (const [, v] of model.namedParameters())
        tf.tidy(() =>
          v.assign(tf.add(v, tf.mul(tf.randomNormal(v.shape, 0, 1, 'float32', rng.int(1e6)), 0.05))),
        );
      const b = batch(3);
      const out = model.forward({
        inputIds: b.inputIds,
        attentionMask: b.attentionMask,
        predMask: b.predMask,
        predPosition: b.predPosition as number[][],
        ...(cfg.model_type === 'xmod' ? { langIds: b.langIds as number[] } : {}),
      });
      expect(out.predLogits.shape).toEqual([4, 12, 3]);
      expect(out.argLogits.shape).toEqual([4, 12, 9]);
      const ref = await onnxLogits(model, b);
      expect(maxDiff(out.predLogits.dataSync(), ref.pred)).toBeLessThan(1e-4);
      expect(maxDiff(out.argLogits.dataSync(), ref.arg)).toBeLessThan(1e-4);
      // the argument logits depend on which predicate the row asks about
      const other = model.forward({
        inputIds: b.inputIds,
        attentionMask: b.attentionMask,
        predMask: b.predMask.map((r) => r.map((_, t) => (t === 1 ? 1 : 0))),
        predPosition: b.predMask.map((r, i) =>
          r.map((_, t) => ((b.attentionMask[i] as number[])[t] === 0 ? 0 : t === 1 ? 1 : 2)),
        ),
        ...(cfg.model_type === 'xmod' ? { langIds: b.langIds as number[] } : {}),
      });
      expect(maxDiff(other.argLogits.dataSync(), out.argLogits.dataSync())).toBeGreaterThan(1e-3);
      expect(maxDiff(other.predLogits.dataSync(), out.predLogits.dataSync())).toBe(0);
      tf.dispose([out.predLogits, out.argLogits, other.predLogits, other.argLogits]);
      model.dispose();
    });
  }

  it('loss is the predicate cross-entropy plus the argument cross-entropy (ignoring -100)', () => {
    const model = new XmodForOpenIE(tiny());
    const b = batch(5, 2, 10);
    const out = model.forward({
      inputIds: b.inputIds,
      attentionMask: b.attentionMask,
      predMask: b.predMask,
      predPosition: b.predPosition as number[][],
      predLabels: b.predLabels as number[][],
      argLabels: b.argLabels as number[][],
    });
    const ce = (logits: Float32Array, C: number, labels: number[]) => {
      let s = 0;
      let n = 0;
      labels.forEach((l, i) => {
        if (l === -100) return;
        const row = Array.from(logits.subarray(i * C, (i + 1) * C));
        const m = Math.max(...row);
        const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0));
        s += lse - (row[l] as number);
        n++;
      });
      return s / n;
    };
    const want =
      ce(out.predLogits.dataSync() as Float32Array, 3, (b.predLabels as number[][]).flat()) +
      ce(out.argLogits.dataSync() as Float32Array, 9, (b.argLabels as number[][]).flat());
    expect(out.loss?.dataSync()[0]).toBeCloseTo(want, 5);
    expect(() =>
      model.forward({
        inputIds: b.inputIds,
        predMask: b.predMask,
        predPosition: b.predPosition as number[][],
        predLabels: b.predLabels as number[][],
      }),
    ).toThrow(/needs both predLabels and argLabels/);
    expect(() =>
      model.forward({ inputIds: b.inputIds, predMask: [[1, 0]], predPosition: b.predPosition as number[][] }),
    ).toThrow(/predMask must have the shape of inputIds/);
    model.dispose();
  });

  for (const [name, cfg] of [
    ['XLM-R encoder', tiny()],
    ['X-Mod encoder (language per row)', xmodTiny()],
  ] as const) {
    it(`${name}: fit on tfjs and on the compiled onnxruntime step give the same 8 losses (1e-3) and weights (1e-4)`, async () => {
      const runs: Array<{ losses: number[]; params: Map<string, Float32Array>; engine: string }> = [];
      let init: Map<string, Float32Array> | undefined;
      for (const engine of ['tfjs', 'onnxruntime'] as const) {
        const model = new XmodForOpenIE(cfg);
        // the same starting point for both engines (the encoder's random init is tfjs's own)
        if (init === undefined)
          init = new Map(model.namedParameters().map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
        else
          for (const [n, v] of model.namedParameters())
            tf.tidy(() => v.assign(tf.tensor(init?.get(n) as Float32Array, v.shape)));
        const batches = [batch(11), batch(12)];
        const summary = await fit(model, modelLoss(model), {
          lr: 2e-3,
          // attention key biases (the encoder's and the key slice of the argument module's
          // in_proj_bias) have a gradient of exactly 0 up to float noise, which Adam with a tiny eps
          // blows up to lr-sized steps that differ per engine and per CPU's kernels; 1e-6 keeps
          // noise as noise (as in @xlt/trainer's engine test)
          eps: 1e-6,
          totalSteps: 8,
          weightDecay: 0.01,
          schedule: { kind: 'linear', warmupSteps: 2 },
          engine,
          data: ({ index }) => batches[index % 2] as TokenBatch,
        });
        runs.push({
          engine: summary.engine,
          losses: summary.losses,
          params: new Map(model.namedParameters().map(([n, v]) => [n, v.dataSync().slice() as Float32Array])),
        });
        model.dispose();
      }
      const [t, o] = runs as [(typeof runs)[0], (typeof runs)[0]];
      expect([t.engine, o.engine]).toEqual(['tfjs', 'onnxruntime']);
      for (let s = 0; s < 8; s++)
        expect(Math.abs((t.losses[s] as number) - (o.losses[s] as number))).toBeLessThan(1e-3);
      expect(t.losses[7]).toBeLessThan(t.losses[0] as number);
      let worst = 0;
      let worstName = '';
      for (const [n, v] of t.params) {
        const d = maxDiff(v, o.params.get(n) as Float32Array);
        if (d > worst) [worst, worstName] = [d, n];
      }
      expect(worst, worstName).toBeLessThan(1e-4);
    });
  }

  it('MT4CrossIE stage 3 (a LoRA mixture with a router on query/value + the head) trains alike on both engines', async () => {
    const runs: Array<{ losses: number[]; trainable: string[]; b: Float32Array }> = [];
    let init: Map<string, Float32Array> | undefined;
    for (const engine of ['tfjs', 'onnxruntime'] as const) {
      const model = new XmodForOpenIE(tiny());
      applyLoraMixture(model, {
        r: 4,
        alpha: 8,
        languages: ['en', 'de'],
        mode: 'router',
        targetModules: ['query', 'value'],
        rng: new Rng(3),
      });
      for (const [n, v] of model.namedParameters()) if (n.startsWith('oie.')) v.trainable = true;
      if (init === undefined)
        init = new Map(model.namedParameters().map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
      else
        for (const [n, v] of model.namedParameters())
          tf.tidy(() => v.assign(tf.tensor(init?.get(n) as Float32Array, v.shape)));
      const summary = await fit(model, modelLoss(model), {
        lr: 1e-2,
        totalSteps: 6,
        engine,
        data: ({ index }) => batch(20 + (index % 2)),
      });
      expect(summary.engine).toBe(engine);
      runs.push({
        losses: summary.losses,
        trainable: summary.trainableParameters,
        b: model
          .getParameter('roberta.encoder.layer.0.attention.self.query.experts.en.lora_B.weight')
          .dataSync()
          .slice() as Float32Array,
      });
      model.dispose();
    }
    const [t, o] = runs as [(typeof runs)[0], (typeof runs)[0]];
    expect(t.trainable.some((n) => n.startsWith('roberta.embeddings.'))).toBe(false);
    expect(t.trainable.some((n) => n.includes('router'))).toBe(true);
    expect(t.trainable.some((n) => n.startsWith('oie.arg_module.'))).toBe(true);
    for (let s = 0; s < 6; s++)
      expect(Math.abs((t.losses[s] as number) - (o.losses[s] as number))).toBeLessThan(1e-3);
    // LoRA B left its zero init on both engines, to the same values
    expect(t.b.some((v) => v !== 0)).toBe(true);
    expect(maxDiff(t.b, o.b)).toBeLessThan(1e-4);
  });

  it('an X-Mod Open IE model saved as a folder runs in OieModel with a language per row', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xlt-oie-xmod-'));
    try {
      const model = new XmodForOpenIE(xmodTiny());
      // language modules that differ, so that the language matters
      for (const [n, v] of model.namedParameters())
        if (n.includes('adapter_modules.de_DE'))
          tf.tidy(() => v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.3, 'float32', 5))));
      await model.savePretrained(dir);
      const served = await OieModel.fromPretrained(dir, {} as XltTokenizer, { threads: 1 });
      const b = batch(8);
      const inputs = {
        inputIds: b.inputIds,
        attentionMask: b.attentionMask,
        predMask: b.predMask,
        predPosition: b.predPosition as number[][],
      };
      const langIds = ['de_DE', 'en_XX', 'de_DE', 'de_DE'];
      const want = model.forward({ ...inputs, langIds });
      const got = await served.run({ ...inputs, langIds });
      expect(maxDiff(got.arg, want.argLogits.dataSync())).toBeLessThan(1e-4);
      const dflt = await served.run(inputs); // default language en_XX for every row
      expect(maxDiff(dflt.arg, want.argLogits.dataSync())).toBeGreaterThan(1e-3);
      const en = model.forward(inputs);
      expect(maxDiff(dflt.arg, en.argLogits.dataSync())).toBeLessThan(1e-4);
      tf.dispose([want.predLogits, want.argLogits, en.predLogits, en.argLogits]);
      await served.release();
      model.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("@xlt/trainer's mt4crossie preset runs on the Open IE model: its head counts as the task head", async () => {
    const model = new XmodForOpenIE(tiny());
    const plan = preset('mt4crossie');
    const common = {
      loss: modelLoss(model),
      lr: 5e-3,
      data: ({ index }: { index: number }) => batch(30 + (index % 3)),
    };
    const first = await runStages(
      model,
      plan.slice(0, 2).map((p) => ({ ...p, steps: 3 })),
      common,
    );
    const s1 = first[0]?.trainableParameters ?? [];
    expect(s1).toContain('roberta.embeddings.word_embeddings.weight');
    expect(s1).toContain('oie.arg_module.layers.1.multihead_attn.in_proj_weight');
    expect(s1.every((n) => n.startsWith('oie.') || n.endsWith('word_embeddings.weight'))).toBe(true);
    const s2 = first[1]?.trainableParameters ?? [];
    expect(s2).not.toContain('roberta.embeddings.word_embeddings.weight');
    expect(s2).toContain('roberta.encoder.layer.0.attention.self.query.weight');
    applyLoraMixture(model, { r: 2, languages: ['en'], mode: 'router', targetModules: ['query', 'value'] });
    const [third] = await runStages(model, [{ ...(plan[2] as (typeof plan)[0]), steps: 3 }], common);
    const s3 = third?.trainableParameters ?? [];
    expect(third?.engine).toBe('onnxruntime');
    expect(s3.some((n) => n.includes('lora_A'))).toBe(true);
    expect(s3.every((n) => n.includes('lora_') || n.startsWith('oie.'))).toBe(true);
    for (const r of [...first, third]) expect(Number.isFinite(r?.losses.at(-1))).toBe(true);
    model.dispose();
  });

  it('auto picks the compiled engine for the Open IE head loss', async () => {
    const model = new XmodForOpenIE(tiny());
    const summary = await fit(model, modelLoss(model), {
      lr: 1e-3,
      totalSteps: 1,
      data: () => batch(1),
    });
    expect(summary.engine).toBe('onnxruntime');
    model.dispose();
  });

  it('starts from a masked-LM checkpoint (fresh oie.* head), saves and reloads with the same logits', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xlt-oie-head-'));
    try {
      const mlm = new XmodForMaskedLM(tiny());
      await mlm.savePretrained(path.join(dir, 'mlm'));
      const model = await XmodForOpenIE.fromPretrained<XmodForOpenIE>(path.join(dir, 'mlm'));
      expect(model.newlyInitialized.length).toBeGreaterThan(0);
      expect(model.newlyInitialized.every((n) => n.startsWith('oie.'))).toBe(true);
      const emb = 'roberta.embeddings.word_embeddings.weight';
      expect(maxDiff(model.getParameter(emb).dataSync(), mlm.getParameter(emb).dataSync())).toBe(0);
      await model.savePretrained(path.join(dir, 'oie'));
      const again = await XmodForOpenIE.fromPretrained<XmodForOpenIE>(path.join(dir, 'oie'), {
        strictHead: true,
      });
      const b = batch(4);
      const inputs = {
        inputIds: b.inputIds,
        attentionMask: b.attentionMask,
        predMask: b.predMask,
        predPosition: b.predPosition as number[][],
      };
      const x = model.forward(inputs);
      const y = again.forward(inputs);
      expect(maxDiff(x.argLogits.dataSync(), y.argLogits.dataSync())).toBe(0);
      // the saved folder opens for extraction (onnxruntime) with the same logits
      const served = await OieModel.fromPretrained(path.join(dir, 'oie'), {} as XltTokenizer, { threads: 1 });
      const r = await served.run(inputs);
      expect(maxDiff(r.arg, x.argLogits.dataSync())).toBeLessThan(1e-4);
      expect(maxDiff(r.pred, x.predLogits.dataSync())).toBeLessThan(1e-4);
      await served.release();
      await expect(OieModel.fromPretrained(path.join(dir, 'mlm'), {} as XltTokenizer)).rejects.toThrow(
        /not an Open IE model/,
      );
      tf.dispose([x.predLogits, x.argLogits, y.predLogits, y.argLogits]);
      for (const m of [mlm, model, again]) m.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
