import { XltConfigError } from '@xlt/core';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type Onnx = typeof onnx;
type NodeProto = InstanceType<Onnx['NodeProto']>;
type TensorProto = InstanceType<Onnx['TensorProto']>;
type ValueInfoProto = InstanceType<Onnx['ValueInfoProto']>;

/** Element types the builder writes. */
export type ElemType = 'float32' | 'float64' | 'int64' | 'int32' | 'uint32' | 'bool';

const ELEM: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  uint32: onnx.TensorProto.DataType.UINT32,
  bool: onnx.TensorProto.DataType.BOOL,
};

/** A dimension: a fixed size or a symbolic name (dynamic). */
export type Dim = number | string;

/** An attribute value of a node. */
export type AttrValue = number | string | number[] | { float: number } | { floats: number[] };

/** Data for an initializer. */
export type InitData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint32Array;

function elemOf(data: InitData): ElemType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Uint32Array) return 'uint32';
  return 'int32';
}

function valueInfo(name: string, type: ElemType, dims: Dim[]): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ELEM[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function attribute(name: string, v: AttrValue) {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    return Number.isInteger(v) ? { name, type: T.INT, i: v } : { name, type: T.FLOAT, f: v };
  }
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.FLOATS, floats: v.floats };
}

/** Options for {@link GraphBuilder.toBytes}. */
export interface ModelOptions {
  /** Default opset version (17 or later: LayerNormalization; raised to 20 where the graph has a `Gelu`). */
  opset?: number;
  producer?: string;
  /**
   * Initializers at least this many bytes are stored outside the model in `externalData.location`
   * (needed above protobuf's 2 GB limit). Default: never.
   */
  externalThreshold?: number;
  /** Collects the external bytes; the caller writes them next to the model under `location`. */
  externalData?: { location: string; chunks: Uint8Array[]; size: number };
  docString?: string;
  metadata?: Record<string, string>;
}

/**
 * Builds an ONNX graph node by node, with automatically unique value names, and serialises it with
 * the `onnx-proto` protobuf definitions.
 */
export class GraphBuilder {
  readonly name: string;
  private readonly nodes: NodeProto[] = [];
  private readonly inits: Array<{ name: string; dims: number[]; data: InitData }> = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private counter = 0;
  private readonly constCache = new Map<string, string>();

  constructor(name = 'xlt') {
    this.name = name;
  }

  /** A fresh value name with the given stem. */
  fresh(stem: string): string {
    let n = stem.replace(/[^A-Za-z0-9_./:-]/g, '_');
    while (this.used.has(n)) n = `${stem}_${++this.counter}`;
    this.used.add(n);
    return n;
  }

  /** Declares a graph input. */
  input(name: string, type: ElemType, dims: Dim[]): string {
    if (this.used.has(name)) throw new XltConfigError(`value name '${name}' is already used`);
    this.used.add(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Declares `value` as a graph output named `name` (adds an Identity when the names differ). */
  output(value: string, name: string, type: ElemType, dims: Dim[]): string {
    let out = value;
    if (value !== name) {
      if (this.used.has(name)) throw new XltConfigError(`output name '${name}' is already used`);
      this.used.add(name);
      this.nodes.push(onnx.NodeProto.create({ opType: 'Identity', input: [value], output: [name], name }));
      out = name;
    }
    this.outputs.push(valueInfo(out, type, dims));
    return out;
  }

  /** Adds an initializer (a weight) and returns its name. */
  initializer(name: string, data: InitData, dims: number[]): string {
    const numel = dims.reduce((a, b) => a * b, 1);
    if (numel !== data.length) {
      throw new XltConfigError(
        `initializer '${name}' has ${data.length} values for dims [${dims.join(', ')}]`,
        {
          tensor: name,
        },
      );
    }
    const n = this.fresh(name);
    this.inits.push({ name: n, dims, data });
    return n;
  }

  /** A small constant (cached by value). */
  constFloat(values: number[] | number, dims?: number[]): string {
    const arr = Array.isArray(values) ? values : [values];
    const d = dims ?? (Array.isArray(values) ? [arr.length] : []);
    const key = `f:${d.join(',')}:${arr.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit !== undefined) return hit;
    const n = this.initializer('const_f', Float32Array.from(arr), d);
    this.constCache.set(key, n);
    return n;
  }

  /** A small int64 constant (cached by value), e.g. shapes and axes. */
  constInt64(values: number[] | number, dims?: number[]): string {
    const arr = Array.isArray(values) ? values : [values];
    const d = dims ?? (Array.isArray(values) ? [arr.length] : []);
    const key = `i:${d.join(',')}:${arr.join(',')}`;
    const hit = this.constCache.get(key);
    if (hit !== undefined) return hit;
    const n = this.initializer('const_i', BigInt64Array.from(arr.map((v) => BigInt(v))), d);
    this.constCache.set(key, n);
    return n;
  }

  /** Adds a node with `nOut` outputs and returns their names. */
  nodeN(
    opType: string,
    inputs: string[],
    nOut: number,
    attrs: Record<string, AttrValue> = {},
    stem?: string,
  ): string[] {
    const outs = Array.from({ length: nOut }, (_, i) =>
      this.fresh(`${stem ?? opType}${nOut > 1 ? `_o${i}` : ''}`),
    );
    this.nodes.push(
      onnx.NodeProto.create({
        opType,
        input: inputs,
        output: outs,
        name: this.fresh(`n_${stem ?? opType}`),
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
      }),
    );
    return outs;
  }

  /** Adds a node with one output and returns its name. */
  node(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, stem?: string): string {
    return this.nodeN(opType, inputs, 1, attrs, stem)[0] as string;
  }

  /** Number of nodes so far. */
  get size(): number {
    return this.nodes.length;
  }

  private tensorProto(
    init: { name: string; dims: number[]; data: InitData },
    options: ModelOptions,
  ): TensorProto {
    const bytes = new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength);
    const ext = options.externalData;
    if (
      ext !== undefined &&
      options.externalThreshold !== undefined &&
      bytes.byteLength >= options.externalThreshold
    ) {
      // onnxruntime requires external offsets aligned for mmap; 4096 is what onnx's own writer uses for large tensors
      const pad = (4096 - (ext.size % 4096)) % 4096;
      if (pad > 0) {
        ext.chunks.push(new Uint8Array(pad));
        ext.size += pad;
      }
      const offset = ext.size;
      ext.chunks.push(bytes);
      ext.size += bytes.byteLength;
      return onnx.TensorProto.create({
        name: init.name,
        dims: init.dims,
        dataType: ELEM[elemOf(init.data)],
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: ext.location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(bytes.byteLength) },
        ],
      });
    }
    return onnx.TensorProto.create({
      name: init.name,
      dims: init.dims,
      dataType: ELEM[elemOf(init.data)],
      rawData: bytes,
    });
  }

  /** Serialises the model (IR version 8). */
  toBytes(options: ModelOptions = {}): Uint8Array {
    const asked = options.opset ?? 17;
    if (asked < 17)
      throw new XltConfigError(`opset must be 17 or later (LayerNormalization), got ${asked}`, {
        field: 'opset',
      });
    // ONNX's Gelu exists from opset 20 on, BitwiseXor (dropout's hash) from 18: a graph that uses
    // one is written at that opset or later
    const uses = (op: string) => this.nodes.some((n) => n.opType === op && (n.domain ?? '') === '');
    const opset = uses('Gelu') ? Math.max(asked, 20) : uses('BitwiseXor') ? Math.max(asked, 18) : asked;
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: options.producer ?? 'xlt',
      producerVersion: '0.1.0',
      docString: options.docString ?? '',
      opsetImport: [{ domain: '', version: opset }],
      metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.inits.map((i) => this.tensorProto(i, options)),
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
