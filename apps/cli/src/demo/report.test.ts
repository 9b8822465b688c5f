import { describe, expect, it } from 'vitest';
import { demoReport, targetAverageCi } from './report.js';
import type { DemoResult } from './run.js';
import { buildDemoBenchmark } from './synthetic.js';

const flags = (n: number, k: number) => Array.from({ length: n }, (_, i) => i < k);

describe('demo report', () => {
  it('gives the target average with a bootstrap CI that contains it and the paired X-Mod − shared difference', () => {
    const benchmark = buildDemoBenchmark({
      seed: 0,
      numLanguages: 3,
      rawSentencesPerLanguage: 10,
      trainSize: 10,
      testSizePerLanguage: 10,
    });
    const result = (model: 'shared' | 'xmod', k: number) => {
      const correct = { en: flags(200, 190), xa: flags(200, k), xb: flags(200, k) };
      return {
        model,
        correct,
        accuracy: Object.fromEntries(
          Object.entries(correct).map(([l, xs]) => [l, xs.filter(Boolean).length / xs.length]),
        ),
        mlmLoss: [],
      };
    };
    const r = {
      benchmark,
      tokenizer: undefined,
      results: [result('shared', 100), result('xmod', 140)],
      seconds: 1,
    } as unknown as DemoResult;
    const ci = targetAverageCi(r.results[0]!.correct, ['xa', 'xb']);
    expect(ci.mean).toBeCloseTo(50, 6);
    expect(ci.low).toBeLessThan(50);
    expect(ci.high).toBeGreaterThan(50);
    expect(ci.high - ci.low).toBeLessThan(15);
    const md = demoReport(r);
    expect(md).toMatch(/\| shared \| 95\.0 \| 50\.0 \| 50\.0 \| 50\.0 \(\d+\.\d–\d+\.\d\) \| 45\.0 \|/);
    expect(md).toMatch(
      /X-Mod − shared, target average: 20\.0 points \(paired bootstrap 95% CI 1\d\.\d to 2\d\.\d\)/,
    );
  });
});
