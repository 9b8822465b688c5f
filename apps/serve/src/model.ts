import { readdirSync } from 'node:fs';
import path from 'node:path';
import {
  checkpointFiles,
  readXmodConfig,
  SafetensorsReader,
  toFloat32,
  XltConfigError,
  XltNotFoundError,
  XltShapeError,
  type XmodConfig,
} from '@xlt/core';
import {
  checkpointWeights,
  exportToOnnx,
  type HeadKind,
  headFromArchitectures,
  loadCachedModel,
  ModelCacheKey,
  type OnnxInputs,
  OnnxModel,
  type OnnxOutput,
  quantizeDynamicInt8,
  type Weight,
  type WeightSource,
} from '@xlt/onnx';

/** Names of one language module's weights in layer `i`, as in an X-Mod checkpoint. */
function moduleNames(prefix: string, layer: number, lang: string): string[] {
  const base = `${prefix}encoder.layer.${layer}.output.adapter_modules.${lang}`;
  return [`${base}.dense1.weight`, `${base}.dense1.bias`, `${base}.dense2.weight`, `${base}.dense2.bias`];
}

/** How the served graph's weight MatMuls run: float32, or dynamically quantized int8. */
export type ServeQuantization = 'int8';

/** Options of {@link ServedModel.load}. */
export interface ServedModelOptions {
  /** Folder of `<lang>.safetensors` language modules added at start. */
  modulesDir?: string;
  /** onnxruntime intra-op threads. */
  threads?: number;
  /** `int8`: quantize the weight MatMuls at load (and after each language is added). Default float32. */
  quantize?: ServeQuantization;
  /**
   * Folder of optimised graphs (see `loadCachedModel` of @xlt/onnx): a model started again with the
   * same weights, languages and settings loads from it without export or optimisation (at base size
   * about 1 s instead of about 20). Each entry holds a copy of the weights (about the checkpoint's
   * size; int8: a quarter). Default: no cache.
   */
  cacheDir?: string;
  /** Entries kept in `cacheDir`, most recently used first. Default 4. */
  cacheEntries?: number;
}

/** What the served graph is made of, for the session cache: base weights, added modules, settings. */
interface GraphSource {
  config: XmodConfig;
  weights: WeightSource;
  /** SHA-256 of the checkpoint's files (computed once, only when a cache is used). */
  baseKey: string | undefined;
  /** Language-module weights added to the base, by name. */
  extra: ReadonlyMap<string, Weight>;
}

/**
 * Exports the weights to ONNX (quantized when asked) and opens a session on it, through the session
 * cache when one is configured. Returns whether the cache had it.
 */
async function compile(
  source: GraphSource,
  options: ServedModelOptions,
): Promise<{ onnx: OnnxModel; hit: boolean | undefined }> {
  const build = (): Uint8Array => {
    const exported = exportToOnnx({ config: source.config, weights: source.weights }).model;
    return options.quantize === 'int8' ? quantizeDynamicInt8(exported).model : exported;
  };
  const ortOptions = options.threads !== undefined ? { threads: options.threads } : {};
  if (options.cacheDir === undefined || source.baseKey === undefined)
    return { onnx: await OnnxModel.load(build(), ortOptions), hit: undefined };
  const key = new ModelCacheKey().json({
    base: source.baseKey,
    config: source.config,
    quantize: options.quantize ?? 'fp32',
  });
  for (const name of [...source.extra.keys()].sort()) {
    const w = source.extra.get(name) as Weight;
    key.json({ name, shape: w.shape }).bytes(w.data);
  }
  const { model, hit } = await loadCachedModel(key.digest(), build, options.cacheDir, {
    ...ortOptions,
    ...(options.cacheEntries !== undefined ? { maxEntries: options.cacheEntries } : {}),
  });
  return { onnx: model, hit };
}

/**
 * The model a server runs: a Hugging Face folder exported to ONNX at start, plus language modules
 * added from disk (at start or at run time), after which the graph is rebuilt and swapped in.
 */
export class ServedModel {
  readonly dir: string;
  config: XmodConfig;
  readonly head: HeadKind;
  private onnx: OnnxModel;
  private readonly base: WeightSource & { close(): void };
  private readonly extra = new Map<string, Weight>();
  private readonly options: ServedModelOptions;
  private readonly prefix: string;
  private readonly baseKey: string | undefined;
  /** Whether the last graph came from the session cache (undefined: no cache configured). */
  sessionFromCache: boolean | undefined;
  /** The language being added: additions run one at a time (each builds on the graph of the last). */
  private adding: Promise<unknown> = Promise.resolve();

  private constructor(
    dir: string,
    config: XmodConfig,
    base: WeightSource & { close(): void },
    onnx: OnnxModel,
    options: ServedModelOptions,
    baseKey: string | undefined,
    hit: boolean | undefined,
  ) {
    this.dir = dir;
    this.config = config;
    this.head = headFromArchitectures(config.architectures);
    this.base = base;
    this.onnx = onnx;
    this.options = options;
    this.baseKey = baseKey;
    this.sessionFromCache = hit;
    this.prefix = base.has('roberta.embeddings.word_embeddings.weight') ? 'roberta.' : '';
  }

  /**
   * Loads `dir` (config.json + model.safetensors or pytorch_model.bin, sharded or not) and every
   * `<lang>.safetensors` in `modulesDir`.
   */
  static async load(dir: string, options: ServedModelOptions = {}): Promise<ServedModel> {
    const config = readXmodConfig(dir);
    const base = checkpointWeights(dir);
    let baseKey: string | undefined;
    if (options.cacheDir !== undefined) {
      const key = new ModelCacheKey();
      for (const f of checkpointFiles(dir)) key.file(f);
      baseKey = key.digest();
    }
    const { onnx, hit } = await compile({ config, weights: base, baseKey, extra: new Map() }, options);
    const m = new ServedModel(dir, config, base, onnx, options, baseKey, hit);
    if (options.modulesDir !== undefined) {
      for (const f of readdirSync(options.modulesDir)
        .filter((x) => x.endsWith('.safetensors'))
        .sort()) {
        await m.addLanguage(path.basename(f, '.safetensors'), path.join(options.modulesDir, f));
      }
    }
    return m;
  }

  /** `int8` when the weight MatMuls run quantized; undefined for float32. */
  get quantize(): ServeQuantization | undefined {
    return this.options.quantize;
  }

  get languages(): string[] {
    return this.config.languages;
  }

  get defaultLanguage(): string | undefined {
    return this.config.default_language ?? this.languages[0];
  }

  get id2label(): Record<string, string> {
    return this.config.id2label ?? {};
  }

  get maxLength(): number {
    return this.config.max_position_embeddings - this.config.pad_token_id - 1;
  }

  /** Runs the current graph. */
  run(inputs: OnnxInputs): Promise<Record<string, OnnxOutput>> {
    return this.onnx.run(inputs);
  }

  /**
   * Adds (or replaces) language `code` from a safetensors file holding its module in every layer
   * (`roberta.encoder.layer.N.output.adapter_modules.<code>.dense{1,2}.{weight,bias}`, as xlt and
   * transformers save them), rebuilds the graph and swaps it in. Calls made at once run one after
   * the other, so that none loses another's language.
   */
  addLanguage(code: string, file: string): Promise<void> {
    const next = this.adding.then(() => this.addLanguageNow(code, file));
    this.adding = next.catch(() => undefined);
    return next;
  }

  private async addLanguageNow(code: string, file: string): Promise<void> {
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(code))
      throw new XltConfigError(`invalid language code '${code}'`, { field: 'code' });
    if (this.languages.length === 0)
      throw new XltConfigError('this model has no language modules (XLM-R): languages cannot be added');
    const r = SafetensorsReader.open(file);
    const loaded = new Map<string, Weight>();
    try {
      const H = this.config.hidden_size;
      const b = Math.floor(H / this.config.adapter_reduction_factor);
      const shapes = [[b, H], [b], [H, b], [H]];
      for (let l = 0; l < this.config.num_hidden_layers; l++) {
        moduleNames(this.prefix, l, code).forEach((n, k) => {
          const alt = n.startsWith('roberta.') ? n.slice('roberta.'.length) : `roberta.${n}`;
          const key = r.has(n) ? n : r.has(alt) ? alt : undefined;
          if (key === undefined)
            throw new XltNotFoundError('language module file lacks a weight', { file, tensor: n });
          const t = r.get(key);
          const want = shapes[k] as number[];
          if (t.shape.join(',') !== want.join(','))
            throw new XltShapeError('module weight has the wrong shape', {
              file,
              tensor: key,
              expected: want,
              got: t.shape,
            });
          loaded.set(n, { data: toFloat32(t), shape: t.shape });
        });
      }
    } finally {
      r.close();
    }
    const config: XmodConfig = {
      ...this.config,
      languages: this.languages.includes(code) ? this.languages : [...this.languages, code],
    };
    const extra = new Map([...this.extra, ...loaded]);
    const weights: WeightSource = {
      has: (n) => extra.has(n) || this.base.has(n),
      get: (n) => extra.get(n) ?? this.base.get(n),
    };
    const { onnx: next, hit } = await compile(
      { config, weights, baseKey: this.baseKey, extra },
      this.options,
    );
    const old = this.onnx;
    this.onnx = next;
    this.sessionFromCache = hit;
    this.config = config;
    for (const [k, v] of loaded) this.extra.set(k, v);
    // a batch may still be running on the old session: release it once that has had time to finish
    setTimeout(() => void old.release().catch(() => undefined), 30_000).unref();
  }

  async close(): Promise<void> {
    await this.onnx.release();
    this.base.close();
  }
}
