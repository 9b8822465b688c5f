import { XltConfigError, XltNotFoundError, XltShapeError } from '@xlt/core';
import { type Dim, GraphBuilder, type ModelOptions } from './graph.js';

/** The subset of a Hugging Face `config.json` (XmodConfig / XLMRobertaConfig) the exporter reads. */
export interface EncoderConfig {
  model_type?: string;
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act?: string;
  layer_norm_eps?: number;
  pad_token_id?: number;
  type_vocab_size?: number;
  languages?: string[];
  default_language?: string | null;
  pre_norm?: boolean;
  adapter_reduction_factor?: number;
  adapter_layer_norm?: boolean;
  adapter_reuse_layer_norm?: boolean;
  ln_before_adapter?: boolean;
  architectures?: string[];
  id2label?: Record<string, string>;
  num_labels?: number;
}

/** Which head the exported graph ends in. */
export type HeadKind =
  | 'base'
  | 'masked-lm'
  | 'sequence-classification'
  | 'token-classification'
  | 'question-answering';

/** A weight by Hugging Face name: float32 data in row-major order with its shape. */
export interface Weight {
  data: Float32Array;
  shape: number[];
}

/** Where the exporter reads weights from (a safetensors file, a tfjs model's variables, ...). */
export interface WeightSource {
  has(name: string): boolean;
  get(name: string): Weight;
}

export interface ExportOptions extends Omit<ModelOptions, 'externalData'> {
  config: EncoderConfig;
  weights: WeightSource;
  /** Head; default from `config.architectures`. */
  head?: HeadKind;
  /** Also output the embeddings and every layer's hidden state (`hidden_states_0..L`), for checks. */
  outputHiddenStates?: boolean;
}

/** Picks the head from `architectures` (e.g. `XmodForMaskedLM` -> masked-lm). */
export function headFromArchitectures(architectures: string[] | undefined): HeadKind {
  const a = architectures?.[0] ?? '';
  if (a.endsWith('ForMaskedLM')) return 'masked-lm';
  if (a.endsWith('ForSequenceClassification')) return 'sequence-classification';
  if (a.endsWith('ForTokenClassification')) return 'token-classification';
  if (a.endsWith('ForQuestionAnswering')) return 'question-answering';
  return 'base';
}

/** The ONNX graph's input and output names, the same for every exported model. */
export const ONNX_IO = {
  inputIds: 'input_ids',
  attentionMask: 'attention_mask',
  langIds: 'lang_ids',
  logits: 'logits',
  startLogits: 'start_logits',
  endLogits: 'end_logits',
  lastHiddenState: 'last_hidden_state',
} as const;

class Exporter {
  readonly g: GraphBuilder;
  private readonly w: WeightSource;
  private readonly cfg: EncoderConfig;
  private readonly prefix: string;
  private readonly H: number;
  private readonly eps: number;
  /** [B, S] as a 1-D int64 tensor. */
  private shapeBS = '';

  constructor(cfg: EncoderConfig, w: WeightSource) {
    this.cfg = cfg;
    this.w = w;
    this.g = new GraphBuilder(cfg.model_type ?? 'encoder');
    this.H = cfg.hidden_size;
    this.eps = cfg.layer_norm_eps ?? 1e-5;
    this.prefix = w.has('roberta.embeddings.word_embeddings.weight') ? 'roberta.' : '';
    if (!w.has(`${this.prefix}embeddings.word_embeddings.weight`)) {
      throw new XltNotFoundError(
        'weights have no embeddings.word_embeddings.weight (with or without a roberta. prefix)',
        {
          tensor: 'roberta.embeddings.word_embeddings.weight',
        },
      );
    }
  }

  weight(name: string, shape?: number[]): string {
    if (!this.w.has(name)) throw new XltNotFoundError('missing weight', { tensor: name });
    const t = this.w.get(name);
    if (shape !== undefined && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
      throw new XltShapeError('weight has the wrong shape', { tensor: name, expected: shape, got: t.shape });
    }
    return this.g.initializer(name, t.data, t.shape);
  }

  /** y = x W^T + b on token rows x [N, in], with W [out, in] as stored (Gemm transB). */
  linear(x: string, name: string, inF: number, outF: number, bias = true): string {
    const W = this.weight(`${name}.weight`, [outF, inF]);
    const inputs = [x, W];
    if (bias) inputs.push(this.weight(`${name}.bias`, [outF]));
    return this.g.node('Gemm', inputs, { transB: 1 }, name);
  }

  layerNorm(x: string, name: string): string {
    const s = this.weight(`${name}.weight`, [this.H]);
    const b = this.weight(`${name}.bias`, [this.H]);
    return this.g.node('LayerNormalization', [x, s, b], { axis: -1, epsilon: { float: this.eps } }, name);
  }

  gelu(x: string): string {
    const act = this.cfg.hidden_act ?? 'gelu';
    if (act !== 'gelu')
      throw new XltConfigError(`hidden_act '${act}' is not supported (only exact 'gelu')`, {
        field: 'hidden_act',
      });
    const g = this.g;
    const erf = g.node('Erf', [g.node('Mul', [x, g.constFloat(Math.SQRT1_2)])]);
    return g.node(
      'Mul',
      [g.node('Mul', [x, g.constFloat(0.5)]), g.node('Add', [erf, g.constFloat(1)])],
      {},
      'gelu',
    );
  }

  to3d(x: string, last: number): string {
    return this.g.node('Reshape', [
      x,
      this.g.node('Concat', [this.shapeBS, this.g.constInt64([last])], { axis: 0 }),
    ]);
  }

  to2d(x: string, last: number): string {
    return this.g.node('Reshape', [x, this.g.constInt64([-1, last])]);
  }

  build(head: HeadKind, outputHiddenStates: boolean): GraphBuilder {
    const { g, cfg, H } = this;
    const p = this.prefix;
    const langs = cfg.languages ?? [];
    const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
    const mask = g.input('attention_mask', 'int64', ['batch', 'sequence']);
    const langIds = langs.length > 0 ? g.input('lang_ids', 'int64', ['batch']) : undefined;
    this.shapeBS = g.node('Shape', [ids]);
    const pad = cfg.pad_token_id ?? 1;

    // embeddings: word + token type 0 + position (RoBERTa: cumsum of non-pad mask, offset by padding_idx)
    const notPad = g.node('Cast', [g.node('Not', [g.node('Equal', [ids, g.constInt64(pad)])])], { to: 7 });
    const pos = g.node('Add', [
      g.node('Mul', [g.node('CumSum', [notPad, g.constInt64(1)]), notPad]),
      g.constInt64(pad),
    ]);
    const we = this.weight(`${p}embeddings.word_embeddings.weight`, [cfg.vocab_size, H]);
    const pe = this.weight(`${p}embeddings.position_embeddings.weight`);
    const te = this.weight(`${p}embeddings.token_type_embeddings.weight`);
    let x = g.node('Add', [
      g.node('Gather', [we, ids], { axis: 0 }),
      g.node('Gather', [pe, pos], { axis: 0 }),
    ]);
    x = g.node('Add', [x, g.node('Gather', [te, g.constInt64(0)], { axis: 0 })]);
    x = this.to2d(x, H);
    x = this.layerNorm(x, `${p}embeddings.LayerNorm`);
    const hidden: string[] = [x];

    // additive attention mask [B, 1, 1, S]: 0 where attended, float32 min where masked (as transformers)
    const maskF = g.node('Cast', [mask], { to: 1 });
    const ext = g.node('Mul', [
      g.node('Sub', [g.constFloat(1), maskF]),
      g.constFloat(-3.4028234663852886e38),
    ]);
    const ext4 = g.node('Unsqueeze', [ext, g.constInt64([1, 2])]);

    for (let i = 0; i < cfg.num_hidden_layers; i++) {
      x = this.layer(x, `${p}encoder.layer.${i}`, ext4, langIds);
      hidden.push(x);
    }
    if (cfg.pre_norm) {
      x = this.layerNorm(x, `${p}encoder.LayerNorm`);
      hidden[hidden.length - 1] = x;
    }
    const seq3 = this.to3d(x, H);
    g.output(seq3, 'last_hidden_state', 'float32', ['batch', 'sequence', H]);
    if (outputHiddenStates) {
      for (const [k, h] of hidden.entries()) {
        g.output(this.to3d(h, H), `hidden_states_${k}`, 'float32', ['batch', 'sequence', H]);
      }
    }
    this.head(head, x, seq3);
    return g;
  }

  private layer(x: string, name: string, ext4: string, langIds: string | undefined): string {
    const { g, cfg, H } = this;
    const nh = cfg.num_attention_heads;
    const dh = H / nh;
    if (!Number.isInteger(dh))
      throw new XltConfigError(`hidden_size ${H} is not a multiple of num_attention_heads ${nh}`);
    const pre = cfg.pre_norm === true;
    const attLN = `${name}.attention.output.LayerNorm`;
    const outLN = `${name}.output.LayerNorm`;

    let residual = x;
    const h = pre ? this.layerNorm(x, attLN) : x;
    const heads = (t: string, perm: number[]) =>
      g.node('Transpose', [g.node('Reshape', [this.to3d(t, H), g.constInt64([0, 0, nh, dh])])], { perm });
    const q = heads(this.linear(h, `${name}.attention.self.query`, H, H), [0, 2, 1, 3]);
    const kT = heads(this.linear(h, `${name}.attention.self.key`, H, H), [0, 2, 3, 1]);
    const v = heads(this.linear(h, `${name}.attention.self.value`, H, H), [0, 2, 1, 3]);
    let scores = g.node('Div', [g.node('MatMul', [q, kT]), g.constFloat(Math.sqrt(dh))]);
    scores = g.node('Add', [scores, ext4]);
    const probs = g.node('Softmax', [scores], { axis: -1 });
    const ctx = g.node('Transpose', [g.node('MatMul', [probs, v])], { perm: [0, 2, 1, 3] });
    let att = g.node('Add', [
      this.linear(this.to2d(ctx, H), `${name}.attention.output.dense`, H, H),
      residual,
    ]);
    if (!pre) att = this.layerNorm(att, attLN);

    residual = att;
    const h2 = pre ? this.layerNorm(att, outLN) : att;
    const inter = this.gelu(this.linear(h2, `${name}.intermediate.dense`, H, cfg.intermediate_size));
    let out = g.node('Add', [this.linear(inter, `${name}.output.dense`, cfg.intermediate_size, H), residual]);
    if (langIds !== undefined) out = this.langAdapter(out, name, langIds);
    if (!pre) out = this.layerNorm(out, outLN);
    return out;
  }

  /** X-Mod's `lang_adapter`: each example goes through its own language's bottleneck (weights gathered by lang_ids). */
  private langAdapter(x: string, name: string, langIds: string): string {
    const { g, cfg, H } = this;
    const langs = cfg.languages ?? [];
    const b = Math.floor(H / (cfg.adapter_reduction_factor ?? 2));
    const lnBefore = cfg.ln_before_adapter !== false;
    let residual = lnBefore ? '' : x;
    let h = x;
    if (cfg.adapter_layer_norm) h = this.layerNorm(x, `${name}.output.adapter_layer_norm`);
    else if (cfg.adapter_reuse_layer_norm !== false) h = this.layerNorm(x, `${name}.output.LayerNorm`);
    if (lnBefore) residual = h;
    // stacked per-language weights, transposed for batched MatMul: W1 [L, H, b], W2 [L, b, H]
    const stack = (suffix: string, shape: number[], transpose: boolean): Float32Array => {
      const size = shape.reduce((a, d) => a * d, 1);
      const out = new Float32Array(langs.length * size);
      langs.forEach((lang, li) => {
        const wname = `${name}.output.adapter_modules.${lang}.${suffix}`;
        if (!this.w.has(wname))
          throw new XltNotFoundError('missing language module weight', { tensor: wname });
        const t = this.w.get(wname);
        if (t.shape.join(',') !== shape.join(',')) {
          throw new XltShapeError('language module weight has the wrong shape', {
            tensor: wname,
            expected: shape,
            got: t.shape,
          });
        }
        if (!transpose) out.set(t.data, li * size);
        else {
          const [rows, cols] = shape as [number, number];
          for (let r = 0; r < rows; r++)
            for (let c = 0; c < cols; c++) out[li * size + c * rows + r] = t.data[r * cols + c]!;
        }
      });
      return out;
    };
    const L = langs.length;
    const W1 = g.initializer(
      `${name}.output.adapter_modules.dense1.weight_T`,
      stack('dense1.weight', [b, H], true),
      [L, H, b],
    );
    const B1 = g.initializer(`${name}.output.adapter_modules.dense1.bias`, stack('dense1.bias', [b], false), [
      L,
      1,
      b,
    ]);
    const W2 = g.initializer(
      `${name}.output.adapter_modules.dense2.weight_T`,
      stack('dense2.weight', [H, b], true),
      [L, b, H],
    );
    const B2 = g.initializer(`${name}.output.adapter_modules.dense2.bias`, stack('dense2.bias', [H], false), [
      L,
      1,
      H,
    ]);
    const gather = (t: string) => g.node('Gather', [t, langIds], { axis: 0 });
    const h3 = this.to3d(h, H);
    let a = g.node('Add', [g.node('MatMul', [h3, gather(W1)]), gather(B1)]);
    a = this.gelu(a);
    a = g.node('Add', [g.node('MatMul', [a, gather(W2)]), gather(B2)]);
    return g.node('Add', [this.to2d(a, H), residual]);
  }

  private head(head: HeadKind, x: string, seq3: string): void {
    const { g, cfg, H } = this;
    const nLabels = cfg.num_labels ?? (cfg.id2label ? Object.keys(cfg.id2label).length : 2);
    if (head === 'base') return;
    if (head === 'masked-lm') {
      let h = this.gelu(this.linear(x, 'lm_head.dense', H, H));
      h = this.layerNorm(h, 'lm_head.layer_norm');
      const dec = this.w.has('lm_head.decoder.weight')
        ? 'lm_head.decoder.weight'
        : `${this.prefix}embeddings.word_embeddings.weight`;
      const E = this.weight(dec, [cfg.vocab_size, H]);
      const bias = this.weight('lm_head.bias', [cfg.vocab_size]);
      const logits = g.node('Gemm', [h, E, bias], { transB: 1 }, 'lm_head.decoder');
      g.output(this.to3d(logits, cfg.vocab_size), 'logits', 'float32', ['batch', 'sequence', cfg.vocab_size]);
      return;
    }
    if (head === 'sequence-classification') {
      const first = g.node('Gather', [seq3, g.constInt64(0)], { axis: 1 });
      const h = g.node('Tanh', [this.linear(first, 'classifier.dense', H, H)]);
      const logits = this.linear(h, 'classifier.out_proj', H, nLabels);
      g.output(logits, 'logits', 'float32', ['batch', nLabels]);
      return;
    }
    if (head === 'token-classification') {
      const logits = this.linear(x, 'classifier', H, nLabels);
      g.output(this.to3d(logits, nLabels), 'logits', 'float32', ['batch', 'sequence', nLabels]);
      return;
    }
    const se = this.to3d(this.linear(x, 'qa_outputs', H, 2), 2);
    const [s, e] = g.nodeN('Split', [se, g.constInt64([1, 1])], 2, { axis: -1 });
    const dims: Dim[] = ['batch', 'sequence'];
    g.output(g.node('Squeeze', [s as string, g.constInt64([-1])]), 'start_logits', 'float32', dims);
    g.output(g.node('Squeeze', [e as string, g.constInt64([-1])]), 'end_logits', 'float32', dims);
  }
}

/** What {@link exportToOnnx} produces: the model bytes and, when used, the external weight file's bytes. */
export interface ExportResult {
  model: Uint8Array;
  /** Present when some initializers were stored outside the model (see `externalThreshold`). */
  external?: { location: string; chunks: Uint8Array[]; size: number };
  head: HeadKind;
  metadata: Record<string, string>;
}

/**
 * Exports an X-Mod / XLM-R encoder with a head to ONNX (opset 17: LayerNormalization, exact GELU
 * via Erf), with dynamic batch and sequence length and, for X-Mod, `lang_ids` as an input so one file
 * serves every language. Inputs: `input_ids`, `attention_mask` (int64 [batch, sequence]), `lang_ids`
 * (int64 [batch], X-Mod only). Outputs: `last_hidden_state` and the head's `logits` (QA:
 * `start_logits`, `end_logits`). LoRA must be merged into the weights first.
 */
export function exportToOnnx(options: ExportOptions & { externalLocation?: string }): ExportResult {
  const head = options.head ?? headFromArchitectures(options.config.architectures);
  const ex = new Exporter(options.config, options.weights);
  const g = ex.build(head, options.outputHiddenStates === true);
  const metadata: Record<string, string> = {
    ...(options.metadata ?? {}),
    'xlt.head': head,
    'xlt.languages': JSON.stringify(options.config.languages ?? []),
    'xlt.default_language': options.config.default_language ?? '',
    'xlt.id2label': JSON.stringify(options.config.id2label ?? {}),
    'xlt.config': JSON.stringify(options.config),
  };
  const external =
    options.externalThreshold !== undefined
      ? { location: options.externalLocation ?? 'model.onnx.data', chunks: [] as Uint8Array[], size: 0 }
      : undefined;
  const model = g.toBytes({ ...options, metadata, ...(external ? { externalData: external } : {}) });
  const result: ExportResult = { model, head, metadata };
  if (external !== undefined && external.size > 0) result.external = external;
  return result;
}
