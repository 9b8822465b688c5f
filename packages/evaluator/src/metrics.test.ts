import { describe, expect, it } from 'vitest';
import { accuracy, macroF1, tokenAccuracy } from './classification.js';
import { entityF1, entityReport, lenientEntities, strictEntities } from './seqeval.js';
import { normalizeMlqa, normalizeSquad, squadCorpus, squadScores } from './squad.js';

describe('entity F1 as seqeval computes it', () => {
  it("reproduces seqeval's README example (micro F1 0.50; MISC 0, PER 1)", () => {
    // github.com/chakki-works/seqeval README: f1_score(y_true, y_pred) == 0.50, classification_report rows
    const yTrue = [
      ['O', 'O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'O'],
      ['B-PER', 'I-PER', 'O'],
    ];
    const yPred = [
      ['O', 'O', 'B-MISC', 'I-MISC', 'I-MISC', 'I-MISC', 'O'],
      ['B-PER', 'I-PER', 'O'],
    ];
    expect(entityF1(yTrue, yPred)).toEqual({ precision: 0.5, recall: 0.5, f1: 0.5 });
    const r = entityReport(yTrue, yPred);
    expect(r.byType.MISC).toEqual({ precision: 0, recall: 0, f1: 0, support: 1 });
    expect(r.byType.PER).toEqual({ precision: 1, recall: 1, f1: 1, support: 1 });
  });

  it("reproduces seqeval's strict-mode example (I-NP start counts by default, not under IOB2 strict)", () => {
    // seqeval README "strict mode": default report NP 1.00/1.00/1.00, strict IOB2 NP 0.00/0.00/0.00
    const yTrue = [['B-NP', 'I-NP', 'O']];
    const yPred = [['I-NP', 'I-NP', 'O']];
    expect(entityF1(yTrue, yPred).f1).toBe(1);
    expect(entityF1(yTrue, yPred, { mode: 'strict', scheme: 'IOB2' }).f1).toBe(0);
  });

  it('finds the entities of the docstring examples (get_entities; Tokens(..., IOB2).entities)', () => {
    // seqeval get_entities docstring: ['B-PER','I-PER','O','B-LOC'] -> [('PER',0,1), ('LOC',3,3)] (inclusive ends)
    expect(lenientEntities([['B-PER', 'I-PER', 'O', 'B-LOC']])).toEqual([
      { type: 'PER', sentence: 0, start: 0, end: 2 },
      { type: 'LOC', sentence: 0, start: 3, end: 4 },
    ]);
    // seqeval scheme.Tokens docstring: [('PER', 0, 2), ('LOC', 3, 4)]
    expect(
      strictEntities([['B-PER', 'I-PER', 'O', 'B-LOC']], 'IOB2').map((e) => [e.type, e.start, e.end]),
    ).toEqual([
      ['PER', 0, 2],
      ['LOC', 3, 4],
    ]);
  });

  it('applies IOB1 and IOBES rules in strict mode', () => {
    // IOB1: I- starts an entity after O; B- only separates two adjacent entities of the same type
    expect(strictEntities([['I-PER', 'I-PER', 'B-PER', 'O']], 'IOB1').map((e) => [e.start, e.end])).toEqual([
      [0, 2],
      [2, 3],
    ]);
    // IOBES: S- is a single-token entity, B- ... E- a span; B- without E- is no entity in strict mode
    expect(
      strictEntities([['S-LOC', 'B-PER', 'I-PER', 'E-PER', 'B-ORG', 'O']], 'IOBES').map((e) => [
        e.type,
        e.start,
        e.end,
      ]),
    ).toEqual([
      ['LOC', 0, 1],
      ['PER', 1, 4],
    ]);
    expect(() => strictEntities([['S-LOC']], 'IOB2')).toThrow(/invalid tag 'S-LOC' for IOB2/);
  });

  it('a type change inside a chunk ends it (lenient) and empty predictions score 0', () => {
    // end_of_chunk: prev_tag != 'O' and prev_type != type_
    expect(lenientEntities([['B-PER', 'I-LOC']]).map((e) => [e.type, e.start, e.end])).toEqual([
      ['PER', 0, 1],
      ['LOC', 1, 2],
    ]);
    expect(entityF1([['B-PER']], [['O']])).toEqual({ precision: 0, recall: 0, f1: 0 });
    expect(() => entityF1([['O', 'O']], [['O']])).toThrow(/sentence 0: 2 gold tags but 1 predicted/);
  });
});

describe('SQuAD v1.1 and MLQA scores', () => {
  it('normalises as evaluate-v1.1.py (lower-case, punctuation, articles, white space)', () => {
    expect(normalizeSquad('The  Eiffel Tower!')).toBe('eiffel tower');
    expect(squadScores('The Eiffel Tower!', ['eiffel tower'])).toEqual({ exactMatch: 100, f1: 100 });
  });

  it('computes token F1 and takes the maximum over gold answers', () => {
    // "in the city of Paris" -> [in, city, of, paris]; gold [paris]: P = 1/4, R = 1, F1 = 0.4
    expect(squadScores('in the city of Paris', ['Paris']).f1).toBeCloseTo(40, 10);
    expect(squadScores('in the city of Paris', ['London', 'city of Paris'])).toEqual({
      exactMatch: 0,
      f1: expect.closeTo(((2 * 0.75 * 1) / 1.75) * 100, 8),
    });
    expect(
      squadCorpus([
        { prediction: 'a', answers: ['b'] },
        { prediction: 'x y', answers: ['x y'] },
      ]),
    ).toEqual({ exactMatch: 50, f1: 50 });
  });

  it("uses MLQA's language-specific articles, Unicode punctuation and Chinese mixed segmentation", () => {
    // mlqa_evaluation_v1.py: de articles, zh character tokens, ar 'ال' removal, vi articles
    expect(squadScores('Der Hund', ['Hund'], 'de').exactMatch).toBe(100);
    expect(squadScores('Der Hund', ['Hund']).exactMatch).toBe(0); // SQuAD script knows only English articles
    expect(squadScores('北京大学', ['北京'], 'zh').f1).toBeCloseTo(((2 * 0.5 * 1) / 1.5) * 100, 8);
    expect(squadScores('الكتاب', ['كتاب'], 'ar').exactMatch).toBe(100);
    expect(squadScores('cái bàn', ['bàn'], 'vi').exactMatch).toBe(100);
    expect(normalizeMlqa('«Hola», dijo el niño.', 'es')).toBe('hola dijo niño');
  });
});

describe('classification metrics', () => {
  it('accuracy, token accuracy and macro-F1 as scikit-learn', () => {
    expect(accuracy([1, 2, 3, 4], [1, 2, 0, 4])).toBe(0.75);
    expect(tokenAccuracy([['NOUN', 'VERB'], ['DET']], [['NOUN', 'NOUN'], ['DET']])).toBeCloseTo(2 / 3, 12);
    // per label F1 = 2tp / (2tp + fp + fn): label 0: 2/4, label 1: 4/5, label 2: 0 -> mean 0.4333...
    expect(macroF1([0, 0, 1, 1, 2], [0, 1, 1, 1, 0])).toBeCloseTo((0.5 + 0.8 + 0) / 3, 12);
    expect(() => accuracy([1], [1, 2])).toThrow(/1 gold labels but 2 predictions/);
  });
});
