import { describe, expect, it } from 'vitest';
import { pairedBootstrap, seedMean } from './paired.js';

const acc = (xs: readonly number[]) => (100 * xs.reduce((a, x) => a + x, 0)) / xs.length;

describe('pairedBootstrap', () => {
  it('B better on every example: the difference and its whole CI are positive, and the target average leaves the source out', () => {
    const a = { en: [1, 1, 0, 0], de: Array.from({ length: 200 }, (_, i) => (i % 4 === 0 ? 1 : 0)) };
    const b = { en: [0, 0, 0, 0], de: Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? 1 : 0)) };
    const r = pairedBootstrap(a, b, { source: 'en', score: acc, resamples: 300, seed: 1 });
    expect(r.languages.de?.diff).toBeCloseTo(25, 6);
    expect(r.languages.de?.ciLow).toBeGreaterThan(0);
    expect(r.languages.de?.pNotBetter).toBe(0);
    expect(r.languages.en?.diff).toBeCloseTo(-50, 6);
    expect(r.targetAverage.diff).toBeCloseTo(25, 6);
  });

  it('pairing removes the shared spread: identical systems give a zero-width CI at 0', () => {
    const xs = Array.from({ length: 100 }, (_, i) => ((i * 7) % 3 === 0 ? 1 : 0));
    const r = pairedBootstrap(
      { en: xs, fr: xs },
      { en: xs, fr: xs },
      { source: 'en', score: acc, resamples: 100 },
    );
    expect(r.languages.fr).toMatchObject({ diff: 0, ciLow: 0, ciHigh: 0, pNotBetter: 1 });
  });

  it('names the language whose example counts differ', () => {
    expect(() =>
      pairedBootstrap({ en: [1], de: [1, 0] }, { en: [1], de: [1] }, { source: 'en', score: acc }),
    ).toThrow(/language 'de' has 2 examples for A but 1 for B/);
  });
});

describe('seedMean', () => {
  it('gives the mean over seeds with a bootstrap CI that holds it, and no CI for one seed', () => {
    const r = seedMean([2.0, 2.2, 2.4], { resamples: 500, seed: 3 });
    expect(r.mean).toBeCloseTo(2.2, 9);
    expect(r.n).toBe(3);
    expect(r.ciLow).toBeGreaterThanOrEqual(2.0);
    expect(r.ciLow).toBeLessThan(2.2);
    expect(r.ciHigh).toBeGreaterThan(2.2);
    expect(r.ciHigh).toBeLessThanOrEqual(2.4);
    const one = seedMean([1.5]);
    expect(one.mean).toBe(1.5);
    expect(Number.isNaN(one.ciLow) && Number.isNaN(one.ciHigh)).toBe(true);
  });

  it('names a value that is not a finite number', () => {
    expect(() => seedMean([1, Number.NaN])).toThrow(/value 1 is NaN/);
  });
});
