import { describe, expect, it } from 'vitest';
import { padTokenRows } from './batch.js';

describe('padTokenRows', () => {
  it('pads rows to the longest with the pad id and masks exactly the padding', () => {
    const b = padTokenRows(
      [
        [0, 7, 2],
        [0, 2],
        [0, 5, 6, 7, 2],
      ],
      1,
    );
    expect(b.inputIds).toEqual([
      [0, 7, 2, 1, 1],
      [0, 2, 1, 1, 1],
      [0, 5, 6, 7, 2],
    ]);
    expect(b.attentionMask).toEqual([
      [1, 1, 1, 0, 0],
      [1, 1, 0, 0, 0],
      [1, 1, 1, 1, 1],
    ]);
  });

  it('copies the rows (the input arrays are not padded in place) and accepts no rows', () => {
    const row = [0, 2];
    const b = padTokenRows([row, [0, 4, 2]], 1);
    expect(row).toEqual([0, 2]);
    expect(b.inputIds[0]).not.toBe(row);
    expect(padTokenRows([], 1)).toEqual({ inputIds: [], attentionMask: [] });
  });
});
