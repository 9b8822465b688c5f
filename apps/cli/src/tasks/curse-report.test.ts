import { describe, expect, it } from 'vitest';
import {
  type Architecture,
  type CurseCell,
  curseChart,
  curseMarkdown,
  summariseCurse,
} from './curse-report.js';
import { curseLanguageSets } from './experiments.js';

/** A cell whose losses grow with the number of languages, less so for X-Mod; seeds add noise. */
function cell(architecture: Architecture, languages: string[], seed: number): CurseCell {
  const curse = (languages.length - 1) * (architecture === 'xmod' ? 0.05 : 0.2);
  const heldOut = Object.fromEntries(languages.map((l, i) => [l, 5 + i * 0.5 + curse + seed * 0.01]));
  return {
    architecture,
    count: languages.length,
    languages,
    seed,
    heldOut,
    maskedTokens: Object.fromEntries(languages.map((l) => [l, 100])),
    steps: 10,
    finalTrainingLoss: 6,
    seconds: 60,
  };
}

const sets = curseLanguageSets(['en', 'ru', 'zh', 'ar'], [1, 2, 4]);
const cells = [0, 1, 2].flatMap((seed) =>
  sets.flatMap((s) => (['shared', 'xmod'] as const).map((a) => cell(a, s.languages, seed))),
);

describe('xmod-curse results', () => {
  it('averages English and the mean loss over seeds with CIs, and pairs X-Mod − shared by seed', () => {
    const rows = summariseCurse(cells, { resamples: 200, seed: 0 });
    expect(rows.map((r) => r.count)).toEqual([1, 2, 4]);
    const four = rows[2];
    // English: 5 + 3 x 0.2 (shared) or 3 x 0.05 (X-Mod), + 0.01 per seed (mean 0.01)
    expect(four?.shared?.english.mean).toBeCloseTo(5.61, 9);
    expect(four?.xmod?.english.mean).toBeCloseTo(5.16, 9);
    // mean over en ru zh ar: 5 + 0.75 + curse
    expect(four?.shared?.mean.mean).toBeCloseTo(6.36, 9);
    expect(four?.shared?.mean.n).toBe(3);
    expect(four?.shared?.english.ciLow).toBeLessThanOrEqual(5.61);
    expect(four?.shared?.english.ciHigh).toBeGreaterThanOrEqual(5.61);
    // the seed noise cancels in the paired difference: a CI of width 0
    expect(four?.xmodMinusShared?.english.mean).toBeCloseTo(-0.45, 9);
    expect(four?.xmodMinusShared?.english.ciLow).toBeCloseTo(-0.45, 9);
    expect(four?.xmodMinusShared?.english.ciHigh).toBeCloseTo(-0.45, 9);
    expect(rows[0]?.xmodMinusShared?.mean.mean).toBeCloseTo(0, 9);
  });

  it("measures the curse as English's loss rise from the one-language model, paired by seed", () => {
    const rows = summariseCurse(cells, { resamples: 200, seed: 0 });
    expect(rows[0]?.englishRise).toBeUndefined();
    const four = rows[2]?.englishRise;
    // shared 3 x 0.2, X-Mod 3 x 0.05; the seed offsets cancel within each architecture
    expect(four?.shared?.mean).toBeCloseTo(0.6, 9);
    expect(four?.shared?.ciLow).toBeCloseTo(0.6, 9);
    expect(four?.xmod?.mean).toBeCloseTo(0.15, 9);
    expect(four?.xmodMinusShared?.mean).toBeCloseTo(-0.45, 9);
    expect(rows[1]?.englishRise?.shared?.mean).toBeCloseTo(0.2, 9);
    // a seed without its one-language cell drops out of the rise, not the whole row
    const partial = cells.filter((c) => !(c.seed === 2 && c.count === 1 && c.architecture === 'shared'));
    const r4 = summariseCurse(partial, { resamples: 200, seed: 0 })[2]?.englishRise;
    expect(r4?.shared?.n).toBe(2);
    expect(r4?.xmod?.n).toBe(3);
    expect(r4?.xmodMinusShared?.n).toBe(2);
    const md = curseMarkdown(summariseCurse(cells, { resamples: 200, seed: 0 }), cells, {
      order: ['en', 'ru', 'zh', 'ar'],
      seeds: [0, 1, 2],
      resamples: 200,
      settings: 'tiny',
      seconds: 5,
    });
    expect(md).toContain(
      '| 4 | +0.600 (+0.600 to +0.600) | +0.150 (+0.150 to +0.150) | -0.450 (-0.450 to -0.450) | 75% |',
    );
  });

  it('writes the table with CIs, every language per model, and a chart of four series', () => {
    // 3 seeds: a mean at the lowest value has probability 1/27, so the 2.5% percentile is it
    const rows = summariseCurse(cells, { resamples: 2000, seed: 0 });
    const md = curseMarkdown(rows, cells, {
      order: ['en', 'ru', 'zh', 'ar'],
      seeds: [0, 1, 2],
      resamples: 2000,
      settings: 'tiny',
      seconds: 5,
    });
    expect(md).toMatch(/^\| 4 \| 5\.610 \(5\.600 to 5\.620\) \|/m);
    expect(md).toContain('| -0.450 (-0.450 to -0.450) |');
    expect(md).toMatch(/^\| shared \| 2 \| 5\.210 \| 5\.710 \| – \| – \|$/m);
    expect(md).toContain('Wall time: 18.0 min of pre-training summed over the 18 cells');
    const svg = curseChart(rows);
    expect((svg.match(/<g data-series=/g) ?? []).length).toBe(4);
    // CI whiskers where there are several seeds
    expect(svg).toMatch(/95% CI/);
  });
});

describe('curseLanguageSets', () => {
  it('nests the sets, English first, and cuts at the counts up to the number of languages', () => {
    expect(curseLanguageSets(['ru', 'en', 'zh'])).toEqual([
      { count: 1, languages: ['en'] },
      { count: 2, languages: ['en', 'ru'] },
      { count: 3, languages: ['en', 'ru', 'zh'] },
    ]);
    expect(curseLanguageSets().map((s) => s.count)).toEqual([1, 2, 4, 8, 12]);
    expect(curseLanguageSets()[1]?.languages).toEqual(['en', 'ru']);
  });

  it('names unknown, repeated or missing languages and impossible counts', () => {
    expect(() => curseLanguageSets(['en', 'nl'])).toThrow(/languages: nl not among/);
    expect(() => curseLanguageSets(['en', 'de', 'de'])).toThrow(/de given more than once/);
    expect(() => curseLanguageSets(['de'])).toThrow(/English \(en\)/);
    expect(() => curseLanguageSets(['en', 'de'], [0, 3])).toThrow(/counts: 0, 3 not between 1 and the 2/);
  });
});
