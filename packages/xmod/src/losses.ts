import * as tf from '@tensorflow/tfjs-core';
import { XltShapeError } from '@xlt/core';

/** Mean cross-entropy over positions whose label is not `ignoreIndex` (PyTorch's `CrossEntropyLoss`). */
export function crossEntropy(logits: tf.Tensor, labels: number[], ignoreIndex = -100): tf.Tensor {
  return tf.tidy(() => {
    const c = logits.shape[logits.shape.length - 1] ?? 0;
    const flat = tf.reshape(logits, [-1, c]);
    if (labels.length !== flat.shape[0])
      throw new XltShapeError('labels do not match logits', {
        field: 'labels',
        expected: [flat.shape[0] ?? 0],
        got: [labels.length],
      });
    const w = labels.map((l): number => (l === ignoreIndex ? 0 : 1));
    const tgt = labels.map((l) => {
      if (l === ignoreIndex) return 0;
      if (!Number.isInteger(l) || l < 0 || l >= c)
        throw new XltShapeError(`label ${l} outside [0, ${c})`, { field: 'labels' });
      return l;
    });
    const n = w.reduce((a, v) => a + v, 0);
    const logp = tf.logSoftmax(flat, -1);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(tgt, 'int32'), c)), -1);
    const s = tf.sum(tf.mul(picked, tf.tensor1d(w, 'float32')));
    // PyTorch returns NaN when every label is ignored (0/0); so do we.
    return tf.neg(tf.div(s, tf.scalar(n)));
  });
}
