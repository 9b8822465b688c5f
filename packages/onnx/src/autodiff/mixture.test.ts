import { normalizeConfig } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import type { Weight, WeightSource } from '../export.js';
import type { LoraMixtureSpec } from '../model-types.js';
import { randomWeights } from '../random.js';
import { bothGradients, expectSameGradients, i64 } from './parity-helpers.js';

const config = normalizeConfig({
  vocab_size: 30,
  hidden_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 12,
  num_labels: 3,
  max_position_embeddings: 12,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});
const experts = ['en', 'de', 'sw'];
const modules = [0, 1].flatMap((l) =>
  ['query', 'value'].map((m) => `roberta.encoder.layer.${l}.attention.self.${m}`),
);

/** The random base model with each module's weights under `base_layer` plus its experts and router. */
function withMixtures(seed: number, mode: LoraMixtureSpec['mode']): WeightSource & { names(): string[] } {
  const base = randomWeights(config, 'token-classification', seed, 0.3);
  const extra = new Map<string, Weight>();
  let s = seed;
  const rand = (shape: number[]): Weight => ({
    shape,
    data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return (s / 2 ** 32 - 0.5) * 0.8;
    }),
  });
  const H = config.hidden_size;
  for (const m of modules) {
    extra.set(`${m}.base_layer.weight`, base.get(`${m}.weight`));
    extra.set(`${m}.base_layer.bias`, base.get(`${m}.bias`));
    for (const e of experts) {
      extra.set(`${m}.experts.${e}.lora_A.weight`, rand([2, H]));
      extra.set(`${m}.experts.${e}.lora_B.weight`, rand([H, 2]));
    }
    if (mode === 'router' || mode === 'topk') extra.set(`${m}.router.weight`, rand([experts.length, H]));
    if (mode === 'static') extra.set(`${m}.mix_logits`, rand([experts.length]));
  }
  const hidden = new Set(modules.flatMap((m) => [`${m}.weight`, `${m}.bias`]));
  return {
    names: () => [...base.names().filter((n) => !hidden.has(n)), ...extra.keys()],
    has: (n) => extra.has(n) || (base.has(n) && !hidden.has(n)),
    get: (n) => extra.get(n) ?? base.get(n),
  };
}

const batch = {
  input_ids: i64(
    [
      [0, 5, 6, 7, 8, 2],
      [0, 9, 10, 2, 1, 1],
      [0, 11, 12, 13, 2, 1],
    ],
    [3, 6],
  ),
  attention_mask: i64(
    [
      [1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 0, 0],
      [1, 1, 1, 1, 1, 0],
    ],
    [3, 6],
  ),
  lang_ids: i64([2, 0, 1], [3]),
  labels: i64(
    [
      [-100, 0, 2, 1, 1, -100],
      [-100, 2, 0, -100, -100, -100],
      [-100, 1, 1, 0, -100, -100],
    ],
    [3, 6],
  ),
};

describe('traced LoRA mixtures: any-shape graph against the static-shape graph and finite differences', () => {
  const specs: Array<[string, Omit<LoraMixtureSpec, 'languages' | 'scaling'>]> = [
    ['language routing', { mode: 'language' }],
    ['a router on the first token', { mode: 'router' }],
    ['a router on the mean over tokens', { mode: 'router', pooling: 'mean' }],
    ['top-2 of 3 experts', { mode: 'topk', k: 2 }],
    ['one learned static mixture', { mode: 'static' }],
  ];
  it.each(specs)('%s: loss and every gradient (experts, routers) within 1e-4', async (_, spec) => {
    const weights = withMixtures(21, spec.mode);
    const trainable = weights.names().filter((n) => /experts|router|mix_logits|classifier/.test(n));
    const loraMixtures = new Map(modules.map((m) => [m, { ...spec, languages: experts, scaling: 1.5 }]));
    const res = await bothGradients(config, weights, 'token-classification', trainable, batch, {
      loraMixtures,
    });
    expectSameGradients(res, trainable, 1e-4);
    expect(res.signature.batch.includes('lang_ids')).toBe(spec.mode === 'language');
  });

  it("experts' input dropout: the same seed drops the same elements (loss and gradients within 1e-4)", async () => {
    const weights = withMixtures(22, 'router');
    const trainable = weights.names().filter((n) => /experts|router/.test(n));
    const loraMixtures = new Map(
      modules.map((m) => [m, { mode: 'router' as const, languages: experts, scaling: 1, dropout: 0.3 }]),
    );
    const seeded = { ...batch, dropout_seed: i64(777, []) };
    const res = await bothGradients(config, weights, 'token-classification', trainable, seeded, {
      loraMixtures,
      dropout: true,
    });
    expect(res.signature.batch).toContain('dropout_seed');
    expectSameGradients(res, trainable, 1e-4);
  });
});
