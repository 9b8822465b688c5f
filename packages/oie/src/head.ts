import * as tf from '@tensorflow/tfjs-core';
import { type OieHeadConfig, oieHeadSizes, Rng, XltConfigError, XltShapeError } from '@xlt/core';
import {
  crossEntropy,
  Embedding,
  type IdsInput,
  type LabelsInput,
  LayerNorm,
  Linear,
  type LinearLike,
  Module,
  ModuleList,
  normalInit,
  type XmodConfig,
  type XmodInputs,
  XmodPreTrainedModel,
} from '@xlt/xmod';

/**
 * Sizes of Multi2OIE's head (`config.oie`): @xlt/core's `OieHeadConfig`, kept under this name for
 * callers of this package. Defaults (`oieHeadSizes`) are Multi2OIE's: 64, 4 layers, 8 heads, 2048.
 */
export type OieHeadSizes = OieHeadConfig;

/** The head's sizes (core's `oieHeadSizes`) and its width `d`, checked against the head count. */
function headSizes(cfg: XmodConfig): Required<OieHeadConfig> & { d: number } {
  const s = oieHeadSizes(cfg);
  const d = 2 * cfg.hidden_size + s.pos_emb_dim;
  if (d % s.n_arg_heads !== 0)
    throw new XltConfigError(
      `2 x hidden_size + pos_emb_dim = ${d} is not a multiple of oie.n_arg_heads ${s.n_arg_heads}`,
      { field: 'oie.n_arg_heads' },
    );
  return { ...s, d };
}

/** PyTorch's `nn.MultiheadAttention` weights: packed `in_proj_weight` [3d, d] / `in_proj_bias`, and `out_proj`. */
class MultiheadAttention extends Module {
  in_proj_weight: tf.Variable;
  in_proj_bias: tf.Variable;
  out_proj: LinearLike;
  constructor(
    readonly dim: number,
    readonly heads: number,
    std: number,
    rng: Rng,
  ) {
    super();
    this.in_proj_weight = this.registerParameter('in_proj_weight', normalInit([3 * dim, dim], std, rng));
    this.in_proj_bias = this.registerParameter('in_proj_bias', tf.zeros([3 * dim]));
    this.out_proj = this.registerModule('out_proj', new Linear(dim, dim, { std, rng }));
  }

  /** Attention of `query` [B, S, d] over `source` [B, S, d]; `keyMask` [B, 1, 1, S] is added to the scores. */
  apply(query: tf.Tensor, source: tf.Tensor, keyMask: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [b, t, d] = query.shape as [number, number, number];
      const nh = this.heads;
      const hd = d / nh;
      const proj = (x: tf.Tensor, k: number) =>
        tf.add(
          tf.matMul(tf.reshape(x, [-1, d]), tf.slice(this.in_proj_weight, [k * d, 0], [d, d]), false, true),
          tf.slice(this.in_proj_bias, [k * d], [d]),
        );
      const split = (y: tf.Tensor) => tf.transpose(tf.reshape(y, [b, t, nh, hd]), [0, 2, 1, 3]);
      const q = split(proj(query, 0));
      const k = split(proj(source, 1));
      const v = split(proj(source, 2));
      const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(hd)), keyMask);
      const ctx = tf.matMul(tf.softmax(scores, -1), v);
      return this.out_proj.apply(tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [b, t, d]));
    });
  }
}

/** One argument-extractor layer: cross-attention restricted to the predicate, FFN (ReLU), post-norms. */
class ArgLayer extends Module {
  multihead_attn: MultiheadAttention;
  linear1: LinearLike;
  linear2: LinearLike;
  norm1: LayerNorm;
  norm2: LayerNorm;
  constructor(d: number, heads: number, ff: number, eps: number, std: number, rng: Rng) {
    super();
    this.multihead_attn = this.registerModule('multihead_attn', new MultiheadAttention(d, heads, std, rng));
    this.linear1 = this.registerModule('linear1', new Linear(d, ff, { std, rng }));
    this.linear2 = this.registerModule('linear2', new Linear(ff, d, { std, rng }));
    this.norm1 = this.registerModule('norm1', new LayerNorm(d, eps));
    this.norm2 = this.registerModule('norm2', new LayerNorm(d, eps));
  }
  apply(target: tf.Tensor, source: tf.Tensor, keyMask: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const normed = this.norm1.apply(tf.add(target, this.multihead_attn.apply(target, source, keyMask)));
      const projected = this.linear2.apply(tf.relu(this.linear1.apply(normed)));
      return this.norm2.apply(tf.add(normed, projected));
    });
  }
}

class ArgModule extends Module {
  layers: ModuleList<ArgLayer>;
  constructor(layers: ArgLayer[]) {
    super();
    this.layers = this.registerModule('layers', new ModuleList(layers));
  }
}

/** The `oie.*` tensors: predicate tagger, position embedding, argument extractor, argument tagger. */
class OieHead extends Module {
  pred_classifier: LinearLike;
  position_emb: Embedding;
  arg_module: ArgModule;
  arg_classifier: LinearLike;
  constructor(cfg: XmodConfig, seed: number) {
    super();
    const s = headSizes(cfg);
    const std = cfg.initializer_range;
    const rng = new Rng(seed).fork('oie-head');
    this.pred_classifier = this.registerModule(
      'pred_classifier',
      new Linear(cfg.hidden_size, 3, { std, rng }),
    );
    this.position_emb = this.registerModule('position_emb', new Embedding(3, s.pos_emb_dim, { std, rng }));
    const layers = Array.from(
      { length: s.n_arg_layers },
      () => new ArgLayer(s.d, s.n_arg_heads, s.d_feedforward, cfg.layer_norm_eps, std, rng),
    );
    this.arg_module = this.registerModule('arg_module', new ArgModule(layers));
    this.arg_classifier = this.registerModule('arg_classifier', new Linear(s.d, 9, { std, rng }));
  }
}

/** Inputs of {@link XmodForOpenIE.forward}: the encoder's, the row's predicate, and optionally both tag layers. */
export interface OpenIEInputs extends XmodInputs {
  /** [B, S] 1 on the tokens of the row's predicate, 0 elsewhere (required). */
  predMask?: IdsInput;
  /** [B, S] 1 inside the predicate, 2 elsewhere, 0 on padding (required). */
  predPosition?: IdsInput;
  /** [B, S] predicate tag per token (index into `PREDICATE_TAGS`: O 0, P-B 1, P-I 2; -100 ignored). */
  predLabels?: LabelsInput;
  /** [B, S] argument tag per token (see `ARGUMENT_TAGS`; -100 ignored). */
  argLabels?: LabelsInput;
}

/** Output of {@link XmodForOpenIE.forward}. */
export interface OpenIEOutput {
  /** [B, S, 3] predicate tag logits. */
  predLogits: tf.Tensor;
  /** [B, S, 9] argument tag logits for the row's predicate. */
  argLogits: tf.Tensor;
  /** Predicate + argument cross-entropy, when both label layers are given. */
  loss?: tf.Scalar;
}

function intMatrix(x: IdsInput, name: string, shape: [number, number]): tf.Tensor2D {
  const t =
    x instanceof tf.Tensor
      ? tf.cast(x, 'int32')
      : tf.tensor2d(Int32Array.from(x.flat()), [x.length, x[0]?.length ?? 0], 'int32');
  if (t.rank !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1]) {
    const got = [...t.shape];
    t.dispose();
    throw new XltShapeError(`${name} must have the shape of inputIds`, { field: name, expected: shape, got });
  }
  return t as tf.Tensor2D;
}

function labelList(x: LabelsInput): number[] {
  if (x instanceof tf.Tensor) return Array.from(x.dataSync());
  return (x as ReadonlyArray<number | ReadonlyArray<number>>).flat() as number[];
}

/**
 * Multi2OIE's two-step Open IE head on an X-Mod / XLM-R encoder, as MT4CrossIE trains it: a
 * predicate tagger over the token states, then, for the row's predicate, argument-extractor layers
 * over [states; mean of the predicate's states; position embedding] whose attention keys are the
 * predicate's tokens, and an argument tagger. Loss = predicate CE + argument CE. Weight names
 * (`roberta.*`, `oie.*`) are those `@xlt/onnx` exports and trains, so a saved model opens in
 * `OieModel` and trains on either `@xlt/trainer` engine.
 */
export class XmodForOpenIE extends XmodPreTrainedModel {
  oie: OieHead;
  protected readonly headPrefixes = ['oie.'];
  readonly architecture: string;
  constructor(config: XmodConfig | Record<string, unknown>, options: { seed?: number } = {}) {
    super(config);
    this.architecture = this.config.model_type === 'xmod' ? 'XmodForOpenIE' : 'XLMRobertaForOpenIE';
    this.oie = this.registerModule('oie', new OieHead(this.config, options.seed ?? 0));
  }

  forward(inputs: OpenIEInputs): OpenIEOutput {
    const { predMask, predPosition } = inputs;
    if (predMask === undefined || predPosition === undefined)
      throw new XltConfigError('XmodForOpenIE needs predMask and predPosition (the predicate of each row)', {
        field: predMask === undefined ? 'predMask' : 'predPosition',
      });
    const enc = this.roberta.forward(inputs);
    const x = enc.lastHiddenState;
    const [b, t, h] = x.shape as [number, number, number];
    let predLogits: tf.Tensor;
    let argLogits: tf.Tensor;
    try {
      [predLogits, argLogits] = tf.tidy(() => {
        const pm = tf.cast(intMatrix(predMask, 'predMask', [b, t]), 'float32');
        const pos = intMatrix(predPosition, 'predPosition', [b, t]);
        const pl = this.oie.pred_classifier.apply(x);
        const m3 = tf.expandDims(pm, 2);
        const cnt = tf.maximum(tf.sum(m3, 1, true), 1);
        const mean = tf.div(tf.sum(tf.mul(x, m3), 1, true), cnt);
        const feat = tf.broadcastTo(mean, [b, t, h]);
        const posEmb = this.oie.position_emb.apply(pos);
        const argIn = tf.concat([x, feat, posEmb], -1);
        const keyMask = tf.reshape(tf.mul(tf.sub(1, pm), -3.4028234663852886e38), [b, 1, 1, t]);
        let hid = argIn;
        for (const layer of this.oie.arg_module.layers.items) hid = layer.apply(hid, argIn, keyMask);
        return [pl, this.oie.arg_classifier.apply(hid)];
      }) as [tf.Tensor, tf.Tensor];
    } finally {
      x.dispose();
    }
    const out: OpenIEOutput = { predLogits, argLogits };
    if (inputs.predLabels !== undefined || inputs.argLabels !== undefined) {
      if (inputs.predLabels === undefined || inputs.argLabels === undefined)
        throw new XltConfigError('the Open IE loss needs both predLabels and argLabels', {
          field: inputs.predLabels === undefined ? 'predLabels' : 'argLabels',
        });
      const pLab = labelList(inputs.predLabels);
      const aLab = labelList(inputs.argLabels);
      out.loss = tf.tidy(() =>
        tf.add(crossEntropy(predLogits, pLab), crossEntropy(argLogits, aLab)),
      ) as tf.Scalar;
    }
    return out;
  }
}
