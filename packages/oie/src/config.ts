import path from 'node:path';
import { normalizeConfig, XltConfigError } from '@xlt/core';
import {
  checkpointWeights,
  type EncoderConfig,
  randomWeights,
  readEncoderConfig,
  type WeightSource,
} from '@xlt/onnx';

/** Sizes of a model trained from scratch (defaults: a tiny model for CPU tests). */
export interface OieModelSize {
  /** Default 64. */
  hiddenSize?: number;
  /** Default 2. */
  numLayers?: number;
  /** Default 4. */
  numHeads?: number;
  /** Default 4 x hiddenSize. */
  intermediateSize?: number;
  /** Longest input in tokens, specials included (default 128). */
  maxLength?: number;
  /** Head sizes (default: pos_emb_dim 32, 1 argument layer, 4 heads, feed-forward 4 x hidden). */
  oie?: NonNullable<EncoderConfig['oie']>;
}

/** The head sizes of `size.oie` with this package's defaults for a hidden size. */
function headConfig(hidden: number, o: OieModelSize['oie'] = {}): NonNullable<EncoderConfig['oie']> {
  return {
    pos_emb_dim: o.pos_emb_dim ?? 32,
    n_arg_layers: o.n_arg_layers ?? 1,
    n_arg_heads: o.n_arg_heads ?? 4,
    d_feedforward: o.d_feedforward ?? 4 * hidden,
  };
}

/** An XLM-R-style encoder config with the Open IE head for a tokenizer's vocabulary. */
export function oieConfig(vocabSize: number, size: OieModelSize = {}): EncoderConfig {
  const H = size.hiddenSize ?? 64;
  return normalizeConfig({
    model_type: 'xlm-roberta',
    architectures: ['XLMRobertaForOpenIE'],
    vocab_size: vocabSize,
    hidden_size: H,
    num_hidden_layers: size.numLayers ?? 2,
    num_attention_heads: size.numHeads ?? 4,
    intermediate_size: size.intermediateSize ?? 4 * H,
    layer_norm_eps: 1e-5,
    pad_token_id: 1,
    type_vocab_size: 1,
    max_position_embeddings: (size.maxLength ?? 128) + 2,
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    oie: headConfig(H, size.oie),
  });
}

/** The longest input (tokens, specials included) a config's position table allows. */
export function maxInputLength(config: EncoderConfig, fallback = 130): number {
  return ((config as { max_position_embeddings?: number }).max_position_embeddings ?? fallback) - 2;
}

/**
 * Config and weights of an Open IE model whose encoder comes from a pre-trained model folder
 * (`config.json` + checkpoint, XLM-R layout or X-Mod, `roberta.`-prefixed or bare names): the
 * encoder tensors as they are, a fresh head (sizes from `head`, initialised as transformers does).
 */
export function pretrainedEncoder(
  dir: string,
  options: { vocabSize: number; head?: OieModelSize['oie']; seed: number },
): { config: EncoderConfig; weights: WeightSource & { names(): string[]; close(): void } } {
  const raw = readEncoderConfig(dir);
  if (raw.vocab_size !== options.vocabSize)
    throw new XltConfigError(
      `the encoder's vocab_size ${raw.vocab_size} differs from the tokenizer's ${options.vocabSize}`,
      { file: path.join(dir, 'config.json'), field: 'vocab_size' },
    );
  const config: EncoderConfig = {
    ...raw,
    architectures: [raw.model_type === 'xmod' ? 'XmodForOpenIE' : 'XLMRobertaForOpenIE'],
    oie: headConfig(raw.hidden_size, options.head),
  };
  const ckpt = checkpointWeights(dir);
  const prefixed = ckpt.has('roberta.embeddings.word_embeddings.weight');
  const fresh = randomWeights(config, 'open-ie', options.seed, 0.02, 'hf');
  // encoder tensors by their `roberta.` name from the checkpoint (bare base-model names too); head new
  const fromCkpt = (n: string) => (prefixed ? n : n.replace(/^roberta\./, ''));
  try {
    if (!prefixed && !ckpt.has('embeddings.word_embeddings.weight'))
      throw new XltConfigError('the checkpoint has no embeddings.word_embeddings.weight', { file: dir });
    for (const n of fresh.names()) {
      if (n.startsWith('roberta.') && !ckpt.has(fromCkpt(n)))
        throw new XltConfigError(`the checkpoint lacks encoder tensor ${fromCkpt(n)}`, {
          file: dir,
          tensor: fromCkpt(n),
        });
    }
  } catch (e) {
    ckpt.close();
    throw e;
  }
  return {
    config,
    weights: {
      names: () => fresh.names(),
      has: (n) => fresh.has(n),
      get: (n) => (n.startsWith('roberta.') ? ckpt.get(fromCkpt(n)) : fresh.get(n)),
      close: () => ckpt.close(),
    },
  };
}
