import { describe, expect, it } from 'vitest';
import { argumentSpans, decodeTuples, predicateSpans } from './decode.js';
import { type ArgumentTag, type PredicateTag, tuplesToTags } from './tags.js';

const W = 'Barack Obama , who was born in Hawaii , became president in 2009 .'.split(' ');

describe('tuples to tags', () => {
  it('tags two predicates and their arguments, and round-trips through decoding', () => {
    const tuples = [
      { relation: 'was born in', args: ['Barack Obama', 'Hawaii'] },
      { relation: 'became', args: ['Barack Obama', 'president', 'in 2009'] },
    ];
    const t = tuplesToTags(W, tuples);
    expect(t.skipped).toEqual([]);
    expect(t.predicate).toEqual([
      'O',
      'O',
      'O',
      'O',
      'P-B',
      'P-I',
      'P-I',
      'O',
      'O',
      'P-B',
      'O',
      'O',
      'O',
      'O',
    ]);
    expect(t.tuples[1]!.args).toEqual([
      'A0-B',
      'A0-I',
      'O',
      'O',
      'O',
      'O',
      'O',
      'O',
      'O',
      'O',
      'A1-B',
      'A2-B',
      'A2-I',
      'O',
    ]);
    const back = decodeTuples({ words: W, predicate: t.predicate, arguments: t.tuples.map((x) => x.args) });
    expect(back.map(({ relation, args }) => ({ relation, args }))).toEqual(tuples);
  });

  it('finds a discontinuous relation and skips tuples whose words are not in the sentence', () => {
    const words = 'He turned the lights off'.split(' ');
    const t = tuplesToTags(words, [
      { relation: 'turned off', args: ['He', 'the lights'] },
      { relation: 'switched', args: ['He', 'lights'] },
    ]);
    expect(t.predicate).toEqual(['O', 'P-B', 'O', 'O', 'P-B']);
    expect(t.skipped).toHaveLength(1);
    expect(t.tuples[0]!.predicateWords).toEqual([1, 4]);
  });
});

describe('decoding hand-made tag sequences', () => {
  it('reads predicate runs, including a P-I without a P-B', () => {
    expect(predicateSpans(['O', 'P-B', 'P-I', 'O', 'P-I', 'P-B'] as PredicateTag[])).toEqual([
      [1, 2],
      [4],
      [5],
    ]);
  });

  it('joins a discontinuous argument and keeps the first of two begins', () => {
    const tags = ['A0-B', 'O', 'A0-I', 'A1-B', 'A0-B', 'A0-I'] as ArgumentTag[];
    expect(argumentSpans(tags)).toEqual(
      new Map([
        [0, [0, 2]],
        [1, [3]],
      ]),
    );
  });

  it('overlapping arguments of two predicates each decode on their own', () => {
    const words = 'Mary bought and sold shares'.split(' ');
    const out = decodeTuples({
      words,
      predicate: ['O', 'P-B', 'O', 'P-B', 'O'],
      arguments: [
        ['A0-B', 'O', 'O', 'O', 'A1-B'],
        ['A0-B', 'O', 'O', 'O', 'A1-B'],
      ],
    });
    expect(out.map((t) => [t.relation, ...t.args])).toEqual([
      ['bought', 'Mary', 'shares'],
      ['sold', 'Mary', 'shares'],
    ]);
  });

  it('keeps a missing middle argument as an empty slot and drops tuples below minArgs', () => {
    const words = 'It rained in Paris'.split(' ');
    const out = decodeTuples({
      words,
      predicate: ['O', 'P-B', 'O', 'O'],
      arguments: [['O', 'O', 'A1-B', 'A1-I']],
    });
    expect(out[0]!.args).toEqual(['', 'in Paris']);
    expect(
      decodeTuples({ words, predicate: ['O', 'P-B', 'O', 'O'], arguments: [['O', 'O', 'O', 'O']] }),
    ).toEqual([]);
    expect(
      decodeTuples(
        { words, predicate: ['O', 'P-B', 'O', 'O'], arguments: [['A0-B', 'O', 'O', 'O']] },
        { minArgs: 2 },
      ),
    ).toEqual([]);
  });

  it('combines predicate and argument-begin scores into the confidence', () => {
    const words = 'Cats chase mice'.split(' ');
    const [t] = decodeTuples({
      words,
      predicate: ['O', 'P-B', 'O'],
      predicateScores: [0.8],
      arguments: [['A0-B', 'O', 'A1-B']],
      argumentBeginScores: [(i) => (i === 0 ? 0.9 : 0.5)],
    });
    // 0.8 x mean(0.9, 0.5)
    expect(t!.confidence).toBeCloseTo(0.56, 10);
  });

  it('rejects unknown tags', () => {
    expect(() => predicateSpans(['O', 'B-P'] as unknown as PredicateTag[])).toThrow(
      /predicate\[1\] is 'B-P'/,
    );
  });
});
