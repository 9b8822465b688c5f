import { XltFormatError } from '@xlt/core';
import onnxProto, { type onnx as OnnxTypes } from 'onnx-proto';

const { onnx } = onnxProto;
type ModelProto = InstanceType<typeof onnx.ModelProto>;
type GraphProto = OnnxTypes.IGraphProto;
type NodeProto = InstanceType<typeof onnx.NodeProto>;
type TensorProto = InstanceType<typeof onnx.TensorProto>;
type AttributeProto = OnnxTypes.IAttributeProto;

const DT = onnx.TensorProto.DataType;
/** Domain of onnxruntime's contrib ops (DynamicQuantizeMatMul). */
const MS_DOMAIN = 'com.microsoft';

/** Options of {@link quantizeDynamicInt8}. */
export interface QuantizeOptions {
  /**
   * Quantize weights to 7 bits ([-63, 63]) rather than 8 ([-127, 127]). Default true: onnxruntime's
   * x86 kernels without VNNI (AVX2, AVX-512 before VNNI) multiply uint8 activations by int8 weights
   * with 16-bit pairwise sums (`vpmaddubsw`) that saturate for 8-bit weights, which gives wrong
   * results (measured: a logit off by 0.7 in a 4x3 product); 7-bit weights cannot saturate. Set
   * false only where the CPU has VNNI (or on ARM) for a little more accuracy.
   */
  reduceRange?: boolean;
  /** Names of weight initializers or nodes to keep in float32. */
  exclude?: string[];
}

/** What {@link quantizeDynamicInt8} did. */
export interface QuantizeResult {
  /** The rewritten model (ONNX protobuf bytes). */
  model: Uint8Array;
  /** Names of the MatMul / Gemm nodes now running in int8 (as `DynamicQuantizeMatMul`). */
  quantizedNodes: string[];
  /** Bytes of float32 weights quantized, and of the int8 weights, scales and zero points replacing them. */
  floatWeightBytes: number;
  int8WeightBytes: number;
}

/** A weight's float32 values, copied out of its initializer; clear errors name the tensor. */
function floatValues(t: TensorProto): Float32Array {
  const name = t.name ?? '';
  const numel = (t.dims ?? []).reduce((a, d) => a * Number(d), 1);
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
    throw new XltFormatError(
      'weight is stored in an external data file; quantize a model whose weights are inside it',
      { tensor: name },
    );
  const raw = t.rawData;
  if (raw !== undefined && raw !== null && raw.byteLength > 0) {
    if (raw.byteLength !== numel * 4)
      throw new XltFormatError(
        `weight holds ${raw.byteLength} bytes; float32 dims [${(t.dims ?? []).join(', ')}] need ${numel * 4}`,
        { tensor: name },
      );
    const out = new Float32Array(numel);
    new Uint8Array(out.buffer).set(raw);
    return out;
  }
  if ((t.floatData?.length ?? 0) !== numel)
    throw new XltFormatError(
      `weight holds ${t.floatData?.length ?? 0} values; dims [${(t.dims ?? []).join(', ')}] need ${numel}`,
      { tensor: name },
    );
  return Float32Array.from(t.floatData ?? []);
}

/**
 * Symmetric per-output-channel int8 quantization of a [K, N] weight (`transposed`: stored as
 * [N, K], Gemm's `transB=1`). Returns the [K, N] int8 weight and N scales (`scale * alpha`).
 */
function quantizeWeight(
  t: TensorProto,
  transposed: boolean,
  alpha: number,
  qmax: number,
): { q: Int8Array; scales: Float32Array; k: number; n: number } {
  const w = floatValues(t);
  const [d0, d1] = (t.dims ?? []).map(Number) as [number, number];
  const [k, n] = transposed ? [d1, d0] : [d0, d1];
  const at = transposed ? (i: number, j: number) => i + j * k : (i: number, j: number) => i * n + j;
  const maxAbs = new Float32Array(n);
  for (let i = 0; i < k; i++)
    for (let j = 0; j < n; j++) {
      const v = w[at(i, j)] as number;
      if (!Number.isFinite(v))
        throw new XltFormatError(
          `weight has a non-finite value (${v}) at [${transposed ? [j, i] : [i, j]}]`,
          {
            tensor: t.name ?? '',
          },
        );
      const a = Math.abs(v);
      if (a > (maxAbs[j] as number)) maxAbs[j] = a;
    }
  const scales = new Float32Array(n);
  for (let j = 0; j < n; j++) scales[j] = (maxAbs[j] as number) > 0 ? (maxAbs[j] as number) / qmax : 1;
  const q = new Int8Array(k * n);
  for (let i = 0; i < k; i++)
    for (let j = 0; j < n; j++) {
      const r = Math.round((w[at(i, j)] as number) / (scales[j] as number));
      q[i * n + j] = Math.max(-qmax, Math.min(qmax, r));
    }
  for (let j = 0; j < n; j++) scales[j] = (scales[j] as number) * alpha;
  return { q, scales, k, n };
}

function attr(node: NodeProto, name: string): AttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}

function attrNumber(node: NodeProto, name: string, dflt: number): number {
  const a = attr(node, name);
  if (a === undefined) return dflt;
  return a.type === onnx.AttributeProto.AttributeType.FLOAT ? Number(a.f) : Number(a.i);
}

/** Every value name read by the graph's nodes and subgraphs, with how many times. */
function countUses(graph: GraphProto, uses = new Map<string, number>()): Map<string, number> {
  for (const node of graph.node ?? []) {
    for (const i of node.input ?? []) if (i) uses.set(i, (uses.get(i) ?? 0) + 1);
    for (const a of node.attribute ?? []) {
      if (a.g) countUses(a.g, uses);
      for (const g of a.graphs ?? []) countUses(g, uses);
    }
  }
  for (const o of graph.output ?? []) if (o.name) uses.set(o.name, (uses.get(o.name) ?? 0) + 1);
  return uses;
}

/** A weight MatMul / Gemm that {@link quantizeDynamicInt8} rewrites, or undefined to leave the node alone. */
interface Candidate {
  weight: TensorProto;
  transposed: boolean;
  alpha: number;
  bias?: { init: TensorProto; beta: number };
}

function candidate(
  node: NodeProto,
  inits: Map<string, TensorProto>,
  exclude: Set<string>,
): Candidate | undefined {
  const op = node.opType;
  if ((node.domain ?? '') !== '' || (op !== 'MatMul' && op !== 'Gemm')) return undefined;
  const [, wName, cName] = node.input ?? [];
  if (wName === undefined || exclude.has(wName) || exclude.has(node.name ?? '')) return undefined;
  const weight = inits.get(wName);
  if (weight === undefined || weight.dataType !== DT.FLOAT || (weight.dims ?? []).length !== 2)
    return undefined;
  if (op === 'MatMul') return { weight, transposed: false, alpha: 1 };
  if (attrNumber(node, 'transA', 0) !== 0) return undefined;
  const n = Number((weight.dims ?? [])[attrNumber(node, 'transB', 0) !== 0 ? 0 : 1]);
  const out: Candidate = {
    weight,
    transposed: attrNumber(node, 'transB', 0) !== 0,
    alpha: attrNumber(node, 'alpha', 1),
  };
  if (cName !== undefined && cName !== '') {
    const c = inits.get(cName);
    // DynamicQuantizeMatMul's bias is a float [N]; any other C (a value, a broadcast shape) stays a Gemm
    const dims = (c?.dims ?? []).map(Number);
    if (c === undefined || c.dataType !== DT.FLOAT || dims.length !== 1 || dims[0] !== n) return undefined;
    out.bias = { init: c, beta: attrNumber(node, 'beta', 1) };
  }
  return out;
}

function tensor(name: string, dims: number[], dataType: number, data: ArrayBufferView): TensorProto {
  return onnx.TensorProto.create({
    name,
    dims,
    dataType,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

/**
 * Dynamic int8 quantization of an ONNX inference graph, as onnxruntime's own `quantize_dynamic`
 * with per-channel weights: every `MatMul` whose second input is a float32 rank-2 initializer, and
 * every `Gemm` with such a weight (and no `transA`, a float [N] bias or none), becomes onnxruntime's
 * `com.microsoft.DynamicQuantizeMatMul` (what its optimiser fuses `DynamicQuantizeLinear` +
 * `MatMulInteger` + scaling into): activations are quantized to uint8 per call, weights once to
 * symmetric int8 per output channel. Embeddings (Gather), LayerNorm, attention's activation
 * MatMuls and everything else stay float32. Float weights no other node reads are dropped, so the
 * file shrinks by about 3/4 of those weights' bytes.
 *
 * @example
 * ```ts
 * const { model, quantizedNodes } = quantizeDynamicInt8(readFileSync('model.onnx'));
 * writeFileSync('model.int8.onnx', model);
 * ```
 */
export function quantizeDynamicInt8(modelBytes: Uint8Array, options: QuantizeOptions = {}): QuantizeResult {
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(modelBytes);
  } catch (cause) {
    throw new XltFormatError(`not an ONNX model: ${(cause as Error).message}`, { cause });
  }
  const graph = model.graph;
  if (graph === undefined || graph === null) throw new XltFormatError('the ONNX model has no graph');
  const qmax = options.reduceRange === false ? 127 : 63;
  const exclude = new Set(options.exclude ?? []);
  const inits = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) if (t.name) inits.set(t.name, t as TensorProto);
  const taken = new Set<string>([...inits.keys()]);
  for (const n of graph.node ?? []) for (const o of n.output ?? []) taken.add(o);
  const fresh = (stem: string): string => {
    let name = stem;
    for (let i = 1; taken.has(name); i++) name = `${stem}_${i}`;
    taken.add(name);
    return name;
  };

  const added: TensorProto[] = [];
  const quantized = new Map<string, { q: string; scale: string; zp: string }>();
  const quantizedNodes: string[] = [];
  let floatWeightBytes = 0;
  let int8WeightBytes = 0;
  const nodes = (graph.node ?? []).map((node) => {
    const c = candidate(node as NodeProto, inits, exclude);
    if (c === undefined) return node;
    const wName = c.weight.name ?? '';
    const key = `${wName}:${c.transposed}:${c.alpha}`;
    let q = quantized.get(key);
    if (q === undefined) {
      const w = quantizeWeight(c.weight, c.transposed, c.alpha, qmax);
      q = {
        q: fresh(`${wName}_quantized`),
        scale: fresh(`${wName}_scale`),
        zp: fresh(`${wName}_zero_point`),
      };
      added.push(
        tensor(q.q, [w.k, w.n], DT.INT8, w.q),
        tensor(q.scale, [w.n], DT.FLOAT, w.scales),
        tensor(q.zp, [w.n], DT.INT8, new Int8Array(w.n)),
      );
      quantized.set(key, q);
      floatWeightBytes += w.q.length * 4;
      int8WeightBytes += w.q.length + w.n * 5;
    }
    let bias = '';
    if (c.bias !== undefined) {
      if (c.bias.beta === 1) bias = c.bias.init.name ?? '';
      else {
        const b = floatValues(c.bias.init).map((v) => v * (c.bias?.beta ?? 1));
        bias = fresh(`${c.bias.init.name ?? 'bias'}_scaled`);
        added.push(tensor(bias, [b.length], DT.FLOAT, b));
      }
    }
    const name = node.name ? `${node.name}_quant` : fresh('DynamicQuantizeMatMul');
    quantizedNodes.push(node.name ?? name);
    return onnx.NodeProto.create({
      opType: 'DynamicQuantizeMatMul',
      domain: MS_DOMAIN,
      name,
      input: [node.input?.[0] ?? '', q.q, q.scale, q.zp, ...(bias ? [bias] : [])],
      output: [...(node.output ?? [])],
    });
  });
  if (quantizedNodes.length === 0)
    return { model: modelBytes, quantizedNodes, floatWeightBytes, int8WeightBytes };

  graph.node = nodes;
  // float weights that only the rewritten nodes read (the tied embedding keeps its float copy for Gather)
  const uses = countUses(graph);
  graph.initializer = [...(graph.initializer ?? []).filter((t) => uses.has(t.name ?? '')), ...added];
  graph.input = (graph.input ?? []).filter((i) => !inits.has(i.name ?? '') || uses.has(i.name ?? ''));
  const opsets = model.opsetImport ?? [];
  if (!opsets.some((o) => o.domain === MS_DOMAIN)) opsets.push({ domain: MS_DOMAIN, version: 1 });
  model.opsetImport = opsets;
  const meta = (model.metadataProps ?? []).filter((p) => p.key !== 'xlt.quantize');
  model.metadataProps = [...meta, { key: 'xlt.quantize', value: 'int8' }];
  return { model: onnx.ModelProto.encode(model).finish(), quantizedNodes, floatWeightBytes, int8WeightBytes };
}
