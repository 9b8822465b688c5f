import { labelCount, XltConfigError } from '@xlt/core';
import type { HeadKind } from '../model-types.js';
import { type Dim, symbol } from './dims.js';
import type { XmodEncoder } from './encoder.js';
import { crossEntropy, gelu, linear } from './layers.js';
import {
  add,
  cast,
  div,
  exp,
  gather,
  logSoftmax,
  mul,
  raw,
  reduceSum,
  reshape,
  slice,
  squeeze,
  sub,
  tanh,
} from './ops.js';
import type { Value } from './tracer.js';

/** The heads over the encoder's last hidden state, and their training losses. */

/** Logits of a head over the last hidden state x [B, S, H]: masked-lm, token and sequence classification. */
export function headLogits(enc: XmodEncoder, head: HeadKind, x: Value): Value {
  const { p, config: cfg, hidden: H } = enc;
  if (head === 'masked-lm') {
    const h = enc.layerNorm(gelu(enc.linear(x, 'lm_head.dense', H)), 'lm_head.layer_norm');
    // tied decoder: the word embeddings, unless the model has its own decoder and they are frozen
    const word = enc.wordEmbeddingName;
    const dec = p.has('lm_head.decoder.weight') && !p.isTrainable(word) ? 'lm_head.decoder.weight' : word;
    return linear(h, p.get(dec, [cfg.vocab_size, H]), p.get('lm_head.bias', [cfg.vocab_size]));
  }
  if (head === 'token-classification')
    return enc.linear(enc.dropout(x, 'classifier'), 'classifier', labelCount(cfg));
  if (head === 'sequence-classification') {
    const first = enc.dropout(squeeze(slice(x, 1, 0, 1), [1]), 'classifier');
    const pooled = enc.dropout(tanh(enc.linear(first, 'classifier.dense', H)), 'classifier');
    return enc.linear(pooled, 'classifier.out_proj', labelCount(cfg));
  }
  throw new XltConfigError(`head '${head}' is not written with the op vocabulary yet`, { field: 'head' });
}

/** Question answering: start and end logits [B, S] over the last hidden state x [B, S, H]. */
export function spanLogits(enc: XmodEncoder, x: Value): { start: Value; end: Value } {
  const spans = enc.linear(x, 'qa_outputs', 2); // [B, S, 2]
  const part = (k: number) => squeeze(slice(spans, 2, k, k + 1), [2]);
  return { start: part(0), end: part(1) };
}

/** Label inputs of a head: `labels`, or `startPositions` and `endPositions` (int64 [B]) for QA. */
export interface HeadLabels {
  labels?: Value;
  startPositions?: Value;
  endPositions?: Value;
  /**
   * masked-lm only: int64 [M] flat indices (b * S + s) of the positions the head runs on (the
   * labelled ones, padded with any unlabelled position): the same loss and gradients as the dense
   * head, at M / (B S) of the decoder's cost.
   */
  positions?: Value;
}

function required(v: Value | undefined, name: string, head: HeadKind): Value {
  if (v === undefined) throw new XltConfigError(`the ${head} loss needs '${name}'`, { field: name });
  return v;
}

/**
 * The training loss of a head: cross-entropy with ignore index -100 (`labels` int64 [B, S] for
 * masked-lm and tokens, [B] for sequences); for question answering the mean of the start and end
 * cross-entropies over positions, positions clamped to [0, S] and S ignored (as transformers).
 */
export function headLoss(
  enc: XmodEncoder,
  head: HeadKind,
  x: Value,
  labels: HeadLabels,
  objective: ObjectiveOptions = {},
): Value {
  const t = enc.p.tracer;
  if (head === 'question-answering') {
    const [B, S] = x.shape as [Dim, Dim];
    const { start, end } = spanLogits(enc, x);
    const seqLen = t.dimScalar(S);
    const clamp = (pos: Value) => {
      const c = raw(t, 'Min', [raw(t, 'Max', [pos, t.ints([0], [])], [B], 'int64'), seqLen], [B], 'int64');
      return raw(
        t,
        'Where',
        [raw(t, 'Equal', [c, seqLen], [B], 'bool'), t.ints([-100], []), c],
        [B],
        'int64',
      );
    };
    return mul(
      add(
        crossEntropy(start, clamp(required(labels.startPositions, 'start_positions', head))),
        crossEntropy(end, clamp(required(labels.endPositions, 'end_positions', head))),
      ),
      0.5,
    );
  }
  let flatLabels = reshape(required(labels.labels, 'labels', head), [-1]);
  let states = x;
  if (labels.positions !== undefined && (head !== 'masked-lm' || objective.denseMaskedLm === true))
    throw new XltConfigError('labelled positions are for the masked-lm head (not dense)', {
      field: 'positions',
    });
  if (head === 'masked-lm' && objective.denseMaskedLm !== true) {
    // the decoder runs on the labelled positions only (~15%): the same loss and gradients as the
    // dense head (unlabelled positions add nothing), at a fraction of its cost
    const at = labels.positions ?? labelledPositions(flatLabels);
    states = gather(reshape(x, [-1, x.shape[x.rank - 1] as Dim]), at);
    flatLabels = raw(t, 'Gather', [flatLabels, at], at.shape, 'int64', { axis: 0 });
  }
  const logits = headLogits(enc, head, states);
  const classes = logits.shape[logits.rank - 1] as Dim;
  const rows = reshape(logits, [-1, classes]);
  if (objective.salt === undefined) return crossEntropy(rows, flatLabels);
  if (head !== 'sequence-classification' && head !== 'token-classification')
    throw new XltConfigError(`the SALT objective needs a classification head, not ${head}`, {
      field: 'salt',
    });
  return saltLoss(rows, flatLabels, objective.salt);
}

/** Flat indices of the labels that are not -100, computed in the graph (int64 [labelled]). */
function labelledPositions(flatLabels: Value): Value {
  const t = flatLabels.tracer;
  const n = flatLabels.shape;
  const keep = raw(t, 'Not', [raw(t, 'Equal', [flatLabels, t.ints([-100], [])], n, 'bool')], n, 'bool');
  const labelled = symbol('labelled');
  const at = raw(t, 'NonZero', [keep], [1, labelled], 'int64'); // [1, labelled]
  t.bindDim(labelled, at.name, 1);
  return reshape(at, [labelled]);
}

/** Options of the training objective beyond the head's cross-entropy. */
export interface ObjectiveOptions {
  /**
   * masked-lm: run the LM head and decoder on every position, labelled or not (the reference the
   * labelled-positions head is measured against; same loss and gradients, more work).
   */
  denseMaskedLm?: boolean;
  /**
   * SALT-style objective: the batch holds the originals then their augmented versions; loss =
   * task(originals) + augWeight task(augmented) + klWeight KL(p(originals) || p(augmented)).
   */
  salt?: { augWeight?: number; klWeight?: number };
}

/**
 * weight x the mean over rows where `rowMask` (float [M]) is 1 of KL(softmax(a) || softmax(b)),
 * for logits a and b [M, C].
 */
export function klDivergence(a: Value, b: Value, rowMask: Value, weight: number): Value {
  const t = a.tracer;
  const logp = logSoftmax(a);
  const perRow = reduceSum(mul(exp(logp), sub(logp, logSoftmax(b))), [-1]); // [M]
  const count = raw(t, 'Max', [reduceSum(rowMask), t.scalar(1)], [], t.floatType);
  return mul(div(reduceSum(mul(perRow, rowMask)), count), weight);
}

/**
 * SALT over rows [M, C] that hold the originals then their augmented versions (M even): the first
 * half's cross-entropy, augWeight x the second half's, and the KL term over the originals' labelled rows.
 */
function saltLoss(logits: Value, labels: Value, salt: NonNullable<ObjectiveOptions['salt']>): Value {
  const t = logits.tracer;
  const C = logits.shape[1] as Dim;
  const aug = salt.augWeight ?? 1;
  const kl = salt.klWeight ?? 1;
  const halves = reshape(logits, [2, -1, C]);
  const labelHalves = raw(t, 'Reshape', [labels], [2, halves.shape[1] as Dim], 'int64', {}, [
    t.ints([2, -1]).name,
  ]);
  const half = (x: Value, k: number) => squeeze(slice(x, 0, k, k + 1), [0]);
  const halfLabels = (k: number) =>
    raw(t, 'Gather', [labelHalves, t.ints([k], [])], [halves.shape[1] as Dim], 'int64', { axis: 0 });
  const [orig, augmented] = [half(halves, 0), half(halves, 1)];
  const origLabels = halfLabels(0);
  let loss = add(crossEntropy(orig, origLabels), mul(crossEntropy(augmented, halfLabels(1)), aug));
  if (kl > 0) {
    const rows = origLabels.shape;
    const valid = cast(
      raw(t, 'Not', [raw(t, 'Equal', [origLabels, t.ints([-100], [])], rows, 'bool')], rows, 'bool'),
      t.floatType,
    );
    loss = add(loss, klDivergence(orig, augmented, valid, kl));
  }
  return loss;
}
