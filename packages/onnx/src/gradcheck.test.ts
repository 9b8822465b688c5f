import { normalizeConfig } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildTrainGraph } from './autodiff/train-graph.js';
import type { HeadKind, XmodConfig } from './export.js';
import { randomWeights } from './random.js';
import type { TrainGraphOptions } from './train-types.js';

/**
 * Finite-difference checks of the compiled backward pass where no PyTorch fixture exists: the
 * analytic gradient of a few entries of every parameter against (L(w + e) - L(w - e)) / 2e.
 */
async function gradcheck(
  config: XmodConfig,
  head: HeadKind,
  batch: Record<string, ort.Tensor>,
  seed = 1,
): Promise<number> {
  return gradcheckWith(config, head, {}, batch, seed);
}

async function gradcheckWith(
  config: XmodConfig,
  head: HeadKind,
  extra: Pick<TrainGraphOptions, 'salt' | 'embeddingMixup' | 'dropout'>,
  batch: Record<string, ort.Tensor>,
  seed = 1,
): Promise<number> {
  const w = randomWeights(config, head, seed, 0.3);
  const names = w.names();
  const { model, signature } = buildTrainGraph({
    config,
    weights: w,
    head,
    trainable: names,
    mode: 'grads',
    ...extra,
  });
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

type Nested = number | Nested[];
const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);
const i64 = (rows: Nested, dims: number[]) =>
  new ort.Tensor('int64', BigInt64Array.from(flat(rows).map((v) => BigInt(v))), dims);

const tiny = normalizeConfig({
  vocab_size: 20,
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 12,
  max_position_embeddings: 12,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});

describe('compiled backward pass against finite differences', () => {
  it('Open IE head (predicate tagger + argument extractor with predicate-restricted keys)', async () => {
    const config: XmodConfig = {
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
    const config: XmodConfig = {
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

describe('SALT-style objective and embedding mixup in the compiled step', () => {
  const cls: XmodConfig = { ...tiny, num_labels: 3 };
  // rows 0-1 are originals, rows 2-3 their augmented (code-switched) versions
  const ids = [
    [0, 5, 6, 7, 2],
    [0, 9, 10, 2, 1],
    [0, 5, 16, 7, 2],
    [0, 12, 10, 2, 1],
  ];
  const mask = [
    [1, 1, 1, 1, 1],
    [1, 1, 1, 1, 0],
    [1, 1, 1, 1, 1],
    [1, 1, 1, 1, 0],
  ];
  const mix = {
    mix_ids: i64(
      ids.map((r) => r.map((t) => [(t + 3) % 20, (t + 7) % 20])),
      [4, 5, 2],
    ),
    mix_probs: new ort.Tensor(
      'float32',
      Float32Array.from(ids.flatMap((r) => r.flatMap(() => [0.7, 0.3]))),
      [4, 5, 2],
    ),
    mix_lambda: new ort.Tensor(
      'float32',
      Float32Array.from([0, 0.4, 0, 0, 0, 0, 0, 0.6, 0, 0, 0, 0.3, 0.5, 0, 0, 0, 0, 0.2, 0, 0]),
      [4, 5],
    ),
  };

  it('sequence classification: task loss on both halves + KL consistency, with embedding mixup', async () => {
    const worst = await gradcheckWith(
      cls,
      'sequence-classification',
      { salt: { augWeight: 0.5, klWeight: 2 }, embeddingMixup: true },
      {
        input_ids: i64(ids, [4, 5]),
        attention_mask: i64(mask, [4, 5]),
        labels: i64([2, 0, 2, 0], [4]),
        ...mix,
      },
    );
    expect(worst).toBeLessThan(5e-2);
  });

  it('token classification: the KL term counts only labelled tokens of the originals', async () => {
    const worst = await gradcheckWith(
      cls,
      'token-classification',
      { salt: { klWeight: 1 } },
      {
        input_ids: i64(ids, [4, 5]),
        attention_mask: i64(mask, [4, 5]),
        labels: i64(
          [
            [-100, 1, 2, 0, -100],
            [-100, 0, 1, -100, -100],
            [-100, 1, 2, 0, -100],
            [-100, 0, 1, -100, -100],
          ],
          [4, 5],
        ),
      },
    );
    expect(worst).toBeLessThan(5e-2);
  });

  it('the KL term is zero when the augmented rows equal the originals', async () => {
    const w = randomWeights(cls, 'sequence-classification', 2, 0.3);
    const same = [ids[0]!, ids[1]!, ids[0]!, ids[1]!];
    const sameMask = [mask[0]!, mask[1]!, mask[0]!, mask[1]!];
    const run = async (salt: { augWeight?: number; klWeight?: number } | undefined) => {
      const { model, signature } = buildTrainGraph({
        config: cls,
        weights: w,
        head: 'sequence-classification',
        trainable: w.names(),
        mode: 'grads',
        ...(salt ? { salt } : {}),
      });
      const s = await ort.InferenceSession.create(model);
      const feeds: Record<string, ort.Tensor> = {
        input_ids: i64(same, [4, 5]),
        attention_mask: i64(sameMask, [4, 5]),
        labels: i64([1, 2, 1, 2], [4]),
      };
      for (const p of signature.params)
        feeds[p.input] = new ort.Tensor('float32', w.get(p.name).data, p.shape);
      return (await s.run(feeds)).loss?.data[0] as number;
    };
    const plain = await run(undefined);
    // originals and copies: task + 1 x task + 5 x KL(p || p) = 2 x task
    expect(await run({ augWeight: 1, klWeight: 5 })).toBeCloseTo(2 * plain, 5);
  });

  it('dropout (hidden, attention, classifier; X-Mod with modules): the masked backward matches finite differences for a fixed seed', async () => {
    const config: XmodConfig = {
      ...tiny,
      num_labels: 3,
      languages: ['a', 'b'],
      hidden_dropout_prob: 0.2,
      attention_probs_dropout_prob: 0.25,
      classifier_dropout: 0.3,
    };
    const ids = i64(
      [
        [0, 5, 6, 7, 8, 2],
        [0, 9, 10, 2, 1, 1],
      ],
      [2, 6],
    );
    const mask = i64(
      [
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0, 0],
      ],
      [2, 6],
    );
    const seedT = new ort.Tensor('int64', BigInt64Array.of(17n), []);
    const worstSeq = await gradcheckWith(
      config,
      'sequence-classification',
      { dropout: true },
      {
        input_ids: ids,
        attention_mask: mask,
        lang_ids: i64([0, 1], [2]),
        labels: i64([2, 0], [2]),
        dropout_seed: seedT,
      },
    );
    const worstTok = await gradcheckWith(
      config,
      'token-classification',
      { dropout: true },
      {
        input_ids: ids,
        attention_mask: mask,
        lang_ids: i64([1, 0], [2]),
        labels: i64(
          [
            [-100, 1, 2, 0, 1, -100],
            [-100, 2, 2, -100, -100, -100],
          ],
          [2, 6],
        ),
        dropout_seed: seedT,
      },
    );
    expect(Math.max(worstSeq, worstTok)).toBeLessThan(5e-2);
  });
});

describe('dropout masks of the compiled graph', () => {
  const config: XmodConfig = { ...tiny, num_labels: 2, hidden_dropout_prob: 0.1 };
  const batch = (seed: bigint) => ({
    input_ids: i64([[0, 5, 6, 7, 8, 2]], [1, 6]),
    attention_mask: i64([[1, 1, 1, 1, 1, 1]], [1, 6]),
    labels: i64([[-100, 1, 0, 1, 1, -100]], [1, 6]),
    dropout_seed: new ort.Tensor('int64', BigInt64Array.of(seed), []),
  });
  const lossOf = async (session: ort.InferenceSession, seed: bigint, names: Map<string, ort.Tensor>) =>
    (await session.run({ ...batch(seed), ...Object.fromEntries(names) })).loss?.data[0] as number;

  it('the loss depends only on the seed: same seed same loss, other seeds other losses, no dropout without it', async () => {
    const w = randomWeights(config, 'token-classification', 3, 0.3);
    const trainable = ['classifier.weight'];
    const { model, signature } = buildTrainGraph({
      config,
      weights: w,
      head: 'token-classification',
      trainable,
      mode: 'grads',
    });
    expect(signature.batch).toContain('dropout_seed');
    const feeds = new Map(
      signature.params.map((p) => [p.input, new ort.Tensor('float32', w.get(p.name).data, p.shape)]),
    );
    const session = await ort.InferenceSession.create(model);
    const a = await lossOf(session, 5n, feeds);
    expect(await lossOf(session, 5n, feeds)).toBe(a);
    const others = await Promise.all([6n, 7n, 8n].map((s) => lossOf(session, s, feeds)));
    expect(new Set([a, ...others]).size).toBe(4);
    await session.release();
    const off = buildTrainGraph({
      config,
      weights: w,
      head: 'token-classification',
      trainable,
      mode: 'grads',
      dropout: false,
    });
    expect(off.signature.batch).not.toContain('dropout_seed');
  });

  it('masks keep 1 - rate of the elements, scaled by 1/(1 - rate), uncorrelated between neighbours and seeds', async () => {
    // a graph whose only output is the dropout mask of a [rows, 500] tensor (rows read from `like`)
    const { Tracer } = await import('./autodiff/tracer.js');
    const { DropoutSites } = await import('./autodiff/dropout.js');
    const { symbol } = await import('./autodiff/dims.js');
    const t = new Tracer();
    const like = t.input('like', [symbol('rows'), 500]);
    t.output(new DropoutSites(t).mask(like.shape, 0.1), 'mask');
    const session = await ort.InferenceSession.create(t.toBytes());
    const run = async (seed: bigint) =>
      (
        await session.run({
          like: new ort.Tensor('float32', new Float32Array(100000), [200, 500]),
          dropout_seed: new ort.Tensor('int64', BigInt64Array.of(seed), []),
        })
      ).mask?.data as Float32Array;
    const m1 = await run(1n);
    const m2 = await run(2n);
    const kept = m1.filter((v) => v > 0);
    expect(new Set(kept).size).toBe(1);
    expect(kept[0]).toBeCloseTo(1 / 0.9, 5);
    expect(Math.abs(kept.length / m1.length - 0.9)).toBeLessThan(0.005);
    const bit = (m: Float32Array, i: number) => ((m[i] as number) > 0 ? 1 : 0);
    const corr = (f: (i: number) => [number, number]) => {
      let sx = 0,
        sy = 0,
        sxy = 0,
        sxx = 0,
        syy = 0;
      const n = m1.length - 1;
      for (let i = 0; i < n; i++) {
        const [x, y] = f(i);
        sx += x;
        sy += y;
        sxy += x * y;
        sxx += x * x;
        syy += y * y;
      }
      return (
        (sxy / n - (sx / n) * (sy / n)) / Math.sqrt((sxx / n - (sx / n) ** 2) * (syy / n - (sy / n) ** 2))
      );
    };
    expect(Math.abs(corr((i) => [bit(m1, i), bit(m1, i + 1)]))).toBeLessThan(0.02);
    expect(Math.abs(corr((i) => [bit(m1, i), bit(m2, i)]))).toBeLessThan(0.02);
    expect(Math.abs(corr((i) => [bit(m1, i), bit(m2, i + 1)]))).toBeLessThan(0.02);
    await session.release();
  });

  it('masks are the documented uint32 hash of (element, seed, site), different sites uncorrelated', async () => {
    const { Tracer } = await import('./autodiff/tracer.js');
    const { DropoutSites, fmix32 } = await import('./autodiff/dropout.js');
    const t = new Tracer();
    const like = t.input('like', [400, 500]);
    const sites = new DropoutSites(t);
    t.output(sites.keep(like.shape, 0.25), 'k0');
    t.output(sites.keep(like.shape, 0.25), 'k1');
    const session = await ort.InferenceSession.create(t.toBytes());
    const seed = 123456789;
    const out = await session.run({
      like: new ort.Tensor('float32', new Float32Array(200000), [400, 500]),
      dropout_seed: new ort.Tensor('int64', BigInt64Array.of(BigInt(seed)), []),
    });
    const k0 = out.k0?.data as Uint8Array;
    const k1 = out.k1?.data as Uint8Array;
    // the reference: keep element i of site k when fmix32((i * 0x9E3779B1) ^ key) < 0.75 * 2^32
    const threshold = 0.75 * 2 ** 32;
    const key = (site: number) => fmix32((Math.imul(seed, 0x85ebca77) + fmix32(site + 1)) >>> 0);
    const ref = (i: number, site: number) => fmix32((Math.imul(i, 0x9e3779b1) ^ key(site)) >>> 0) < threshold;
    let mismatches = 0;
    for (let i = 0; i < k0.length; i += 7) {
      if (ref(i, 0) !== (k0[i] === 1)) mismatches++;
      if (ref(i, 1) !== (k1[i] === 1)) mismatches++;
    }
    expect(mismatches).toBe(0);
    const share = (k: Uint8Array) => k.reduce((a, v) => a + v, 0) / k.length;
    expect(Math.abs(share(k0) - 0.75)).toBeLessThan(0.005);
    // two sites of one step: as good as independent, also shifted against each other
    for (const shift of [0, 1, 500]) {
      let both = 0;
      for (let i = 0; i + shift < k0.length; i++) both += (k0[i] as number) * (k1[i + shift] as number);
      expect(Math.abs(both / (k0.length - shift) - share(k0) * share(k1))).toBeLessThan(0.005);
    }
    await session.release();
  });
});
