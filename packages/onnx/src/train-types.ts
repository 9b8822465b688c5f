import type { HeadKind, LoraMixtureSpec, WeightSource, XmodConfig } from './model-types.js';

/** Options and results of compiled training graphs (see `buildTrainGraph` and `CompiledTrainStep`). */

/** Hyper-parameters baked into a compiled AdamW step (the learning rate and step are inputs). */
export interface AdamWSettings {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Parameters that get no weight decay (default: biases and LayerNorm weights). */
  noDecay?: (name: string) => boolean;
  /** Clip the global gradient norm to this (default: no clipping). */
  maxGradNorm?: number;
  /** Divide the moments by 1 - beta^step (default true, as torch.optim.AdamW; false is Hugging Face's `correct_bias=False`). */
  biasCorrection?: boolean;
}

/** Options of `buildTrainGraph`: a training step of a model with a head, for any batch shape. */
export interface TrainGraphOptions {
  config: XmodConfig;
  /** Values of every parameter (frozen ones are baked in as initializers; trainable ones only give shapes). */
  weights: WeightSource;
  head: HeadKind;
  /** Hugging Face names of the parameters that train. */
  trainable: string[];
  /** `grads`: output raw gradients (for checks); `adamw`: output updated parameters and optimizer state. */
  mode: 'grads' | 'adamw';
  adamw?: AdamWSettings;
  /**
   * Live LoRA: module name (e.g. `roberta.encoder.layer.0.attention.self.query`) -> scaling. The
   * weight source must hold `<module>.lora_A.weight` [r, in] and `<module>.lora_B.weight` [out, r]
   * (see `peftAdapterWeights`); y = x W^T + b + scaling * (x A^T) B^T.
   */
  lora?: Map<string, number>;
  /** Live LoRA mixtures with routers, by module name (see {@link LoraMixtureSpec}). */
  loraMixtures?: Map<string, LoraMixtureSpec>;
  /**
   * Embedding mixup (soft code-switching): adds inputs `mix_ids` [B, S, K] (candidate tokens),
   * `mix_probs` [B, S, K] (their weights, rows summing to 1) and `mix_lambda` [B, S] (0 where a
   * position is not mixed); the word embedding becomes (1 - l) E[id] + l sum_k p_k E[mix_k].
   */
  embeddingMixup?: boolean;
  /**
   * SALT-style objective (sequence or token classification): the batch holds 2B rows, the originals
   * then their augmented versions; loss = task(originals) + augWeight task(augmented) + klWeight
   * KL(p(originals) || p(augmented)).
   */
  salt?: { augWeight?: number; klWeight?: number };
  /**
   * Apply the config's dropout (`hidden_dropout_prob`, `attention_probs_dropout_prob`,
   * `classifier_dropout`) where transformers applies it in training mode (default true). The graph
   * then has an int64 scalar input `dropout_seed`; a step's masks depend only on it.
   */
  dropout?: boolean;
}

/** Graph inputs and outputs of a compiled train step, by role. */
export interface TrainGraphSignature {
  /** Batch inputs (`input_ids`, `attention_mask`, `lang_ids`?, and the head's labels). */
  batch: string[];
  /** With `frozenAsInputs`: the frozen parameters fed as graph inputs (`frozen:<name>`). */
  frozen?: Array<{ name: string; shape: number[]; input: string }>;
  /** Per trainable parameter: its graph input and (adamw) the m/v inputs and the three outputs. */
  params: Array<{
    name: string;
    shape: number[];
    input: string;
    grad?: string;
    /**
     * `rowGradients`: the gradient as rows (`grad_rows:<name>`) of the table rows `grad_ids:<name>`;
     * with `grad` too (a tied table), the whole gradient is `grad` plus the rows.
     */
    gradRows?: string;
    /** `gradBlockElements`: the dense gradient as row blocks (outputs in row order) instead of `grad`. */
    gradBlocks?: Array<{ output: string; rows: number }>;
    gradIds?: string;
    m?: string;
    v?: string;
    newParam?: string;
    newM?: string;
    newV?: string;
  }>;
}

/** The parameters AdamW does not decay by default: biases and LayerNorm weights. */
export const defaultNoDecay = (name: string): boolean =>
  name.endsWith('.bias') || /LayerNorm|layer_norm/.test(name);

/** A compiled train step: the ONNX bytes and what its inputs and outputs mean. */
export interface TrainGraph {
  model: Uint8Array;
  signature: TrainGraphSignature;
}
