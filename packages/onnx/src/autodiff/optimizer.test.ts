import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SafetensorsReader, sharedPath, sharedSkipReason } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { WeightSource } from '../export.js';
import { readEncoderConfig, safetensorsWeights } from '../runner.js';
import { linearWarmupDecay } from '../step.js';
import type { TrainGraph } from '../train-types.js';
import { peftAdapterWeights } from '../weights.js';
import type { TracedAdamWSettings } from './optimizer.js';
import {
  buildApplyGraph,
  buildChunkUpdateGraph,
  buildTracedTrainGraph,
  CHUNK_UPDATE_NORM,
} from './train-graph.js';

type Nested = number | Nested[];
const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);
const i64 = (x: Nested, dims: number[]) =>
  new ort.Tensor('int64', BigInt64Array.from(flat(x).map((v) => BigInt(v))), dims);
const f32 = (x: ArrayLike<number>, dims: number[]) => new ort.Tensor('float32', Float32Array.from(x), dims);

/** Parameters and moments of a run, fed to and read back from an AdamW graph step after step. */
class State {
  readonly p = new Map<string, Float32Array>();
  readonly m = new Map<string, Float32Array>();
  readonly v = new Map<string, Float32Array>();
  constructor(entries: Array<[string, Float32Array]>) {
    for (const [n, d] of entries) {
      this.p.set(n, d);
      this.m.set(n, new Float32Array(d.length));
      this.v.set(n, new Float32Array(d.length));
    }
  }
  feeds(g: TrainGraph, extra: Record<string, ort.Tensor>): Record<string, ort.Tensor> {
    const f: Record<string, ort.Tensor> = { ...extra };
    for (const q of g.signature.params) {
      f[q.input] = f32(this.p.get(q.name) as Float32Array, q.shape);
      f[q.m as string] = f32(this.m.get(q.name) as Float32Array, q.shape);
      f[q.v as string] = f32(this.v.get(q.name) as Float32Array, q.shape);
    }
    return f;
  }
  update(g: TrainGraph, out: ort.InferenceSession.OnnxValueMapType): void {
    for (const q of g.signature.params) {
      this.p.set(q.name, out[q.newParam as string]?.data as Float32Array);
      this.m.set(q.name, out[q.newM as string]?.data as Float32Array);
      this.v.set(q.name, out[q.newV as string]?.data as Float32Array);
    }
  }
}

/** torch.optim.AdamW (and HF's correct_bias=False) for one parameter vector, in float64. */
function adamwReference(
  p: number[],
  grads: number[][],
  lrs: number[],
  s: TracedAdamWSettings,
  /** Per entry: whether weight decay applies. */
  decay: boolean[],
): number[] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  const out = [...p];
  grads.forEach((g0, k) => {
    const step = k + 1;
    const lr = lrs[k] as number;
    const norm = Math.sqrt(g0.reduce((a, x) => a + x * x, 0));
    const coef = s.maxGradNorm !== undefined ? Math.min(1, s.maxGradNorm / (norm + 1e-6)) : 1;
    for (let i = 0; i < out.length; i++) {
      const g = (g0[i] as number) * coef;
      if (decay[i]) out[i] = (out[i] as number) * (1 - lr * s.weightDecay);
      m[i] = s.beta1 * (m[i] as number) + (1 - s.beta1) * g;
      v[i] = s.beta2 * (v[i] as number) + (1 - s.beta2) * g * g;
      const bc1 = s.biasCorrection === false ? 1 : 1 - s.beta1 ** step;
      const bc2 = s.biasCorrection === false ? 1 : 1 - s.beta2 ** step;
      out[i] =
        (out[i] as number) - (lr / bc1) * ((m[i] as number) / (Math.sqrt((v[i] as number) / bc2) + s.eps));
    }
  });
  return out;
}

describe('traced clipping and AdamW', () => {
  it.each([
    ['with bias correction', true],
    ['without bias correction (correct_bias=False)', false],
  ])('%s: three steps equal a float64 reference within 1e-6', async (_, biasCorrection) => {
    const settings: TracedAdamWSettings = {
      beta1: 0.9,
      beta2: 0.99,
      eps: 1e-6,
      weightDecay: 0.1,
      maxGradNorm: 1,
      biasCorrection,
    };
    const graph = buildApplyGraph(
      [
        { name: 'dense.weight', shape: [2, 2] },
        { name: 'dense.bias', shape: [2] },
      ],
      settings,
    );
    const session = await ort.InferenceSession.create(graph.model, { intraOpNumThreads: 1 });
    const w0 = [0.5, -0.25, 1, 0.75];
    const b0 = [0.1, -0.2];
    // the first step's gradient norm is above 1 and gets clipped; the others are not
    const gw = [
      [2, -1, 0.5, 0],
      [0.1, 0.2, -0.3, 0.05],
      [-0.2, 0.1, 0.1, 0.3],
    ];
    const gb = [
      [0.3, 0.4],
      [-0.1, 0.05],
      [0.02, -0.2],
    ];
    const lrs = [0.1, 0.05, 0.02];
    const state = new State([
      ['dense.weight', Float32Array.from(w0)],
      ['dense.bias', Float32Array.from(b0)],
    ]);
    for (let k = 0; k < 3; k++) {
      const out = await session.run(
        state.feeds(graph, {
          'grad:dense.weight': f32(gw[k] as number[], [2, 2]),
          'grad:dense.bias': f32(gb[k] as number[], [2]),
          lr: f32([lrs[k] as number], []),
          step: f32([k + 1], []),
        }),
      );
      state.update(graph, out);
    }
    // one vector: clipping uses the norm over both parameters; biases get no weight decay
    const want = adamwReference(
      [...w0, ...b0],
      gw.map((g, k) => [...g, ...(gb[k] as number[])]),
      lrs,
      settings,
      [true, true, true, true, false, false],
    );
    const got = [
      ...(state.p.get('dense.weight') as Float32Array),
      ...(state.p.get('dense.bias') as Float32Array),
    ];
    for (const [i, x] of got.entries())
      expect(Math.abs(x - (want[i] as number)), `entry ${i}`).toBeLessThan(1e-6);
    await session.release();
  });

  it('the finite guard: bit for bit the unguarded update on a finite step, the inputs unchanged on a NaN or infinite gradient', async () => {
    const settings: TracedAdamWSettings = {
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: 0.01,
      maxGradNorm: 1,
    };
    const n = 37;
    const guarded = buildApplyGraph([{ name: 'w', shape: [n] }], settings);
    const plain = buildChunkUpdateGraph(settings, true, 1);
    const [gs, ps] = await Promise.all(
      [guarded, plain].map((g) => ort.InferenceSession.create(g.model, { intraOpNumThreads: 1 })),
    );
    const val = (k: number, scale: number) =>
      Float32Array.from({ length: n }, (_, i) => scale * Math.sin(i * 1.7 + k));
    const [p, m] = [val(1, 1), val(2, 0.01)];
    const v = val(3, 1e-4).map(Math.abs);
    const run = async (grad: Float32Array) => {
      const sig = guarded.signature.params[0] as (typeof guarded.signature.params)[number];
      const common = { lr: f32([3e-3], []), step: f32([4], []) };
      const a = await (gs as ort.InferenceSession).run({
        [sig.input]: f32(p, [n]),
        [sig.grad ?? 'grad:w']: f32(grad, [n]),
        [sig.m as string]: f32(m, [n]),
        [sig.v as string]: f32(v, [n]),
        ...common,
      });
      const q = plain.signature.params[0] as (typeof plain.signature.params)[number];
      const norm = Math.sqrt(grad.reduce((x, g) => x + g * g, 0));
      const b = await (ps as ort.InferenceSession).run({
        [q.input]: f32(p, [n]),
        [q.grad as string]: f32(grad, [n]),
        [q.m as string]: f32(m, [n]),
        [q.v as string]: f32(v, [n]),
        [CHUNK_UPDATE_NORM]: f32([norm], []),
        ...common,
      });
      const pick = (o: ort.InferenceSession.OnnxValueMapType, s: typeof sig) =>
        [s.newParam, s.newM, s.newV].map((k) => Array.from(o[k as string]?.data as Float32Array));
      return { guarded: pick(a, sig), plain: pick(b, q) };
    };
    // clipped (norm above 1) and not
    for (const scale of [5, 0.01]) {
      const r = await run(val(4, scale));
      expect(r.guarded).toEqual(r.plain);
      expect(r.guarded[0]).not.toEqual(Array.from(p));
    }
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const g = val(4, 0.01);
      g[5] = bad;
      const r = await run(g);
      expect(r.guarded).toEqual([Array.from(p), Array.from(m), Array.from(v)]);
    }
    await Promise.all([gs, ps].map((x) => (x as ort.InferenceSession).release()));
  });
});

const skip = sharedSkipReason('fixtures') !== undefined;

describe.skipIf(skip)('traced training step on the xmod-postnorm fixtures', () => {
  const inputs = () =>
    JSON.parse(readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8')).inputs;

  /** Runs 20 traced AdamW steps as training/reference.json describes and checks run `run`. */
  async function reproduceCurve(
    run: string,
    dir: string,
    weights: WeightSource,
    trainable: string[],
    lora?: Map<string, number>,
    /** Maps a reference parameter name to the graph's (PEFT names differ). */
    rename: (n: string) => string = (n) => n,
  ): Promise<void> {
    const ref = JSON.parse(readFileSync(sharedPath('fixtures', 'training', 'reference.json'), 'utf8'));
    const inp = inputs();
    const s = ref.settings;
    const [B, S] = [inp.input_ids.length, inp.input_ids[0].length];
    const config = readEncoderConfig(dir);
    const graph = buildTracedTrainGraph({
      config,
      weights,
      head: 'masked-lm',
      trainable,
      mode: 'adamw',
      adamw: {
        beta1: s.betas[0],
        beta2: s.betas[1],
        eps: s.eps,
        weightDecay: s.weight_decay,
        maxGradNorm: s.clip_grad_norm,
      },
      batchSize: B,
      sequenceLength: S,
      ...(lora !== undefined ? { lora } : {}),
    });
    const state = new State(trainable.map((n) => [n, Float32Array.from(weights.get(n).data)]));
    const session = await ort.InferenceSession.create(graph.model, { intraOpNumThreads: 1 });
    const batch: Record<string, ort.Tensor> = {
      input_ids: i64(inp.input_ids, [B, S]),
      attention_mask: i64(inp.attention_mask, [B, S]),
      labels: i64(inp.mlm_labels, [B, S]),
    };
    if ((config.languages ?? []).length > 0) batch.lang_ids = i64(inp.lang_ids, [B]);
    for (let k = 0; k < s.steps; k++) {
      const lr = linearWarmupDecay(s.lr, k, 5, s.steps);
      const out = await session.run(
        state.feeds(graph, { ...batch, lr: f32([lr], []), step: f32([k + 1], []) }),
      );
      const loss = out.loss?.data[0] as number;
      expect(Math.abs(loss - ref[run].losses[k]), `loss at step ${k + 1}`).toBeLessThan(1e-3);
      const norm = out.grad_norm?.data[0] as number;
      const want = ref[run].grad_norms_before_clip[k];
      expect(Math.abs(norm - want) / want, `grad norm at step ${k + 1}`).toBeLessThan(1e-3);
      state.update(graph, out);
    }
    let checked = 0;
    for (const [refName, first16] of Object.entries(ref[run].final as Record<string, number[]>)) {
      const name = rename(refName);
      if (!trainable.includes(name)) continue;
      checked++;
      const got = Array.from((state.p.get(name) as Float32Array).slice(0, 16));
      for (const [i, v] of got.entries())
        expect(Math.abs(v - (first16[i] as number)), `${name}[${i}]`).toBeLessThan(1e-4);
    }
    expect(checked).toBeGreaterThan(0);
    await session.release();
  }

  it.each([
    ['xmod_full', (_: string) => true],
    ['xmod_modules_only', (n: string) => n.includes('.adapter_modules.')],
  ])(
    '%s: 20 AdamW steps reproduce the PyTorch loss curve (training/reference.json)',
    async (run, isTrainable) => {
      const dir = sharedPath('fixtures', 'xmod-postnorm', 'mlm');
      const file = path.join(dir, 'model.safetensors');
      const r = SafetensorsReader.open(file);
      const trainable = r.names().filter((n) => n !== 'lm_head.decoder.weight' && isTrainable(n));
      r.close();
      const weights = safetensorsWeights(file);
      await reproduceCurve(run, dir, weights, trainable);
      weights.close();
    },
  );

  it('lora_qv_only: 20 AdamW steps of live PEFT LoRA reproduce the PyTorch curve', async () => {
    const dir = sharedPath('fixtures', 'xlmr-lora', 'base');
    const base = safetensorsWeights(path.join(dir, 'model.safetensors'));
    const { weights, lora, names } = peftAdapterWeights(base, sharedPath('fixtures', 'xlmr-lora', 'lora_qv'));
    await reproduceCurve('lora_qv_only', dir, weights, names, lora, (n) =>
      n.replace(/^base_model\.model\./, '').replace('.default.weight', '.weight'),
    );
    base.close();
  });

  it('gradient accumulation: two micro-batches summed then one update equal the full-batch step', async () => {
    const inp = inputs();
    const dir = sharedPath('fixtures', 'xmod-postnorm', 'seqcls');
    const file = path.join(dir, 'model.safetensors');
    const r = SafetensorsReader.open(file);
    const trainable = r.names();
    r.close();
    const weights = safetensorsWeights(file);
    const config = readEncoderConfig(dir);
    // eps large enough that the first Adam step is smooth in the gradient (no sign(g) for tiny g)
    const adamw = { beta1: 0.9, beta2: 0.999, eps: 1e-3, weightDecay: 0.01, maxGradNorm: 0.5 };
    const S = inp.input_ids[0].length;
    const rows = (from: number, to: number) => ({
      input_ids: i64(inp.input_ids.slice(from, to), [to - from, S]),
      attention_mask: i64(inp.attention_mask.slice(from, to), [to - from, S]),
      lang_ids: i64(inp.lang_ids.slice(from, to), [to - from]),
      labels: i64(inp.cls_labels.slice(from, to), [to - from]),
    });
    const common = {
      config,
      weights,
      head: 'sequence-classification' as const,
      trainable,
      sequenceLength: S,
    };
    const full = buildTracedTrainGraph({ ...common, mode: 'adamw', adamw, batchSize: 4 });
    const micro = buildTracedTrainGraph({ ...common, mode: 'grads', batchSize: 2 });
    const apply = buildApplyGraph(micro.signature.params, adamw);
    const init = (): State => new State(trainable.map((n) => [n, Float32Array.from(weights.get(n).data)]));
    const step = { lr: f32([1e-3], []), step: f32([1], []) };

    const fullState = init();
    const fullSession = await ort.InferenceSession.create(full.model, { intraOpNumThreads: 1 });
    const fullOut = await fullSession.run(fullState.feeds(full, { ...rows(0, 4), ...step }));
    fullState.update(full, fullOut);

    const accState = init();
    const microSession = await ort.InferenceSession.create(micro.model, { intraOpNumThreads: 1 });
    const sums = new Map(trainable.map((n) => [n, new Float32Array(weights.get(n).data.length)]));
    for (const [from, to] of [
      [0, 2],
      [2, 4],
    ] as const) {
      const feeds: Record<string, ort.Tensor> = { ...rows(from, to) };
      for (const q of micro.signature.params)
        feeds[q.input] = f32(accState.p.get(q.name) as Float32Array, q.shape);
      const out = await microSession.run(feeds);
      for (const q of micro.signature.params) {
        const g = out[q.grad as string]?.data as Float32Array;
        const acc = sums.get(q.name) as Float32Array;
        for (let i = 0; i < g.length; i++) acc[i] = (acc[i] as number) + (g[i] as number) / 2;
      }
    }
    const applySession = await ort.InferenceSession.create(apply.model, { intraOpNumThreads: 1 });
    const gradFeeds: Record<string, ort.Tensor> = { ...step };
    for (const q of apply.signature.params)
      gradFeeds[`grad:${q.name}`] = f32(sums.get(q.name) as Float32Array, q.shape);
    const applyOut = await applySession.run(accState.feeds(apply, gradFeeds));
    accState.update(apply, applyOut);
    weights.close();

    const fullNorm = fullOut.grad_norm?.data[0] as number;
    expect(fullNorm).toBeGreaterThan(0.5); // so clipping is exercised
    expect(Math.abs((applyOut.grad_norm?.data[0] as number) - fullNorm) / fullNorm).toBeLessThan(1e-5);
    for (const n of trainable) {
      const a = fullState.p.get(n) as Float32Array;
      const b = accState.p.get(n) as Float32Array;
      let worst = 0;
      for (let i = 0; i < a.length; i++)
        worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
      expect(worst, n).toBeLessThan(1e-6);
    }
    await Promise.all([fullSession.release(), microSession.release(), applySession.release()]);
  });
});
