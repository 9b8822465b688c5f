import { XltConfigError } from '@xlt/core';

/** The fields of a Hugging Face `XmodConfig` / `XLMRobertaConfig` that xlt uses (snake_case as in `config.json`). */
export interface XmodConfig {
  model_type: 'xmod' | 'xlm-roberta' | 'roberta';
  vocab_size: number;
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  hidden_act: string;
  hidden_dropout_prob: number;
  attention_probs_dropout_prob: number;
  max_position_embeddings: number;
  type_vocab_size: number;
  layer_norm_eps: number;
  pad_token_id: number;
  initializer_range: number;
  classifier_dropout: number | null;
  /** X-Mod only (empty for XLM-R). */
  languages: string[];
  default_language: string | null;
  pre_norm: boolean;
  adapter_reduction_factor: number;
  adapter_layer_norm: boolean;
  adapter_reuse_layer_norm: boolean;
  ln_before_adapter: boolean;
  num_labels?: number;
  problem_type?: string | null;
  id2label?: Record<string, string>;
  label2id?: Record<string, number>;
  /** Any other field of `config.json`, written back unchanged. */
  [key: string]: unknown;
}

const DEFAULTS: Omit<XmodConfig, 'model_type'> = {
  vocab_size: 250002,
  hidden_size: 768,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  intermediate_size: 3072,
  hidden_act: 'gelu',
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  max_position_embeddings: 514,
  type_vocab_size: 1,
  layer_norm_eps: 1e-5,
  pad_token_id: 1,
  initializer_range: 0.02,
  classifier_dropout: null,
  languages: [],
  default_language: null,
  pre_norm: false,
  adapter_reduction_factor: 2,
  adapter_layer_norm: false,
  adapter_reuse_layer_norm: true,
  ln_before_adapter: true,
};

/** Fills defaults (as transformers' config classes do) and validates a raw `config.json` object. */
export function normalizeConfig(raw: Record<string, unknown>, file?: string): XmodConfig {
  const modelType = raw.model_type ?? 'xmod';
  if (modelType !== 'xmod' && modelType !== 'xlm-roberta' && modelType !== 'roberta') {
    throw new XltConfigError(
      `unsupported model_type ${JSON.stringify(modelType)} (expected xmod or xlm-roberta)`,
      {
        ...(file !== undefined ? { file } : {}),
        field: 'model_type',
      },
    );
  }
  const cfg = { ...DEFAULTS, ...raw, model_type: modelType } as XmodConfig;
  if (modelType !== 'xmod') cfg.languages = [];
  cfg.languages = [...cfg.languages];
  const loc = (field: string) => ({ ...(file !== undefined ? { file } : {}), field });
  for (const f of [
    'vocab_size',
    'hidden_size',
    'num_hidden_layers',
    'num_attention_heads',
    'intermediate_size',
    'max_position_embeddings',
    'type_vocab_size',
  ] as const) {
    const v = cfg[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0)
      throw new XltConfigError(`${f} must be a positive integer, got ${JSON.stringify(v)}`, loc(f));
  }
  if (cfg.hidden_size % cfg.num_attention_heads !== 0)
    throw new XltConfigError(
      `hidden_size ${cfg.hidden_size} is not a multiple of num_attention_heads ${cfg.num_attention_heads}`,
      loc('num_attention_heads'),
    );
  if (cfg.hidden_act !== 'gelu')
    throw new XltConfigError(
      `only hidden_act "gelu" is supported, got ${JSON.stringify(cfg.hidden_act)}`,
      loc('hidden_act'),
    );
  if (!Array.isArray(cfg.languages) || cfg.languages.some((l) => typeof l !== 'string'))
    throw new XltConfigError('languages must be a list of strings', loc('languages'));
  if (cfg.default_language !== null && cfg.default_language !== undefined && modelType === 'xmod') {
    if (!cfg.languages.includes(cfg.default_language))
      throw new XltConfigError(
        `default_language ${cfg.default_language} is not in languages`,
        loc('default_language'),
      );
  }
  if (modelType !== 'xmod') cfg.default_language = null;
  return cfg;
}
