/**
 * The one batch type of xlt: what the data readers' collators produce, what both training engines
 * (tfjs `fit`, the compiled onnxruntime step) and the Open IE trainer consume, and what the server
 * pads its requests into. Plain nested arrays, padded to the batch's longest row.
 */
export interface TokenBatch {
  /** [batch][time] token ids. */
  inputIds: number[][];
  /** [batch][time] 1 for tokens, 0 for padding. */
  attentionMask: number[][];
  /** X-Mod language index per example (an index into the config's `languages`). */
  langIds?: number[];
  /** [batch] (sequence classification) or [batch][time] (MLM, token classification); -100 is ignored. */
  labels?: number[] | number[][];
  /** [batch] answer start / end token positions (span QA). */
  startPositions?: number[];
  endPositions?: number[];
  /**
   * Open IE (Multi2OIE head, `@xlt/oie`): [batch][time] the row's predicate (1 on its tokens), its
   * position ids (1 inside, 2 elsewhere, 0 padding), and the predicate and argument tags (-100 ignored).
   */
  predMask?: number[][];
  predPosition?: number[][];
  predLabels?: number[][];
  argLabels?: number[][];
  /**
   * Embedding mixup (onnxruntime engine with `onnx.embeddingMixup`): per position K candidate token
   * ids [batch][time][K], their weights [batch][time][K] and the mixing weight [batch][time] (0: the
   * token's own embedding; l: (1 - l) E[token] + l sum_k p_k E[candidate k]).
   */
  mixIds?: number[][][];
  mixProbs?: number[][][];
  mixLambda?: number[][];
}

/** A {@link TokenBatch} of the Open IE head: its four fields present. */
export type OpenIeBatch = TokenBatch &
  Required<Pick<TokenBatch, 'predMask' | 'predPosition' | 'predLabels' | 'argLabels'>>;

/**
 * Pads token-id rows to the longest with `padId` and builds the attention mask (1 for tokens, 0 for
 * padding): the `inputIds` / `attentionMask` part of a {@link TokenBatch}.
 */
export function padTokenRows(
  rows: readonly (readonly number[])[],
  padId: number,
): Pick<TokenBatch, 'inputIds' | 'attentionMask'> {
  const S = rows.reduce((m, r) => Math.max(m, r.length), 0);
  return {
    inputIds: rows.map((r) => [...r, ...new Array<number>(S - r.length).fill(padId)]),
    attentionMask: rows.map((r) => [
      ...new Array<number>(r.length).fill(1),
      ...new Array<number>(S - r.length).fill(0),
    ]),
  };
}
