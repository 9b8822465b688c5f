import * as tf from '@tensorflow/tfjs-core';
import { XltShapeError, type XmodConfig } from '@xlt/core';
import { dropout, Embedding, LayerNorm } from './nn/layers.js';
import { Module } from './nn/module.js';

/** The embeddings of the encoder (`roberta.embeddings.*`): word, position and token type, LayerNorm. */

/**
 * Rows `ids` of `weight` [V, d]. Same value and gradient as `tf.gather`, but the gradient is a direct
 * scatter-add (O(n·d)) instead of tfjs-cpu's UnsortedSegmentSum, which costs O(V·n·d) on big vocabularies.
 */
export function embeddingLookup(weight: tf.Tensor, ids: Int32Array, shape: number[]): tf.Tensor {
  const [v, d] = weight.shape as [number, number];
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const w = args[0] as tf.Tensor;
    const value = tf.reshape(tf.gather(w, tf.tensor1d(ids, 'int32')), [...shape, d]);
    const gradFunc = (dy: tf.Tensor) => {
      const g = new Float32Array(v * d);
      const dyv = dy.dataSync();
      for (let i = 0; i < ids.length; i++) {
        const row = (ids[i] ?? 0) * d;
        const off = i * d;
        for (let j = 0; j < d; j++) g[row + j] = (g[row + j] ?? 0) + (dyv[off + j] ?? 0);
      }
      return tf.tensor2d(g, [v, d]);
    };
    return { value, gradFunc };
  });
  return f(weight);
}

/** `XmodEmbeddings`: positions as transformers derives them from the padding. */
export class XmodEmbeddings extends Module {
  word_embeddings: Embedding;
  position_embeddings: Embedding;
  token_type_embeddings: Embedding;
  LayerNorm: LayerNorm;
  constructor(private readonly cfg: XmodConfig) {
    super();
    const std = cfg.initializer_range;
    this.word_embeddings = this.registerModule(
      'word_embeddings',
      new Embedding(cfg.vocab_size, cfg.hidden_size, { std }),
    );
    this.position_embeddings = this.registerModule(
      'position_embeddings',
      new Embedding(cfg.max_position_embeddings, cfg.hidden_size, { std }),
    );
    this.token_type_embeddings = this.registerModule(
      'token_type_embeddings',
      new Embedding(cfg.type_vocab_size, cfg.hidden_size, { std }),
    );
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
  }
  apply(ids: Int32Array, shape: [number, number], tokenTypes: Int32Array | null): tf.Tensor {
    const [b, t] = shape;
    const pad = this.cfg.pad_token_id;
    // transformers' create_position_ids_from_input_ids: cumsum of the non-pad mask, offset by padding_idx.
    const pos = new Int32Array(b * t);
    for (let i = 0; i < b; i++) {
      let c = 0;
      for (let j = 0; j < t; j++) {
        const k = i * t + j;
        if (ids[k] !== pad) {
          c++;
          pos[k] = c + pad;
        } else pos[k] = pad;
        if ((pos[k] ?? 0) >= this.cfg.max_position_embeddings)
          throw new XltShapeError(
            `sequence too long: position ${pos[k]} >= max_position_embeddings ${this.cfg.max_position_embeddings}`,
            { field: 'inputIds' },
          );
      }
    }
    for (let k = 0; k < ids.length; k++) {
      const v = ids[k] ?? 0;
      if (v < 0 || v >= this.cfg.vocab_size)
        throw new XltShapeError(`token id ${v} outside the vocabulary [0, ${this.cfg.vocab_size})`, {
          field: 'inputIds',
        });
    }
    return tf.tidy(() => {
      const words = this.word_embeddings;
      // a wrapped table (e.g. @xlt/lora's embedding LoRA) runs its own forward over the ids
      const w =
        words instanceof Embedding
          ? embeddingLookup(words.weight, ids, shape)
          : (words as { apply(ids: tf.Tensor): tf.Tensor }).apply(tf.tensor(ids, shape, 'int32'));
      const p = embeddingLookup(this.position_embeddings.weight, pos, shape);
      const tt = embeddingLookup(
        this.token_type_embeddings.weight,
        tokenTypes ?? new Int32Array(ids.length),
        shape,
      );
      const e = this.LayerNorm.apply(tf.add(tf.add(w, tt), p));
      return dropout(e, this.cfg.hidden_dropout_prob, this.training);
    });
  }
}
