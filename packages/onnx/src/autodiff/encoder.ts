import { XltConfigError, XltShapeError } from '@xlt/core';
import type { LoraMixtureSpec, XmodConfig } from '../model-types.js';
import { type Dim, numericShape, staticDim } from './dims.js';
import { type DropoutRates, DropoutSites } from './dropout.js';
import { attention, embedding, gelu, linear } from './layers.js';
import { addLoraMixture } from './mixture.js';
import {
  add,
  cast,
  concat,
  gather,
  layerNorm,
  matmul,
  mul,
  raw,
  reduceSum,
  sub,
  transpose,
  unsqueeze,
} from './ops.js';
import type { Parameters } from './parameters.js';
import type { Tracer, Value } from './tracer.js';

/**
 * The XLM-R / X-Mod encoder and its heads, written once with the op vocabulary and parameters by
 * their Hugging Face names (`roberta.encoder.layer.0.attention.self.query.weight`, ...). Tracing it
 * gives the forward graph; `backward` derives the gradients.
 */

/** Batch inputs of the encoder (int64 [B, S] and [B]; B and S static or symbolic). */
export interface EncoderInputs {
  inputIds: Value;
  attentionMask: Value;
  /** X-Mod: each example's language index into `config.languages`. */
  langIds?: Value;
  /**
   * Embedding mixup (soft code-switching): candidate tokens `ids` int64 [B, S, K], their weights
   * `probs` [B, S, K] (rows summing to 1) and `lambda` [B, S] (0 where a position is not mixed); the
   * word embedding becomes (1 - lambda) E[id] + lambda sum_k probs_k E[ids_k].
   */
  mixup?: { ids: Value; probs: Value; lambda: Value };
}

/** Variations of the encoder's modules. */
export interface EncoderOptions {
  /**
   * Live LoRA: module name -> scaling; the parameters hold `<module>.lora_A.weight` [r, in] and
   * `<module>.lora_B.weight` [out, r]: y = x W^T + b + scaling (x A^T) B^T.
   */
  lora?: ReadonlyMap<string, number>;
  /** Live LoRA mixtures with routers, by module name (see `LoraMixtureSpec`). */
  loraMixtures?: ReadonlyMap<string, LoraMixtureSpec>;
  /**
   * Training-mode dropout at transformers' sites and on mixture experts' inputs (masks from the
   * `dropout_seed` input, created at the first site with a non-zero rate).
   */
  dropout?: DropoutRates;
}

/** The XLM-R / X-Mod encoder over parameters `p` (prefix `roberta.` when the model has one). */
export class XmodEncoder {
  readonly prefix: string;
  readonly hidden: number;
  private readonly eps: number;
  private readonly lora: ReadonlyMap<string, number>;
  private readonly mixtures: ReadonlyMap<string, LoraMixtureSpec>;
  /** The batch's language ids while `forward` runs (X-Mod modules, language routing). */
  private langIds: Value | undefined;
  /** Dropout sites and rates (training graphs with a non-zero rate only). */
  readonly drop: { sites: DropoutSites; rates: DropoutRates } | undefined;

  constructor(
    readonly p: Parameters,
    readonly config: XmodConfig,
    options: EncoderOptions = {},
  ) {
    this.lora = options.lora ?? new Map();
    this.mixtures = options.loraMixtures ?? new Map();
    this.drop =
      options.dropout !== undefined
        ? { sites: new DropoutSites(p.tracer), rates: options.dropout }
        : undefined;
    // the word embeddings: plain, or under `base_layer` when embedding LoRA wraps them
    const word = 'roberta.embeddings.word_embeddings';
    this.prefix = p.has(`${word}.weight`) || p.has(`${word}.base_layer.weight`) ? 'roberta.' : '';
    this.hidden = config.hidden_size;
    this.eps = config.layer_norm_eps;
    if (this.hidden % config.num_attention_heads !== 0)
      throw new XltConfigError(
        `hidden_size ${this.hidden} is not a multiple of num_attention_heads ${config.num_attention_heads}`,
        { field: 'num_attention_heads' },
      );
  }

  private get t(): Tracer {
    return this.p.tracer;
  }

  /** Dropout of kind `kind` (identity without dropout). */
  dropout(x: Value, kind: keyof DropoutRates): Value {
    return this.drop === undefined ? x : this.drop.sites.apply(x, this.drop.rates[kind]);
  }

  layerNorm(x: Value, name: string): Value {
    const d = staticDim(x.shape[x.rank - 1] as Dim, `LayerNorm ${name}`);
    return layerNorm(x, this.p.get(`${name}.weight`, [d]), this.p.get(`${name}.bias`, [d]), this.eps);
  }

  linear(x: Value, name: string, outF: number, bias = true): Value {
    const inF = staticDim(x.shape[x.rank - 1] as Dim, `linear ${name}`);
    // a module wrapped by LoRA keeps its own weights under `base_layer`
    const base = this.p.has(`${name}.base_layer.weight`) ? `${name}.base_layer` : name;
    const y = linear(
      x,
      this.p.get(`${base}.weight`, [outF, inF]),
      bias ? this.p.get(`${base}.bias`, [outF]) : undefined,
    );
    const mix = this.mixtures.get(name);
    if (mix !== undefined) {
      const dropped = this.drop === undefined ? x : this.drop.sites.apply(x, mix.dropout ?? 0);
      return addLoraMixture(this.p, y, x, dropped, name, mix, this.langIds);
    }
    const scaling = this.lora.get(name);
    if (scaling === undefined) return y;
    const A = this.p.get(`${name}.lora_A.weight`);
    const r = A.shape[0] as number;
    if (A.shape[1] !== inF)
      throw new XltShapeError('LoRA A does not fit the module', {
        tensor: `${name}.lora_A.weight`,
        expected: [r, inF],
        got: numericShape(A.shape),
      });
    const B = this.p.get(`${name}.lora_B.weight`, [outF, r]);
    return add(y, mul(linear(linear(x, A), B), scaling));
  }

  /** The word embedding table's name (under `base_layer` when LoRA wraps the module). */
  get wordEmbeddingName(): string {
    const m = `${this.prefix}embeddings.word_embeddings`;
    return this.p.has(`${m}.base_layer.weight`) ? `${m}.base_layer.weight` : `${m}.weight`;
  }

  /**
   * Live embedding LoRA (PEFT's `lora_embedding_A` [r, V] and `lora_embedding_B` [H, r] on the word
   * embeddings, scaling from the `lora` map): rows + scaling A^T[ids] B^T.
   */
  private embeddingLora(rows: Value, ids: Value): Value {
    const m = `${this.prefix}embeddings.word_embeddings`;
    const scaling = this.lora.get(m);
    if (scaling === undefined) return rows;
    const A = this.p.get(`${m}.lora_embedding_A`);
    const r = A.shape[0] as number;
    if (A.shape[1] !== this.config.vocab_size)
      throw new XltShapeError('lora_embedding_A does not fit the vocabulary', {
        tensor: `${m}.lora_embedding_A`,
        expected: [r, this.config.vocab_size],
        got: numericShape(A.shape),
      });
    const B = this.p.get(`${m}.lora_embedding_B`, [this.hidden, r]);
    return add(rows, mul(linear(embedding(transpose(A, [1, 0]), ids), B), scaling));
  }

  /** Word + position (from the padding mask, as transformers) + token type 0, then LayerNorm. */
  embeddings(ids: Value, mixup?: EncoderInputs['mixup']): Value {
    const { t, prefix: pre, hidden: H } = this;
    const shape = ids.shape;
    const pad = this.config.pad_token_id;
    const notPad = raw(
      t,
      'Cast',
      [raw(t, 'Not', [raw(t, 'Equal', [ids, t.ints([pad], [])], shape, 'bool')], shape, 'bool')],
      shape,
      'int64',
      { to: 7 },
    );
    const running = raw(t, 'CumSum', [notPad, t.ints([1], [])], shape, 'int64');
    const pos = raw(
      t,
      'Add',
      [raw(t, 'Mul', [running, notPad], shape, 'int64'), t.ints([pad], [])],
      shape,
      'int64',
    );
    const table = this.p.get(this.wordEmbeddingName, [this.config.vocab_size, H]);
    let words = this.embeddingLora(embedding(table, ids), ids);
    if (mixup !== undefined) {
      const candidates = reduceSum(mul(embedding(table, mixup.ids), unsqueeze(mixup.probs, [3])), [2]);
      const lambda = unsqueeze(mixup.lambda, [2]);
      words = add(mul(words, sub(1, lambda)), mul(candidates, lambda));
    }
    const positions = embedding(this.p.get(`${pre}embeddings.position_embeddings.weight`), pos);
    const tokenType = gather(this.p.get(`${pre}embeddings.token_type_embeddings.weight`), t.ints([0], []));
    const summed = add(add(words, positions), tokenType);
    return this.dropout(this.layerNorm(summed, `${pre}embeddings.LayerNorm`), 'hidden');
  }

  /**
   * X-Mod language modules: every example through its own language's bottleneck (the per-language
   * weights stacked, then gathered by `langIds`).
   */
  adapter(x: Value, name: string, langIds: Value): Value {
    const H = this.hidden;
    const langs = this.config.languages;
    const b = Math.floor(H / this.config.adapter_reduction_factor);
    const stacked = (suffix: string, shape: number[]) => {
      const parts = langs.map((l) => {
        const w = this.p.get(`${name}.output.adapter_modules.${l}.${suffix}`, shape);
        return unsqueeze(shape.length === 2 ? transpose(w, [1, 0]) : unsqueeze(w, [0]), [0]);
      });
      return gather(parts.length === 1 ? (parts[0] as Value) : concat(parts, 0), langIds); // [B, in|1, out]
    };
    const h = add(matmul(x, stacked('dense1.weight', [b, H])), stacked('dense1.bias', [b]));
    return add(matmul(gelu(h), stacked('dense2.weight', [H, b])), stacked('dense2.bias', [H]));
  }

  layer(x: Value, name: string, maskAdd: Value, langIds: Value | undefined): Value {
    const { config: cfg, hidden: H } = this;
    const pre = cfg.pre_norm;
    const attLN = `${name}.attention.output.LayerNorm`;
    const outLN = `${name}.output.LayerNorm`;
    const h = pre ? this.layerNorm(x, attLN) : x;
    const self = `${name}.attention.self`;
    const ctx = attention(
      this.linear(h, `${self}.query`, H),
      this.linear(h, `${self}.key`, H),
      this.linear(h, `${self}.value`, H),
      maskAdd,
      cfg.num_attention_heads,
      (probs) => this.dropout(probs, 'attention'),
    );
    let att = add(this.dropout(this.linear(ctx, `${name}.attention.output.dense`, H), 'hidden'), x);
    if (!pre) att = this.layerNorm(att, attLN);
    const h2 = pre ? this.layerNorm(att, outLN) : att;
    const inter = gelu(this.linear(h2, `${name}.intermediate.dense`, cfg.intermediate_size));
    let out = add(this.dropout(this.linear(inter, `${name}.output.dense`, H), 'hidden'), att);
    if (langIds !== undefined) {
      let a = out;
      if (cfg.adapter_layer_norm) a = this.layerNorm(out, `${name}.output.adapter_layer_norm`);
      else if (cfg.adapter_reuse_layer_norm) a = this.layerNorm(out, outLN);
      const residual = cfg.ln_before_adapter ? a : out;
      out = add(this.dropout(this.adapter(a, name, langIds), 'hidden'), residual);
    }
    if (!pre) out = this.layerNorm(out, outLN);
    return out;
  }

  /**
   * The last hidden state [B, S, H]. `hidden`, when given, receives the embeddings' output and every
   * layer's (the last one after the final LayerNorm of pre-norm models), as transformers'
   * `hidden_states`.
   */
  forward(inputs: EncoderInputs, hidden?: Value[]): Value {
    const { t, config: cfg } = this;
    const langIds = cfg.languages.length > 0 ? inputs.langIds : undefined;
    if (cfg.languages.length > 0 && langIds === undefined)
      throw new XltConfigError('an X-Mod model needs lang_ids', { field: 'lang_ids' });
    this.langIds = inputs.langIds;
    const maskF = cast(inputs.attentionMask, t.floatType);
    const maskAdd = unsqueeze(mul(sub(1, maskF), -3.4028234663852886e38), [1, 2]); // [B, 1, 1, S]
    let x = this.embeddings(inputs.inputIds, inputs.mixup);
    hidden?.push(x);
    for (let i = 0; i < cfg.num_hidden_layers; i++) {
      x = this.layer(x, `${this.prefix}encoder.layer.${i}`, maskAdd, langIds);
      hidden?.push(x);
    }
    if (cfg.pre_norm) {
      x = this.layerNorm(x, `${this.prefix}encoder.LayerNorm`);
      hidden?.splice(hidden.length - 1, 1, x);
    }
    return x;
  }
}
