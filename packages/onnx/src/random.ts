import { labelCount, oieHeadSizes, Rng } from '@xlt/core';
import type { HeadKind, Weight, WeightSource, XmodConfig } from './export.js';

/** Every weight name and shape of an X-Mod / XLM-R model with a head, as Hugging Face names them. */
export function weightShapes(config: XmodConfig, head: HeadKind): Map<string, number[]> {
  const H = config.hidden_size;
  const I = config.intermediate_size;
  const m = new Map<string, number[]>();
  const p = head === 'base' ? '' : 'roberta.';
  m.set(`${p}embeddings.word_embeddings.weight`, [config.vocab_size, H]);
  m.set(`${p}embeddings.position_embeddings.weight`, [config.max_position_embeddings, H]);
  m.set(`${p}embeddings.token_type_embeddings.weight`, [config.type_vocab_size, H]);
  const ln = (n: string) => {
    m.set(`${n}.weight`, [H]);
    m.set(`${n}.bias`, [H]);
  };
  const lin = (n: string, i: number, o: number) => {
    m.set(`${n}.weight`, [o, i]);
    m.set(`${n}.bias`, [o]);
  };
  ln(`${p}embeddings.LayerNorm`);
  const b = Math.floor(H / config.adapter_reduction_factor);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    const L = `${p}encoder.layer.${l}`;
    for (const q of ['query', 'key', 'value']) lin(`${L}.attention.self.${q}`, H, H);
    lin(`${L}.attention.output.dense`, H, H);
    ln(`${L}.attention.output.LayerNorm`);
    lin(`${L}.intermediate.dense`, H, I);
    lin(`${L}.output.dense`, I, H);
    ln(`${L}.output.LayerNorm`);
    if (config.adapter_layer_norm) ln(`${L}.output.adapter_layer_norm`);
    for (const lang of config.languages) {
      lin(`${L}.output.adapter_modules.${lang}.dense1`, H, b);
      lin(`${L}.output.adapter_modules.${lang}.dense2`, b, H);
    }
  }
  if (config.pre_norm) ln(`${p}encoder.LayerNorm`);
  const nLabels = labelCount(config);
  if (head === 'masked-lm') {
    lin('lm_head.dense', H, H);
    ln('lm_head.layer_norm');
    m.set('lm_head.bias', [config.vocab_size]);
  } else if (head === 'sequence-classification') {
    lin('classifier.dense', H, H);
    lin('classifier.out_proj', H, nLabels);
  } else if (head === 'token-classification') lin('classifier', H, nLabels);
  else if (head === 'question-answering') lin('qa_outputs', H, 2);
  else if (head === 'open-ie') {
    const o = oieHeadSizes(config);
    const P = o.pos_emb_dim;
    const d = 2 * H + P;
    const ff = o.d_feedforward;
    lin('oie.pred_classifier', H, 3);
    m.set('oie.position_emb.weight', [3, P]);
    for (let i = 0; i < o.n_arg_layers; i++) {
      const L = `oie.arg_module.layers.${i}`;
      m.set(`${L}.multihead_attn.in_proj_weight`, [3 * d, d]);
      m.set(`${L}.multihead_attn.in_proj_bias`, [3 * d]);
      lin(`${L}.multihead_attn.out_proj`, d, d);
      lin(`${L}.linear1`, d, ff);
      lin(`${L}.linear2`, ff, d);
      for (const nrm of ['norm1', 'norm2']) {
        m.set(`${L}.${nrm}.weight`, [d]);
        m.set(`${L}.${nrm}.bias`, [d]);
      }
    }
    lin('oie.arg_classifier', d, 9);
  }
  return m;
}

/**
 * Seeded random weights, for tests, benchmarks and training from scratch. Default: every weight
 * N(0, std) and LayerNorm weights 1 + N(0, std/10) (nothing at its default, so a loader that drops a
 * tensor shows). `init: 'hf'` initialises as transformers does: linear and embedding weights
 * N(0, std), biases 0, LayerNorm weight 1 and bias 0, the padding row of the word embeddings 0.
 */
export function randomWeights(
  config: XmodConfig,
  head: HeadKind,
  seed = 0,
  std = 0.02,
  init: 'perturbed' | 'hf' = 'perturbed',
): WeightSource & { names(): string[] } {
  const shapes = weightShapes(config, head);
  const cache = new Map<string, Weight>();
  return {
    names: () => [...shapes.keys()],
    has: (n) => shapes.has(n),
    get: (n) => {
      const hit = cache.get(n);
      if (hit) return hit;
      const shape = shapes.get(n);
      if (!shape) throw new Error(`no weight '${n}'`);
      const rng = new Rng(seed).fork(n);
      const size = shape.reduce((a, d) => a * d, 1);
      const data = new Float32Array(size);
      const isLnWeight = /(LayerNorm|layer_norm|norm\d)\.weight$/.test(n);
      if (init === 'hf') {
        if (isLnWeight) data.fill(1);
        else if (!n.endsWith('.bias')) for (let i = 0; i < size; i++) data[i] = rng.normal(0, std);
        if (n.endsWith('word_embeddings.weight')) {
          const pad = config.pad_token_id;
          data.fill(0, pad * config.hidden_size, (pad + 1) * config.hidden_size);
        }
      } else
        for (let i = 0; i < size; i++)
          data[i] = isLnWeight ? 1 + rng.normal(0, std / 10) : rng.normal(0, std);
      const w = { data, shape };
      cache.set(n, w);
      return w;
    },
  };
}
