import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic, XltConfigError } from '@xlt/core';
import {
  checkpointWeights,
  type EncoderConfig,
  exportToOnnx,
  type LoraMixtureSpec,
  OnnxModel,
  readEncoderConfig,
  type WeightSource,
} from '@xlt/onnx';
import type { XltTokenizer } from '@xlt/tokenizer';
import type { OieBatch } from './features.js';

/**
 * An exported Open IE model (encoder + two-step head) run by onnxruntime, with its tokenizer.
 * Inputs of the graph: `input_ids`, `attention_mask`, `pred_mask`, `pred_position`; outputs
 * `pred_logits` [B, S, 3] and `arg_logits` [B, S, 9].
 */
export class OieModel {
  readonly bytes: Uint8Array;
  readonly config: EncoderConfig;
  readonly tokenizer: XltTokenizer;
  readonly maxLength: number;
  private readonly onnx: OnnxModel;

  private constructor(
    onnx: OnnxModel,
    bytes: Uint8Array,
    config: EncoderConfig,
    tokenizer: XltTokenizer,
    maxLength: number,
  ) {
    this.onnx = onnx;
    this.bytes = bytes;
    this.config = config;
    this.tokenizer = tokenizer;
    this.maxLength = maxLength;
  }

  /** Exports weights to ONNX (head `open-ie`) and opens the graph. */
  static async fromWeights(options: {
    config: EncoderConfig;
    weights: WeightSource;
    tokenizer: XltTokenizer;
    maxLength?: number;
    threads?: number;
    /** A LoRA mixture kept live in the exported graph. */
    loraMixtures?: Map<string, LoraMixtureSpec>;
  }): Promise<OieModel> {
    const { model } = exportToOnnx({
      config: options.config,
      weights: options.weights,
      head: 'open-ie',
      ...(options.loraMixtures !== undefined ? { loraMixtures: options.loraMixtures } : {}),
    });
    return OieModel.fromBytes(model, options.tokenizer, options);
  }

  /** Opens exported bytes (from {@link OieModel.save} or `exportToOnnx` with head `open-ie`). */
  static async fromBytes(
    bytes: Uint8Array,
    tokenizer: XltTokenizer,
    options: { maxLength?: number; threads?: number } = {},
  ): Promise<OieModel> {
    const onnx = await OnnxModel.load(
      bytes,
      options.threads !== undefined ? { threads: options.threads } : {},
    );
    if (!onnx.session.outputNames.includes('arg_logits')) {
      await onnx.release();
      throw new XltConfigError('the ONNX model has no arg_logits output (not an open-ie export)', {
        field: 'head',
      });
    }
    const config = onnx.config;
    const maxLength =
      options.maxLength ??
      ((config as { max_position_embeddings?: number }).max_position_embeddings ?? 514) - 2;
    return new OieModel(onnx, bytes, config, tokenizer, maxLength);
  }

  /**
   * Opens a Hugging Face-style model folder (`config.json` + `model.safetensors` or
   * `pytorch_model.bin`, sharded or not) of an Open IE model, e.g. an `XmodForOpenIE` trained with
   * `@xlt/trainer` and saved with `savePretrained`.
   */
  static async fromPretrained(
    dir: string,
    tokenizer: XltTokenizer,
    options: { maxLength?: number; threads?: number } = {},
  ): Promise<OieModel> {
    const config = readEncoderConfig(dir);
    if (!(config.architectures ?? []).some((a) => a.endsWith('ForOpenIE')))
      throw new XltConfigError(
        `not an Open IE model (architectures ${JSON.stringify(config.architectures ?? [])})`,
        { file: path.join(dir, 'config.json'), field: 'architectures' },
      );
    const weights = checkpointWeights(dir);
    try {
      return await OieModel.fromWeights({ config, weights, tokenizer, ...options });
    } finally {
      weights.close();
    }
  }

  /** Loads a model written by {@link OieModel.save}. */
  static async load(
    file: string,
    tokenizer: XltTokenizer,
    options: { threads?: number } = {},
  ): Promise<OieModel> {
    return OieModel.fromBytes(new Uint8Array(await readFile(file)), tokenizer, options);
  }

  /** Writes the ONNX file (config in its metadata). */
  save(file: string): void {
    writeFileAtomic(file, this.bytes);
  }

  /** Runs the graph on a padded batch; returns the logits. */
  async run(
    batch: Pick<OieBatch, 'inputIds' | 'attentionMask' | 'predMask' | 'predPosition'> & {
      /** X-Mod models: one language (code or index) per row (default: the config's default language). */
      langIds?: Array<number | string>;
    },
  ): Promise<{
    pred: Float32Array;
    arg: Float32Array;
    dims: [number, number];
  }> {
    const out = await this.onnx.run({
      inputIds: batch.inputIds,
      attentionMask: batch.attentionMask,
      predMask: batch.predMask,
      predPosition: batch.predPosition,
      ...(batch.langIds !== undefined ? { langIds: batch.langIds } : {}),
    });
    const dims: [number, number] = [batch.inputIds.length, batch.inputIds[0]?.length ?? 0];
    return {
      pred: (out.pred_logits as { data: Float32Array }).data,
      arg: (out.arg_logits as { data: Float32Array }).data,
      dims,
    };
  }

  async release(): Promise<void> {
    await this.onnx.release();
  }
}
