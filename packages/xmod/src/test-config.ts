import type { XmodConfig } from '@xlt/core';

/** A tiny X-Mod config; every test overrides the adapter flags it checks. */
export function tinyConfig(over: Partial<XmodConfig> = {}): Record<string, unknown> {
  return {
    model_type: 'xmod',
    vocab_size: 20,
    hidden_size: 8,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 16,
    max_position_embeddings: 20,
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    languages: ['en_XX', 'de_DE'],
    default_language: 'en_XX',
    initializer_range: 0.5,
    ...over,
  };
}
