import * as tf from '@tensorflow/tfjs-core';
import { padTokenRows, type Rng, type TokenBatch, XltConfigError, XltShapeError } from '@xlt/core';
import type { LossFn } from './trainer.js';

/** Marks a loss function that is exactly the model's own head loss (lets `fit` pick the compiled engine). */
export const HEAD_LOSS: unique symbol = Symbol.for('xlt.headLoss');

/** Label value that the models' losses ignore (PyTorch's `ignore_index`). */
export const IGNORE_INDEX = -100;

/** What a Hugging Face-style model's `forward` takes (tensors), as `@xlt/xmod` models define it. */
export interface ForwardInputs {
  inputIds: tf.Tensor;
  attentionMask?: tf.Tensor;
  langIds?: tf.Tensor;
  labels?: tf.Tensor;
  startPositions?: tf.Tensor;
  endPositions?: tf.Tensor;
  /** Open IE head inputs and targets (see {@link TokenBatch}). */
  predMask?: tf.Tensor;
  predPosition?: tf.Tensor;
  predLabels?: tf.Tensor;
  argLabels?: tf.Tensor;
}

/** A model whose `forward` computes its own loss when given labels (MLM, classification, QA heads). */
export interface ForwardModel {
  forward(inputs: ForwardInputs): { loss?: tf.Tensor | null };
}

/** The one batch type (defined in `@xlt/core`), re-exported for the trainer's users. */
export type { TokenBatch };

function int2d(rows: number[][], field: string): tf.Tensor2D {
  const b = rows.length;
  const t = b > 0 ? (rows[0] as number[]).length : 0;
  const data = new Int32Array(b * t);
  rows.forEach((r, i) => {
    if (r.length !== t)
      throw new XltShapeError(`row ${i} of ${field} has another length`, {
        field,
        expected: [t],
        got: [r.length],
      });
    data.set(r, i * t);
  });
  return tf.tensor2d(data, [b, t], 'int32');
}

/** The Open IE fields of a {@link TokenBatch} ([batch][time] each), passed on as they are. */
export const OPEN_IE_FIELDS = ['predMask', 'predPosition', 'predLabels', 'argLabels'] as const;

/** Converts a {@link TokenBatch} to the tensors `forward` takes (call inside a tidy / loss function). */
export function batchTensors(batch: TokenBatch): ForwardInputs {
  const out: ForwardInputs = {
    inputIds: int2d(batch.inputIds, 'inputIds'),
    attentionMask: int2d(batch.attentionMask, 'attentionMask'),
  };
  if (batch.langIds !== undefined) out.langIds = tf.tensor1d(batch.langIds, 'int32');
  if (batch.labels !== undefined) {
    const l = batch.labels;
    out.labels =
      l.length > 0 && Array.isArray(l[0])
        ? int2d(l as number[][], 'labels')
        : tf.tensor1d(l as number[], 'int32');
  }
  if (batch.startPositions !== undefined) out.startPositions = tf.tensor1d(batch.startPositions, 'int32');
  if (batch.endPositions !== undefined) out.endPositions = tf.tensor1d(batch.endPositions, 'int32');
  for (const k of OPEN_IE_FIELDS) {
    const v = batch[k];
    if (v !== undefined) out[k] = int2d(v, k);
  }
  return out;
}

/**
 * The objective loss of MLM, sequence classification, token classification, span QA and Open IE
 * alike: the batch (with `labels`, `startPositions`/`endPositions`, or `predLabels`/`argLabels`)
 * goes to the model's own `forward`, whose
 * loss is returned. Extra losses (regularisers) are added with `extra`.
 */
export function modelLoss(model: ForwardModel, extra: Array<LossFn<TokenBatch>> = []): LossFn<TokenBatch> {
  const fn: LossFn<TokenBatch> = (batch, ctx) => {
    const hasTargets =
      batch.labels !== undefined ||
      (batch.startPositions !== undefined && batch.endPositions !== undefined) ||
      (batch.predLabels !== undefined && batch.argLabels !== undefined);
    if (!hasTargets)
      throw new XltConfigError(
        'a training batch needs labels, start/end positions, or predicate and argument labels',
        { field: 'labels' },
      );
    const out = model.forward(batchTensors(batch));
    if (out.loss === undefined || out.loss === null)
      throw new XltConfigError('the model returned no loss for a batch with labels', { field: 'loss' });
    let loss = tf.reshape(out.loss, []) as tf.Scalar;
    for (const f of extra) loss = tf.add(loss, f(batch, ctx));
    return loss;
  };
  if (extra.length === 0) Object.defineProperty(fn, HEAD_LOSS, { value: true });
  return fn;
}

/** Options of {@link collateMlm} (defaults of transformers' `DataCollatorForLanguageModeling`). */
export interface MlmOptions {
  maskTokenId: number;
  vocabSize: number;
  padTokenId: number;
  /** Ids never masked (e.g. `<s>`, `</s>`, `<pad>`). */
  specialIds: readonly number[];
  /** Fraction of tokens (or words) selected (default 0.15). */
  probability?: number;
  /** Of the selected: replaced by `<mask>` (0.8), by a random token (0.1), kept (rest). */
  maskFraction?: number;
  randomFraction?: number;
  /** Select whole words (all their sub-tokens) using each example's `wordIds`. */
  wholeWord?: boolean;
}

/** A tokenised example for MLM. `wordIds[i]` is the word of token i (null for special tokens). */
export interface MlmExample {
  inputIds: number[];
  wordIds?: Array<number | null>;
  langId?: number;
}

/**
 * Masked-LM collator: pads a batch and selects tokens as transformers' data collator does
 * (15% of non-special tokens; of those 80% `<mask>`, 10% a random token, 10% unchanged; labels -100
 * elsewhere), drawing every decision from the seeded `rng`. With `wholeWord`, words are selected and
 * all their tokens masked together.
 */
export function collateMlm(examples: readonly MlmExample[], options: MlmOptions, rng: Rng): TokenBatch {
  const p = options.probability ?? 0.15;
  const pMask = options.maskFraction ?? 0.8;
  const pRandom = options.randomFraction ?? 0.1;
  if (!(p > 0 && p <= 1))
    throw new XltConfigError(`mask probability must be in (0, 1], got ${p}`, { field: 'probability' });
  if (!(pMask >= 0 && pRandom >= 0 && pMask + pRandom <= 1))
    throw new XltConfigError('maskFraction + randomFraction must lie in [0, 1]', { field: 'maskFraction' });
  const special = new Set(options.specialIds);
  special.add(options.padTokenId);
  const maxLen = Math.max(0, ...examples.map((e) => e.inputIds.length));
  const masked: number[][] = [];
  const labelRows: number[][] = [];
  const langIds: number[] = [];
  examples.forEach((ex, ei) => {
    const n = ex.inputIds.length;
    const selected = new Array<boolean>(n).fill(false);
    if (options.wholeWord === true) {
      if (ex.wordIds === undefined || ex.wordIds.length !== n)
        throw new XltShapeError(
          `example ${ei} needs wordIds as long as its inputIds for whole-word masking`,
          {
            field: 'wordIds',
            expected: [n],
            got: [ex.wordIds?.length ?? 0],
          },
        );
      const pick = new Map<number, boolean>();
      for (let i = 0; i < n; i++) {
        const w = ex.wordIds[i];
        if (w === null || w === undefined || special.has(ex.inputIds[i] as number)) continue;
        if (!pick.has(w)) pick.set(w, rng.bernoulli(p));
        selected[i] = pick.get(w) as boolean;
      }
    } else {
      for (let i = 0; i < n; i++) selected[i] = !special.has(ex.inputIds[i] as number) && rng.bernoulli(p);
    }
    const ids = [...ex.inputIds];
    const labels = new Array<number>(maxLen).fill(IGNORE_INDEX);
    for (let i = 0; i < n; i++) {
      if (!selected[i]) continue;
      labels[i] = ex.inputIds[i] as number;
      const u = rng.next();
      if (u < pMask) ids[i] = options.maskTokenId;
      else if (u < pMask + pRandom) ids[i] = rng.int(options.vocabSize);
    }
    masked.push(ids);
    labelRows.push(labels);
    if (ex.langId !== undefined) langIds.push(ex.langId);
  });
  const batch: TokenBatch = { ...padTokenRows(masked, options.padTokenId), labels: labelRows };
  if (langIds.length === examples.length && langIds.length > 0) batch.langIds = langIds;
  return batch;
}

/** Pads labelled examples into a {@link TokenBatch} (token labels padded with -100). */
export function collateLabelled(
  examples: ReadonlyArray<{
    inputIds: number[];
    label?: number;
    tokenLabels?: number[];
    start?: number;
    end?: number;
    langId?: number;
  }>,
  padTokenId: number,
): TokenBatch {
  const maxLen = Math.max(0, ...examples.map((e) => e.inputIds.length));
  const batch: TokenBatch = padTokenRows(
    examples.map((e) => e.inputIds),
    padTokenId,
  );
  if (examples.every((e) => e.langId !== undefined)) batch.langIds = examples.map((e) => e.langId as number);
  if (examples.every((e) => e.label !== undefined)) batch.labels = examples.map((e) => e.label as number);
  else if (examples.every((e) => e.tokenLabels !== undefined))
    batch.labels = examples.map((e) => {
      const l = e.tokenLabels as number[];
      if (l.length !== e.inputIds.length)
        throw new XltShapeError('tokenLabels must be as long as inputIds', {
          field: 'tokenLabels',
          expected: [e.inputIds.length],
          got: [l.length],
        });
      return [...l, ...new Array<number>(maxLen - l.length).fill(IGNORE_INDEX)];
    });
  if (examples.every((e) => e.start !== undefined && e.end !== undefined)) {
    batch.startPositions = examples.map((e) => e.start as number);
    batch.endPositions = examples.map((e) => e.end as number);
  }
  return batch;
}
