import { readFileSync } from 'node:fs';
import {
  normalizeConfig,
  openCheckpoint,
  readXmodConfig,
  SafetensorsReader,
  type TensorReader,
  type TokenBatch,
  toFloat32,
  XltConfigError,
  XltFormatError,
  XltNotFoundError,
} from '@xlt/core';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import type { HeadKind, Weight, WeightSource, XmodConfig } from './export.js';

const { onnx } = onnxProto;

/** Reads weights lazily from an open checkpoint reader (converting F16/BF16 and integers to float32). */
export function readerWeights(r: TensorReader): WeightSource & { close(): void } {
  return {
    has: (n) => r.has(n),
    get: (n): Weight => {
      const t = r.get(n);
      return { data: toFloat32(t), shape: t.shape };
    },
    close: () => r.close(),
  };
}

/** Reads weights lazily from a `model.safetensors` file (converting F16/BF16 to float32). */
export function safetensorsWeights(file: string): WeightSource & { close(): void } {
  return readerWeights(SafetensorsReader.open(file));
}

/**
 * Reads weights lazily from a Hugging Face model folder: `model.safetensors`, sharded safetensors,
 * `pytorch_model.bin` or sharded `.bin`, whichever is there first (see `openCheckpoint` of @xlt/core).
 */
export function checkpointWeights(dir: string): WeightSource & { close(): void } {
  return readerWeights(openCheckpoint(dir));
}

/**
 * Reads, checks and normalizes a Hugging Face `config.json`.
 * @deprecated Use `readXmodConfig` of `@xlt/core` (the same function: one config reader for every engine).
 */
export const readEncoderConfig: (dir: string) => XmodConfig = readXmodConfig;

/** onnxruntime session options from xlt's: all graph optimisations, the providers and thread count asked for. */
export function sessionOptions(options: OnnxModelOptions): ort.InferenceSession.SessionOptions {
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: (options.executionProviders ?? [
      'cpu',
    ]) as ort.InferenceSession.ExecutionProviderConfig[],
    graphOptimizationLevel: 'all',
    // errors only: onnxruntime's optimiser notices (e.g. removed unused initializers) are not the user's concern
    logSeverityLevel: 3,
  };
  if (options.threads !== undefined) so.intraOpNumThreads = options.threads;
  return so;
}

/**
 * Inputs of {@link OnnxModel.run}: `@xlt/core`'s `TokenBatch` fields for inference, where token ids
 * and mask may also be flat typed arrays with the batch shape and languages may be codes.
 */
export interface OnnxInputs extends Pick<TokenBatch, 'predMask' | 'predPosition'> {
  inputIds: number[][] | { data: BigInt64Array | Int32Array | number[]; dims: [number, number] };
  attentionMask?: number[][] | { data: BigInt64Array | Int32Array | number[]; dims: [number, number] };
  /** Language per example: an index into the model's languages, or a code. Default: the default language. */
  langIds?: Array<number | string>;
}

/** One output array with its dimensions. */
export interface OnnxOutput {
  data: Float32Array;
  dims: number[];
}

export interface OnnxModelOptions {
  /** Intra-op threads (default: onnxruntime's choice, all cores). */
  threads?: number;
  /** Execution providers, e.g. ['cuda', 'cpu'] where the CUDA build is installed. Default ['cpu']. */
  executionProviders?: string[];
}

function toBigInt64(
  x: OnnxInputs['inputIds'],
  what: string,
): { data: BigInt64Array; dims: [number, number] } {
  if (Array.isArray(x)) {
    const b = x.length;
    const s = x[0]?.length ?? 0;
    const data = new BigInt64Array(b * s);
    x.forEach((row, i) => {
      if (row.length !== s)
        throw new XltConfigError(`${what} rows must all have length ${s}; row ${i} has ${row.length}`, {
          field: what,
        });
      row.forEach((v, j) => {
        data[i * s + j] = BigInt(v);
      });
    });
    return { data, dims: [b, s] };
  }
  const d =
    x.data instanceof BigInt64Array ? x.data : BigInt64Array.from(Array.from(x.data, (v) => BigInt(v)));
  return { data: d, dims: x.dims };
}

/**
 * Runs an exported xlt ONNX model with onnxruntime-node. Same inputs as the tfjs models
 * (`inputIds`, `attentionMask`, `langIds`), outputs as float32 arrays with dims.
 */
export class OnnxModel {
  readonly session: ort.InferenceSession;
  readonly head: HeadKind;
  readonly languages: string[];
  readonly defaultLanguage: string | undefined;
  readonly id2label: Record<string, string>;
  readonly config: XmodConfig;

  private constructor(session: ort.InferenceSession, meta: Record<string, string>) {
    this.session = session;
    this.head = (meta['xlt.head'] ?? 'base') as HeadKind;
    this.languages = JSON.parse(meta['xlt.languages'] ?? '[]') as string[];
    this.defaultLanguage = meta['xlt.default_language'] || undefined;
    this.id2label = JSON.parse(meta['xlt.id2label'] ?? '{}') as Record<string, string>;
    // models exported before the config was normalized at export carry a partial config
    this.config = normalizeConfig(JSON.parse(meta['xlt.config'] ?? '{}') as Record<string, unknown>);
  }

  /** Loads a model from a file (external weights are found beside it) or from bytes. */
  static load(model: string | Uint8Array, options: OnnxModelOptions = {}): Promise<OnnxModel> {
    return OnnxModel.open(model, sessionOptions(options));
  }

  /**
   * {@link load} with onnxruntime's session options as given (e.g. to save the optimised graph).
   * @internal
   */
  static async open(model: string | Uint8Array, so: ort.InferenceSession.SessionOptions): Promise<OnnxModel> {
    let session: ort.InferenceSession;
    try {
      session =
        typeof model === 'string'
          ? await ort.InferenceSession.create(model, so)
          : await ort.InferenceSession.create(model, so);
    } catch (cause) {
      throw new XltFormatError(`onnxruntime could not load the model: ${(cause as Error).message}`, {
        ...(typeof model === 'string' ? { file: model } : {}),
        cause,
      });
    }
    const meta = readMetadata(typeof model === 'string' ? readFileSync(model) : model);
    return new OnnxModel(session, meta);
  }

  /** Index of a language given as a code or index. */
  languageIndex(lang: number | string): number {
    if (typeof lang === 'number') {
      if (!Number.isInteger(lang) || lang < 0 || lang >= this.languages.length) {
        throw new XltNotFoundError(`language index ${lang} out of range 0..${this.languages.length - 1}`, {
          field: 'langIds',
        });
      }
      return lang;
    }
    const i = this.languages.indexOf(lang);
    if (i < 0)
      throw new XltNotFoundError(`unknown language '${lang}'; the model has ${this.languages.join(', ')}`, {
        field: 'langIds',
      });
    return i;
  }

  /** Runs the model; returns every output by name. */
  async run(inputs: OnnxInputs): Promise<Record<string, OnnxOutput>> {
    const ids = toBigInt64(inputs.inputIds, 'inputIds');
    const [b, s] = ids.dims;
    const mask =
      inputs.attentionMask !== undefined
        ? toBigInt64(inputs.attentionMask, 'attentionMask')
        : { data: new BigInt64Array(b * s).fill(1n), dims: ids.dims };
    if (mask.dims[0] !== b || mask.dims[1] !== s) {
      throw new XltConfigError(`attentionMask dims [${mask.dims}] differ from inputIds dims [${ids.dims}]`, {
        field: 'attentionMask',
      });
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids.data, ids.dims),
      attention_mask: new ort.Tensor('int64', mask.data, mask.dims),
    };
    if (this.languages.length > 0) {
      const def = this.defaultLanguage !== undefined ? this.languages.indexOf(this.defaultLanguage) : 0;
      const langs = inputs.langIds ?? new Array<number>(b).fill(Math.max(def, 0));
      if (langs.length !== b)
        throw new XltConfigError(`langIds has ${langs.length} entries for a batch of ${b}`, {
          field: 'langIds',
        });
      feeds.lang_ids = new ort.Tensor(
        'int64',
        BigInt64Array.from(langs.map((l) => BigInt(this.languageIndex(l)))),
        [b],
      );
    }
    if (this.head === 'open-ie') {
      for (const [k, name] of [
        ['predMask', 'pred_mask'],
        ['predPosition', 'pred_position'],
      ] as const) {
        const rows = inputs[k];
        if (rows === undefined)
          throw new XltConfigError(`the Open IE model needs ${k} (the predicate of each row)`, { field: k });
        const t = toBigInt64(rows, k);
        if (t.dims[0] !== b || t.dims[1] !== s)
          throw new XltConfigError(`${k} dims [${t.dims}] differ from inputIds dims [${ids.dims}]`, {
            field: k,
          });
        feeds[name] = new ort.Tensor('int64', t.data, t.dims);
      }
    }
    const out = await this.session.run(feeds);
    const result: Record<string, OnnxOutput> = {};
    for (const [k, v] of Object.entries(out)) {
      result[k] = { data: v.data as Float32Array, dims: [...v.dims] };
      v.dispose?.();
    }
    return result;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Reads the model's `metadata_props` (onnxruntime-node does not expose custom metadata). */
function readMetadata(bytes: Uint8Array): Record<string, string> {
  const m = onnx.ModelProto.decode(bytes);
  const out: Record<string, string> = {};
  for (const p of m.metadataProps) if (p.key) out[p.key] = p.value ?? '';
  return out;
}
