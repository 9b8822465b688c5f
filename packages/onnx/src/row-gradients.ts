import { XltError } from '@xlt/core';

/**
 * The word embeddings' gradient, which the gradients graph outputs as the gathered rows' gradients
 * (`rowGradients`): scattered into the dense gradient buffer here, so onnxruntime holds no dense
 * gradient, zeros or squares of the table.
 */
export interface RowScatter {
  /** Elements per table row. */
  width: number;
  /** Per table row: whether the last step wrote it. */
  marked: Uint8Array;
  /** The rows the last step wrote (zeroed before the next scatter). */
  touched: number[];
}

/** The trainable parameters whose gradient the sliced step takes as rows: the word embeddings. */
export const ROW_GRADIENTS = /(^|\.)embeddings\.word_embeddings(\.base_layer)?\.weight$/;

/** The scatter state of a table of `shape` [rows, ...row shape], nothing written yet. */
export function rowScatter(shape: readonly number[]): RowScatter {
  return {
    width: shape.slice(1).reduce((a, d) => a * d, 1),
    marked: new Uint8Array(shape[0] ?? 0),
    touched: [],
  };
}

/**
 * Scatter-adds `rows` [N, width] into the dense gradient `grad` at table rows `ids` (after zeroing
 * the rows the previous step wrote), in the order of `ids` as onnxruntime's ScatterND with
 * reduction add (the same float32 sums); returns the sum of squares of the result (in float64).
 */
export function scatterRows(
  grad: Float32Array,
  s: RowScatter,
  ids: BigInt64Array,
  rows: Float32Array,
): number {
  const w = s.width;
  const tableRows = s.marked.length;
  for (const r of s.touched) {
    grad.fill(0, r * w, (r + 1) * w);
    s.marked[r] = 0;
  }
  s.touched = [];
  for (let k = 0; k < ids.length; k++) {
    let r = Number(ids[k]);
    if (r < 0) r += tableRows;
    if (r < 0 || r >= tableRows)
      throw new XltError(
        'NUMERIC',
        `gradient row ${Number(ids[k])} is outside the table of ${tableRows} rows`,
      );
    if (s.marked[r] === 0) {
      s.marked[r] = 1;
      s.touched.push(r);
    }
    const at = r * w;
    const from = k * w;
    for (let j = 0; j < w; j++) grad[at + j] = (grad[at + j] as number) + (rows[from + j] as number);
  }
  let sq = 0;
  for (const r of s.touched)
    for (let j = r * w; j < (r + 1) * w; j++) sq += (grad[j] as number) * (grad[j] as number);
  return sq;
}
