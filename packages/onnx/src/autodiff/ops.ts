import { XltShapeError } from '@xlt/core';
import { type Dim, dimAdd, dimDiv, dimProduct, isStatic, numericShape } from './dims.js';
import { type DType, ONNX_TYPE, type Tracer, Value } from './tracer.js';

/**
 * The op vocabulary: every function writes one ONNX node and knows its output shape (static sizes
 * or symbolic ones such as `batch`, see `dims.ts`). The
 * differentiable ones have exactly one gradient rule in `gradients.ts`; composite layers (GELU,
 * linear, attention, cross-entropy) are written in terms of these and need no rule of their own.
 */

/** A traced value or a plain number (a float scalar constant of the graph's float type). */
export type Operand = Value | number;

function tracerOf(...xs: Operand[]): Tracer {
  for (const x of xs) if (x instanceof Value) return x.tracer;
  throw new XltShapeError('an op needs at least one traced value');
}

/** A number becomes a scalar constant of `like`'s float type. */
function lift(t: Tracer, x: Operand, like?: Value): Value {
  return x instanceof Value
    ? x
    : t.constant([x], [], like?.dtype.startsWith('float') ? like.dtype : t.floatType);
}

const firstValue = (...xs: Operand[]): Value | undefined => xs.find((x): x is Value => x instanceof Value);

const fail = (what: string, got: readonly Dim[], expected?: readonly Dim[]): never => {
  throw new XltShapeError(what, {
    got: numericShape(got),
    ...(expected ? { expected: numericShape(expected) } : {}),
  });
};

/** Numpy broadcasting of two shapes (a symbolic dimension broadcasts with 1 and itself only). */
export function broadcastShapes(a: readonly Dim[], b: readonly Dim[]): Dim[] {
  const n = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) fail(`shapes [${a}] and [${b}] do not broadcast`, b, a);
    out.push(x === 1 ? y : x);
  }
  return out;
}

const normAxis = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis);

function binary(op: 'Add' | 'Sub' | 'Mul' | 'Div', a: Operand, b: Operand): Value {
  const t = tracerOf(a, b);
  const like = firstValue(a, b);
  const x = lift(t, a, like);
  const y = lift(t, b, like);
  const [out] = t.emit({
    onnxOp: op,
    inputs: [x, y],
    outputs: [{ shape: broadcastShapes(x.shape, y.shape), dtype: x.dtype }],
  });
  return out as Value;
}

/** a + b (numpy broadcasting; a number is a scalar constant). */
export const add = (a: Operand, b: Operand): Value => binary('Add', a, b);
/** a - b (broadcasting). */
export const sub = (a: Operand, b: Operand): Value => binary('Sub', a, b);
/** a * b (broadcasting). */
export const mul = (a: Operand, b: Operand): Value => binary('Mul', a, b);
/** a / b (broadcasting). */
export const div = (a: Operand, b: Operand): Value => binary('Div', a, b);
/** x ** p for a constant exponent p. */
export function pow(x: Value, p: number): Value {
  return x.tracer.emit({
    onnxOp: 'Pow',
    inputs: [x],
    extraInputs: [x.tracer.constant([p], [], x.dtype).name],
    params: { p },
    outputs: [{ shape: x.shape, dtype: x.dtype }],
  })[0] as Value;
}

function unary(op: string, x: Value): Value {
  return x.tracer.emit({
    onnxOp: op,
    inputs: [x],
    outputs: [{ shape: x.shape, dtype: x.dtype }],
  })[0] as Value;
}

/** -x. */
export const neg = (x: Value): Value => unary('Neg', x);
/** e^x. */
export const exp = (x: Value): Value => unary('Exp', x);
/** Natural logarithm. */
export const log = (x: Value): Value => unary('Log', x);
/** Square root. */
export const sqrt = (x: Value): Value => unary('Sqrt', x);
/** The error function (onnxruntime's CPU kernel: float32 only). */
export const erf = (x: Value): Value => unary('Erf', x);
/**
 * Exact GELU, x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), as one ONNX `Gelu` node (opset 20,
 * `approximate` none; float32 in onnxruntime's CPU kernel): one pass forward, and its gradient rule
 * needs only x, so nothing but the input is kept for the backward pass.
 */
export const gelu = (x: Value): Value => unary('Gelu', x);
/** Hyperbolic tangent. */
export const tanh = (x: Value): Value => unary('Tanh', x);
/** max(x, 0). */
export const relu = (x: Value): Value => unary('Relu', x);
/** 1 / (1 + e^-x). */
export const sigmoid = (x: Value): Value => unary('Sigmoid', x);

/** Matrix product with numpy batch broadcasting; both operands have rank 2 or more. */
export function matmul(a: Value, b: Value): Value {
  if (a.rank < 2 || b.rank < 2) fail('MatMul operands need rank 2 or more', a.rank < 2 ? a.shape : b.shape);
  const [m, k] = a.shape.slice(-2) as [Dim, Dim];
  const [k2, n] = b.shape.slice(-2) as [Dim, Dim];
  if (k !== k2) fail(`MatMul inner dimensions differ (${k} vs ${k2})`, b.shape, a.shape);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  return a.tracer.emit({
    onnxOp: 'MatMul',
    inputs: [a, b],
    outputs: [{ shape: [...batch, m, n], dtype: a.dtype }],
  })[0] as Value;
}

/**
 * x W^T (+ b) for x [M, in], W [out, in] (the torch layout) and b [out]: ONNX Gemm with transB=1,
 * so no transposed copy of W is made (a tied decoder's W is the whole embedding table).
 */
export function gemmT(x: Value, weight: Value, bias?: Value): Value {
  const [M, inF] = x.shape as [Dim, Dim];
  const [outF, inW] = weight.shape as [Dim, Dim];
  if (x.rank !== 2 || weight.rank !== 2 || inF !== inW)
    fail(`Gemm needs x [M, in] and W [out, in]`, weight.shape, [outF, inF]);
  if (bias !== undefined && (bias.rank !== 1 || bias.shape[0] !== outF))
    fail('Gemm bias must be [out]', bias.shape, [outF]);
  return x.tracer.emit({
    onnxOp: 'Gemm',
    inputs: bias === undefined ? [x, weight] : [x, weight, bias],
    attrs: { transB: 1 },
    outputs: [{ shape: [M, outF], dtype: x.dtype }],
  })[0] as Value;
}

/** cond ? a : b elementwise (cond is bool; a and b broadcast). */
export function where(cond: Value, a: Operand, b: Operand): Value {
  const t = cond.tracer;
  const like = firstValue(a, b);
  const x = lift(t, a, like);
  const y = lift(t, b, like);
  const shape = broadcastShapes(cond.shape, broadcastShapes(x.shape, y.shape));
  return t.emit({ onnxOp: 'Where', inputs: [cond, x, y], outputs: [{ shape, dtype: x.dtype }] })[0] as Value;
}

/** Rows of `table` along `axis` picked by int64 `indices` (any shape). */
export function gather(table: Value, indices: Value, axis = 0): Value {
  const ax = normAxis(axis, table.rank);
  const shape = [...table.shape.slice(0, ax), ...indices.shape, ...table.shape.slice(ax + 1)];
  return table.tracer.emit({
    onnxOp: 'Gather',
    inputs: [table, indices],
    attrs: { axis: ax },
    params: { axis: ax },
    outputs: [{ shape, dtype: table.dtype }],
  })[0] as Value;
}

function alongAxis(op: 'Softmax' | 'LogSoftmax', x: Value, axis: number): Value {
  const ax = normAxis(axis, x.rank);
  return x.tracer.emit({
    onnxOp: op,
    inputs: [x],
    attrs: { axis: ax },
    params: { axis: ax },
    outputs: [{ shape: x.shape, dtype: x.dtype }],
  })[0] as Value;
}

/** Softmax along `axis` (default the last). */
export const softmax = (x: Value, axis = -1): Value => alongAxis('Softmax', x, axis);
/** Log-softmax along `axis` (default the last). */
export const logSoftmax = (x: Value, axis = -1): Value => alongAxis('LogSoftmax', x, axis);

/** LayerNorm over the last axis with weight and bias of that axis' size. */
export function layerNorm(x: Value, weight: Value, bias: Value, eps: number): Value {
  const last = x.shape[x.rank - 1] as Dim;
  for (const p of [weight, bias])
    if (p.rank !== 1 || p.shape[0] !== last)
      fail('LayerNorm weight/bias must be [last dim]', p.shape, [last]);
  const stats = { shape: [...x.shape.slice(0, -1), 1], dtype: x.dtype };
  const [y] = x.tracer.emit({
    onnxOp: 'LayerNormalization',
    inputs: [x, weight, bias],
    attrs: { axis: -1, epsilon: { float: eps } },
    params: { eps },
    // float32: also the mean and inverse standard deviation, which the gradient rule reuses (for
    // float64 inputs onnxruntime stashes them as float32, so the rule recomputes them instead)
    outputs:
      x.dtype === 'float32'
        ? [{ shape: x.shape, dtype: x.dtype }, stats, stats]
        : [{ shape: x.shape, dtype: x.dtype }],
  });
  return y as Value;
}

/**
 * The Reshape target for `out` from `from`: a symbolic entry equal to the input's at the same axis
 * becomes 0 (copy), one other symbolic entry -1 (infer), so most targets are constants.
 */
function reshapeTarget(from: readonly Dim[], out: readonly Dim[]): Dim[] {
  if (out.some((d) => d === 0)) return [...out];
  const spec: Dim[] = out.map((d, i) => (!isStatic(d) && from[i] === d ? 0 : d));
  const open = spec.findIndex((d) => !isStatic(d));
  if (open >= 0) spec[open] = -1;
  return spec;
}

/** Reshape (one entry may be -1; entries may be symbolic). */
export function reshape(x: Value, shape: readonly Dim[]): Value {
  if (shape.filter((d) => d === -1).length > 1)
    fail(`cannot reshape [${x.shape}] to [${shape}]`, shape, x.shape);
  const known = dimProduct(shape.filter((d) => d !== -1));
  const out = shape.map((d) => (d === -1 ? dimDiv(x.size, known) : d));
  const total = dimProduct(out);
  if (isStatic(total) && isStatic(x.size) ? total !== x.size : false)
    fail(`cannot reshape [${x.shape}] to [${shape}]`, shape, x.shape);
  if (out.join(',') === x.shape.join(',')) return x;
  return x.tracer.emit({
    onnxOp: 'Reshape',
    inputs: [x],
    extraInputs: [x.tracer.shapeInput(reshapeTarget(x.shape, out))],
    outputs: [{ shape: out, dtype: x.dtype }],
  })[0] as Value;
}

/** Permutes the axes (`perm[i]` is the input axis of output axis i). */
export function transpose(x: Value, perm: readonly number[]): Value {
  if ([...perm].sort().join(',') !== x.shape.map((_, i) => i).join(','))
    fail(`perm [${perm}] is not a permutation of the axes`, perm, x.shape);
  return x.tracer.emit({
    onnxOp: 'Transpose',
    inputs: [x],
    attrs: { perm: [...perm] },
    params: { perm: [...perm] },
    outputs: [{ shape: perm.map((p) => x.shape[p] as Dim), dtype: x.dtype }],
  })[0] as Value;
}

function reduce(op: 'ReduceSum' | 'ReduceMean', x: Value, axes: readonly number[], keepdims: boolean): Value {
  const ax = [...new Set(axes.map((a) => normAxis(a, x.rank)))].sort((a, b) => a - b);
  const shape = keepdims
    ? x.shape.map((d, i) => (ax.includes(i) ? 1 : d))
    : x.shape.filter((_, i) => !ax.includes(i));
  return x.tracer.emit({
    onnxOp: op,
    inputs: [x],
    extraInputs: [x.tracer.ints(ax).name],
    attrs: { keepdims: keepdims ? 1 : 0 },
    params: { axes: ax, keepdims },
    outputs: [{ shape, dtype: x.dtype }],
  })[0] as Value;
}

/** Sum over `axes` (all axes by default). */
export const reduceSum = (x: Value, axes?: readonly number[], keepdims = false): Value =>
  reduce('ReduceSum', x, axes ?? x.shape.map((_, i) => i), keepdims);
/** Mean over `axes` (all axes by default). */
export const reduceMean = (x: Value, axes?: readonly number[], keepdims = false): Value =>
  reduce('ReduceMean', x, axes ?? x.shape.map((_, i) => i), keepdims);

/** Element type conversion (differentiable between float types only). */
export function cast(x: Value, to: DType): Value {
  if (x.dtype === to) return x;
  return x.tracer.emit({
    onnxOp: 'Cast',
    inputs: [x],
    attrs: { to: ONNX_TYPE[to] },
    params: { from: x.dtype },
    outputs: [{ shape: x.shape, dtype: to }],
    differentiable: to.startsWith('float') && x.dtype.startsWith('float'),
  })[0] as Value;
}

/** Joins values along `axis` (the other dimensions must agree). */
export function concat(parts: Value[], axis: number): Value {
  const first = parts[0];
  if (first === undefined) throw new XltShapeError('Concat needs at least one input');
  const ax = normAxis(axis, first.rank);
  const shape = [...first.shape];
  shape[ax] = parts.reduce<Dim>((s, p) => dimAdd(s, p.shape[ax] as Dim), 0);
  return first.tracer.emit({
    onnxOp: 'Concat',
    inputs: parts,
    attrs: { axis: ax },
    params: { axis: ax },
    outputs: [{ shape, dtype: first.dtype }],
  })[0] as Value;
}

/**
 * x[start:end] along `axis` (step 1; negative bounds count from the end). On a symbolic axis the
 * bounds must be non-negative and within the axis.
 */
export function slice(x: Value, axis: number, start: number, end: number): Value {
  const ax = normAxis(axis, x.rank);
  const dim = x.shape[ax] as Dim;
  if (!isStatic(dim) && (start < 0 || end < start))
    fail(`slice [${start}, ${end}) of the dynamic axis ${ax} needs 0 <= start <= end`, x.shape);
  const clamp = (v: number) => (isStatic(dim) ? Math.min(Math.max(v < 0 ? v + dim : v, 0), dim) : v);
  const s = clamp(start);
  const e = Math.max(clamp(end), s);
  const shape = [...x.shape];
  shape[ax] = e - s;
  const t = x.tracer;
  return t.emit({
    onnxOp: 'Slice',
    inputs: [x],
    extraInputs: [t.ints([s]).name, t.ints([e]).name, t.ints([ax]).name],
    params: { axis: ax, start: s, end: e },
    outputs: [{ shape, dtype: x.dtype }],
  })[0] as Value;
}

/** Inserts size-1 axes at `axes` (positions in the output). */
export function unsqueeze(x: Value, axes: readonly number[]): Value {
  const rank = x.rank + axes.length;
  const ax = axes.map((a) => normAxis(a, rank));
  const shape: Dim[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) shape.push(ax.includes(i) ? 1 : (x.shape[j++] as Dim));
  return x.tracer.emit({
    onnxOp: 'Unsqueeze',
    inputs: [x],
    extraInputs: [x.tracer.ints(ax).name],
    params: { axes: ax },
    outputs: [{ shape, dtype: x.dtype }],
  })[0] as Value;
}

/** Removes the size-1 axes `axes`. */
export function squeeze(x: Value, axes: readonly number[]): Value {
  const ax = axes.map((a) => normAxis(a, x.rank));
  for (const a of ax) if (x.shape[a] !== 1) fail(`cannot squeeze axis ${a} of size ${x.shape[a]}`, x.shape);
  return x.tracer.emit({
    onnxOp: 'Squeeze',
    inputs: [x],
    extraInputs: [x.tracer.ints(ax).name],
    params: { axes: ax },
    outputs: [{ shape: x.shape.filter((_, i) => !ax.includes(i)), dtype: x.dtype }],
  })[0] as Value;
}

/** Broadcasts x to `shape`. */
export function expand(x: Value, shape: readonly Dim[]): Value {
  const out = broadcastShapes(x.shape, shape);
  if (out.join(',') === x.shape.join(',')) return x;
  // Expand broadcasts both ways: an axis x already has needs no size (1), so fewer run-time sizes
  const lead = shape.length - x.rank;
  const target = shape.map((d, i) => (i >= lead && x.shape[i - lead] === d ? 1 : d));
  return x.tracer.emit({
    onnxOp: 'Expand',
    inputs: [x],
    extraInputs: [x.tracer.shapeInput(target)],
    outputs: [{ shape: out, dtype: x.dtype }],
  })[0] as Value;
}

/** Sums x over its broadcast axes so that it has `shape` (the gradient of a broadcast). */
export function sumTo(x: Value, shape: readonly Dim[]): Value {
  if (x.shape.join(',') === shape.join(',')) return x;
  const lead = x.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < x.rank; i++) if (i < lead || (shape[i - lead] === 1 && x.shape[i] !== 1)) axes.push(i);
  const summed = axes.length > 0 ? reduceSum(x, axes, true) : x;
  const leading = Array.from({ length: lead }, (_, i) => i);
  return lead > 0 ? squeeze(summed, leading) : summed;
}

/** Zeros of a shape (a broadcast scalar: no initializer the size of the result). */
export function zeros(t: Tracer, shape: readonly Dim[], dtype: DType = t.floatType): Value {
  return raw(t, 'Expand', [t.constant([0], [], dtype)], [...shape], dtype, {}, [t.shapeInput(shape)]);
}

/** A size as a float scalar of the graph's float type (a constant when static). */
export function dimAsFloat(t: Tracer, d: Dim): Value {
  if (isStatic(d)) return t.scalar(d);
  return raw(t, 'Cast', [t.dimScalar(d)], [], t.floatType, { to: ONNX_TYPE[t.floatType] });
}

/**
 * Any ONNX op without a gradient (comparisons, index arithmetic, one-hot, cumulative sums): the
 * caller states the output shape and type.
 */
export function raw(
  t: Tracer,
  onnxOp: string,
  inputs: Value[],
  shape: readonly Dim[],
  dtype: DType,
  attrs: Record<string, import('../graph.js').AttrValue> = {},
  extraInputs: string[] = [],
): Value {
  return t.emit({
    onnxOp,
    inputs,
    extraInputs,
    attrs,
    outputs: [{ shape, dtype }],
    differentiable: false,
  })[0] as Value;
}
