import { readFileSync } from 'node:fs';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { carbGold, carbScore, carbSentenceKey, type OieExtraction, type OieGoldTuple } from './carb.js';

const S = 'Jobs founded Apple and Obama was born in Hawaii .';
const gold = (tuples: OieGoldTuple[], sentence = S) => new Map([[sentence, tuples]]);
const ex = (relation: string, args: string[], confidence = 1, sentence = S): OieExtraction => ({
  sentence,
  relation,
  args,
  confidence,
});

describe('CaRB pair matching (matcher.py binary_linient_tuple_match)', () => {
  it('scores an exact match 1 everywhere, AUC 1', () => {
    const r = carbScore(gold([{ relation: 'founded', args: ['Jobs', 'Apple'] }]), [
      ex('founded', ['Jobs', 'Apple']),
    ]);
    expect(r).toMatchObject({ precision: 1, recall: 1, f1: 1, auc: 1, threshold: 1 });
    expect(r).toMatchObject({ sentences: 1, goldTuples: 1, predictions: 1 });
  });

  it('gives per-part word-overlap precision and recall for a partial match', () => {
    // linient_tuple_match: relation 'born in' vs gold 'was born in' -> 2 words matched (prec /2, rec /3);
    // arg0 'Obama' vs 'Barack Obama' -> 1 (/1, /2); arg1 'Hawaii' vs 'Hawaii in 1961' -> 1 (/1, /3).
    // precision = 4/4, recall = 4/8.
    const r = carbScore(gold([{ relation: 'was born in', args: ['Barack Obama', 'Hawaii in 1961'] }]), [
      ex('born in', ['Obama', 'Hawaii']),
    ]);
    expect(r.precision).toBe(1);
    expect(r.recall).toBe(0.5);
    expect(r.f1).toBeCloseTo(2 / 3, 12);
  });

  it('scores 0 without relation overlap or with fewer arguments than the gold', () => {
    const g = gold([{ relation: 'born in', args: ['Obama', 'Hawaii'] }]);
    // no relation word in common -> [0, 0]
    expect(carbScore(g, [ex('moved to', ['Obama', 'Hawaii'])]).recall).toBe(0);
    // len(ex.args) <= i for i < 2 -> [0, 0]
    expect(carbScore(g, [ex('born in', ['Obama'])]).recall).toBe(0);
  });

  it('is lenient on arguments: relation overlap alone still scores, unlike binary-strict tuple_match', () => {
    // relation 2/2, arg0 'He' vs 'Obama' 0 (/1, /1), arg1 'there' vs 'Hawaii' 0 (/1, /1): 2/4 and 2/4
    const g = gold([{ relation: 'born in', args: ['Obama', 'Hawaii'] }]);
    const p = [ex('born in', ['He', 'there'])];
    expect(carbScore(g, p)).toMatchObject({ precision: 0.5, recall: 0.5 });
    expect(carbScore(g, p, { match: 'binary-strict' })).toMatchObject({ precision: 0, recall: 0 });
  });

  it("is case-sensitive and counts predicted 'be' as any form of be in the gold relation", () => {
    const g = gold([{ relation: 'is', args: ['Paris', 'a city'] }]);
    expect(carbScore(g, [ex('be', ['Paris', 'a city'])]).f1).toBe(1);
    // 'Is' is not 'is' and not 'be': no relation overlap
    expect(carbScore(g, [ex('Is', ['Paris', 'a city'])]).f1).toBe(0);
  });

  it('joins arguments 1..n into one before matching (binary)', () => {
    const g = gold([{ relation: 'gave', args: ['John', 'Mary', 'a book'] }]);
    expect(carbScore(g, [ex('gave', ['John', 'Mary a book'])]).f1).toBe(1);
    expect(carbScore(g, [ex('gave', ['John', 'Mary', 'a', 'book'])]).f1).toBe(1);
  });

  it('retries with swapped arguments when the gold relation is said-type', () => {
    // straight: relation 1/1, arg0 0/3 vs 0/2, arg1 0/2 vs 0/3 -> 1/6 and 1/6; swapped -> 1 and 1
    const said = gold([{ relation: 'said', args: ['the minister', 'taxes will rise'] }]);
    const swapped = [ex('said', ['taxes will rise', 'the minister'])];
    expect(carbScore(said, swapped).f1).toBe(1);
    const announced = gold([{ relation: 'announced', args: ['the minister', 'taxes will rise'] }]);
    const r = carbScore(announced, [ex('announced', ['taxes will rise', 'the minister'])]);
    expect(r.precision).toBeCloseTo(1 / 6, 12);
    expect(r.recall).toBeCloseTo(1 / 6, 12);
  });
});

describe('CaRB aggregation (carb.py Benchmark.compare)', () => {
  it('takes the best gold recall over all predictions but pairs precision one-to-one', () => {
    // g1 = (founded; Jobs; Apple), g2 = (founded; Wozniak; Apple); p1 = p2 = (founded; Jobs; Apple).
    // g1-p1 = g1-p2 = [1, 1]; g2-p* = [2/3, 2/3] (arg0 misses: 2 of 3 words on both sides).
    // recall = (1 + 2/3) / 2 gold = 5/6; precision greedy: g1-p1 (1), then g2-p2 (2/3) -> 5/3 / 2 = 5/6.
    const r = carbScore(
      gold([
        { relation: 'founded', args: ['Jobs', 'Apple'] },
        { relation: 'founded', args: ['Wozniak', 'Apple'] },
      ]),
      [ex('founded', ['Jobs', 'Apple']), ex('founded', ['Jobs', 'Apple'])],
    );
    expect(r.recall).toBeCloseTo(5 / 6, 12);
    expect(r.precision).toBeCloseTo(5 / 6, 12);
  });

  it('builds the P/R curve over distinct confidences, reports the best-F1 point and the AUC', () => {
    // Gold: g1 (founded; Jobs; Apple), g2 (born in; Obama; Hawaii). Predictions:
    //   a (founded; Jobs; Apple) 0.9 -> g1 [1, 1]        b (born in; Obama; Hawaii) 0.5 -> g2 [1, 1]
    //   c (moved to; Obama; Chicago) 0.7 -> [0, 0]        d (born; Obama; Kenya) 0.2 -> g2 [2/3, 1/2]
    // t=0.9 {a}: R = 1/2, P = 1/1              F1 2/3
    // t=0.7 {a,c}: R = 1/2, P = (1 + 0)/2      F1 1/2
    // t=0.5 {a,b,c}: R = 2/2, P = (1 + 1)/3    F1 0.8   <- optimal
    // t=0.2 {a,b,c,d}: R = 2/2, P = 2/4        F1 2/3
    // AUC: sklearn auc over recall [1, 1, .5, .5, 0], precision [.5, 2/3, .5, 1, 1] (endpoint (0, 1) added):
    //   x decreasing -> -trapz = 0.5 * (2/3 + 1/2) / 2 + 0.5 * (1 + 1) / 2 = 7/24 + 12/24 = 19/24
    const g = gold([
      { relation: 'founded', args: ['Jobs', 'Apple'] },
      { relation: 'born in', args: ['Obama', 'Hawaii'] },
    ]);
    const preds = [
      ex('founded', ['Jobs', 'Apple'], 0.9),
      ex('born in', ['Obama', 'Hawaii'], 0.5),
      ex('moved to', ['Obama', 'Chicago'], 0.7),
      ex('born', ['Obama', 'Kenya'], 0.2),
    ];
    const r = carbScore(g, preds);
    expect(r.curve.map((c) => c.threshold)).toEqual([0.2, 0.5, 0.7, 0.9]);
    expect(r.curve.map((c) => c.recall)).toEqual([1, 1, 0.5, 0.5]);
    const precisions = r.curve.map((c) => c.precision);
    [0.5, 2 / 3, 0.5, 1].forEach((p, i) => {
      expect(precisions[i]).toBeCloseTo(p, 12);
    });
    expect(r.threshold).toBe(0.5);
    expect(r.precision).toBeCloseTo(2 / 3, 12);
    expect(r.recall).toBe(1);
    expect(r.f1).toBeCloseTo(0.8, 12);
    expect(r.auc).toBeCloseTo(19 / 24, 12);

    // A prediction on a sentence outside the gold is not scored, but its confidence joins the
    // thresholds (as in CaRB): t=0.6 keeps {a, c} on the gold sentence; AUC and optimum unchanged.
    const r2 = carbScore(g, [...preds, ex('visited', ['x', 'y'], 0.6, 'Not a gold sentence .')]);
    expect(r2.curve.map((c) => c.threshold)).toEqual([0.2, 0.5, 0.6, 0.7, 0.9]);
    expect(r2.curve[2]).toEqual({ threshold: 0.6, precision: 0.5, recall: 0.5 });
    expect(r2.predictions).toBe(4);
    expect(r2.auc).toBeCloseTo(19 / 24, 12);
    expect(r2.f1).toBeCloseTo(0.8, 12);
  });

  it('joins sentences on the CaRB key (no spaces, no punctuation, PTB brackets undone)', () => {
    expect(carbSentenceKey('Jobs ( CEO ) founded Apple .')).toBe('JobsCEOfoundedApple');
    expect(carbSentenceKey('Jobs -LRB- CEO -RRB- founded Apple.')).toBe('JobsCEOfoundedApple');
    const g = gold([{ relation: 'founded', args: ['Jobs', 'Apple'] }], 'Jobs ( CEO ) founded Apple .');
    expect(
      carbScore(g, [ex('founded', ['Jobs', 'Apple'], 1, 'Jobs -LRB- CEO -RRB- founded Apple.')]).f1,
    ).toBe(1);
  });

  it('reads gold as GoldReader does: a trailing tab adds no argument', () => {
    // "S \t born in \t Obama \t" is a one-argument tuple in CaRB (the line is stripped), so a
    // one-argument prediction is scored; with an empty second argument it would score 0
    const g = carbGold([{ sentence: ` ${S}`, tuples: [{ relation: 'born in ', args: ['Obama', ''] }] }]);
    expect([...g]).toEqual([[S, [{ relation: 'born in', args: ['Obama'] }]]]);
    expect(carbScore(g, [ex('born in', ['Obama'])]).f1).toBe(1);
    expect(
      carbScore(new Map([[S, [{ relation: 'born in', args: ['Obama', ' '] }]]]), [ex('born in', ['Obama'])])
        .f1,
    ).toBe(1);
  });

  it('returns zeros without predictions and treats a missing confidence as 1', () => {
    const g = gold([{ relation: 'founded', args: ['Jobs', 'Apple'] }]);
    expect(carbScore(g, [])).toMatchObject({ precision: 0, recall: 0, f1: 0, auc: 0, curve: [] });
    expect(carbScore(g, [{ sentence: S, relation: 'founded', args: ['Jobs', 'Apple'] }]).threshold).toBe(1);
  });

  it("scores 'lexical' as a yes/no bag-of-words coverage above one half", () => {
    const g = gold([{ relation: 'born in', args: ['Obama', 'Hawaii'] }]);
    // gold bag: born in Obama Hawaii (4); 'Obama born in' covers 3/4 > 0.5
    expect(carbScore(g, [ex('born in', ['Obama'])], { match: 'lexical' }).f1).toBe(1);
    expect(carbScore(g, [ex('in', ['Obama'])], { match: 'lexical' }).f1).toBe(0);
  });
});

const goldDir = 'data/oie';
const skip = sharedSkipReason(goldDir, 'carb-data_gold_dev.tsv');

/** Gold TSV grouped per sentence, the shape of `@xlt/data`'s readCarb records. */
function readGold(file: string): Array<{ sentence: string; tuples: OieGoldTuple[] }> {
  const out: Array<{ sentence: string; tuples: OieGoldTuple[] }> = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const [sentence, relation, ...args] = line.split('\t') as [string, string, ...string[]];
    if (out.at(-1)?.sentence !== sentence) out.push({ sentence, tuples: [] });
    out.at(-1)?.tuples.push({ relation, args });
  }
  return out;
}

describe.skipIf(skip !== undefined)(`CaRB on the released gold${skip ? ` ${skip}` : ''}`, () => {
  const records = skip === undefined ? readGold(sharedPath(goldDir, 'carb-data_gold_dev.tsv')) : [];
  const g = carbGold(records);
  const asPredictions = (confidence: (i: number) => number, edit = (a: string) => a): OieExtraction[] => {
    let i = 0;
    return [...g].flatMap(([sentence, tuples]) =>
      tuples.map((t) => ({
        sentence,
        relation: t.relation,
        args: t.args.map(edit),
        confidence: confidence(i++),
      })),
    );
  };

  it('scores the dev gold against itself P = R = F1 = AUC = 1', () => {
    const r = carbScore(
      g,
      asPredictions(() => 1),
    );
    expect(r).toMatchObject({ precision: 1, recall: 1, f1: 1, auc: 1, sentences: 638, goldTuples: 2548 });
  });

  it('scores a degenerate system (a verb-ish word; first and last word) far below 1', () => {
    const preds = [...g.keys()].map((sentence) => {
      const w = sentence.split(' ').filter((x) => /\w/.test(x));
      const verb = w.find((x) => /^(is|was|are|were|has|had)$|ed$/.test(x)) ?? w[1] ?? '';
      return { sentence, relation: verb, args: [w[0] ?? '', w.at(-1) ?? ''], confidence: 1 };
    });
    const r = carbScore(g, preds);
    expect(r.f1).toBeGreaterThan(0.05);
    expect(r.f1).toBeLessThan(0.25);
    expect(r.recall).toBeLessThan(0.15);
    // the same system scored by a line-by-line transcription of carb.py + matcher.py in Python
    // (gold read from the TSV by GoldReader's rules)
    expect(r.precision).toBeCloseTo(0.5128004179728324, 12);
    expect(r.recall).toBeCloseTo(0.06685764943248475, 12);
    expect(r.auc).toBeCloseTo(0.05057114000307201, 12);
  });

  it('matches the carb.py transcription on a perturbed system with five confidence levels', () => {
    // every gold tuple with the last word of each argument replaced by 'qqq', confidence (i mod 5) / 4
    const preds = asPredictions(
      (i) => (i % 5) / 4,
      (a) => [...a.split(' ').slice(0, -1), 'qqq'].join(' '),
    );
    const r = carbScore(g, preds);
    expect(r.curve).toHaveLength(5);
    expect(r.threshold).toBe(0);
    expect(r.precision).toBeCloseTo(0.7526102558282899, 12);
    expect(r.recall).toBeCloseTo(0.7547629742581425, 12);
    expect(r.f1).toBeCloseTo(0.7536850778669729, 12);
    expect(r.auc).toBeCloseTo(0.6039522325301034, 12);
  });
});
