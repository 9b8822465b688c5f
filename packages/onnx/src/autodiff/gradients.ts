import { XltConfigError } from '@xlt/core';
import { type Dim, dimProduct, dimSub, isStatic, staticDim } from './dims.js';
import {
  add,
  cast,
  dimAsFloat,
  div,
  erf,
  exp,
  expand,
  matmul,
  mul,
  neg,
  pow,
  raw,
  reduceMean,
  reduceSum,
  reshape,
  slice,
  sqrt,
  squeeze,
  sub,
  sumTo,
  transpose,
  unsqueeze,
  where,
  zeros,
} from './ops.js';
import type { TracedNode, Value } from './tracer.js';

/**
 * A gradient rule: given a recorded node and the gradient `dy` of its (first) output, the gradients
 * of its inputs (undefined where an input takes none). Rules are written with the same op vocabulary
 * as forward code, while the tracer is in no-grad mode.
 */
export type GradientRule = (node: TracedNode, dy: Value) => Array<Value | undefined>;

/** log(1 / sqrt(2 pi)): phi(x) = exp(LOG_INV_SQRT_2PI - x^2 / 2) in one Exp. */
const LOG_INV_SQRT_2PI = -0.5 * Math.log(2 * Math.PI);
const inp = (n: TracedNode, i: number): Value => n.inputs[i] as Value;
const out = (n: TracedNode, i = 0): Value => n.outputs[i] as Value;
/** Swaps the last two axes. */
const swapLast = (x: Value): Value => {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 2] = x.rank - 1;
  perm[x.rank - 1] = x.rank - 2;
  return transpose(x, perm);
};
/** The gradient of a keepdims=false reduction brought back to rank with size-1 axes. */
const unreduce = (dy: Value, n: TracedNode): Value =>
  expand(unsqueeze(dy, n.params.axes as number[]), inp(n, 0).shape);

/** One rule per differentiable op of the vocabulary (keys: the ONNX op types). */
export const GRADIENT_RULES: Record<string, GradientRule> = {
  Add: (n, dy) => [
    inp(n, 0).requiresGrad ? sumTo(dy, inp(n, 0).shape) : undefined,
    inp(n, 1).requiresGrad ? sumTo(dy, inp(n, 1).shape) : undefined,
  ],
  Sub: (n, dy) => [
    inp(n, 0).requiresGrad ? sumTo(dy, inp(n, 0).shape) : undefined,
    inp(n, 1).requiresGrad ? sumTo(neg(dy), inp(n, 1).shape) : undefined,
  ],
  Mul: (n, dy) => [
    inp(n, 0).requiresGrad ? sumTo(mul(dy, inp(n, 1)), inp(n, 0).shape) : undefined,
    inp(n, 1).requiresGrad ? sumTo(mul(dy, inp(n, 0)), inp(n, 1).shape) : undefined,
  ],
  Div: (n, dy) => [
    inp(n, 0).requiresGrad ? sumTo(div(dy, inp(n, 1)), inp(n, 0).shape) : undefined,
    // d(a/b)/db = -(a/b)/b
    inp(n, 1).requiresGrad ? sumTo(neg(div(mul(dy, out(n)), inp(n, 1))), inp(n, 1).shape) : undefined,
  ],
  Pow: (n, dy) => {
    const p = n.params.p as number;
    return [mul(dy, mul(pow(inp(n, 0), p - 1), p))];
  },
  Neg: (_, dy) => [neg(dy)],
  Exp: (n, dy) => [mul(dy, out(n))],
  Log: (n, dy) => [div(dy, inp(n, 0))],
  Sqrt: (n, dy) => [div(mul(dy, 0.5), out(n))],
  // d erf(x)/dx = 2/sqrt(pi) exp(-x^2)
  Erf: (n, dy) => [mul(dy, mul(exp(neg(mul(inp(n, 0), inp(n, 0)))), 2 / Math.sqrt(Math.PI)))],
  // d gelu(x)/dx = Phi(x) + x phi(x), Phi = (1 + erf(x / sqrt 2)) / 2, phi = exp(-x^2 / 2) / sqrt(2 pi)
  Gelu: (n, dy) => {
    const x = inp(n, 0);
    const u = mul(x, Math.SQRT1_2);
    const cdf = mul(add(erf(u), 1), 0.5);
    const xPdf = mul(x, exp(sub(LOG_INV_SQRT_2PI, mul(u, u))));
    return [mul(dy, add(cdf, xPdf))];
  },
  Tanh: (n, dy) => [mul(dy, sub(1, mul(out(n), out(n))))],
  // d sigmoid(x)/dx = y (1 - y)
  Sigmoid: (n, dy) => [mul(dy, mul(out(n), sub(1, out(n))))],
  Relu: (n, dy) => {
    const x = inp(n, 0);
    const pos = raw(x.tracer, 'Greater', [x, x.tracer.constant([0], [], x.dtype)], x.shape, 'bool');
    return [where(pos, dy, 0)];
  },
  MatMul: (n, dy) => {
    const a = inp(n, 0);
    const b = inp(n, 1);
    const t = a.tracer;
    // Gemm with transA / transB: no transposed copy of an activation-sized operand
    const gemm = (x: Value, y: Value, attrs: Record<string, number>, shape: Dim[]) =>
      raw(t, 'Gemm', [x, y], shape, x.dtype, attrs);
    let da: Value | undefined;
    let db: Value | undefined;
    if (b.rank === 2) {
      const [k, m] = b.shape as [Dim, Dim];
      const a2 = reshape(a, [-1, k]);
      const dy2 = reshape(dy, [-1, m]);
      // x [.., k] @ W [k, m]: fold the batch axes into one product instead of summing per batch
      if (a.requiresGrad) da = reshape(gemm(dy2, b, { transB: 1 }, [a2.shape[0] as Dim, k]), a.shape);
      if (b.requiresGrad) db = gemm(a2, dy2, { transA: 1 }, [k, m]);
    } else {
      if (a.requiresGrad) da = sumTo(matmul(dy, swapLast(b)), a.shape);
      if (b.requiresGrad) db = sumTo(matmul(swapLast(a), dy), b.shape);
    }
    return [da, db];
  },
  // y = x W^T + b (transB=1): dx = dy W, dW = dy^T x, db = sum over rows
  Gemm: (n, dy) => {
    const [x, w, b] = n.inputs as [Value, Value, Value | undefined];
    const t = x.tracer;
    return [
      x.requiresGrad ? matmul(dy, w) : undefined,
      w.requiresGrad ? raw(t, 'Gemm', [dy, x], w.shape, w.dtype, { transA: 1 }) : undefined,
      b?.requiresGrad ? reduceSum(dy, [0]) : undefined,
    ];
  },
  Where: (n, dy) => [
    undefined,
    inp(n, 1).requiresGrad ? sumTo(where(inp(n, 0), dy, 0), inp(n, 1).shape) : undefined,
    inp(n, 2).requiresGrad ? sumTo(where(inp(n, 0), 0, dy), inp(n, 2).shape) : undefined,
  ],
  Gather: (n, dy) => {
    const table = inp(n, 0);
    const idx = inp(n, 1);
    if (n.params.axis !== 0)
      throw new XltConfigError('the Gather gradient is defined for axis 0 only; transpose first', {
        tensor: table.name,
      });
    const rest = table.shape.slice(1);
    const t = table.tracer;
    const flatIdx = reshape(idx, [-1, 1]);
    const updates = reshape(dy, [-1, ...rest]);
    // rows picked twice get both gradients (ScatterND with reduction=add)
    return [
      raw(t, 'ScatterND', [zeros(t, table.shape), flatIdx, updates], table.shape, table.dtype, {
        reduction: 'add',
      }),
    ];
  },
  Softmax: (n, dy) => {
    const y = out(n);
    const dot = reduceSum(mul(dy, y), [n.params.axis as number], true);
    return [mul(y, sub(dy, dot))];
  },
  LogSoftmax: (n, dy) => {
    const total = reduceSum(dy, [n.params.axis as number], true);
    return [sub(dy, mul(exp(out(n)), total))];
  },
  LayerNormalization: (n, dy) => {
    const [x, gamma, beta] = n.inputs as [Value, Value, Value];
    let mean: Value;
    let inv: Value;
    if (n.outputs.length === 3) [, mean, inv] = n.outputs as [Value, Value, Value];
    else {
      mean = reduceMean(x, [-1], true);
      const c = sub(x, mean);
      inv = div(1, sqrt(add(reduceMean(mul(c, c), [-1], true), n.params.eps as number)));
    }
    const xhat = mul(sub(x, mean), inv);
    const dxhat = mul(dy, gamma);
    const dx = mul(
      inv,
      sub(sub(dxhat, reduceMean(dxhat, [-1], true)), mul(xhat, reduceMean(mul(dxhat, xhat), [-1], true))),
    );
    return [
      x.requiresGrad ? dx : undefined,
      gamma.requiresGrad ? sumTo(mul(dy, xhat), gamma.shape) : undefined,
      beta.requiresGrad ? sumTo(dy, beta.shape) : undefined,
    ];
  },
  Reshape: (n, dy) => [reshape(dy, inp(n, 0).shape)],
  Unsqueeze: (n, dy) => [squeeze(dy, n.params.axes as number[])],
  Squeeze: (n, dy) => [unsqueeze(dy, n.params.axes as number[])],
  Transpose: (n, dy) => {
    const perm = n.params.perm as number[];
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [transpose(dy, inverse)];
  },
  ReduceSum: (n, dy) => [n.params.keepdims ? expand(dy, inp(n, 0).shape) : unreduce(dy, n)],
  ReduceMean: (n, dy) => {
    const x = inp(n, 0);
    const count = dimProduct((n.params.axes as number[]).map((a) => x.shape[a] as Dim));
    const spread = n.params.keepdims ? expand(dy, x.shape) : unreduce(dy, n);
    return [isStatic(count) ? mul(spread, 1 / count) : div(spread, dimAsFloat(x.tracer, count))];
  },
  Cast: (n, dy) => [cast(dy, n.params.from as Value['dtype'])],
  Concat: (n, dy) => {
    const axis = n.params.axis as number;
    let offset = 0;
    return n.inputs.map((x) => {
      const size = staticDim(x.shape[axis] as Dim, 'the gradient of Concat along its axis');
      const part = x.requiresGrad ? slice(dy, axis, offset, offset + size) : undefined;
      offset += size;
      return part;
    });
  },
  Slice: (n, dy) => {
    const x = inp(n, 0);
    const { axis, start, end } = n.params as { axis: number; start: number; end: number };
    const pads = new Array<Dim>(2 * x.rank).fill(0);
    pads[axis] = start;
    pads[x.rank + axis] = dimSub(x.shape[axis] as Dim, end);
    const t = x.tracer;
    return [raw(t, 'Pad', [dy], x.shape, x.dtype, {}, [t.shapeInput(pads)])];
  },
  Expand: (n, dy) => [sumTo(dy, inp(n, 0).shape)],
};

/** Ops of the vocabulary that have a gradient rule. */
export const DIFFERENTIABLE_OPS: readonly string[] = Object.keys(GRADIENT_RULES);
