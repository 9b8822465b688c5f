import { sharedPath, sharedSkipReason } from '@xlt/core';
import { carbScore } from '@xlt/evaluator';
import { baselineExtract, carbScoredGold } from '@xlt/oie';
import { describe, expect, it } from 'vitest';
import {
  carbSentenceStats,
  HEURISTIC,
  modelVsHeuristic,
  type OieCell,
  statsF1,
  summariseOie,
} from './experiment-oie.js';

const sentences = Array.from({ length: 30 }, (_, i) => `Person ${i} founded company ${i} in ${1900 + i} .`);
const gold = new Map(
  sentences.map((s, i) => [s, [{ relation: 'founded', args: [`Person ${i}`, `company ${i}`] }]]),
);
const right = sentences.map((s, i) => ({
  sentence: s,
  relation: 'founded',
  args: [`Person ${i}`, `company ${i}`],
  confidence: 0.9,
}));
const wrong = sentences.map((s, i) => ({ sentence: s, relation: `${i}`, args: ['in', 'x'], confidence: 1 }));

describe('model vs heuristic, paired bootstrap over sentences', () => {
  it('a model that finds every gold tuple beats a heuristic that finds none, with the CI above 0', () => {
    const r = modelVsHeuristic(
      { 'CaRB en': gold },
      {
        'CaRB en': [
          { model: right, [HEURISTIC]: wrong },
          { model: right, [HEURISTIC]: wrong },
        ],
      },
      { resamples: 50, seed: 0 },
    );
    const d = r['CaRB en'];
    expect(d?.diff).toBeCloseTo(100, 5);
    expect(d?.ciLow).toBeGreaterThan(90);
  });

  it('identical systems differ by exactly 0 in every resample', () => {
    const half = right.map((p, i) => (i % 2 === 0 ? p : { ...wrong[i], confidence: 1 }) as typeof p);
    const r = modelVsHeuristic(
      { 'CaRB en': gold },
      { 'CaRB en': [{ model: half, [HEURISTIC]: half }] },
      { resamples: 50, seed: 0 },
    );
    expect(r['CaRB en']).toEqual({ diff: 0, ciLow: 0, ciHigh: 0 });
  });

  it('a sentence drawn twice counts twice (resampled sentences get distinct keys)', () => {
    // the model is right on sentence 0 only: its F1 varies with how often sentence 0 is drawn
    const one = [right[0] as (typeof right)[number]];
    const r = modelVsHeuristic(
      { 'CaRB en': new Map([...gold].slice(0, 3)) },
      { 'CaRB en': [{ model: one, [HEURISTIC]: [] }] },
      { resamples: 200, seed: 1 },
    );
    const d = r['CaRB en'] as { diff: number; ciLow: number; ciHigh: number };
    expect(d.diff).toBeCloseTo(50, 5); // P 1, R 1/3
    expect(d.ciHigh).toBeGreaterThan(d.diff);
    expect(d.ciLow).toBeLessThan(d.diff);
  });

  it('summarises per set: over-seed CI of model − heuristic and the verdict from the sentence CI', () => {
    const scores = (m: number) => ({
      model: { precision: m, recall: m, f1: m, auc: 1 },
      [HEURISTIC]: { precision: 30, recall: 20, f1: 24, auc: 10 },
      'baseline:second-word': { precision: 5, recall: 5, f1: 5, auc: 1 },
    });
    const cells: OieCell[] = [
      { seed: 0, set: 'Re-OIE2016 es', scores: scores(30), seconds: {} },
      { seed: 1, set: 'Re-OIE2016 es', scores: scores(34), seconds: {} },
      { seed: 0, set: 'CaRB en', scores: scores(10), seconds: {} },
      { seed: 1, set: 'CaRB en', scores: scores(12), seconds: {} },
    ];
    const rows = summariseOie(
      cells,
      {
        'Re-OIE2016 es': { diff: 8, ciLow: 3, ciHigh: 12 },
        'CaRB en': { diff: -13, ciLow: -16, ciHigh: -10 },
      },
      { 'Re-OIE2016 es': 595, 'CaRB en': 634 },
      { resamples: 100, seed: 0 },
    );
    expect(rows.map((r) => [r.set, r.beats])).toEqual([
      ['Re-OIE2016 es', 'yes'],
      ['CaRB en', 'no'],
    ]);
    expect(rows[0]?.model.mean).toBe(32);
    expect(rows[0]?.overSeeds.mean).toBe(8);
    expect(rows[0]?.overSeeds.ciLow).toBe(6);
    expect(rows[0]?.overSeeds.ciHigh).toBe(10);
    expect(rows[1]?.trivial).toBe(5);
  });
});

describe.skipIf(sharedSkipReason('data', 'oie') !== undefined)('CaRB per-sentence statistics', () => {
  it("summed over all sentences give carbScore's F1 at its best threshold (CaRB test, 80 sentences)", async () => {
    const { gold } = await carbScoredGold(sharedPath('data', 'oie'), 'carb', 80);
    // the heuristic's extractions with varied confidences, so the threshold matters
    const preds = baselineExtract([...gold.keys()], 'verb-like').map((p, i) => ({
      ...p,
      confidence: ((i * 37) % 11) / 10,
    }));
    const full = carbScore(gold, preds);
    const stats = carbSentenceStats(gold, preds, full.threshold);
    expect(stats).toHaveLength(gold.size);
    expect(statsF1(stats)).toBeCloseTo(100 * full.f1, 9);
    // at other thresholds: the F1 of the kept predictions alone
    for (const t of [0.3, 0.6, 0.9]) {
      const kept = preds.filter((p) => p.confidence >= t).map((p) => ({ ...p, confidence: 1 }));
      const want = carbScore(gold, kept);
      expect(want.predictions).toBeGreaterThan(0);
      expect(statsF1(carbSentenceStats(gold, preds, t))).toBeCloseTo(100 * want.f1, 9);
    }
    // and the paired bootstrap's point is the difference of the two carbScore F1s
    const other = baselineExtract([...gold.keys()], 'second-word');
    const r = modelVsHeuristic(
      { 'CaRB en': gold },
      { 'CaRB en': [{ model: other, [HEURISTIC]: preds }] },
      { resamples: 20, seed: 0 },
    );
    expect(r['CaRB en']?.diff).toBeCloseTo(100 * (carbScore(gold, other).f1 - full.f1), 9);
  });
});
