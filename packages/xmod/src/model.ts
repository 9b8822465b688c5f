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
import { XmodEmbeddings } from './embeddings.js';
import { toIds, type XmodInputs } from './inputs.js';
import type { XmodAdapter, XmodOutput } from './language-adapters.js';
import { XmodEncoder } from './layer.js';
import { Module, type ModuleDict } from './nn/module.js';

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
