import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { XltConfigError, XltFormatError, XltNotFoundError } from './errors.js';

/** Sizes of the Open IE head (Multi2OIE), stored as `oie` in `config.json`. */
export interface OieHeadConfig {
  /** Position embedding size. */
  pos_emb_dim?: number;
  /** Argument-extractor layers. */
  n_arg_layers?: number;
  /** Attention heads of those layers. */
  n_arg_heads?: number;
  /** Their feed-forward size. */
  d_feedforward?: number;
}

/**
 * The one config type of an X-Mod / XLM-R model, for every engine (tfjs modules, ONNX export and
 * compiled training, the server): the fields of a Hugging Face `XmodConfig` / `XLMRobertaConfig`
 * that xlt uses, snake_case as in `config.json`, with transformers' defaults filled in by
 * {@link normalizeConfig} (so no reader of it needs defaults of its own).
 */
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
  /** The head class, e.g. `XmodForMaskedLM` (picks the head of an export). */
  architectures?: string[];
  num_labels?: number;
  problem_type?: string | null;
  id2label?: Record<string, string>;
  label2id?: Record<string, number>;
  /** The two-step Open IE head (Multi2OIE): predicate tagger + argument extractor. */
  oie?: OieHeadConfig;
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

const POSITIVE_INTEGERS = [
  'vocab_size',
  'hidden_size',
  'num_hidden_layers',
  'num_attention_heads',
  'intermediate_size',
  'max_position_embeddings',
  'type_vocab_size',
] as const;

/**
 * Fills defaults (as transformers' config classes do) and validates a raw `config.json` object;
 * X-Mod-only fields (languages, pre-norm, adapter LayerNorm) are cleared for XLM-R. Idempotent: a
 * normalized config comes back equal. `file` names the file in errors.
 */
export function normalizeConfig(raw: Record<string, unknown>, file?: string): XmodConfig {
  const loc = (field: string) => ({ ...(file !== undefined ? { file } : {}), field });
  const modelType = raw.model_type ?? 'xmod';
  if (modelType !== 'xmod' && modelType !== 'xlm-roberta' && modelType !== 'roberta') {
    throw new XltConfigError(
      `unsupported model_type ${JSON.stringify(modelType)} (expected xmod or xlm-roberta)`,
      loc('model_type'),
    );
  }
  const cfg = { ...DEFAULTS, ...raw, model_type: modelType } as XmodConfig;
  if (modelType !== 'xmod') cfg.languages = [];
  cfg.languages = Array.isArray(cfg.languages) ? [...cfg.languages] : cfg.languages;
  for (const f of POSITIVE_INTEGERS) {
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
  if (modelType !== 'xmod') {
    // X-Mod-only fields: transformers' XLMRobertaConfig has none of them
    cfg.default_language = null;
    cfg.pre_norm = false;
    cfg.adapter_layer_norm = false;
  }
  return cfg;
}

/**
 * Reads `config.json` from a Hugging Face model folder and normalizes it ({@link normalizeConfig}),
 * `overrides` applied first. The one reader every engine uses.
 */
export function readXmodConfig(dir: string, overrides: Partial<XmodConfig> = {}): XmodConfig {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new XltNotFoundError('config.json not found in the model folder', { file });
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new XltFormatError(`config.json is not valid JSON: ${(cause as Error).message}`, { file, cause });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new XltFormatError('config.json must hold a JSON object', { file });
  return normalizeConfig({ ...(raw as Record<string, unknown>), ...overrides }, file);
}

/** Labels of a classification head: `num_labels`, else the size of `id2label`, else 2 (as transformers). */
export function labelCount(cfg: XmodConfig): number {
  return cfg.num_labels ?? (cfg.id2label !== undefined ? Object.keys(cfg.id2label).length : 2);
}

/** The Open IE head's sizes with Multi2OIE's defaults (64, 4 layers, 8 heads, 2048). */
export function oieHeadSizes(cfg: XmodConfig): Required<OieHeadConfig> {
  const o = cfg.oie ?? {};
  return {
    pos_emb_dim: o.pos_emb_dim ?? 64,
    n_arg_layers: o.n_arg_layers ?? 4,
    n_arg_heads: o.n_arg_heads ?? 8,
    d_feedforward: o.d_feedforward ?? 2048,
  };
}
