import * as ort from 'onnxruntime-node';
import { expect } from 'vitest';
import type { EncoderConfig, HeadKind, WeightSource } from '../export.js';
import type { LoraMixtureSpec } from '../model-types.js';
import { buildTrainGraph } from '../train.js';
import { buildTracedTrainGraph } from './train-graph.js';

/** Test helpers: the traced graphs against the hand-written `TrainBuilder` (not part of the package API). */

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

/** Runs the traced and the hand-written grads graphs on one batch; returns their outputs by name. */
export async function bothGradients(
  config: EncoderConfig,
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
  } = {},
) {
  const [B, S] = batch.input_ids!.dims as [number, number];
  const { mixup, ...rest } = options;
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
  const written = buildTrainGraph({ ...common, embeddingMixup: mixup !== undefined });
  const run = async (g: typeof traced) => {
    const session = await ort.InferenceSession.create(g.model, { intraOpNumThreads: 1 });
    const feeds: Record<string, ort.Tensor> = {};
    for (const name of g.signature.batch) feeds[name] = batch[name] as ort.Tensor;
    for (const p of g.signature.params) {
      const w = weights.get(p.name);
      feeds[p.input] = new ort.Tensor('float32', w.data, w.shape);
    }
    const out = await session.run(feeds);
    await session.release();
    return out;
  };
  return { traced: await run(traced), written: await run(written), signature: traced.signature };
}

/** Asserts equal loss, gradient norm and every gradient within `tol` (absolute). */
export function expectSameGradients(
  r: Awaited<ReturnType<typeof bothGradients>>,
  trainable: string[],
  tol: number,
): void {
  const loss = (o: ort.InferenceSession.OnnxValueMapType) => o.loss?.data[0] as number;
  expect(Math.abs(loss(r.traced) - loss(r.written))).toBeLessThan(tol);
  expect(
    Math.abs((r.traced.grad_norm?.data[0] as number) - (r.written.grad_norm?.data[0] as number)),
  ).toBeLessThan(tol);
  for (const name of trainable) {
    const a = r.traced[`grad:${name}`]?.data as Float32Array;
    const b = r.written[`grad:${name}`]?.data as Float32Array;
    expect(a, name).toBeDefined();
    expect(maxAbsDiff(a, b), name).toBeLessThan(tol);
  }
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
