import { describe, expect, it } from 'vitest';
import { median, timeRuns } from './stats.js';

describe('bench stats', () => {
  it('computes medians of odd and even lists', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(Number.isNaN(median([]))).toBe(true);
  });
  it('runs the warm-up untimed and times each repetition', async () => {
    let calls = 0;
    const t = await timeRuns(
      () => {
        calls++;
      },
      3,
      2,
    );
    expect(calls).toBe(5);
    expect(t).toHaveLength(3);
    expect(t.every((x) => x >= 0)).toBe(true);
  });
});
