/** The model description every graph builder reads: the config, the head, the weights, live LoRA mixtures. */

import type { OieHeadConfig, XmodConfig } from '@xlt/core';

/**
 * @deprecated The model's config is `XmodConfig` of `@xlt/core` (also exported by `@xlt/xmod`):
 * one type for every engine. This alias is kept for existing code and will be removed.
 */
export type EncoderConfig = XmodConfig;

export type { OieHeadConfig, XmodConfig };

/** Which head the exported graph ends in. */
export type HeadKind =
  | 'base'
  | 'masked-lm'
  | 'sequence-classification'
  | 'token-classification'
  | 'question-answering'
  | 'open-ie';

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

/**
 * A mixture of LoRA experts on one linear module, kept live (as `@xlt/lora`'s `LoraMixtureLinear`):
 * y = base(x) + scaling * sum_i w_i B_i A_i x, with weights per example from the language
 * (`language`: one-hot of `lang_ids` over `languages`), a router softmax(W_r h) on the module's own
 * input at the first token or the mean over tokens (`router`; `topk` keeps the k largest logits), or
 * one learned softmax(mix_logits) (`static`). Weights: `<module>.base_layer.{weight,bias}`,
 * `<module>.experts.<lang>.lora_{A,B}.weight`, `<module>.router.weight` or `<module>.mix_logits`.
 */
export interface LoraMixtureSpec {
  mode: 'language' | 'router' | 'topk' | 'static';
  /** Expert names; their order is the `lang_ids` index for `language` routing. */
  languages: string[];
  scaling: number;
  /** Experts kept by `topk` (default 1). */
  k?: number;
  /** Router input (default `first`). */
  pooling?: 'first' | 'mean';
  /** Dropout on the experts' input in training graphs (default 0). */
  dropout?: number;
}
