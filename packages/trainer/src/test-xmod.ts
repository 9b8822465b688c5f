// Test helper (not exported from the package): tiny @xlt/xmod masked-LM models with seeded weights.
import { Rng } from '@xlt/core';
import { normalInit, XmodForMaskedLM } from '@xlt/xmod';

/** A tiny X-Mod MLM config (dropout 0, so training is deterministic); fields can be overridden. */
export function tinyXmodConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'xmod',
    vocab_size: 40,
    hidden_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 40,
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    languages: ['en_XX', 'de_DE', 'ru_RU'],
    default_language: 'en_XX',
    initializer_range: 0.1,
    ...over,
  };
}

/**
 * `XmodForMaskedLM` whose weight matrices are redrawn from `Rng(seed)` (the constructor's own
 * initialisation is not seeded): the same seed gives bit-identical models.
 */
export function seededXmod(config: Record<string, unknown>, seed: number): XmodForMaskedLM {
  const model = new XmodForMaskedLM(config);
  const rng = new Rng(seed);
  const std = model.config.initializer_range;
  for (const [name, p] of model.namedParameters()) {
    if (/LayerNorm|layer_norm/.test(name) || name.endsWith('.bias')) continue;
    const t = normalInit(p.shape, std, rng);
    p.assign(t);
    t.dispose();
  }
  return model;
}
