/** The model description every graph builder reads: the config, the head, the weights, live LoRA mixtures. */

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
  /** Dropout probabilities (used by training graphs only). */
  hidden_dropout_prob?: number;
  attention_probs_dropout_prob?: number;
  classifier_dropout?: number | null;
  /** The two-step Open IE head (Multi2OIE): predicate tagger + argument extractor. */
  oie?: OieHeadConfig;
}

/** Sizes of the Open IE head (defaults as Multi2OIE: 64, 4, 8, 2048). */
export interface OieHeadConfig {
  pos_emb_dim?: number;
  n_arg_layers?: number;
  n_arg_heads?: number;
  d_feedforward?: number;
}

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
