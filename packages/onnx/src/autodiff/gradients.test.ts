import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { backward } from './backward.js';
import { DIFFERENTIABLE_OPS } from './gradients.js';
import * as op from './ops.js';
import { Tracer, type Value } from './tracer.js';

/** Deterministic pseudo-random numbers in [-1, 1). */
function rand(n: number, seed: number): number[] {
  let s = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32) * 2 - 1;
  });
}

interface Case {
  name: string;
  /** Shapes of the differentiable inputs. */
  shapes: number[][];
  /** Maps the inputs to the output; may add constants (indices, conditions) itself. */
  f: (xs: Value[]) => Value;
  /** Keeps inputs away from kinks and poles (default: values in [-1, 1)). */
  init?: (v: number) => number;
  /** float32 for ops onnxruntime runs only in float32 (default float64). */
  float?: 'float32' | 'float64';
  /** The ops whose rules the case exercises. */
  covers: string[];
}

const positive = (v: number) => 1.5 + v;
const awayFromZero = (v: number) => (v < 0 ? v - 0.2 : v + 0.2);

const CASES: Case[] = [
  {
    name: 'Add (broadcast)',
    shapes: [[2, 3], [3]],
    f: ([a, b]) => op.add(a!, b!),
    covers: ['Add', 'Expand'],
  },
  {
    name: 'Sub (broadcast)',
    shapes: [
      [2, 3],
      [2, 1],
    ],
    f: ([a, b]) => op.sub(a!, b!),
    covers: ['Sub'],
  },
  {
    name: 'Mul (broadcast)',
    shapes: [
      [2, 3],
      [1, 3],
    ],
    f: ([a, b]) => op.mul(a!, b!),
    covers: ['Mul'],
  },
  {
    name: 'Div (broadcast)',
    shapes: [[2, 3], [3]],
    f: ([a, b]) => op.div(a!, b!),
    init: positive,
    covers: ['Div'],
  },
  {
    name: 'a value used three times (accumulation)',
    shapes: [[2, 3]],
    f: ([x]) => op.add(op.mul(x!, x!), op.exp(x!)),
    covers: ['Mul', 'Exp'],
  },
  { name: 'Pow', shapes: [[2, 3]], f: ([x]) => op.pow(x!, 2.5), init: positive, covers: ['Pow'] },
  { name: 'Neg', shapes: [[4]], f: ([x]) => op.neg(x!), covers: ['Neg'] },
  { name: 'Exp', shapes: [[4]], f: ([x]) => op.exp(x!), covers: ['Exp'] },
  { name: 'Log', shapes: [[4]], f: ([x]) => op.log(x!), init: positive, covers: ['Log'] },
  { name: 'Sqrt', shapes: [[4]], f: ([x]) => op.sqrt(x!), init: positive, covers: ['Sqrt'] },
  { name: 'Erf', shapes: [[2, 3]], f: ([x]) => op.erf(x!), float: 'float32', covers: ['Erf'] },
  { name: 'Gelu', shapes: [[2, 3]], f: ([x]) => op.gelu(op.mul(x!, 2)), float: 'float32', covers: ['Gelu'] },
  { name: 'Tanh', shapes: [[2, 3]], f: ([x]) => op.tanh(x!), covers: ['Tanh'] },
  { name: 'Sigmoid', shapes: [[2, 3]], f: ([x]) => op.sigmoid(x!), covers: ['Sigmoid'] },
  { name: 'Relu', shapes: [[2, 3]], f: ([x]) => op.relu(x!), init: awayFromZero, covers: ['Relu'] },
  {
    name: 'Gemm (x W^T + b)',
    shapes: [[3, 4], [2, 4], [2]],
    f: ([x, w, b]) => op.gemmT(x!, w!, b!),
    covers: ['Gemm'],
  },
  {
    name: 'MatMul 2-D',
    shapes: [
      [2, 3],
      [3, 4],
    ],
    f: ([a, b]) => op.matmul(a!, b!),
    covers: ['MatMul'],
  },
  {
    name: 'MatMul [B, S, k] x [k, n]',
    shapes: [
      [2, 2, 3],
      [3, 4],
    ],
    f: ([a, b]) => op.matmul(a!, b!),
    covers: ['MatMul'],
  },
  {
    name: 'MatMul with broadcast batch axes',
    shapes: [
      [2, 1, 3, 4],
      [3, 4, 2],
    ],
    f: ([a, b]) => op.matmul(a!, b!),
    covers: ['MatMul'],
  },
  {
    name: 'Where (broadcast branches)',
    shapes: [[2, 3], [3]],
    f: ([a, b]) => {
      const t = a!.tracer;
      const cond = op.raw(
        t,
        'Greater',
        [t.ints([1, 0, 1, 0, 0, 1], [2, 3]), t.ints([0], [])],
        [2, 3],
        'bool',
      );
      return op.where(cond, a!, b!);
    },
    covers: ['Where'],
  },
  {
    name: 'Gather rows with repeated indices',
    shapes: [[5, 3]],
    f: ([table]) => op.gather(table!, table!.tracer.ints([0, 4, 4, 1], [2, 2])),
    covers: ['Gather'],
  },
  { name: 'Softmax (last axis)', shapes: [[2, 4]], f: ([x]) => op.softmax(x!), covers: ['Softmax'] },
  { name: 'Softmax (axis 1 of 3)', shapes: [[2, 3, 2]], f: ([x]) => op.softmax(x!, 1), covers: ['Softmax'] },
  { name: 'LogSoftmax', shapes: [[2, 4]], f: ([x]) => op.logSoftmax(x!), covers: ['LogSoftmax'] },
  {
    name: 'LayerNormalization (float64: statistics recomputed)',
    shapes: [[2, 3, 4], [4], [4]],
    f: ([x, g, b]) => op.layerNorm(x!, g!, b!, 1e-5),
    covers: ['LayerNormalization'],
  },
  {
    name: 'LayerNormalization (float32: statistics from the forward node)',
    shapes: [[2, 3, 4], [4], [4]],
    f: ([x, g, b]) => op.layerNorm(x!, g!, b!, 1e-5),
    float: 'float32',
    covers: ['LayerNormalization'],
  },
  { name: 'Reshape', shapes: [[2, 3]], f: ([x]) => op.reshape(x!, [3, -1]), covers: ['Reshape'] },
  { name: 'Transpose', shapes: [[2, 3, 4]], f: ([x]) => op.transpose(x!, [2, 0, 1]), covers: ['Transpose'] },
  {
    name: 'ReduceSum (keepdims and not)',
    shapes: [[2, 3, 4]],
    f: ([x]) => op.add(op.reduceSum(x!, [1]), op.reduceSum(x!, [0, 1], true)),
    covers: ['ReduceSum'],
  },
  {
    name: 'ReduceMean (keepdims and not)',
    shapes: [[2, 3, 4]],
    f: ([x]) => op.mul(op.reduceMean(x!, [2]), op.reduceMean(x!, [1, 2], true)),
    covers: ['ReduceMean'],
  },
  {
    name: 'Cast between float types',
    shapes: [[2, 3]],
    f: ([x]) => op.cast(op.mul(op.cast(x!, 'float64'), 2), 'float32'),
    float: 'float32',
    covers: ['Cast'],
  },
  {
    name: 'Concat',
    shapes: [
      [2, 3],
      [2, 1],
    ],
    f: ([a, b]) => op.concat([a!, b!, a!], 1),
    covers: ['Concat'],
  },
  { name: 'Slice', shapes: [[3, 5]], f: ([x]) => op.slice(x!, 1, 1, -1), covers: ['Slice'] },
  {
    name: 'Unsqueeze and Squeeze',
    shapes: [[2, 3]],
    f: ([x]) => op.mul(op.squeeze(op.unsqueeze(x!, [0, 2]), [0]), 3),
    covers: ['Unsqueeze', 'Squeeze'],
  },
  { name: 'Expand', shapes: [[1, 3]], f: ([x]) => op.expand(x!, [4, 3]), covers: ['Expand'] },
];

/**
 * Checks the traced backward of `c` against central differences of L = sum(f(x) * R) for a fixed
 * random R, at every element of every input; returns the worst relative error.
 */
async function gradcheck(c: Case): Promise<number> {
  const float = c.float ?? 'float64';
  const t = new Tracer({ floatType: float });
  const xs = c.shapes.map((s, i) => t.input(`x${i}`, s, float, true));
  const y = c.f(xs);
  const r = t.constant(rand(y.size as number, 7), y.shape, y.dtype);
  const loss = op.reduceSum(op.mul(y, r));
  t.output(loss, 'loss');
  for (const [i, g] of backward(loss, xs).entries()) t.output(g, `grad${i}`);
  const session = await ort.InferenceSession.create(t.toBytes(), { intraOpNumThreads: 1 });
  const values = c.shapes.map((s, i) =>
    rand(
      s.reduce((a, b) => a * b, 1),
      11 + i,
    ).map(c.init ?? ((v) => v)),
  );
  const Arr = float === 'float64' ? Float64Array : Float32Array;
  const run = async (override?: { input: number; at: number; delta: number }) => {
    const feeds: Record<string, ort.Tensor> = {};
    values.forEach((v, i) => {
      const data = Arr.from(v);
      if (override?.input === i) data[override.at] = (data[override.at] as number) + override.delta;
      feeds[`x${i}`] = new ort.Tensor(float, data, c.shapes[i]);
    });
    return session.run(feeds);
  };
  const base = await run();
  const eps = float === 'float64' ? 1e-6 : 1e-2;
  let worst = 0;
  for (let i = 0; i < values.length; i++) {
    const analytic = base[`grad${i}`]?.data as Float64Array;
    for (let at = 0; at < (values[i] as number[]).length; at++) {
      const lp = (await run({ input: i, at, delta: eps })).loss?.data[0] as number;
      const lm = (await run({ input: i, at, delta: -eps })).loss?.data[0] as number;
      const fd = (lp - lm) / (2 * eps);
      const an = analytic[at] as number;
      worst = Math.max(worst, Math.abs(fd - an) / Math.max(Math.abs(fd), Math.abs(an), 1e-2));
    }
  }
  await session.release();
  return worst;
}

describe('gradient rules against finite differences (onnxruntime)', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const worst = await gradcheck(c);
    // float64: central differences agree to ~1e-8; float32 (eps 1e-2): to a few 1e-3
    expect(worst).toBeLessThan((c.float ?? 'float64') === 'float64' ? 1e-6 : 1e-2);
  });

  it('every op with a gradient rule is covered by a case', () => {
    const covered = new Set(CASES.flatMap((c) => c.covers));
    expect(DIFFERENTIABLE_OPS.filter((o) => !covered.has(o))).toEqual([]);
  });

  it('a wrong rule is caught: the check fails for a deliberately broken gradient', async () => {
    // Tanh with the rule's result doubled: the finite-difference check must report it
    const broken: Case = {
      name: 'broken',
      shapes: [[3]],
      f: ([x]) => op.tanh(x!),
      covers: [],
    };
    const { GRADIENT_RULES } = await import('./gradients.js');
    const rule = GRADIENT_RULES.Tanh!;
    GRADIENT_RULES.Tanh = (n, dy) => rule(n, op.mul(dy, 2));
    try {
      expect(await gradcheck(broken)).toBeGreaterThan(0.4);
    } finally {
      GRADIENT_RULES.Tanh = rule;
    }
  });

  it('stores a weight-sized constant as it is, never copying or stringifying its values', () => {
    // a 250,002 x 768 embedding table has more values than a JS array can hold: the tracer must not
    // build a cache key or a copy from it (it did, and XLT_BENCH=base failed with 'Invalid array length')
    class NoIteration extends Float32Array {
      override [Symbol.iterator](): ArrayIterator<number> {
        throw new Error('iterated a weight table');
      }
    }
    const t = new Tracer();
    const table = new NoIteration(64 * 32);
    const v = t.constant(table, [64, 32], 'float32', 'table');
    expect(v.shape).toEqual([64, 32]);
    // small constants are still shared
    expect(t.constant([1, 2], [2]).name).toBe(t.constant([1, 2], [2]).name);
  });

  it('frozen inputs take no gradient and cannot be differentiated against', () => {
    const t = new Tracer();
    const w = t.input('w', [3], 'float32', true);
    const frozen = t.input('frozen', [3], 'float32', false);
    const loss = op.reduceSum(op.mul(w, frozen));
    expect(loss.requiresGrad).toBe(true);
    expect(op.mul(frozen, frozen).requiresGrad).toBe(false);
    expect(() => backward(loss, [frozen])).toThrow(/'frozen' does not require a gradient/);
    expect(() => backward(op.mul(w, 2), [w])).toThrow(/non-scalar needs a seed/);
  });
});
