import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { type AdamwKernel, KernelSlicedUpdate } from './adamw-kernel.js';
import { loadNativeAdamw, NativeAdamw } from './adamw-native.js';
import { WasmAdamw, wasmSimdAvailable } from './adamw-wasm.js';
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

const cache = mkdtempSync(path.join(tmpdir(), 'xlt-native-'));
afterAll(() => rmSync(cache, { recursive: true, force: true }));
const native = loadNativeAdamw({ cacheDir: cache });
const kernels: Array<[string, () => AdamwKernel]> = [
  ['wasm', () => WasmAdamw.create(64)],
  // a window of 64 elements for wasm; native on 2 threads (parameters under 64K elements: 1)
  ...(native.ok
    ? [['native', () => NativeAdamw.create(2, { cacheDir: cache })] as [string, () => AdamwKernel]]
    : []),
];

describe('KernelSlicedUpdate (one-pass AdamW: WebAssembly SIMD, native)', () => {
  it('runs here: WebAssembly SIMD, and the native kernel where a C++ compiler is (CI has g++)', () => {
    expect(wasmSimdAvailable()).toBe(true);
    if (!native.ok) console.warn(`native AdamW kernel not tested: ${native.reason}`);
    if (process.env.CI === 'true') expect(native.ok ? 'ok' : native.reason).toBe('ok');
  });

  for (const adamw of [
    { beta1: 0.9, beta2: 0.999, eps: 1e-6, weightDecay: 0.1, maxGradNorm: 1 },
    { beta1: 0.8, beta2: 0.99, eps: 1e-8, weightDecay: 0, biasCorrection: false },
  ] satisfies AdamWSettings[])
    for (const [kernelName, kernel] of kernels)
      it(`${kernelName}: gives onnxruntime's sliced update within float32 rounding over 3 steps (clipping ${adamw.maxGradNorm !== undefined}, bias correction ${adamw.biasCorrection !== false})`, async () => {
        const { bufs, grads } = state(7);
        const theirs = copy(bufs);
        // wasm: the big weight spans 17 windows of 64 elements, the last one partial
        const mine = KernelSlicedUpdate.create(signature, adamw, kernel());
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

  for (const [kernelName, kernel] of kernels)
    it(`${kernelName}: updates a table from its rows exactly as from the dense gradient with those rows (rows across windows)`, () => {
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
      const sparse = KernelSlicedUpdate.create(asRows, adamw, kernel());
      const full = KernelSlicedUpdate.create(dense, adamw, kernel());
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
      expect(() => full.setRows(0, BigInt64Array.of(1n), new Float32Array(7))).toThrow(
        /dense gradient buffer/,
      );
    });

  it('refuses a window that is not a positive multiple of 4', () => {
    expect(() => WasmAdamw.create(6)).toThrow(/multiple of 4/);
  });

  it.skipIf(!native.ok)(
    'native: the same bits as WebAssembly on 1 and 3 threads, dense and as rows of a 300K-element table (rows across thread boundaries)',
    () => {
      const adamw = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };
      const [R, W] = [3000, 100];
      const table = { name: 'emb.word_embeddings.weight', shape: [R, W], input: 'w' };
      const asRows: TrainGraphSignature = { batch: [], params: [{ ...table, gradRows: 'r', gradIds: 'i' }] };
      const dense: TrainGraphSignature = {
        batch: [],
        params: [table, { name: 'x.weight', shape: [70001], input: 'x' }],
      };
      let seed = 11;
      const rand = () => {
        seed = (seed * 16807) % 2147483647;
        return seed / 2147483647 - 0.5;
      };
      const start = (n: number) => ({
        p: Float32Array.from({ length: n }, () => rand()),
        m: Float32Array.from({ length: n }, () => rand() * 0.01),
        v: Float32Array.from({ length: n }, () => Math.abs(rand()) * 0.001),
      });
      const init = [start(R * W), start(70001)];
      const runs = [
        WasmAdamw.create(),
        NativeAdamw.create(1, { cacheDir: cache }),
        NativeAdamw.create(3, { cacheDir: cache }),
      ].map((k) => {
        const bufs = copy(init);
        const rowsUpdate = KernelSlicedUpdate.create(asRows, adamw, k);
        const denseUpdate = KernelSlicedUpdate.create(dense, adamw, k);
        const rowBufs = copy(init.slice(0, 1));
        let s2 = 3;
        for (let t = 1; t <= 3; t++) {
          // rows 0, 999, 1000 (the 100K thread boundary of 3 threads falls in row 1000), 2999 and others
          const ids = BigInt64Array.from([0, 999, 1000, 1000, 2999, 7 * t, 2000 + t].map(BigInt));
          const rows = Float32Array.from({ length: ids.length * W }, () => {
            s2 = (s2 * 48271) % 2147483647;
            return s2 / 2147483647 - 0.5;
          });
          const sq = rowsUpdate.setRows(0, ids, rows);
          rowsUpdate.apply(rowBufs, 1e-3, t, Math.sqrt(sq) * 2);
          (denseUpdate.grads[0] as Float32Array).set(bufs[0]?.p.map((x) => x * 0.5) ?? []);
          (denseUpdate.grads[1] as Float32Array).set(bufs[1]?.p.map((x) => -x) ?? []);
          denseUpdate.apply(bufs, 1e-3, t, 40);
        }
        return [...bufs, ...rowBufs];
      });
      const [wasm, one, three] = runs as [ParamBuffers[], ParamBuffers[], ParamBuffers[]];
      for (const other of [one, three])
        wasm.forEach((b, i) => {
          const o = other[i] as ParamBuffers;
          for (const k of ['p', 'm', 'v'] as const)
            expect(Buffer.from(o[k].buffer).equals(Buffer.from(b[k].buffer))).toBe(true);
        });
      // the rows' update changed the rows and, by decay and moments, the rest
      expect(wasm[2]?.p.some((x, i) => x !== init[0]?.p[i])).toBe(true);
    },
  );

  it.skipIf(!native.ok)(
    'native: compiled once into the cache (a temporary file renamed), then loaded from it',
    () => {
      const dir = path.join(cache, 'second');
      const first = loadNativeAdamw({ cacheDir: dir });
      const again = loadNativeAdamw({ cacheDir: dir });
      expect(first.ok && first.compiled).toBe(true);
      expect(again).toBe(first);
      const files = readdirSync(dir);
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(/^adamw-[0-9a-f]{16}\.node$/);
      expect(statSync(path.join(dir, files[0] as string)).size).toBeGreaterThan(1000);
    },
  );

  it('native: without a compiler or headers there is a reason, and the kernel refuses to be made', () => {
    const dir = path.join(cache, 'none');
    const noCompiler = loadNativeAdamw({ cacheDir: dir, compiler: '/nonexistent/g++' });
    expect(noCompiler).toEqual({ ok: false, reason: 'no C++ compiler (tried /nonexistent/g++)' });
    expect(() => NativeAdamw.create(2, { cacheDir: dir, compiler: '/nonexistent/g++' })).toThrow(
      /native AdamW kernel is not available: no C\+\+ compiler/,
    );
    if (native.ok) {
      const noHeaders = loadNativeAdamw({ cacheDir: dir, includeDir: cache });
      expect(noHeaders.ok ? '' : noHeaders.reason).toMatch(/no node_api.h/);
    }
    expect(existsSync(dir)).toBe(false);
  });

  it.skipIf(!native.ok)('native: refuses arrays of the wrong kind or length, naming them', () => {
    const k = native.ok ? native.adamw : () => {};
    const a = new Float32Array(8);
    const sc = new Float32Array(9);
    expect(() => k(a, null, new Float32Array(7), a, sc, 1, null, null, 0)).toThrow(
      /m and v must have p's length/,
    );
    expect(() => k(a, null, a, a, new Float32Array(8), 1, null, null, 0)).toThrow(
      /scalars must be a Float32Array of 9/,
    );
    expect(() => k(a, null, a, a, sc, 1, Int32Array.of(1, 0), new Float32Array(8), 4)).toThrow(
      /ascending, distinct rows/,
    );
    expect(() => k(a, null, a, a, sc, 1, Int32Array.of(2), new Float32Array(4), 4)).toThrow(
      /ascending, distinct rows/,
    );
    expect(() => k(a, null, a, a, sc, 1, Int32Array.of(0), new Float32Array(3), 4)).toThrow(/rows x width/);
  });
});
