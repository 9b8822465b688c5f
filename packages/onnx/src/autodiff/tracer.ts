import { XltConfigError, XltShapeError } from '@xlt/core';
import { type AttrValue, GraphBuilder } from '../graph.js';
import { type Dim, dimProduct, isStatic, numericShape, type SymDim, symbolsOf } from './dims.js';

/** Element types of traced values. */
export type DType = 'float32' | 'float64' | 'int64' | 'uint32' | 'bool';

/** ONNX `TensorProto.DataType` codes (for `Cast`'s `to`). */
export const ONNX_TYPE: Record<DType, number> = { float32: 1, float64: 11, int64: 7, uint32: 12, bool: 9 };

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

/**
 * The op of the record {@link Tracer.recompute} adds after a recomputed group's nodes (no ONNX
 * node): params `fn` and `group` (the group's recorded nodes).
 */
export const RECOMPUTE = 'Recompute';

/** A tensor in a traced graph: its ONNX value name, static shape and element type. */
export class Value {
  constructor(
    readonly tracer: Tracer,
    readonly name: string,
    readonly shape: readonly Dim[],
    readonly dtype: DType,
    /** True when a gradient must flow back to this value (it depends on a trainable input). */
    readonly requiresGrad: boolean,
    /** The node that produced it (undefined for inputs and constants). */
    readonly producer?: TracedNode,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  /** The number of elements (symbolic when a dimension is). */
  get size(): Dim {
    return dimProduct(this.shape);
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
  outputs: Array<{ shape: readonly Dim[]; dtype: DType }>;
  /** Static parameters kept for the gradient rule. */
  params?: Record<string, unknown>;
  /** False for ops without a gradient (comparisons, index math): outputs never require grad. */
  differentiable?: boolean;
}

/** A symbolic dimension's graph value for the ONNX declaration (`dim_param` for symbols). */
const declared = (shape: readonly Dim[]): Array<number | string> =>
  shape.map((d) => (isStatic(d) ? d : d.key));

/**
 * Records a forward computation as an ONNX graph with static or symbolic shapes (see `dims.ts`:
 * `batch`, `sequence`, ... are read from the value that declared them). Every op application writes its
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
  /**
   * Whether {@link Tracer.recompute} groups are recomputed in the backward pass (less memory, a
   * little more compute) or kept from the forward pass like any other value (faster when memory
   * is not short).
   */
  readonly recomputes: boolean;
  private readonly consts = new Map<string, Value>();
  /** Where each symbol's size is read at run time: a value and its axis. */
  private readonly dimSources = new Map<string, { value: string; axis: number }>();
  /** Graph values (int64 [1]) of symbolic dimensions and shapes, by key. */
  private readonly dimValues = new Map<string, string>();

  constructor(options: { name?: string; floatType?: 'float32' | 'float64'; recompute?: boolean } = {}) {
    this.graph = new GraphBuilder(options.name ?? 'traced');
    this.floatType = options.floatType ?? 'float32';
    this.recomputes = options.recompute ?? true;
  }

  /** Declares a graph input; `requiresGrad` marks a trainable parameter. */
  input(name: string, shape: readonly Dim[], dtype: DType = this.floatType, requiresGrad = false): Value {
    shape.forEach((d, axis) => {
      if (isStatic(d) ? !Number.isInteger(d) || d < 0 : d.expr.kind !== 'mono' || d.key.includes('*'))
        throw new XltShapeError(
          `graph inputs need non-negative sizes or plain symbols (batch, sequence), got [${shape.join(', ')}]`,
          { tensor: name, got: numericShape(shape) },
        );
      if (!isStatic(d)) this.bindDim(d, name, axis);
    });
    this.graph.input(name, dtype, declared(shape));
    return new Value(this, name, shape, dtype, requiresGrad);
  }

  /** Reads the symbol `d` from axis `axis` of `value` at run time (the first binding wins). */
  bindDim(d: SymDim, value: string, axis: number): void {
    if (!this.dimSources.has(d.key)) this.dimSources.set(d.key, { value, axis });
  }

  /** The size `d` as an int64 [1] graph value (a constant when static; computed once per graph). */
  dimValue(d: Dim): string {
    if (isStatic(d)) return this.ints([d]).name;
    const hit = this.dimValues.get(d.key);
    if (hit !== undefined) return hit;
    const g = this.graph;
    const e = d.expr;
    let v: string;
    if (e.kind === 'mono') {
      const parts = e.factors.map((f) => {
        const src = this.dimSources.get(f);
        if (src === undefined)
          throw new XltShapeError(
            `the dynamic dimension '${f}' (in '${d.key}', from ${symbolsOf(d).join(', ')}) is not read from any graph value`,
          );
        const key = `sym:${f}`;
        let sv = this.dimValues.get(key);
        if (sv === undefined) {
          sv = g.node('Shape', [src.value], { start: src.axis, end: src.axis + 1 }, f);
          this.dimValues.set(key, sv);
        }
        return sv;
      });
      v = parts.reduce((a, b) => g.node('Mul', [a, b]));
      if (e.coef !== 1) v = g.node('Mul', [v, this.ints([e.coef]).name]);
    } else {
      const op = { sub: 'Sub', add: 'Add', div: 'Div', mul: 'Mul' }[e.kind];
      v = g.node(op, [this.dimValue(e.a), this.dimValue(e.b)]);
    }
    this.dimValues.set(d.key, v);
    return v;
  }

  /** The size `d` as an int64 scalar value (Range limits, comparisons). */
  dimScalar(d: Dim): Value {
    if (isStatic(d)) return this.ints([d], []);
    const key = `scalar:${d.key}`;
    let v = this.dimValues.get(key);
    if (v === undefined) {
      v = this.graph.node('Squeeze', [this.dimValue(d), this.ints([0]).name]);
      this.dimValues.set(key, v);
    }
    return new Value(this, v, [], 'int64', false);
  }

  /**
   * A shape as an int64 [n] graph value: an initializer when every entry is a number (entries may be
   * ONNX's 0 = copy and -1 = infer), else the entries joined with Concat at run time.
   */
  shapeInput(dims: readonly Dim[]): string {
    if (dims.every(isStatic)) return this.ints(dims as number[]).name;
    const key = `shape:${dims.join(',')}`;
    const hit = this.dimValues.get(key);
    if (hit !== undefined) return hit;
    // runs of static entries become one constant
    const parts: string[] = [];
    let run: number[] = [];
    for (const d of dims) {
      if (isStatic(d)) run.push(d);
      else {
        if (run.length > 0) parts.push(this.ints(run).name);
        run = [];
        parts.push(this.dimValue(d));
      }
    }
    if (run.length > 0) parts.push(this.ints(run).name);
    const v = parts.length === 1 ? (parts[0] as string) : this.graph.node('Concat', parts, { axis: 0 });
    this.dimValues.set(key, v);
    return v;
  }

  /** A constant tensor (an initializer); float data takes the tracer's float type unless `dtype` says otherwise. */
  constant(
    data: ArrayLike<number>,
    shape: readonly Dim[],
    dtype: DType = this.floatType,
    stem = 'const',
  ): Value {
    if (!shape.every(isStatic))
      throw new XltShapeError(`constants need static shapes, got [${shape.join(', ')}]`, {
        tensor: stem,
        got: numericShape(shape),
      });
    const dims = shape as readonly number[];
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n)
      throw new XltShapeError('constant data does not fill its shape', {
        tensor: stem,
        expected: [...shape],
        got: [data.length],
      });
    if (dtype === 'bool') throw new XltConfigError('bool constants are not supported; compare int64 values');
    const cacheable = n <= 16;
    // only small constants are shared (a weight table of 192M values is never turned into a key)
    const key = cacheable ? `${dtype}:${shape.join(',')}:${Array.from(data).join(',')}` : '';
    const hit = cacheable ? this.consts.get(key) : undefined;
    if (hit !== undefined) return hit;
    // a weight already in the right type is stored as it is (no copy of a large table)
    const arr =
      dtype === 'float64'
        ? data instanceof Float64Array
          ? data
          : Float64Array.from(data)
        : dtype === 'int64'
          ? BigInt64Array.from(Array.from(data, (v) => BigInt(v)))
          : dtype === 'uint32'
            ? Uint32Array.from(data)
            : data instanceof Float32Array
              ? data
              : Float32Array.from(data);
    const name = this.graph.initializer(stem, arr, [...dims]);
    const v = new Value(this, name, shape, dtype, false);
    if (cacheable) this.consts.set(key, v);
    return v;
  }

  /** A float scalar constant of the tracer's float type. */
  scalar(v: number): Value {
    return this.constant([v], []);
  }

  /** An int64 constant (shapes, axes, indices). */
  ints(values: number[], shape: readonly Dim[] = [values.length]): Value {
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

  /**
   * `fn(x)`, whose intermediate values the backward pass recomputes from `x` instead of keeping
   * them from the forward pass (see `backward`): the same ops on the same values, so the same
   * gradients, with one tensor kept instead of several. `fn` must read nothing traced but `x`
   * (constants aside), and nothing outside it may read its intermediate values. With
   * `recompute: false` (constructor) it is just `fn(x)`.
   */
  recompute(x: Value, fn: (x: Value) => Value): Value {
    const start = this.nodes.length;
    const y = fn(x);
    if (!y.requiresGrad || !this.recomputes) return y;
    this.nodes.push({
      op: RECOMPUTE,
      inputs: [x],
      outputs: [y],
      params: { fn, group: new Set(this.nodes.slice(start)) },
    });
    return y;
  }

  /** Marks `value` as the graph output `name`. */
  output(value: Value, name: string): string {
    return this.graph.output(value.name, name, value.dtype, declared(value.shape));
  }

  /** Serialises the graph (opset 18: ReduceMean with axes as an input; 20 where it has a `Gelu`). */
  toBytes(options: import('../graph.js').ModelOptions = {}): Uint8Array {
    return this.graph.toBytes({ ...options, opset: Math.max(18, options.opset ?? 18) });
  }
}
