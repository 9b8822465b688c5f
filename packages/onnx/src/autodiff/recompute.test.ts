import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { backward } from './backward.js';
import * as op from './ops.js';
import { Tracer, type Value } from './tracer.js';

const n = 64;
const xs = Float32Array.from({ length: n }, (_, i) => ((i * 37) % 29) / 5 - 3);
const weights = Float32Array.from({ length: n }, (_, i) => ((i * 11) % 7) - 3);

/** sum(gelu(x * 1.5) * w) and its gradient by x, with GELU as given. */
function graph(g: (v: Value) => Value, recompute = true): Uint8Array {
  const t = new Tracer({ floatType: 'float32', recompute });
  const x = t.input('x', [4, n / 4], 'float32', true);
  const y = g(op.mul(x, 1.5));
  const loss = op.reduceSum(op.mul(y, t.constant(weights, [4, n / 4])));
  t.output(loss, 'loss');
  t.output(backward(loss, [x])[0] as Value, 'grad');
  return t.toBytes();
}

/** GELU written out in elementwise ops, its intermediates kept for the backward pass. */
const plain = (v: Value) => op.mul(op.mul(v, 0.5), op.add(op.erf(op.mul(v, Math.SQRT1_2)), 1));
/** The same, marked for recomputation: the backward pass recomputes the intermediates from v. */
const gelu = (v: Value) => v.tracer.recompute(v, plain);

async function run(model: Uint8Array, optimizedModelFilePath?: string) {
  const session = await ort.InferenceSession.create(model, {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: 1,
    ...(optimizedModelFilePath !== undefined ? { optimizedModelFilePath } : {}),
  });
  const out = await session.run({ x: new ort.Tensor('float32', xs, [4, n / 4]) });
  await session.release();
  return { loss: out.loss?.data[0] as number, grad: Array.from(out.grad?.data as Float32Array) };
}

describe('recomputed values in the backward pass (GELU written out)', () => {
  it('give GELU exactly the gradient of the kept ones, and onnxruntime keeps the recomputation apart', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xlt-recompute-'));
    try {
      const file = path.join(dir, 'optimized.onnx');
      const kept = await run(graph(plain));
      const again = await run(graph(gelu), file);
      expect(again.loss).toBe(kept.loss);
      expect(again.grad).toEqual(kept.grad);
      expect(kept.grad.some((v) => v !== 0)).toBe(true);
      // the forward Erf and the backward's own: not merged into one by common-subexpression elimination
      const model = onnxProto.onnx.ModelProto.decode(readFileSync(file));
      expect((model.graph?.node ?? []).filter((node) => node.opType === 'Erf')).toHaveLength(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keep the forward values when the tracer is told not to recompute: the same gradient, one Erf', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xlt-recompute-'));
    try {
      const file = path.join(dir, 'optimized.onnx');
      const kept = await run(graph(plain));
      const noRecompute = await run(graph(gelu, false), file);
      expect(noRecompute.loss).toBe(kept.loss);
      expect(noRecompute.grad).toEqual(kept.grad);
      const model = onnxProto.onnx.ModelProto.decode(readFileSync(file));
      expect((model.graph?.node ?? []).filter((node) => node.opType === 'Erf')).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('match the Gelu op: one node forward, the same loss and gradient to float32 rounding', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'xlt-recompute-'));
    try {
      const file = path.join(dir, 'optimized.onnx');
      const kept = await run(graph(plain));
      const fused = await run(graph(op.gelu), file);
      expect(Math.abs(fused.loss - kept.loss)).toBeLessThan(1e-4 * Math.abs(kept.loss));
      const worst = Math.max(...fused.grad.map((g, i) => Math.abs(g - (kept.grad[i] as number))));
      expect(worst).toBeLessThan(1e-5);
      const model = onnxProto.onnx.ModelProto.decode(readFileSync(file));
      expect(Number(model.opsetImport?.find((o) => (o.domain ?? '') === '')?.version)).toBe(20);
      const ops = (model.graph?.node ?? []).map((node) => node.opType);
      expect(ops.filter((o) => o === 'Gelu')).toHaveLength(1);
      // the backward's Erf only: the forward is the one Gelu node
      expect(ops.filter((o) => o === 'Erf')).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('records nothing without a gradient to compute', () => {
    const t = new Tracer({ floatType: 'float32' });
    const x = t.input('x', [3], 'float32');
    gelu(x);
    expect(t.nodes).toHaveLength(0);
  });
});
