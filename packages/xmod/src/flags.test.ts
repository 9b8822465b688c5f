import * as tf from '@tensorflow/tfjs-core';
import type { XmodConfig } from '@xlt/core';
import { initBackend } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { XmodForMaskedLM, type XmodOutput } from './index.js';
import { tinyConfig } from './test-config.js';

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), for hand-computed GELU.
function erf(x: number): number {
  const s = Math.sign(x);
  const a = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * a);
  const y =
    1 -
    ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) *
      t *
      Math.exp(-a * a);
  return s * y;
}
const geluJs = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
function layerNormJs(x: number[], w: number[], b: number[], eps: number): number[] {
  const m = x.reduce((a, v) => a + v, 0) / x.length;
  const v = x.reduce((a, u) => a + (u - m) ** 2, 0) / x.length;
  return x.map((u, i) => ((u - m) / Math.sqrt(v + eps)) * (w[i] ?? 0) + (b[i] ?? 0));
}
function linearJs(x: number[], w: tf.Tensor, b: tf.Tensor): number[] {
  const [o, i] = w.shape as [number, number];
  const wd = w.dataSync();
  const bd = b.dataSync();
  const y: number[] = [];
  for (let r = 0; r < o; r++) {
    let s = bd[r] ?? 0;
    for (let c = 0; c < i; c++) s += (wd[r * i + c] ?? 0) * (x[c] ?? 0);
    y.push(s);
  }
  return y;
}

/** Hand computation of transformers' XmodOutput.lang_adapter for one token vector. */
function langAdapterJs(out: XmodOutput, cfg: XmodConfig, h: number[], lang: string): number[] {
  const p = (n: string) => out.getParameter(n);
  const arr = (n: string) => Array.from(p(n).dataSync());
  let x = h;
  let residual = h;
  if (cfg.adapter_layer_norm)
    x = layerNormJs(x, arr('adapter_layer_norm.weight'), arr('adapter_layer_norm.bias'), 1e-5);
  else if (cfg.adapter_reuse_layer_norm)
    x = layerNormJs(x, arr('LayerNorm.weight'), arr('LayerNorm.bias'), 1e-5);
  if (cfg.ln_before_adapter) residual = x;
  const m = `adapter_modules.${lang}`;
  const mid = linearJs(x, p(`${m}.dense1.weight`), p(`${m}.dense1.bias`)).map(geluJs);
  const y = linearJs(mid, p(`${m}.dense2.weight`), p(`${m}.dense2.bias`));
  return y.map((v, i) => v + (residual[i] ?? 0));
}

const FLAG_CASES: Array<[string, Partial<XmodConfig>]> = [
  [
    'pre-norm with its own adapter_layer_norm',
    { pre_norm: true, adapter_layer_norm: true, adapter_reuse_layer_norm: false },
  ],
  [
    'post-norm reusing the FFN LayerNorm (facebook/xmod-base)',
    { pre_norm: false, adapter_reuse_layer_norm: true, ln_before_adapter: true },
  ],
  [
    'no LayerNorm before the module',
    { adapter_layer_norm: false, adapter_reuse_layer_norm: false, ln_before_adapter: true },
  ],
  [
    'residual taken before the LayerNorm (ln_before_adapter false)',
    { adapter_reuse_layer_norm: true, ln_before_adapter: false },
  ],
  ['reduction factor 4', { adapter_reduction_factor: 4 }],
];

describe('X-Mod config flags follow transformers semantics', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });

  for (const [label, flags] of FLAG_CASES) {
    it(`language adapter arithmetic: ${label}`, () => {
      const model = new XmodForMaskedLM(tinyConfig(flags));
      const cfg = model.config;
      // Perturb every LayerNorm so that using the wrong one would show.
      for (const [n, p] of model.namedParameters())
        if (n.includes('LayerNorm') || n.includes('layer_norm')) p.assign(tf.randomNormal(p.shape, 1, 0.3));
      const out = model.roberta.encoder.layer.items[0]?.output as XmodOutput;
      const bottleneck = out.getParameter('adapter_modules.en_XX.dense1.weight').shape[0];
      expect(bottleneck).toBe(8 / (cfg.adapter_reduction_factor ?? 2));
      expect(out.adapter_layer_norm !== null).toBe(cfg.adapter_layer_norm);
      const h = tf.randomNormal([3, 2, 8]);
      const langIdx = [1, 0, 1];
      const y = out.langAdapter(langIdx, h);
      const hv = h.arraySync() as number[][][];
      const yv = y.arraySync() as number[][][];
      for (let b = 0; b < 3; b++) {
        for (let t = 0; t < 2; t++) {
          const want = langAdapterJs(out, cfg, hv[b]?.[t] ?? [], cfg.languages[langIdx[b] ?? 0] ?? '');
          const got = yv[b]?.[t] ?? [];
          for (let i = 0; i < 8; i++) expect(Math.abs((got[i] ?? 0) - (want[i] ?? 0))).toBeLessThan(1e-5);
        }
      }
      tf.dispose([h, y]);
      model.dispose();
    });
  }

  it('pre-norm: the encoder ends with encoder.LayerNorm and its last hidden state is normalised', () => {
    const model = new XmodForMaskedLM(tinyConfig({ pre_norm: true, adapter_layer_norm: true }));
    const names = model.namedParameters().map(([n]) => n);
    expect(names).toContain('roberta.encoder.LayerNorm.weight');
    expect(names).toContain('roberta.encoder.layer.1.output.adapter_layer_norm.bias');
    const enc = model.roberta.forward({ inputIds: [[0, 5, 6, 2]], outputHiddenStates: true });
    const last = enc.hiddenStates?.[2] as tf.Tensor;
    // LayerNorm with weight 1, bias 0 gives zero mean and unit (biased) variance per token.
    const mean = tf.mean(last, -1);
    const variance = tf.mean(tf.square(tf.sub(last, tf.expandDims(mean, -1))), -1);
    for (const m of mean.dataSync()) expect(Math.abs(m)).toBeLessThan(1e-5);
    for (const v of variance.dataSync()) expect(Math.abs(v - 1)).toBeLessThan(1e-3);
    tf.dispose([enc.lastHiddenState, ...(enc.hiddenStates ?? []), mean, variance]);
    model.dispose();
  });

  it('post-norm X-Mod has no encoder.LayerNorm and no adapter_layer_norm', () => {
    const model = new XmodForMaskedLM(tinyConfig());
    const names = model.namedParameters().map(([n]) => n);
    expect(names.some((n) => n.includes('encoder.LayerNorm') || n.includes('adapter_layer_norm'))).toBe(
      false,
    );
    model.dispose();
  });

  it('a mixed-language batch equals each example run alone with its language', () => {
    const model = new XmodForMaskedLM(tinyConfig());
    const ids = [
      [0, 5, 6, 7, 2],
      [0, 8, 9, 2, 1],
      [0, 4, 4, 4, 2],
    ];
    const langs = ['de_DE', 'en_XX', 'de_DE'];
    const mask = ids.map((r) => r.map((v) => (v === 1 ? 0 : 1)));
    const all = model.forward({ inputIds: ids, attentionMask: mask, langIds: langs }).logits;
    ids.forEach((row, i) => {
      const one = model.forward({
        inputIds: [row],
        attentionMask: [mask[i] ?? []],
        langIds: [langs[i] ?? ''],
      }).logits;
      const part = tf.slice(all, [i, 0, 0], [1, -1, -1]);
      expect(tf.max(tf.abs(tf.sub(one, part))).dataSync()[0]).toBeLessThan(1e-5);
      tf.dispose([one, part]);
    });
    // and the language matters: en for example 0 gives different logits
    const en = model.forward({ inputIds: [ids[0] ?? []], langIds: ['en_XX'] }).logits;
    const de = model.forward({ inputIds: [ids[0] ?? []], langIds: ['de_DE'] }).logits;
    expect(tf.max(tf.abs(tf.sub(en, de))).dataSync()[0]).toBeGreaterThan(1e-4);
    // omitted langIds = default language
    const dflt = model.forward({ inputIds: [ids[0] ?? []] }).logits;
    expect(tf.max(tf.abs(tf.sub(en, dflt))).dataSync()[0]).toBe(0);
    tf.dispose([all, en, de, dflt]);
    model.dispose();
  });

  it('eval mode is the default and deterministic; train mode applies dropout', () => {
    const model = new XmodForMaskedLM(tinyConfig({ hidden_dropout_prob: 0.5 }));
    expect(model.training).toBe(false);
    const x = { inputIds: [[0, 5, 6, 7, 2]] };
    const a = model.forward(x).logits;
    const b = model.forward(x).logits;
    expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBe(0);
    model.train();
    const c = model.forward(x).logits;
    expect(tf.max(tf.abs(tf.sub(a, c))).dataSync()[0]).toBeGreaterThan(1e-4);
    model.eval();
    const d = model.forward(x).logits;
    expect(tf.max(tf.abs(tf.sub(a, d))).dataSync()[0]).toBe(0);
    tf.dispose([a, b, c, d]);
    model.dispose();
  });

  it('forward and backward in train mode leak no tensors', () => {
    const model = new XmodForMaskedLM(tinyConfig());
    model.train();
    const x = {
      inputIds: [
        [0, 5, 6, 7, 2],
        [0, 8, 9, 2, 1],
      ],
      attentionMask: [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
      ],
      langIds: [0, 1],
      labels: [
        [-100, 5, -100, 7, -100],
        [-100, -100, 9, -100, -100],
      ],
    };
    const before = tf.memory().numTensors;
    for (let i = 0; i < 2; i++) {
      const { value, grads } = tf.variableGrads(() => model.forward(x).loss as tf.Scalar);
      expect(Object.keys(grads).length).toBe(model.trainableParameters().length);
      value.dispose();
      tf.dispose(grads);
      const o = model.forward({ ...x, outputHiddenStates: true });
      tf.dispose([o.logits, o.loss as tf.Tensor, ...(o.hiddenStates ?? [])]);
    }
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });
});
