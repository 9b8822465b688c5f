import { type Dim, staticDim } from './dims.js';
import {
  add,
  cast,
  div,
  gather,
  gemmT,
  logSoftmax,
  matmul,
  mul,
  neg,
  raw,
  reduceSum,
  reshape,
  softmax,
  transpose,
} from './ops.js';
import type { Value } from './tracer.js';

/**
 * Layers composed from the op vocabulary. None has a gradient rule of its own: their backward
 * follows from the rules of the ops they use.
 */

/** x [..., in] W^T + b with W [out, in] (the Hugging Face / torch layout). */
export function linear(x: Value, weight: Value, bias?: Value): Value {
  const inF = x.shape[x.rank - 1] as Dim;
  const y = gemmT(x.rank === 2 ? x : reshape(x, [-1, inF]), weight, bias);
  return x.rank === 2 ? y : reshape(y, [...x.shape.slice(0, -1), weight.shape[0] as Dim]);
}

/** Exact GELU: an op of the vocabulary (see `ops.gelu`), re-exported beside the other layers. */
export { gelu } from './ops.js';

/**
 * Multi-head scaled dot-product attention. q, k, v: [B, S, D]; `maskAdd` broadcasts to the scores
 * [B, heads, S, S] (e.g. [B, 1, 1, S] with a large negative number on padding). Returns [B, S, D].
 */
export function attention(
  q: Value,
  k: Value,
  v: Value,
  maskAdd: Value,
  heads: number,
  /** Applied to the attention probabilities (dropout in training). */
  onProbs: (p: Value) => Value = (p) => p,
): Value {
  const [B, S, D] = q.shape as [Dim, Dim, Dim];
  const dh = staticDim(D, 'attention width') / heads;
  const split = (x: Value) => transpose(reshape(x, [B, x.shape[1] as Dim, heads, dh]), [0, 2, 1, 3]);
  const scores = add(mul(matmul(split(q), transpose(split(k), [0, 1, 3, 2])), 1 / Math.sqrt(dh)), maskAdd);
  const ctx = matmul(onProbs(softmax(scores)), split(v));
  return reshape(transpose(ctx, [0, 2, 1, 3]), [B, S, D]);
}

/**
 * Mean cross-entropy of logits [M, C] against int64 labels [M], ignoring `ignoreIndex` (as torch's
 * CrossEntropyLoss; 0 when every label is ignored).
 */
export function crossEntropy(logits: Value, labels: Value, ignoreIndex = -100): Value {
  const t = logits.tracer;
  const [M, C] = logits.shape as [Dim, Dim];
  const valid = raw(
    t,
    'Not',
    [raw(t, 'Equal', [labels, t.ints([ignoreIndex], [])], [M], 'bool')],
    [M],
    'bool',
  );
  const validF = cast(valid, t.floatType);
  const safe = raw(t, 'Where', [valid, labels, t.ints([0], [])], [M], 'int64');
  const onehot = raw(t, 'OneHot', [safe, t.dimScalar(C), t.constant([0, 1], [2])], [M, C], t.floatType, {
    axis: -1,
  });
  const nll = neg(reduceSum(mul(logSoftmax(logits), onehot), [-1]));
  const count = raw(t, 'Max', [reduceSum(validF), t.scalar(1)], [], t.floatType);
  return div(reduceSum(mul(nll, validF)), count);
}

/** Rows of an embedding table [V, D] for int64 ids of any shape: [...ids, D]. */
export const embedding = (table: Value, ids: Value): Value => gather(table, ids, 0);
