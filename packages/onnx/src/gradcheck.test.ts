import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { EncoderConfig, HeadKind } from './export.js';
import { randomWeights } from './random.js';
import { buildTrainGraph } from './train.js';

/**
 * Finite-difference checks of the compiled backward pass where no PyTorch fixture exists: the
 * analytic gradient of a few entries of every parameter against (L(w + e) - L(w - e)) / 2e.
 */
async function gradcheck(
  config: EncoderConfig,
  head: HeadKind,
  batch: Record<string, ort.Tensor>,
  seed = 1,
): Promise<number> {
  const w = randomWeights(config, head, seed, 0.3);
  const names = w.names();
  const { model, signature } = buildTrainGraph({ config, weights: w, head, trainable: names, mode: 'grads' });
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  const params = new Map(signature.params.map((p) => [p.name, Float64Array.from(w.get(p.name).data)]));
  const feeds = (override?: { name: string; i: number; v: number }) => {
    const f: Record<string, ort.Tensor> = { ...batch };
    for (const p of signature.params) {
      const data = Float32Array.from(params.get(p.name) as Float64Array);
      if (override?.name === p.name) data[override.i] = override.v;
      f[p.input] = new ort.Tensor('float32', data, p.shape);
    }
    return f;
  };
  const out = await session.run(feeds());
  let worst = 0;
  // small enough not to cross a ReLU kink, large enough for float32 loss differences
  const eps = 1e-3;
  for (const p of signature.params) {
    const g = out[p.grad as string]?.data as Float32Array;
    const base = params.get(p.name) as Float64Array;
    // the three entries with the largest gradient, where the check is most informative
    const idx = Array.from(g.keys())
      .sort((a, b) => Math.abs(g[b] as number) - Math.abs(g[a] as number))
      .slice(0, 3);
    for (const i of idx) {
      const lp = (await session.run(feeds({ name: p.name, i, v: (base[i] as number) + eps }))).loss
        ?.data[0] as number;
      const lm = (await session.run(feeds({ name: p.name, i, v: (base[i] as number) - eps }))).loss
        ?.data[0] as number;
      const fd = (lp - lm) / (2 * eps);
      const an = g[i] as number;
      const err = Math.abs(fd - an) / Math.max(Math.abs(fd), Math.abs(an), 1e-2);
      worst = Math.max(worst, err);
      if (err > 5e-2) throw new Error(`${p.name}[${i}]: analytic ${an}, finite difference ${fd}`);
    }
  }
  await session.release();
  return worst;
}

const i64 = (rows: number[][] | number[], dims: number[]) =>
  new ort.Tensor(
    'int64',
    BigInt64Array.from((rows as Array<number | number[]>).flat().map((v) => BigInt(v))),
    dims,
  );

const tiny: EncoderConfig = {
  vocab_size: 20,
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 12,
  ...({ max_position_embeddings: 12 } as object),
};

describe('compiled backward pass against finite differences', () => {
  it('Open IE head (predicate tagger + argument extractor with predicate-restricted keys)', async () => {
    const config: EncoderConfig = {
      ...tiny,
      oie: { pos_emb_dim: 4, n_arg_layers: 2, n_arg_heads: 2, d_feedforward: 6 },
    };
    const worst = await gradcheck(config, 'open-ie', {
      input_ids: i64(
        [
          [0, 5, 6, 7, 8, 2],
          [0, 9, 10, 2, 1, 1],
        ],
        [2, 6],
      ),
      attention_mask: i64(
        [
          [1, 1, 1, 1, 1, 1],
          [1, 1, 1, 1, 0, 0],
        ],
        [2, 6],
      ),
      pred_mask: i64(
        [
          [0, 0, 1, 1, 0, 0],
          [0, 1, 0, 0, 0, 0],
        ],
        [2, 6],
      ),
      pred_position: i64(
        [
          [2, 2, 1, 1, 2, 2],
          [2, 1, 2, 2, 0, 0],
        ],
        [2, 6],
      ),
      pred_labels: i64(
        [
          [-100, 0, 1, 2, 0, -100],
          [-100, 1, 0, -100, -100, -100],
        ],
        [2, 6],
      ),
      arg_labels: i64(
        [
          [-100, 1, 0, 0, 3, -100],
          [-100, 0, 3, -100, -100, -100],
        ],
        [2, 6],
      ),
    });
    expect(worst).toBeLessThan(5e-2);
  });

  it('pre-norm X-Mod with adapter LayerNorm, no LayerNorm before the module, reduction factor 4 (MLM)', async () => {
    const config: EncoderConfig = {
      ...tiny,
      num_hidden_layers: 2,
      languages: ['a', 'b', 'c'],
      pre_norm: true,
      adapter_layer_norm: true,
      adapter_reuse_layer_norm: false,
      ln_before_adapter: false,
      adapter_reduction_factor: 4,
    };
    const worst = await gradcheck(config, 'masked-lm', {
      input_ids: i64(
        [
          [0, 5, 19, 7, 2],
          [0, 9, 19, 2, 1],
        ],
        [2, 5],
      ),
      attention_mask: i64(
        [
          [1, 1, 1, 1, 1],
          [1, 1, 1, 1, 0],
        ],
        [2, 5],
      ),
      lang_ids: i64([2, 0], [2]),
      labels: i64(
        [
          [-100, -100, 6, -100, -100],
          [-100, 4, 11, -100, -100],
        ],
        [2, 5],
      ),
    });
    expect(worst).toBeLessThan(5e-2);
  });
});
