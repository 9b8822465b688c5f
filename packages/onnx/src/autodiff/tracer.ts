import { XltConfigError, XltShapeError } from '@xlt/core';
import { type AttrValue, GraphBuilder } from '../graph.js';

/** Element types of traced values. */
export type DType = 'float32' | 'float64' | 'int64' | 'bool';

/** ONNX `TensorProto.DataType` codes (for `Cast`'s `to`). */
export const ONNX_TYPE: Record<DType, number> = { float32: 1, float64: 11, int64: 7, bool: 9 };

/**
 * One recorded operation of the forward graph: the vocabulary op, its inputs and outputs, and the
 * static parameters its gradient rule needs (axes, permutations, slice bounds, ...).
 */
export interface TracedNode {
  op: string;
  inputs: Value[];
  outputs: Value[];
  params: Record<string, unknown>;
}

/** A tensor in a traced graph: its ONNX value name, static shape and element type. */
export class Value {
  constructor(
    readonly tracer: Tracer,
    readonly name: string,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** True when a gradient must flow back to this value (it depends on a trainable input). */
    readonly requiresGrad: boolean,
    /** The node that produced it (undefined for inputs and constants). */
    readonly producer?: TracedNode,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}

/** What one op application writes: the ONNX node and the static shapes of its outputs. */
export interface Emit {
  /** Vocabulary op name (the gradient rule's key); defaults to `onnxOp`. */
  op?: string;
  onnxOp: string;
  inputs: Value[];
  /** Extra ONNX inputs that are not traced values (e.g. int64 axes constants). */
  extraInputs?: string[];
  attrs?: Record<string, AttrValue>;
  outputs: Array<{ shape: readonly number[]; dtype: DType }>;
  /** Static parameters kept for the gradient rule. */
  params?: Record<string, unknown>;
  /** False for ops without a gradient (comparisons, index math): outputs never require grad. */
  differentiable?: boolean;
}

/**
 * Records a forward computation as an ONNX graph with static shapes. Every op application writes its
 * node into a {@link GraphBuilder} right away and, when an input requires a gradient, keeps a
 * {@link TracedNode} so that {@link backward} can later walk the graph in reverse.
 */
export class Tracer {
  readonly graph: GraphBuilder;
  /** Element type of every floating-point value (float64 for gradient checks). */
  readonly floatType: 'float32' | 'float64';
  readonly nodes: TracedNode[] = [];
  /** While true (inside backward and optimizer code), new values never require gradients. */
  noGrad = false;
  private readonly consts = new Map<string, Value>();

  constructor(options: { name?: string; floatType?: 'float32' | 'float64' } = {}) {
    this.graph = new GraphBuilder(options.name ?? 'traced');
    this.floatType = options.floatType ?? 'float32';
  }

  /** Declares a graph input; `requiresGrad` marks a trainable parameter. */
  input(name: string, shape: readonly number[], dtype: DType = this.floatType, requiresGrad = false): Value {
    for (const d of shape)
      if (!Number.isInteger(d) || d < 0)
        throw new XltShapeError('graph inputs need static non-negative dimensions', {
          tensor: name,
          got: [...shape],
        });
    this.graph.input(name, dtype, [...shape]);
    return new Value(this, name, shape, dtype, requiresGrad);
  }

  /** A constant tensor (an initializer); float data takes the tracer's float type unless `dtype` says otherwise. */
  constant(
    data: ArrayLike<number>,
    shape: readonly number[],
    dtype: DType = this.floatType,
    stem = 'const',
  ): Value {
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n)
      throw new XltShapeError('constant data does not fill its shape', {
        tensor: stem,
        expected: [...shape],
        got: [data.length],
      });
    if (dtype === 'bool') throw new XltConfigError('bool constants are not supported; compare int64 values');
    const cacheable = n <= 16;
    const key = `${dtype}:${shape.join(',')}:${Array.from(data).join(',')}`;
    const hit = cacheable ? this.consts.get(key) : undefined;
    if (hit !== undefined) return hit;
    const arr =
      dtype === 'float64'
        ? Float64Array.from(data)
        : dtype === 'int64'
          ? BigInt64Array.from(Array.from(data, (v) => BigInt(v)))
          : Float32Array.from(data);
    const name = this.graph.initializer(stem, arr, [...shape]);
    const v = new Value(this, name, shape, dtype, false);
    if (cacheable) this.consts.set(key, v);
    return v;
  }

  /** A float scalar constant of the tracer's float type. */
  scalar(v: number): Value {
    return this.constant([v], []);
  }

  /** An int64 constant (shapes, axes, indices). */
  ints(values: number[], shape: readonly number[] = [values.length]): Value {
    return this.constant(values, shape, 'int64');
  }

  /** Applies one op: writes its ONNX node and (when it needs a backward) records it. */
  emit(e: Emit): Value[] {
    const differentiable = e.differentiable !== false;
    const requiresGrad = !this.noGrad && differentiable && e.inputs.some((v) => v.requiresGrad);
    const names = this.graph.nodeN(
      e.onnxOp,
      [...e.inputs.map((v) => v.name), ...(e.extraInputs ?? [])],
      e.outputs.length,
      e.attrs ?? {},
    );
    const node: TracedNode = { op: e.op ?? e.onnxOp, inputs: e.inputs, outputs: [], params: e.params ?? {} };
    node.outputs = e.outputs.map(
      (o, i) =>
        new Value(
          this,
          names[i] as string,
          o.shape,
          o.dtype,
          requiresGrad && o.dtype !== 'int64' && o.dtype !== 'bool',
          node,
        ),
    );
    if (requiresGrad) this.nodes.push(node);
    return node.outputs;
  }

  /** Marks `value` as the graph output `name`. */
  output(value: Value, name: string): string {
    return this.graph.output(value.name, name, value.dtype, [...value.shape]);
  }

  /** Serialises the graph (opset 18: ReduceMean with axes as an input). */
  toBytes(): Uint8Array {
    return this.graph.toBytes({ opset: 18 });
  }
}
