import { describe, expect, it } from 'vitest';
import { unigramCounts } from './mlm-eval.js';

describe('unigram baseline of the held-out masked-LM loss', () => {
  it('counts each language on its own, leaving out the tokens that are never masked', () => {
    const corpus = new Map([
      ['en', [[0, 5, 5, 6, 2]]],
      [
        'de',
        [
          [0, 7, 2],
          [0, 7, 7, 2],
        ],
      ],
    ]);
    const u = unigramCounts(corpus, 10, new Set([0, 2]));
    expect(u.get('en')?.total).toBe(3);
    expect(Array.from(u.get('en')?.counts ?? [])).toEqual([0, 0, 0, 0, 0, 2, 1, 0, 0, 0]);
    expect(u.get('de')?.total).toBe(3);
    expect(u.get('de')?.counts[7]).toBe(3);
    expect(u.get('de')?.counts[5]).toBe(0);
  });
});
