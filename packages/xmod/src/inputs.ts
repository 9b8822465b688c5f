import * as tf from '@tensorflow/tfjs-core';
import { XltShapeError } from '@xlt/core';

/** Inputs of the models' `forward`: token ids, masks, languages and labels as arrays or tensors. */

/** Nested number arrays (batch × seq) or an int tensor. */
export type IdsInput = number[][] | tf.Tensor;

/** Inputs of every model's `forward`. */
export interface XmodInputs {
  inputIds: IdsInput;
  attentionMask?: IdsInput;
  tokenTypeIds?: IdsInput;
  /** One language per example: an index into `config.languages` or a language code. */
  langIds?: ReadonlyArray<number | string> | tf.Tensor;
  /** Return every hidden state (embeddings output, then each layer; the last after the final LayerNorm when pre_norm). */
  outputHiddenStates?: boolean;
}

/** Token ids as an int32 array with their [batch, seq] shape (checked rectangular). */
export function toIds(x: IdsInput, name: string): { data: Int32Array; shape: [number, number] } {
  if (x instanceof tf.Tensor) {
    if (x.rank !== 2)
      throw new XltShapeError(`${name} must be rank 2 [batch, seq], got rank ${x.rank}`, { field: name });
    return { data: Int32Array.from(x.dataSync()), shape: [x.shape[0] ?? 0, x.shape[1] ?? 0] };
  }
  const b = x.length;
  const t = b > 0 ? (x[0]?.length ?? 0) : 0;
  const data = new Int32Array(b * t);
  for (let i = 0; i < b; i++) {
    const row = x[i] ?? [];
    if (row.length !== t)
      throw new XltShapeError(`${name} rows must have equal length`, {
        field: `${name}[${i}]`,
        expected: [t],
        got: [row.length],
      });
    for (let j = 0; j < t; j++) data[i * t + j] = row[j] ?? 0;
  }
  return { data, shape: [b, t] };
}

/** Labels or positions as a flat number array with their shape. */
export function toFlat(x: ReadonlyArray<number> | ReadonlyArray<ReadonlyArray<number>> | tf.Tensor): {
  data: number[];
  shape: number[];
} {
  if (x instanceof tf.Tensor) return { data: Array.from(x.dataSync()), shape: x.shape };
  if (x.length > 0 && Array.isArray(x[0])) {
    const rows = x as ReadonlyArray<ReadonlyArray<number>>;
    return { data: rows.flat(), shape: [rows.length, rows[0]?.length ?? 0] };
  }
  return { data: [...(x as ReadonlyArray<number>)], shape: [x.length] };
}

/** Labels: nested arrays or a tensor. */
export type LabelsInput = ReadonlyArray<number> | ReadonlyArray<ReadonlyArray<number>> | tf.Tensor;
