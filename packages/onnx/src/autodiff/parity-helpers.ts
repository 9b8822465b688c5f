import * as ort from 'onnxruntime-node';
import { expect } from 'vitest';
import type { HeadKind, LoraMixtureSpec, WeightSource, XmodConfig } from '../model-types.js';
import { buildTracedTrainGraph } from './train-graph.js';

/**
 * Test helpers (not part of the package API): a traced grads graph for the batch's static shape and
 * the one for any shape (symbolic `batch` and `sequence`, as the compiled step and the export use
 * it), run side by side, with finite-difference checks of the gradients.
 */

export type Nested = number | Nested[];
export const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);
export const i64 = (x: Nested, dims: number[]) =>
  new ort.Tensor('int64', BigInt64Array.from(flat(x).map((v) => BigInt(v))), dims);

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

type Outputs = ort.InferenceSession.OnnxValueMapType;

/**
 * Runs the static-shape (`traced`) and the symbolic-shape (`dynamic`) grads graphs on one batch;
 * returns their outputs by name and the worst relative error of central differences (eps 1e-3)
 * against the dynamic graph's gradient at the largest entry of up to `finiteDifferences` parameters.
 */
export async function bothGradients(
  config: XmodConfig,
  weights: WeightSource,
  head: HeadKind,
  trainable: string[],
  batch: Record<string, ort.Tensor>,
  options: {
    lora?: Map<string, number>;
    loraMixtures?: Map<string, LoraMixtureSpec>;
    dropout?: boolean;
    salt?: { augWeight?: number; klWeight?: number };
    /** Embedding mixup with this many candidates per position. */
    mixup?: number;
    /** Parameters checked by finite differences (default 8, spread over the list; 0: none). */
    finiteDifferences?: number;
  } = {},
) {
  const [B, S] = batch.input_ids!.dims as [number, number];
  const { mixup, finiteDifferences = 8, ...rest } = options;
  const common = {
    config,
    weights,
    head,
    trainable,
    mode: 'grads' as const,
    ...rest,
    dropout: options.dropout === true,
  };
  const traced = buildTracedTrainGraph({
    ...common,
    batchSize: B,
    sequenceLength: S,
    ...(mixup !== undefined ? { embeddingMixup: { candidates: mixup } } : {}),
  });
  const dynamic = buildTracedTrainGraph({
    ...common,
    ...(mixup !== undefined ? { embeddingMixup: {} } : {}),
  });
  const open = async (g: typeof traced) => {
    const session = await ort.InferenceSession.create(g.model, { intraOpNumThreads: 1 });
    const run = (override?: { name: string; i: number; delta: number }) => {
      const feeds: Record<string, ort.Tensor> = {};
      for (const name of g.signature.batch) feeds[name] = batch[name] as ort.Tensor;
      for (const p of g.signature.params) {
        const w = weights.get(p.name);
        let data = w.data;
        if (override?.name === p.name) {
          data = Float32Array.from(data);
          data[override.i] = (data[override.i] as number) + override.delta;
        }
        feeds[p.input] = new ort.Tensor('float32', data, w.shape);
      }
      return session.run(feeds);
    };
    return { session, run };
  };
  const a = await open(traced);
  const tracedOut = await a.run();
  await a.session.release();
  const d = await open(dynamic);
  const dynamicOut = await d.run();
  let worstFiniteDifference = 0;
  if (finiteDifferences > 0) {
    const eps = 1e-3;
    const step = Math.max(1, Math.ceil(trainable.length / finiteDifferences));
    for (let k = 0; k < trainable.length; k += step) {
      const name = trainable[k] as string;
      const g = dynamicOut[`grad:${name}`]?.data as Float32Array;
      let i = 0;
      for (let j = 1; j < g.length; j++) if (Math.abs(g[j] as number) > Math.abs(g[i] as number)) i = j;
      const loss = async (delta: number) => (await d.run({ name, i, delta })).loss?.data[0] as number;
      const fd = ((await loss(eps)) - (await loss(-eps))) / (2 * eps);
      const an = g[i] as number;
      worstFiniteDifference = Math.max(
        worstFiniteDifference,
        Math.abs(fd - an) / Math.max(Math.abs(fd), Math.abs(an), 1e-2),
      );
    }
  }
  await d.session.release();
  return { traced: tracedOut, dynamic: dynamicOut, signature: traced.signature, worstFiniteDifference };
}

/**
 * Asserts that the static- and symbolic-shape graphs give the same loss, gradient norm and every
 * gradient within `tol` (absolute), and that finite differences (when run) agree within 5%.
 */
export function expectSameGradients(
  r: Awaited<ReturnType<typeof bothGradients>>,
  trainable: string[],
  tol: number,
): void {
  const loss = (o: Outputs) => o.loss?.data[0] as number;
  expect(Math.abs(loss(r.traced) - loss(r.dynamic))).toBeLessThan(tol);
  expect(
    Math.abs((r.traced.grad_norm?.data[0] as number) - (r.dynamic.grad_norm?.data[0] as number)),
  ).toBeLessThan(tol);
  for (const name of trainable) {
    const a = r.traced[`grad:${name}`]?.data as Float32Array;
    const b = r.dynamic[`grad:${name}`]?.data as Float32Array;
    expect(a, name).toBeDefined();
    expect(maxAbsDiff(a, b), name).toBeLessThan(tol);
  }
  expect(r.worstFiniteDifference).toBeLessThan(5e-2);
}
/** Two sequences of six tokens, the second padded after four (ids below 20). */
export const tinyBatch = (): { input_ids: ort.Tensor; attention_mask: ort.Tensor } => ({
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
});
