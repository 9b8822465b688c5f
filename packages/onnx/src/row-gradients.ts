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
    const r = tableRow(ids, k, tableRows);
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

/** A gradient held as its rows: the distinct table rows a step wrote, ascending, and their sums. */
export interface SparseRows {
  /** Elements per table row. */
  width: number;
  /** Table rows, ascending. */
  rows: Int32Array;
  /** Their gradients, row after row ([rows.length, width]). */
  data: Float32Array;
}

/**
 * The rows' gradients `rows` [N, width] summed per distinct table row of `ids` (in the order of
 * `ids`, so the same float32 sums as {@link scatterRows} into zeros), sorted by row, and the sum of
 * squares of the result (float64, in the order {@link scatterRows} adds them): the word embeddings'
 * gradient without a dense buffer of the table's size.
 */
export function sumRows(
  tableRows: number,
  width: number,
  ids: BigInt64Array,
  rows: Float32Array,
): { sparse: SparseRows; sq: number } {
  const slotOf = new Map<number, number>();
  const order: number[] = [];
  const sums = new Float32Array(ids.length * width);
  for (let k = 0; k < ids.length; k++) {
    const r = tableRow(ids, k, tableRows);
    let slot = slotOf.get(r);
    if (slot === undefined) {
      slot = order.length;
      slotOf.set(r, slot);
      order.push(r);
    }
    const at = slot * width;
    const from = k * width;
    for (let j = 0; j < width; j++) sums[at + j] = (sums[at + j] as number) + (rows[from + j] as number);
  }
  let sq = 0;
  for (let j = 0; j < order.length * width; j++) sq += (sums[j] as number) * (sums[j] as number);
  const sorted = order.map((r, slot) => ({ r, slot })).sort((a, b) => a.r - b.r);
  const data = new Float32Array(order.length * width);
  sorted.forEach(({ slot }, i) => {
    data.set(sums.subarray(slot * width, (slot + 1) * width), i * width);
  });
  return { sparse: { width, rows: Int32Array.from(sorted, (x) => x.r), data }, sq };
}

/**
 * Adds `rows` [N, width] (table rows `ids`) to the dense gradient `grad` of a tied table (the
 * gradient of its other uses, e.g. the masked-LM decoder's matmul): each distinct row gets the
 * float32 sum of its rows ({@link sumRows}) added once, as the dense graph's `Sum` of the decoder's
 * gradient and the Gathers' scatter computes it. Returns how much the sum of squares of `grad`
 * grew (float64), to correct a norm taken before.
 */
export function addRows(grad: Float32Array, width: number, ids: BigInt64Array, rows: Float32Array): number {
  const { sparse } = sumRows(grad.length / width, width, ids, rows);
  let delta = 0;
  sparse.rows.forEach((r, i) => {
    const at = r * width;
    const from = i * width;
    for (let j = 0; j < width; j++) {
      const before = grad[at + j] as number;
      const after = Math.fround(before + (sparse.data[from + j] as number));
      grad[at + j] = after;
      delta += after * after - before * before;
    }
  });
  return delta;
}

/** Table row of `ids[k]` (negative ids count from the end, as Gather and ScatterND do). */
function tableRow(ids: BigInt64Array, k: number, tableRows: number): number {
  let r = Number(ids[k]);
  if (r < 0) r += tableRows;
  if (r < 0 || r >= tableRows)
    throw new XltError('NUMERIC', `gradient row ${Number(ids[k])} is outside the table of ${tableRows} rows`);
  return r;
}
