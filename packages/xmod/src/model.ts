import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core registers no gradients, and its `dist/register_all_gradients` cannot be imported by Node's ESM
// loader (extensionless internal imports); the @tensorflow/tfjs bundle registers them on the same engine.
import '@tensorflow/tfjs';
import {
  labelCount,
  normalizeConfig,
  openCheckpoint,
  Rng,
  readXmodConfig,
  type SafetensorsTensor,
  type TensorReader,
  toFloat32,
  writeFileAtomic,
  writeSafetensors,
  XltConfigError,
  XltFormatError,
  XltNotFoundError,
  XltShapeError,
  type XmodConfig,
} from '@xlt/core';
import { dropout, Embedding, gelu, LayerNorm, Linear, type LinearLike } from './nn/layers.js';
import { Module, ModuleDict, ModuleList } from './nn/module.js';

/** Nested number arrays (batch × seq) or an int tensor. */
export type IdsInput = number[][] | tf.Tensor;

/** Inputs of every model's `forward`. */
export interface XmodInputs {
  inputIds: IdsInput;
  attentionMask?: IdsInput;
  tokenTypeIds?: IdsInput;
  /** One language per example: an index into `config.languages` or a language code. */
  langIds?: ReadonlyArray<number | string> | tf.Tensor;
  /** Return every hidden state (embeddings output, then each layer; the last after the final LayerNorm when pre_norm). */
  outputHiddenStates?: boolean;
}

function toIds(x: IdsInput, name: string): { data: Int32Array; shape: [number, number] } {
  if (x instanceof tf.Tensor) {
    if (x.rank !== 2)
      throw new XltShapeError(`${name} must be rank 2 [batch, seq], got rank ${x.rank}`, { field: name });
    return { data: Int32Array.from(x.dataSync()), shape: [x.shape[0] ?? 0, x.shape[1] ?? 0] };
  }
  const b = x.length;
  const t = b > 0 ? (x[0]?.length ?? 0) : 0;
  const data = new Int32Array(b * t);
  for (let i = 0; i < b; i++) {
    const row = x[i] ?? [];
    if (row.length !== t)
      throw new XltShapeError(`${name} rows must have equal length`, {
        field: `${name}[${i}]`,
        expected: [t],
        got: [row.length],
      });
    for (let j = 0; j < t; j++) data[i * t + j] = row[j] ?? 0;
  }
  return { data, shape: [b, t] };
}

function toFlat(x: ReadonlyArray<number> | ReadonlyArray<ReadonlyArray<number>> | tf.Tensor): {
  data: number[];
  shape: number[];
} {
  if (x instanceof tf.Tensor) return { data: Array.from(x.dataSync()), shape: x.shape };
  if (x.length > 0 && Array.isArray(x[0])) {
    const rows = x as ReadonlyArray<ReadonlyArray<number>>;
    return { data: rows.flat(), shape: [rows.length, rows[0]?.length ?? 0] };
  }
  return { data: [...(x as ReadonlyArray<number>)], shape: [x.length] };
}

/**
 * Rows `ids` of `weight` [V, d]. Same value and gradient as `tf.gather`, but the gradient is a direct
 * scatter-add (O(n·d)) instead of tfjs-cpu's UnsortedSegmentSum, which costs O(V·n·d) on big vocabularies.
 */
export function embeddingLookup(weight: tf.Tensor, ids: Int32Array, shape: number[]): tf.Tensor {
  const [v, d] = weight.shape as [number, number];
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const w = args[0] as tf.Tensor;
    const value = tf.reshape(tf.gather(w, tf.tensor1d(ids, 'int32')), [...shape, d]);
    const gradFunc = (dy: tf.Tensor) => {
      const g = new Float32Array(v * d);
      const dyv = dy.dataSync();
      for (let i = 0; i < ids.length; i++) {
        const row = (ids[i] ?? 0) * d;
        const off = i * d;
        for (let j = 0; j < d; j++) g[row + j] = (g[row + j] ?? 0) + (dyv[off + j] ?? 0);
      }
      return tf.tensor2d(g, [v, d]);
    };
    return { value, gradFunc };
  });
  return f(weight);
}

/** X-Mod's bottleneck language module: dense1 → gelu → dense2 (`XmodAdapter`). */
export class XmodAdapter extends Module {
  dense1: LinearLike;
  dense2: LinearLike;
  constructor(hidden: number, bottleneck: number, std: number, rng?: Rng) {
    super();
    const o = rng !== undefined ? { std, rng } : { std };
    this.dense1 = this.registerModule('dense1', new Linear(hidden, bottleneck, o));
    this.dense2 = this.registerModule('dense2', new Linear(bottleneck, hidden, o));
  }
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.dense2.apply(gelu(this.dense1.apply(x))));
  }
}

class XmodEmbeddings extends Module {
  word_embeddings: Embedding;
  position_embeddings: Embedding;
  token_type_embeddings: Embedding;
  LayerNorm: LayerNorm;
  constructor(private readonly cfg: XmodConfig) {
    super();
    const std = cfg.initializer_range;
    this.word_embeddings = this.registerModule(
      'word_embeddings',
      new Embedding(cfg.vocab_size, cfg.hidden_size, { std }),
    );
    this.position_embeddings = this.registerModule(
      'position_embeddings',
      new Embedding(cfg.max_position_embeddings, cfg.hidden_size, { std }),
    );
    this.token_type_embeddings = this.registerModule(
      'token_type_embeddings',
      new Embedding(cfg.type_vocab_size, cfg.hidden_size, { std }),
    );
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
  }
  apply(ids: Int32Array, shape: [number, number], tokenTypes: Int32Array | null): tf.Tensor {
    const [b, t] = shape;
    const pad = this.cfg.pad_token_id;
    // transformers' create_position_ids_from_input_ids: cumsum of the non-pad mask, offset by padding_idx.
    const pos = new Int32Array(b * t);
    for (let i = 0; i < b; i++) {
      let c = 0;
      for (let j = 0; j < t; j++) {
        const k = i * t + j;
        if (ids[k] !== pad) {
          c++;
          pos[k] = c + pad;
        } else pos[k] = pad;
        if ((pos[k] ?? 0) >= this.cfg.max_position_embeddings)
          throw new XltShapeError(
            `sequence too long: position ${pos[k]} >= max_position_embeddings ${this.cfg.max_position_embeddings}`,
            { field: 'inputIds' },
          );
      }
    }
    for (let k = 0; k < ids.length; k++) {
      const v = ids[k] ?? 0;
      if (v < 0 || v >= this.cfg.vocab_size)
        throw new XltShapeError(`token id ${v} outside the vocabulary [0, ${this.cfg.vocab_size})`, {
          field: 'inputIds',
        });
    }
    return tf.tidy(() => {
      const w = embeddingLookup(this.word_embeddings.weight, ids, shape);
      const p = embeddingLookup(this.position_embeddings.weight, pos, shape);
      const tt = embeddingLookup(
        this.token_type_embeddings.weight,
        tokenTypes ?? new Int32Array(ids.length),
        shape,
      );
      const e = this.LayerNorm.apply(tf.add(tf.add(w, tt), p));
      return dropout(e, this.cfg.hidden_dropout_prob, this.training);
    });
  }
}

class XmodSelfAttention extends Module {
  query: LinearLike;
  key: LinearLike;
  value: LinearLike;
  constructor(private readonly cfg: XmodConfig) {
    super();
    const h = cfg.hidden_size;
    const std = cfg.initializer_range;
    this.query = this.registerModule('query', new Linear(h, h, { std }));
    this.key = this.registerModule('key', new Linear(h, h, { std }));
    this.value = this.registerModule('value', new Linear(h, h, { std }));
  }
  apply(x: tf.Tensor, mask: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [b, t, h] = x.shape as [number, number, number];
      const nh = this.cfg.num_attention_heads;
      const d = h / nh;
      const split = (y: tf.Tensor) => tf.transpose(tf.reshape(y, [b, t, nh, d]), [0, 2, 1, 3]);
      const q = split(this.query.apply(x));
      const k = split(this.key.apply(x));
      const v = split(this.value.apply(x));
      let scores = tf.div(tf.matMul(q, k, false, true), Math.sqrt(d));
      scores = tf.add(scores, mask);
      let probs = tf.softmax(scores, -1);
      probs = dropout(probs, this.cfg.attention_probs_dropout_prob, this.training);
      const ctx = tf.matMul(probs, v);
      return tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [b, t, h]);
    });
  }
}

class XmodSelfOutput extends Module {
  dense: LinearLike;
  LayerNorm: LayerNorm;
  constructor(cfg: XmodConfig) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.hidden_size, cfg.hidden_size, { std: cfg.initializer_range }),
    );
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
  }
}

class XmodAttention extends Module {
  self: XmodSelfAttention;
  output: XmodSelfOutput;
  constructor(private readonly cfg: XmodConfig) {
    super();
    this.self = this.registerModule('self', new XmodSelfAttention(cfg));
    this.output = this.registerModule('output', new XmodSelfOutput(cfg));
  }
  apply(x: tf.Tensor, mask: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const residual = x;
      const pre = this.cfg.pre_norm === true;
      const inp = pre ? this.output.LayerNorm.apply(x) : x;
      const ctx = this.self.apply(inp, mask);
      let out = tf.add(
        dropout(this.output.dense.apply(ctx), this.cfg.hidden_dropout_prob, this.training),
        residual,
      );
      if (!pre) out = this.output.LayerNorm.apply(out);
      return out;
    });
  }
}

class XmodIntermediate extends Module {
  dense: LinearLike;
  constructor(cfg: XmodConfig) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.hidden_size, cfg.intermediate_size, { std: cfg.initializer_range }),
    );
  }
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => gelu(this.dense.apply(x)));
  }
}

/** The FFN output with X-Mod's language modules (`XmodOutput`). */
export class XmodOutput extends Module {
  dense: LinearLike;
  LayerNorm: LayerNorm;
  adapter_layer_norm: LayerNorm | null = null;
  adapter_modules: ModuleDict<XmodAdapter> | null = null;
  constructor(private readonly cfg: XmodConfig) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.intermediate_size, cfg.hidden_size, { std: cfg.initializer_range }),
    );
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    if (cfg.model_type === 'xmod') {
      if (cfg.adapter_layer_norm)
        this.adapter_layer_norm = this.registerModule(
          'adapter_layer_norm',
          new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps),
        );
      this.adapter_modules = this.registerModule('adapter_modules', new ModuleDict<XmodAdapter>());
      for (const lang of cfg.languages) this.adapter_modules.set(lang, this.newAdapter());
    }
  }
  /** A fresh language module, N(0, initializer_range) weights, zero biases. */
  newAdapter(rng?: Rng): XmodAdapter {
    const bottleneck = Math.floor(this.cfg.hidden_size / this.cfg.adapter_reduction_factor);
    return new XmodAdapter(this.cfg.hidden_size, bottleneck, this.cfg.initializer_range, rng);
  }
  apply(x: tf.Tensor, residualIn: tf.Tensor, langIdx: number[]): tf.Tensor {
    return tf.tidy(() => {
      let h = tf.add(dropout(this.dense.apply(x), this.cfg.hidden_dropout_prob, this.training), residualIn);
      if (this.adapter_modules !== null) h = this.langAdapter(langIdx, h);
      return h;
    });
  }
  /** transformers' `XmodOutput.lang_adapter`: one call per language group, original order restored. */
  langAdapter(langIdx: number[], hIn: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const cfg = this.cfg;
      let h = hIn;
      let residual: tf.Tensor = h;
      if (this.adapter_layer_norm !== null) h = this.adapter_layer_norm.apply(h);
      else if (cfg.adapter_reuse_layer_norm) h = this.LayerNorm.apply(h);
      if (cfg.ln_before_adapter) residual = h;
      const modules = this.adapter_modules as ModuleDict<XmodAdapter>;
      const keys = modules.keys();
      const groups = new Map<number, number[]>();
      langIdx.forEach((l, i) => {
        const g = groups.get(l);
        if (g === undefined) groups.set(l, [i]);
        else g.push(i);
      });
      let out: tf.Tensor;
      if (groups.size === 1) {
        const l = langIdx[0] ?? 0;
        out = (modules.get(keys[l] ?? '') as XmodAdapter).apply(h);
      } else {
        // Rows are picked and put back with slice/concat (not gather, whose gradient needs
        // UnsortedSegmentSum, missing on the wasm backend).
        const rowsOf = (x: tf.Tensor, idx: number[]) =>
          idx.length === 1
            ? tf.slice(x, [idx[0] ?? 0], [1])
            : tf.concat(
                idx.map((i) => tf.slice(x, [i], [1])),
                0,
              );
        const back = new Array<tf.Tensor>(langIdx.length);
        for (const [l, idx] of groups) {
          const y = (modules.get(keys[l] ?? '') as XmodAdapter).apply(rowsOf(h, idx));
          idx.forEach((orig, k) => {
            back[orig] = tf.slice(y, [k], [1]);
          });
        }
        out = tf.concat(back, 0);
      }
      out = dropout(out, cfg.hidden_dropout_prob, this.training);
      return tf.add(out, residual);
    });
  }
}

class XmodLayer extends Module {
  attention: XmodAttention;
  intermediate: XmodIntermediate;
  output: XmodOutput;
  constructor(private readonly cfg: XmodConfig) {
    super();
    this.attention = this.registerModule('attention', new XmodAttention(cfg));
    this.intermediate = this.registerModule('intermediate', new XmodIntermediate(cfg));
    this.output = this.registerModule('output', new XmodOutput(cfg));
  }
  apply(x: tf.Tensor, mask: tf.Tensor, langIdx: number[]): tf.Tensor {
    return tf.tidy(() => {
      const pre = this.cfg.pre_norm === true;
      let a = this.attention.apply(x, mask);
      const residual = a;
      if (pre) a = this.output.LayerNorm.apply(a);
      let out = this.output.apply(this.intermediate.apply(a), residual, langIdx);
      if (!pre) out = this.output.LayerNorm.apply(out);
      return out;
    });
  }
}

class XmodEncoder extends Module {
  layer: ModuleList<XmodLayer>;
  LayerNorm: LayerNorm | null = null;
  constructor(cfg: XmodConfig) {
    super();
    this.layer = this.registerModule('layer', new ModuleList<XmodLayer>());
    for (let i = 0; i < cfg.num_hidden_layers; i++) this.layer.push(new XmodLayer(cfg));
    if (cfg.model_type === 'xmod' && cfg.pre_norm)
      this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
  }
}

/** Output of the bare encoder. */
export interface XmodModelOutput {
  lastHiddenState: tf.Tensor;
  hiddenStates?: tf.Tensor[];
}

/** The X-Mod (or XLM-R) encoder, `XmodModel` without pooler; registered as `roberta` in every head model. */
export class XmodModel extends Module {
  embeddings: XmodEmbeddings;
  encoder: XmodEncoder;
  constructor(readonly config: XmodConfig) {
    super();
    this.embeddings = this.registerModule('embeddings', new XmodEmbeddings(config));
    this.encoder = this.registerModule('encoder', new XmodEncoder(config));
  }

  /** Maps `langIds` (indices or codes, one per example) to indices of the language modules. */
  resolveLangIds(langIds: XmodInputs['langIds'], batch: number): number[] {
    const cfg = this.config;
    if (cfg.model_type !== 'xmod') return new Array<number>(batch).fill(0);
    const langs = cfg.languages;
    if (langIds === undefined) {
      if (cfg.default_language === null || cfg.default_language === undefined)
        throw new XltConfigError('langIds not given and config.default_language is not set', {
          field: 'langIds',
        });
      const d = langs.indexOf(cfg.default_language);
      if (d < 0)
        throw new XltNotFoundError(`default language ${cfg.default_language} has no module`, {
          field: 'default_language',
        });
      return new Array<number>(batch).fill(d);
    }
    const list: Array<number | string> =
      langIds instanceof tf.Tensor ? Array.from(langIds.dataSync()) : [...langIds];
    if (list.length !== batch)
      throw new XltShapeError('langIds needs one language per example', {
        field: 'langIds',
        expected: [batch],
        got: [list.length],
      });
    return list.map((l, i) => {
      if (typeof l === 'string') {
        const k = langs.indexOf(l);
        if (k < 0)
          throw new XltNotFoundError(`unknown language '${l}' (known: ${langs.join(', ')})`, {
            field: `langIds[${i}]`,
          });
        return k;
      }
      if (!Number.isInteger(l) || l < 0 || l >= langs.length)
        throw new XltNotFoundError(`language index ${l} outside [0, ${langs.length})`, {
          field: `langIds[${i}]`,
        });
      return l;
    });
  }

  forward(inputs: XmodInputs): XmodModelOutput {
    const { data, shape } = toIds(inputs.inputIds, 'inputIds');
    const [b, t] = shape;
    let maskData: Int32Array | null = null;
    if (inputs.attentionMask !== undefined) {
      const m = toIds(inputs.attentionMask, 'attentionMask');
      if (m.shape[0] !== b || m.shape[1] !== t)
        throw new XltShapeError('attentionMask shape differs from inputIds', {
          field: 'attentionMask',
          expected: shape,
          got: m.shape,
        });
      maskData = m.data;
    }
    let tt: Int32Array | null = null;
    if (inputs.tokenTypeIds !== undefined) {
      const t2 = toIds(inputs.tokenTypeIds, 'tokenTypeIds');
      if (t2.shape[0] !== b || t2.shape[1] !== t)
        throw new XltShapeError('tokenTypeIds shape differs from inputIds', {
          field: 'tokenTypeIds',
          expected: shape,
          got: t2.shape,
        });
      if (t2.data.some((v) => v < 0 || v >= this.config.type_vocab_size))
        throw new XltShapeError(`token type id outside [0, ${this.config.type_vocab_size})`, {
          field: 'tokenTypeIds',
        });
      tt = t2.data;
    }
    const langIdx = this.resolveLangIds(inputs.langIds, b);
    const keep: tf.Tensor[] = [];
    const last = tf.tidy(() => {
      // Extended attention mask: 0 where attended, float32 min where masked, [b, 1, 1, t].
      const add = new Float32Array(b * t);
      if (maskData !== null)
        for (let k = 0; k < add.length; k++) add[k] = maskData[k] === 0 ? -3.4028234663852886e38 : 0;
      const mask = tf.tensor4d(add, [b, 1, 1, t]);
      let h = this.embeddings.apply(data, shape, tt);
      for (const layer of this.encoder.layer.items) {
        if (inputs.outputHiddenStates === true) keep.push(tf.keep(h));
        h = layer.apply(h, mask, langIdx);
      }
      if (this.encoder.LayerNorm !== null) h = this.encoder.LayerNorm.apply(h);
      if (inputs.outputHiddenStates === true) keep.push(tf.keep(tf.clone(h)));
      return h;
    });
    return inputs.outputHiddenStates === true
      ? { lastHiddenState: last, hiddenStates: keep }
      : { lastHiddenState: last };
  }
}

/** Mean cross-entropy over positions whose label is not `ignoreIndex` (PyTorch's `CrossEntropyLoss`). */
export function crossEntropy(logits: tf.Tensor, labels: number[], ignoreIndex = -100): tf.Tensor {
  return tf.tidy(() => {
    const c = logits.shape[logits.shape.length - 1] ?? 0;
    const flat = tf.reshape(logits, [-1, c]);
    if (labels.length !== flat.shape[0])
      throw new XltShapeError('labels do not match logits', {
        field: 'labels',
        expected: [flat.shape[0] ?? 0],
        got: [labels.length],
      });
    const w = labels.map((l): number => (l === ignoreIndex ? 0 : 1));
    const tgt = labels.map((l) => {
      if (l === ignoreIndex) return 0;
      if (!Number.isInteger(l) || l < 0 || l >= c)
        throw new XltShapeError(`label ${l} outside [0, ${c})`, { field: 'labels' });
      return l;
    });
    const n = w.reduce((a, v) => a + v, 0);
    const logp = tf.logSoftmax(flat, -1);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(tgt, 'int32'), c)), -1);
    const s = tf.sum(tf.mul(picked, tf.tensor1d(w, 'float32')));
    // PyTorch returns NaN when every label is ignored (0/0); so do we.
    return tf.neg(tf.div(s, tf.scalar(n)));
  });
}

type Ctor<M> = new (config: XmodConfig) => M;

/** Options of {@link XmodPreTrainedModel.fromPretrained}. */
export interface FromPretrainedOptions {
  /**
   * When true (default false), a checkpoint lacking this model's head (e.g. a masked-LM checkpoint loaded for
   * classification) is an error; otherwise the head is freshly initialised as transformers does.
   */
  strictHead?: boolean;
  /** Config fields to override (e.g. `num_labels`). */
  config?: Partial<XmodConfig>;
}

/** Shared machinery of the head models: the `roberta` encoder, loading/saving, language operations. */
export abstract class XmodPreTrainedModel extends Module {
  readonly config: XmodConfig;
  roberta: XmodModel;
  /** Names of head tensors initialised fresh by the last `fromPretrained` (absent from the checkpoint). */
  newlyInitialized: string[] = [];
  protected abstract readonly headPrefixes: string[];
  abstract readonly architecture: string;

  constructor(config: XmodConfig | Record<string, unknown>) {
    super();
    this.config = normalizeConfig(config as Record<string, unknown>);
    this.roberta = this.registerModule('roberta', new XmodModel(this.config));
  }

  /**
   * Loads `config.json` and the weights from a model folder, tensor by tensor: `model.safetensors`,
   * `pytorch_model.bin` (`torch.save` format) or a sharded checkpoint of either (see `openCheckpoint`
   * of @xlt/core).
   */
  static async fromPretrained<M extends XmodPreTrainedModel>(
    this: Ctor<M>,
    dir: string,
    options: FromPretrainedOptions = {},
  ): Promise<M> {
    const cfg = readXmodConfig(dir, options.config);
    const model = new this(cfg);
    let reader: TensorReader;
    try {
      reader = openCheckpoint(dir);
    } catch (e) {
      model.dispose();
      throw e;
    }
    try {
      model.loadFrom(reader, options.strictHead === true);
    } catch (e) {
      model.dispose();
      throw e;
    } finally {
      reader.close();
    }
    return model;
  }

  /**
   * Copies tensors from an open checkpoint (`SafetensorsReader`, `TorchCheckpointReader`, or any
   * `TensorReader`) into the parameters (names must match exactly).
   */
  loadFrom(reader: TensorReader, strictHead = false): void {
    const file = reader.path;
    const params = new Map(this.namedParameters());
    const names = new Set(reader.names());
    const unexpected: string[] = [];
    for (const n of names) {
      if (params.has(n)) continue;
      if (n.startsWith('roberta.pooler.') || n.endsWith('position_ids')) continue;
      if (n === 'lm_head.decoder.weight' || n === 'lm_head.decoder.bias') {
        if (params.has('lm_head.bias')) continue;
      }
      // Another task's head in the checkpoint (e.g. lm_head when fine-tuning): ignored, as transformers does.
      if (!n.startsWith('roberta.') && !this.headPrefixes.some((p) => n.startsWith(p))) continue;
      unexpected.push(n);
    }
    if (unexpected.length > 0)
      throw new XltFormatError(`unexpected tensors in checkpoint: ${unexpected.join(', ')}`, {
        file,
        tensor: unexpected[0] ?? '',
      });
    const missing = [...params.keys()].filter((n) => !names.has(n));
    const missingBody = missing.filter((n) => n.startsWith('roberta.'));
    if (missingBody.length > 0 || (strictHead && missing.length > 0)) {
      const list = strictHead ? missing : missingBody;
      throw new XltNotFoundError(`missing tensors in checkpoint: ${list.join(', ')}`, {
        file,
        tensor: list[0] ?? '',
      });
    }
    this.newlyInitialized = missing;
    for (const [name, p] of params) {
      if (!names.has(name)) continue;
      const info = reader.info(name);
      if (info.shape.length !== p.shape.length || info.shape.some((d, i) => d !== p.shape[i]))
        throw new XltShapeError('tensor shape differs from the config', {
          file,
          tensor: name,
          expected: p.shape,
          got: info.shape,
        });
      const t = reader.get(name);
      const vals = toFloat32(t);
      tf.tidy(() => p.assign(tf.tensor(vals, p.shape, 'float32')));
    }
    if (names.has('lm_head.decoder.weight') && params.has('roberta.embeddings.word_embeddings.weight')) {
      const dec = toFloat32(reader.get('lm_head.decoder.weight'));
      const emb = params.get('roberta.embeddings.word_embeddings.weight')?.dataSync() ?? new Float32Array();
      if (dec.length !== emb.length || dec.some((v, i) => v !== emb[i]))
        throw new XltFormatError(
          'lm_head.decoder.weight differs from the tied word embeddings (untied decoders are not supported)',
          {
            file,
            tensor: 'lm_head.decoder.weight',
          },
        );
    }
  }

  /** Writes `config.json` and `model.safetensors` (HF names, float32, tied decoder omitted), atomically. */
  async savePretrained(dir: string): Promise<void> {
    mkdirSync(dir, { recursive: true });
    const tensors = new Map<string, SafetensorsTensor>();
    for (const [n, p] of this.namedParameters()) {
      tensors.set(n, { dtype: 'F32', shape: [...p.shape], data: new Float32Array(p.dataSync()) });
    }
    await writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    const cfg: Record<string, unknown> = { ...this.config, architectures: [this.architecture] };
    if (this.config.model_type !== 'xmod') {
      for (const k of [
        'languages',
        'default_language',
        'pre_norm',
        'adapter_reduction_factor',
        'adapter_layer_norm',
        'adapter_reuse_layer_norm',
        'ln_before_adapter',
      ])
        delete cfg[k];
    }
    writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
  }

  private outputs(): XmodOutput[] {
    return this.roberta.encoder.layer.items.map((l) => l.output);
  }

  private requireXmod(): void {
    if (this.config.model_type !== 'xmod')
      throw new XltConfigError('language modules need an X-Mod model (model_type xmod)', {
        field: 'model_type',
      });
  }

  private langIndex(code: string): number {
    const i = this.config.languages.indexOf(code);
    if (i < 0)
      throw new XltNotFoundError(`unknown language '${code}' (known: ${this.config.languages.join(', ')})`, {
        field: 'language',
      });
    return i;
  }

  /** Adds a language module in every layer: N(0, initializer_range) (seeded by `seed`) or a copy of `initFrom`. */
  addLanguage(code: string, options: { initFrom?: string; seed?: number } = {}): void {
    this.requireXmod();
    if (this.config.languages.includes(code))
      throw new XltConfigError(`language '${code}' already has a module`, { field: 'language' });
    if (options.initFrom !== undefined) this.langIndex(options.initFrom);
    const rng = new Rng(options.seed ?? 0);
    for (const out of this.outputs()) {
      const mods = out.adapter_modules as ModuleDict<XmodAdapter>;
      const m = out.newAdapter(rng);
      if (options.initFrom !== undefined) {
        const src = mods.get(options.initFrom) as XmodAdapter;
        const srcParams = new Map(src.namedParameters());
        for (const [n, p] of m.namedParameters()) {
          const s = srcParams.get(n);
          if (s !== undefined) p.assign(s);
        }
      }
      m.training = out.training;
      mods.set(code, m);
    }
    this.config.languages.push(code);
  }

  /** Removes a language's module from every layer (and from config.languages). */
  removeLanguage(code: string): void {
    this.requireXmod();
    this.langIndex(code);
    if (this.config.default_language === code)
      throw new XltConfigError(`cannot remove the default language '${code}'; set another default first`, {
        field: 'language',
      });
    for (const out of this.outputs())
      (out.adapter_modules as ModuleDict<XmodAdapter>).delete(code)?.dispose();
    this.config.languages = this.config.languages.filter((l) => l !== code);
  }

  /** Sets `config.default_language` (used when `langIds` is omitted). */
  setDefaultLanguage(code: string): void {
    this.requireXmod();
    this.langIndex(code);
    this.config.default_language = code;
  }

  /** Names of the language-module parameters (all languages, or one). */
  languageModuleParameterNames(code?: string): string[] {
    if (code !== undefined) this.langIndex(code);
    const re = /\.output\.adapter_modules\.([^.]+)\./;
    return this.namedParameters()
      .map(([n]) => n)
      .filter((n) => {
        const m = re.exec(n);
        return m !== null && (code === undefined || m[1] === code);
      });
  }

  /**
   * transformers' `freeze_embeddings_and_language_adapters`: embeddings and every language module frozen,
   * everything else trainable. Returns the names of the parameters left trainable.
   */
  freezeEmbeddingsAndLanguageModules(): string[] {
    const lang = new Set(this.languageModuleParameterNames());
    for (const [n, p] of this.namedParameters())
      p.trainable = !(n.startsWith('roberta.embeddings.') || lang.has(n));
    return this.trainableParameters().map(([n]) => n);
  }

  /** Only the shared (non-language-module) parameters train. Returns their names. */
  trainSharedOnly(): string[] {
    const lang = new Set(this.languageModuleParameterNames());
    for (const [n, p] of this.namedParameters()) p.trainable = !lang.has(n);
    return this.trainableParameters().map(([n]) => n);
  }

  /** Only one language's modules train (as when a language is added). Returns their names. */
  trainLanguageOnly(code: string): string[] {
    const names = new Set(this.languageModuleParameterNames(code));
    for (const [n, p] of this.namedParameters()) p.trainable = names.has(n);
    return [...names];
  }

  protected classifierDropout(): number {
    return this.config.classifier_dropout ?? this.config.hidden_dropout_prob;
  }

  protected numLabels(): number {
    const n = labelCount(this.config);
    if (!Number.isInteger(n) || n < 1)
      throw new XltConfigError(`num_labels must be >= 1, got ${n}`, { field: 'num_labels' });
    this.config.num_labels = n;
    return n;
  }
}

/** Labels: nested arrays or a tensor. */
export type LabelsInput = ReadonlyArray<number> | ReadonlyArray<ReadonlyArray<number>> | tf.Tensor;

/** Output of the masked-LM, sequence and token classification models. */
export interface ClassifierOutput {
  logits: tf.Tensor;
  loss?: tf.Scalar;
  hiddenStates?: tf.Tensor[];
}

class XmodLMHead extends Module {
  dense: LinearLike;
  layer_norm: LayerNorm;
  bias: tf.Variable;
  constructor(cfg: XmodConfig) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.hidden_size, cfg.hidden_size, { std: cfg.initializer_range }),
    );
    this.layer_norm = this.registerModule('layer_norm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    this.bias = this.registerParameter('bias', tf.zeros([cfg.vocab_size]));
  }
}

/** `XmodForMaskedLM` / `XLMRobertaForMaskedLM`: decoder tied to the word embeddings. */
export class XmodForMaskedLM extends XmodPreTrainedModel {
  lm_head: XmodLMHead;
  protected readonly headPrefixes = ['lm_head.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>) {
    super(config);
    this.architecture = this.config.model_type === 'xmod' ? 'XmodForMaskedLM' : 'XLMRobertaForMaskedLM';
    this.lm_head = this.registerModule('lm_head', new XmodLMHead(this.config));
  }
  forward(inputs: XmodInputs & { labels?: LabelsInput }): ClassifierOutput {
    const enc = this.roberta.forward(inputs);
    const logits = tf.tidy(() => {
      const h = this.lm_head.layer_norm.apply(gelu(this.lm_head.dense.apply(enc.lastHiddenState)));
      const [b, t, d] = h.shape as [number, number, number];
      const flat = tf.matMul(
        tf.reshape(h, [b * t, d]),
        this.roberta.embeddings.word_embeddings.weight,
        false,
        true,
      );
      return tf.reshape(tf.add(flat, this.lm_head.bias), [b, t, this.config.vocab_size]);
    });
    enc.lastHiddenState.dispose();
    const out: ClassifierOutput = { logits };
    if (enc.hiddenStates !== undefined) out.hiddenStates = enc.hiddenStates;
    if (inputs.labels !== undefined) out.loss = crossEntropy(logits, toFlat(inputs.labels).data) as tf.Scalar;
    return out;
  }
}

class XmodClassificationHead extends Module {
  dense: LinearLike;
  out_proj: LinearLike;
  constructor(cfg: XmodConfig, numLabels: number) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.hidden_size, cfg.hidden_size, { std: cfg.initializer_range }),
    );
    this.out_proj = this.registerModule(
      'out_proj',
      new Linear(cfg.hidden_size, numLabels, { std: cfg.initializer_range }),
    );
  }
}

/** `XmodForSequenceClassification`: RoBERTa head on `<s>`; num_labels 1 = MSE regression. */
export class XmodForSequenceClassification extends XmodPreTrainedModel {
  classifier: XmodClassificationHead;
  protected readonly headPrefixes = ['classifier.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>) {
    super(config);
    this.architecture =
      this.config.model_type === 'xmod'
        ? 'XmodForSequenceClassification'
        : 'XLMRobertaForSequenceClassification';
    this.classifier = this.registerModule(
      'classifier',
      new XmodClassificationHead(this.config, this.numLabels()),
    );
  }
  forward(inputs: XmodInputs & { labels?: LabelsInput }): ClassifierOutput {
    const enc = this.roberta.forward(inputs);
    const p = this.classifierDropout();
    const logits = tf.tidy(() => {
      const h = enc.lastHiddenState;
      const [b, , d] = h.shape as [number, number, number];
      let x = tf.reshape(tf.slice(h, [0, 0, 0], [b, 1, d]), [b, d]);
      x = dropout(x, p, this.training);
      x = tf.tanh(this.classifier.dense.apply(x));
      x = dropout(x, p, this.training);
      return this.classifier.out_proj.apply(x);
    });
    enc.lastHiddenState.dispose();
    const out: ClassifierOutput = { logits };
    if (enc.hiddenStates !== undefined) out.hiddenStates = enc.hiddenStates;
    if (inputs.labels !== undefined) {
      const labels = toFlat(inputs.labels).data;
      const n = this.numLabels();
      if (this.config.problem_type === 'multi_label_classification')
        throw new XltConfigError('multi_label_classification (BCE) is not supported', {
          field: 'problem_type',
        });
      const regression =
        this.config.problem_type === 'regression' || (this.config.problem_type == null && n === 1);
      out.loss = (
        regression
          ? tf.tidy(() =>
              tf.mean(tf.square(tf.sub(tf.reshape(logits, [-1]), tf.tensor1d(labels, 'float32')))),
            )
          : crossEntropy(logits, labels)
      ) as tf.Scalar;
    }
    return out;
  }
}

/** `XmodForTokenClassification`: dropout then `classifier` on every token. */
export class XmodForTokenClassification extends XmodPreTrainedModel {
  classifier: LinearLike;
  protected readonly headPrefixes = ['classifier.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>) {
    super(config);
    this.architecture =
      this.config.model_type === 'xmod' ? 'XmodForTokenClassification' : 'XLMRobertaForTokenClassification';
    this.classifier = this.registerModule(
      'classifier',
      new Linear(this.config.hidden_size, this.numLabels(), { std: this.config.initializer_range }),
    );
  }
  forward(inputs: XmodInputs & { labels?: LabelsInput }): ClassifierOutput {
    const enc = this.roberta.forward(inputs);
    const logits = tf.tidy(() =>
      this.classifier.apply(dropout(enc.lastHiddenState, this.classifierDropout(), this.training)),
    );
    enc.lastHiddenState.dispose();
    const out: ClassifierOutput = { logits };
    if (enc.hiddenStates !== undefined) out.hiddenStates = enc.hiddenStates;
    if (inputs.labels !== undefined) out.loss = crossEntropy(logits, toFlat(inputs.labels).data) as tf.Scalar;
    return out;
  }
}

/** Output of {@link XmodForQuestionAnswering}. */
export interface QuestionAnsweringOutput {
  startLogits: tf.Tensor;
  endLogits: tf.Tensor;
  loss?: tf.Scalar;
  hiddenStates?: tf.Tensor[];
}

/** `XmodForQuestionAnswering`: `qa_outputs` gives start/end logits; loss (start CE + end CE) / 2. */
export class XmodForQuestionAnswering extends XmodPreTrainedModel {
  qa_outputs: LinearLike;
  protected readonly headPrefixes = ['qa_outputs.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>) {
    super(config);
    this.architecture =
      this.config.model_type === 'xmod' ? 'XmodForQuestionAnswering' : 'XLMRobertaForQuestionAnswering';
    this.qa_outputs = this.registerModule(
      'qa_outputs',
      new Linear(this.config.hidden_size, 2, { std: this.config.initializer_range }),
    );
  }
  forward(
    inputs: XmodInputs & { startPositions?: LabelsInput; endPositions?: LabelsInput },
  ): QuestionAnsweringOutput {
    const enc = this.roberta.forward(inputs);
    const [startLogits, endLogits] = tf.tidy(() => {
      const l = this.qa_outputs.apply(enc.lastHiddenState);
      const [b, t] = l.shape as [number, number, number];
      const s = tf.reshape(tf.slice(l, [0, 0, 0], [b, t, 1]), [b, t]);
      const e = tf.reshape(tf.slice(l, [0, 0, 1], [b, t, 1]), [b, t]);
      return [s, e];
    }) as [tf.Tensor, tf.Tensor];
    enc.lastHiddenState.dispose();
    const out: QuestionAnsweringOutput = { startLogits, endLogits };
    if (enc.hiddenStates !== undefined) out.hiddenStates = enc.hiddenStates;
    if (inputs.startPositions !== undefined && inputs.endPositions !== undefined) {
      const t = startLogits.shape[1] ?? 0;
      // transformers clamps positions to [0, seq_len] and ignores seq_len (positions outside the input).
      const clamp = (v: number[]) => v.map((x) => Math.min(Math.max(x, 0), t));
      const sp = clamp(toFlat(inputs.startPositions).data);
      const ep = clamp(toFlat(inputs.endPositions).data);
      out.loss = tf.tidy(() =>
        tf.div(tf.add(crossEntropy(startLogits, sp, t), crossEntropy(endLogits, ep, t)), 2),
      ) as tf.Scalar;
    }
    return out;
  }
}
