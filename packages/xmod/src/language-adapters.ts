import * as tf from '@tensorflow/tfjs-core';
import type { Rng, XmodConfig } from '@xlt/core';
import { dropout, gelu, LayerNorm, Linear, type LinearLike } from './nn/layers.js';
import { Module, ModuleDict } from './nn/module.js';

/** X-Mod's language modules (`roberta.encoder.layer.N.output.adapter_modules.<lang>.*`). */

/** X-Mod's bottleneck language module: dense1 → gelu → dense2 (`XmodAdapter`). */
export class XmodAdapter extends Module {
  dense1: LinearLike;
  dense2: LinearLike;
  constructor(hidden: number, bottleneck: number, std: number, rng?: Rng) {
    super();
    const o = rng !== undefined ? { std, rng } : { std };
    this.dense1 = this.registerModule('dense1', new Linear(hidden, bottleneck, o));
    this.dense2 = this.registerModule('dense2', new Linear(bottleneck, hidden, o));
  }
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.dense2.apply(gelu(this.dense1.apply(x))));
  }
}

/** The FFN output with X-Mod's language modules (`XmodOutput`). */
export class XmodOutput extends Module {
  dense: LinearLike;
  LayerNorm: LayerNorm;
  adapter_layer_norm: LayerNorm | null = null;
  adapter_modules: ModuleDict<XmodAdapter> | null = null;
  constructor(private readonly cfg: XmodConfig) {
    super();
    this.dense = this.registerModule(
      'dense',
      new Linear(cfg.intermediate_size, cfg.hidden_size, { std: cfg.initializer_range }),
    );
    this.LayerNorm = this.registerModule('LayerNorm', new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps));
    if (cfg.model_type === 'xmod') {
      if (cfg.adapter_layer_norm)
        this.adapter_layer_norm = this.registerModule(
          'adapter_layer_norm',
          new LayerNorm(cfg.hidden_size, cfg.layer_norm_eps),
        );
      this.adapter_modules = this.registerModule('adapter_modules', new ModuleDict<XmodAdapter>());
      for (const lang of cfg.languages) this.adapter_modules.set(lang, this.newAdapter());
    }
  }
  /** A fresh language module, N(0, initializer_range) weights, zero biases. */
  newAdapter(rng?: Rng): XmodAdapter {
    const bottleneck = Math.floor(this.cfg.hidden_size / this.cfg.adapter_reduction_factor);
    return new XmodAdapter(this.cfg.hidden_size, bottleneck, this.cfg.initializer_range, rng);
  }
  apply(x: tf.Tensor, residualIn: tf.Tensor, langIdx: number[]): tf.Tensor {
    return tf.tidy(() => {
      let h = tf.add(dropout(this.dense.apply(x), this.cfg.hidden_dropout_prob, this.training), residualIn);
      if (this.adapter_modules !== null) h = this.langAdapter(langIdx, h);
      return h;
    });
  }
  /** transformers' `XmodOutput.lang_adapter`: one call per language group, original order restored. */
  langAdapter(langIdx: number[], hIn: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const cfg = this.cfg;
      let h = hIn;
      let residual: tf.Tensor = h;
      if (this.adapter_layer_norm !== null) h = this.adapter_layer_norm.apply(h);
      else if (cfg.adapter_reuse_layer_norm) h = this.LayerNorm.apply(h);
      if (cfg.ln_before_adapter) residual = h;
      const modules = this.adapter_modules as ModuleDict<XmodAdapter>;
      const keys = modules.keys();
      const groups = new Map<number, number[]>();
      langIdx.forEach((l, i) => {
        const g = groups.get(l);
        if (g === undefined) groups.set(l, [i]);
        else g.push(i);
      });
      let out: tf.Tensor;
      if (groups.size === 1) {
        const l = langIdx[0] ?? 0;
        out = (modules.get(keys[l] ?? '') as XmodAdapter).apply(h);
      } else {
        // Rows are picked and put back with slice/concat (not gather, whose gradient needs
        // UnsortedSegmentSum, missing on the wasm backend).
        const rowsOf = (x: tf.Tensor, idx: number[]) =>
          idx.length === 1
            ? tf.slice(x, [idx[0] ?? 0], [1])
            : tf.concat(
                idx.map((i) => tf.slice(x, [i], [1])),
                0,
              );
        const back = new Array<tf.Tensor>(langIdx.length);
        for (const [l, idx] of groups) {
          const y = (modules.get(keys[l] ?? '') as XmodAdapter).apply(rowsOf(h, idx));
          idx.forEach((orig, k) => {
            back[orig] = tf.slice(y, [k], [1]);
          });
        }
        out = tf.concat(back, 0);
      }
      out = dropout(out, cfg.hidden_dropout_prob, this.training);
      return tf.add(out, residual);
    });
  }
}
