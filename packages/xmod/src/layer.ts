import * as tf from '@tensorflow/tfjs-core';
import type { XmodConfig } from '@xlt/core';
import { XmodOutput } from './language-adapters.js';
import { dropout, gelu, LayerNorm, Linear, type LinearLike } from './nn/layers.js';
import { Module, ModuleList } from './nn/module.js';

/** One encoder layer (`roberta.encoder.layer.N.*`): self-attention, FFN, X-Mod's language modules. */

/** Multi-head self-attention (`attention.self`: query, key, value). */
export class XmodSelfAttention extends Module {
  query: LinearLike;
  key: LinearLike;
  value: LinearLike;
  constructor(private readonly cfg: XmodConfig) {
    super();
    const h = cfg.hidden_size;
    const std = cfg.initializer_range;
    this.query = this.registerModule('query', new Linear(h, h, { std }));
    this.key = this.registerModule('key', new Linear(h, h, { std }));
    this.value = this.registerModule('value', new Linear(h, h, { std }));
  }
  apply(x: tf.Tensor, mask: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [b, t, h] = x.shape as [number, number, number];
      const nh = this.cfg.num_attention_heads;
      const d = h / nh;
      const split = (y: tf.Tensor) => tf.transpose(tf.reshape(y, [b, t, nh, d]), [0, 2, 1, 3]);
      const q = split(this.query.apply(x));
      const k = split(this.key.apply(x));
      const v = split(this.value.apply(x));
      let scores = tf.div(tf.matMul(q, k, false, true), Math.sqrt(d));
      scores = tf.add(scores, mask);
      let probs = tf.softmax(scores, -1);
      probs = dropout(probs, this.cfg.attention_probs_dropout_prob, this.training);
      const ctx = tf.matMul(probs, v);
      return tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [b, t, h]);
    });
  }
}

/** The attention output projection and its LayerNorm (`attention.output`). */
export class XmodSelfOutput extends Module {
  dense: LinearLike;
  LayerNorm: LayerNorm;
  constructor(cfg: XmodConfig) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.hidden_size, cfg.hidden_size, { std: cfg.initializer_range }),
    );
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
  }
}

/** `attention`: self-attention, output projection, residual and LayerNorm (before or after: `pre_norm`). */
export class XmodAttention extends Module {
  self: XmodSelfAttention;
  output: XmodSelfOutput;
  constructor(private readonly cfg: XmodConfig) {
    super();
    this.self = this.registerModule('self', new XmodSelfAttention(cfg));
    this.output = this.registerModule('output', new XmodSelfOutput(cfg));
  }
  apply(x: tf.Tensor, mask: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const residual = x;
      const pre = this.cfg.pre_norm === true;
      const inp = pre ? this.output.LayerNorm.apply(x) : x;
      const ctx = this.self.apply(inp, mask);
      let out = tf.add(
        dropout(this.output.dense.apply(ctx), this.cfg.hidden_dropout_prob, this.training),
        residual,
      );
      if (!pre) out = this.output.LayerNorm.apply(out);
      return out;
    });
  }
}

/** The FFN up-projection with GELU (`intermediate.dense`). */
export class XmodIntermediate extends Module {
  dense: LinearLike;
  constructor(cfg: XmodConfig) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.hidden_size, cfg.intermediate_size, { std: cfg.initializer_range }),
    );
  }
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => gelu(this.dense.apply(x)));
  }
}

/** One layer: attention, FFN, then the language module of each example (`XmodOutput`). */
export class XmodLayer extends Module {
  attention: XmodAttention;
  intermediate: XmodIntermediate;
  output: XmodOutput;
  constructor(private readonly cfg: XmodConfig) {
    super();
    this.attention = this.registerModule('attention', new XmodAttention(cfg));
    this.intermediate = this.registerModule('intermediate', new XmodIntermediate(cfg));
    this.output = this.registerModule('output', new XmodOutput(cfg));
  }
  apply(x: tf.Tensor, mask: tf.Tensor, langIdx: number[]): tf.Tensor {
    return tf.tidy(() => {
      const pre = this.cfg.pre_norm === true;
      let a = this.attention.apply(x, mask);
      const residual = a;
      if (pre) a = this.output.LayerNorm.apply(a);
      let out = this.output.apply(this.intermediate.apply(a), residual, langIdx);
      if (!pre) out = this.output.LayerNorm.apply(out);
      return out;
    });
  }
}

/** `encoder`: the layers, and the final LayerNorm of pre-norm X-Mod. */
export class XmodEncoder extends Module {
  layer: ModuleList<XmodLayer>;
  LayerNorm: LayerNorm | null = null;
  constructor(cfg: XmodConfig) {
    super();
    this.layer = this.registerModule('layer', new ModuleList<XmodLayer>());
    for (let i = 0; i < cfg.num_hidden_layers; i++) this.layer.push(new XmodLayer(cfg));
    if (cfg.model_type === 'xmod' && cfg.pre_norm)
      this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
  }
}
