import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { WasmSlicedUpdate, wasmSimdAvailable } from './adamw-wasm.js';
import { type ParamBuffers, SlicedUpdate } from './sliced-update.js';
import type { AdamWSettings, TrainGraphSignature } from './train-types.js';

const build = async (bytes: Uint8Array) => ({ session: await ort.InferenceSession.create(bytes) });

// weights with decay, biases without; sizes that are not multiples of 4 or of the window
const shapes: Array<[string, number[]]> = [
  ['a.weight', [3, 7]],
  ['a.bias', [7]],
  ['big.weight', [37, 29]],
  ['b.LayerNorm.weight', [5]],
];
const signature: TrainGraphSignature = {
  batch: [],
  params: shapes.map(([name, shape]) => ({ name, shape, input: name })),
};

function state(seed0: number): { bufs: ParamBuffers[]; grads: Float32Array[] } {
  let seed = seed0;
  const rand = () => {
    seed = (seed * 16807) % 2147483647;
    return seed / 2147483647 - 0.5;
  };
  const bufs = shapes.map(([, shape]) => {
    const n = shape.reduce((a, d) => a * d, 1);
    const fill = (scale: number) => Float32Array.from({ length: n }, () => rand() * scale);
    return { p: fill(1), m: fill(0.01), v: fill(0.001).map(Math.abs) };
  });
  return { bufs, grads: bufs.map((b) => Float32Array.from(b.p, () => rand() * 3)) };
}

const copy = (bufs: ParamBuffers[]) => bufs.map((b) => ({ p: b.p.slice(), m: b.m.slice(), v: b.v.slice() }));

describe('WasmSlicedUpdate (WebAssembly SIMD AdamW)', () => {
  it('runs here', () => {
    expect(wasmSimdAvailable()).toBe(true);
  });

  for (const adamw of [
    { beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.1, maxGradNorm: 1 },
    { beta1: 0.8, beta2: 0.99, eps: 1e-8, weightDecay: 0, biasCorrection: false },
  ] satisfies AdamWSettings[])
    it(`gives onnxruntime's sliced update within float32 rounding over 3 steps (clipping ${adamw.maxGradNorm !== undefined}, bias correction ${adamw.biasCorrection !== false})`, async () => {
      const { bufs, grads } = state(7);
      const theirs = copy(bufs);
      // a window of 64 elements: the big weight spans 17 windows, the last one partial
      const mine = WasmSlicedUpdate.create(signature, adamw, 64);
      const ref = await SlicedUpdate.create(signature, adamw, build, 100);
      try {
        for (let t = 1; t <= 3; t++) {
          grads.forEach((g, i) => {
            (mine.grads[i] as Float32Array).set(g.map((x) => x * t));
            (ref.grads[i] as Float32Array).set(g.map((x) => x * t));
          });
          const norm = 2.5 * t;
          mine.apply(bufs, 1e-2, t, norm);
          await ref.apply(theirs, 1e-2, t, norm);
        }
        let changed = 0;
        bufs.forEach((b, i) => {
          const r = theirs[i] as ParamBuffers;
          for (let k = 0; k < b.p.length; k++) {
            expect(Math.abs((b.p[k] as number) - (r.p[k] as number))).toBeLessThan(2e-7);
            expect(Math.abs((b.m[k] as number) - (r.m[k] as number))).toBeLessThan(1e-8);
            expect(Math.abs((b.v[k] as number) - (r.v[k] as number))).toBeLessThan(1e-9);
            if (b.p[k] !== state(7).bufs[i]?.p[k]) changed++;
          }
        });
        expect(changed).toBeGreaterThan(1000);
      } finally {
        await ref.release();
      }
    });

  it('updates a table from its rows exactly as from the dense gradient with those rows (rows across windows)', () => {
    const adamw = { beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.1, maxGradNorm: 1 };
    // a table of 30 rows of 7: a 64-element window holds 9.1 rows, so rows span two windows
    const table = { name: 'emb.word_embeddings.weight', shape: [30, 7], input: 'w' };
    const asRows: TrainGraphSignature = {
      batch: [],
      params: [{ ...table, gradRows: 'w_rows', gradIds: 'w_ids' }],
    };
    const dense: TrainGraphSignature = { batch: [], params: [table] };
    let seed = 5;
    const rand = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647 - 0.5;
    };
    const start = () => {
      const fill = (scale: number) => Float32Array.from({ length: 210 }, () => rand() * scale);
      return [{ p: fill(1), m: fill(0.01), v: fill(0.001).map(Math.abs) }];
    };
    const a = start();
    const b = copy(a);
    const sparse = WasmSlicedUpdate.create(asRows, adamw, 64);
    const full = WasmSlicedUpdate.create(dense, adamw, 64);
    expect(sparse.grads[0]).toBeUndefined();
    for (let t = 1; t <= 3; t++) {
      const ids = BigInt64Array.from([3, 9, 3, 29, 17, 9, 0].map((r) => BigInt((r + t) % 30)));
      const rows = Float32Array.from({ length: ids.length * 7 }, () => rand() * 2);
      const g = full.grads[0] as Float32Array;
      g.fill(0);
      ids.forEach((r, k) => {
        for (let j = 0; j < 7; j++)
          g[Number(r) * 7 + j] = (g[Number(r) * 7 + j] as number) + (rows[k * 7 + j] as number);
      });
      const sq = sparse.setRows(0, ids, rows);
      expect(sq).toBeCloseTo(
        g.reduce((s, x) => s + x * x, 0),
        5,
      );
      sparse.apply(a, 1e-2, t, Math.sqrt(sq));
      full.apply(b, 1e-2, t, Math.sqrt(sq));
    }
    expect(Array.from(a[0]?.p ?? [])).toEqual(Array.from(b[0]?.p ?? []));
    expect(Array.from(a[0]?.m ?? [])).toEqual(Array.from(b[0]?.m ?? []));
    expect(Array.from(a[0]?.v ?? [])).toEqual(Array.from(b[0]?.v ?? []));
    expect(sparse.gradientBytes).toBeLessThan(full.gradientBytes);
    expect(() => full.setRows(0, BigInt64Array.of(1n), new Float32Array(7))).toThrow(/dense gradient buffer/);
  });

  it('refuses a window that is not a positive multiple of 4', () => {
    const adamw = { beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0 };
    expect(() => WasmSlicedUpdate.create(signature, adamw, 6)).toThrow(/multiple of 4/);
  });
});
