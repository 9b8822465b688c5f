import { oieHeadSizes, XltConfigError } from '@xlt/core';
import { type Dim, staticDim } from './dims.js';
import type { XmodEncoder } from './encoder.js';
import { attention, crossEntropy, embedding, linear } from './layers.js';
import {
  add,
  cast,
  concat,
  div,
  expand,
  mul,
  raw,
  reduceSum,
  relu,
  reshape,
  slice,
  sub,
  unsqueeze,
} from './ops.js';
import type { Value } from './tracer.js';

/**
 * Multi2OIE's Open IE head: predicate logits from the encoder states; then, for the predicate given
 * by `predMask` (1 on its tokens), the states concatenated with the predicate's mean state and a
 * position embedding (`predPosition`: 0 padding, 1 inside the predicate span, 2 elsewhere) go
 * through argument-extractor layers whose attention keys are restricted to the predicate's tokens.
 */
export interface OieInputs {
  /** int64 [B, S]. */
  predMask: Value;
  /** int64 [B, S]. */
  predPosition: Value;
}

/** One argument-extractor layer (torch TransformerEncoderLayer-style cross-attention, post-norm, ReLU FFN). */
function argLayer(enc: XmodEncoder, target: Value, source: Value, name: string, keyMask: Value): Value {
  const p = enc.p;
  const o = oieHeadSizes(enc.config);
  const d = staticDim(target.shape[2] as Dim, `argument layer ${name}`);
  const W = p.get(`${name}.multihead_attn.in_proj_weight`, [3 * d, d]);
  const b = p.get(`${name}.multihead_attn.in_proj_bias`, [3 * d]);
  const proj = (x: Value, k: number) =>
    linear(x, slice(W, 0, k * d, (k + 1) * d), slice(b, 0, k * d, (k + 1) * d));
  const ctx = attention(proj(target, 0), proj(source, 1), proj(source, 2), keyMask, o.n_arg_heads);
  const normed = enc.layerNorm(
    add(target, enc.linear(ctx, `${name}.multihead_attn.out_proj`, d)),
    `${name}.norm1`,
  );
  const ff = o.d_feedforward;
  const projected = enc.linear(relu(enc.linear(normed, `${name}.linear1`, ff)), `${name}.linear2`, d);
  return enc.layerNorm(add(normed, projected), `${name}.norm2`);
}

/** Predicate logits [B, S, 3] and argument logits [B, S, 9] over the last hidden state x [B, S, H]. */
export function oieLogits(enc: XmodEncoder, x: Value, inputs: OieInputs): { pred: Value; arg: Value } {
  const t = enc.p.tracer;
  const [B, S] = x.shape as [Dim, Dim];
  const H = enc.hidden;
  const o = oieHeadSizes(enc.config);
  const P = o.pos_emb_dim;
  const d = 2 * H + P;
  const heads = o.n_arg_heads;
  if (d % heads !== 0)
    throw new XltConfigError(
      `2 x hidden_size + pos_emb_dim = ${d} is not a multiple of n_arg_heads ${heads}`,
      {
        field: 'oie',
      },
    );
  const pred = enc.linear(x, 'oie.pred_classifier', 3);
  const mask = unsqueeze(cast(inputs.predMask, t.floatType), [2]); // [B, S, 1]
  const count = raw(t, 'Max', [reduceSum(mask, [1], true), t.scalar(1)], [B, 1, 1], t.floatType);
  const predicateMean = expand(div(reduceSum(mul(x, mask), [1], true), count), [B, S, H]);
  const position = embedding(enc.p.get('oie.position_emb.weight', [3, P]), inputs.predPosition);
  const argIn = concat([x, predicateMean, position], 2);
  const keyMask = reshape(mul(sub(1, mask), -3.4028234663852886e38), [B, 1, 1, S]);
  let h = argIn;
  for (let i = 0; i < o.n_arg_layers; i++) h = argLayer(enc, h, argIn, `oie.arg_module.layers.${i}`, keyMask);
  return { pred, arg: enc.linear(h, 'oie.arg_classifier', 9) };
}

/** Multi2OIE's loss: predicate cross-entropy + argument cross-entropy (labels int64 [B, S], -100 ignored). */
export function oieLoss(
  enc: XmodEncoder,
  x: Value,
  inputs: OieInputs,
  labels: { predLabels: Value; argLabels: Value },
): Value {
  const { pred, arg } = oieLogits(enc, x, inputs);
  const ce = (logits: Value, l: Value, c: number) => crossEntropy(reshape(logits, [-1, c]), reshape(l, [-1]));
  return add(ce(pred, labels.predLabels, 3), ce(arg, labels.argLabels, 9));
}
