import { sharedPath, sharedSkipReason } from '@xlt/core';
import { type CarbSentence, type ReOieSentence, readCarb, readReOie } from '@xlt/data';
import { XltTokenizer } from '@xlt/tokenizer';
import { describe, expect, it } from 'vitest';
import {
  annotationSources,
  fromAnnotations,
  fromCarb,
  fromReOie,
  mergeConversions,
  parseAnnotationJsonl,
} from './convert.js';
import { collateRows, examplesToRows } from './features.js';
import { splitWords } from './words.js';

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe('CaRB gold to examples', () => {
  it('tags located tuples and reports the implicit ones it cannot place', () => {
    const { examples, report } = fromCarb([
      {
        sentence: 'President Bush made an offer on the minimum wage .',
        tuples: [
          { relation: 'made an offer on', args: ['President Bush', 'the minimum wage'] },
          { relation: 'is', args: ['Bush', 'President'] },
          { relation: 'made', args: ['', ''] },
        ],
      },
      { sentence: 'Nothing here .', tuples: [{ relation: 'was', args: ['it', 'there'] }] },
    ]);
    expect(examples).toHaveLength(1);
    expect(examples[0]!.predicate).toEqual(['O', 'O', 'P-B', 'P-I', 'P-I', 'P-I', 'O', 'O', 'O', 'O']);
    expect(examples[0]!.tuples[0]!.args.slice(0, 2)).toEqual(['A0-B', 'A0-I']);
    expect(report).toMatchObject({ sentences: 2, tuples: 4, kept: 1, emptySentences: 1 });
    expect(report.byReason).toEqual({ relation_not_found: 2, no_arguments: 1 });
    expect(report.skipped.map((s) => s.tuple.relation).sort()).toEqual(['is', 'made', 'was']);
  });
});

describe('Re-OIE2016 records to examples', () => {
  it('uses the word ranges when they spell the phrase and falls back to locating it', () => {
    const s = {
      sentence: 'the cat saw the dog and the cat ran',
      tuples: [
        // second "the cat" by index, not the leftmost match
        { pred: 'ran', predIndex: [8, 8], args: ['the cat'], argIndices: [[6, 7]] },
        // wrong range: located instead
        {
          pred: 'saw',
          predIndex: [5, 5],
          args: ['the cat', 'the dog'],
          argIndices: [
            [0, 1],
            [9, 12],
          ],
        },
        { pred: 'flew', predIndex: [], args: ['the cat'], argIndices: [[]] },
      ],
    };
    const { examples, report } = fromReOie([s], { lang: 'en' });
    expect(examples[0]!.predicate).toEqual(['O', 'O', 'P-B', 'O', 'O', 'O', 'O', 'O', 'P-B']);
    expect(examples[0]!.tuples[0]!.args).toEqual(['O', 'O', 'O', 'O', 'O', 'O', 'A0-B', 'A0-I', 'O']);
    expect(examples[0]!.tuples[1]!.args.slice(0, 5)).toEqual(['A0-B', 'A0-I', 'O', 'A1-B', 'A1-I']);
    expect(report.byReason).toEqual({ relation_not_found: 1 });
  });
});

describe('LLM-annotated records (@xlt/augment JSONL) to examples', () => {
  const de = 'Der Ausschuss hat am Montag den neuen Haushalt genehmigt.';
  const zh = '委员会批准了预算。';
  const at = (t: string, s: string) => ({ start: t.indexOf(s), end: t.indexOf(s) + s.length });
  const jsonl = [
    {
      id: 'oie:0',
      lang: 'de',
      source: 'The committee approved the new budget on Monday.',
      translation: de,
      spans: [
        { label: 't0:rel', text: 'hat', ...at(de, 'hat') },
        { label: 't0:rel', text: 'genehmigt.', ...at(de, 'genehmigt.') },
        { label: 't0:arg0', text: 'Der Ausschuss', ...at(de, 'Der Ausschuss') },
        { label: 't0:arg1', text: 'den neuen Haushalt', ...at(de, 'den neuen Haushalt') },
        { label: 't1:rel', text: 'genehmigt', start: 0, end: 3 }, // offsets do not match the text
        { label: 't1:arg0', text: 'Der Ausschuss', ...at(de, 'Der Ausschuss') },
      ],
    },
    {
      id: 'oie:0',
      lang: 'zh',
      translation: zh,
      spans: [
        { label: 'subject', text: '委员会', ...at(zh, '委员会') },
        { label: 'rel', text: '批准了', ...at(zh, '批准了') },
        { label: 'object', text: '预算', ...at(zh, '预算') },
      ],
    },
  ]
    .map((r) => JSON.stringify(r))
    .join('\n');

  it('groups spans into tuples by label, splits Chinese into characters, reports bad spans', () => {
    const recs = parseAnnotationJsonl(`${jsonl}\n\n`);
    const { examples, report } = fromAnnotations(recs);
    expect(examples.map((e) => e.lang)).toEqual(['de', 'zh']);
    const [d, z] = examples as [(typeof examples)[0], (typeof examples)[0]];
    // "hat ... genehmigt." is one discontinuous relation (two rel spans of one tuple): one argument layer
    expect(d.words.at(-1)).toBe('genehmigt.');
    expect(d.tuples).toHaveLength(1);
    expect(d.tuples[0]!.predicateWords).toEqual([2, 8]);
    expect(d.predicate).toEqual(['O', 'O', 'P-B', 'O', 'O', 'O', 'O', 'O', 'P-B']);
    expect(d.tuples[0]!.args).toEqual(['A0-B', 'A0-I', 'O', 'O', 'O', 'A1-B', 'A1-I', 'A1-I', 'O']);
    expect(z.words).toEqual(['委', '员', '会', '批', '准', '了', '预', '算', '。']);
    expect(z.predicate.slice(3, 6)).toEqual(['P-B', 'P-I', 'P-I']);
    expect(report).toMatchObject({ sentences: 2, tuples: 3, kept: 2 });
    expect(report.byReason).toEqual({ missing_span: 1 });
  });

  it('builds annotation sources whose labels read back as tuples', () => {
    const src = annotationSources([
      { sentence: 'Cats chase mice .', tuples: [{ relation: 'chase', args: ['Cats', 'mice', ''] }] },
    ]);
    expect(src[0]!.spans.map((s) => s.label)).toEqual(['t0:rel', 't0:arg0', 't0:arg1']);
    const t = src[0]!.sentence;
    const { examples } = fromAnnotations([
      {
        id: src[0]!.id,
        lang: 'en',
        translation: t,
        spans: src[0]!.spans.map((s) => ({
          ...s,
          start: t.indexOf(s.text),
          end: t.indexOf(s.text) + s.text.length,
        })),
      },
    ]);
    expect(examples[0]!.predicate).toEqual(['O', 'P-B', 'O', 'O']);
  });

  it('rejects a line that is not a record, naming the line', () => {
    expect(() => parseAnnotationJsonl('{"id":"a","lang":"de","translation":"x","spans":[]}\n{oops')).toThrow(
      /line 2|not JSON/,
    );
    expect(() => parseAnnotationJsonl('{"id":"a","lang":"de"}')).toThrow(/translation/);
  });
});

describe('words', () => {
  it('splits on whitespace and gives Chinese characters a word each, with offsets', () => {
    expect(splitWords(' ab  c中文d ').map((w) => [w.text, w.start, w.end])).toEqual([
      ['ab', 1, 3],
      ['c', 5, 6],
      ['中', 6, 7],
      ['文', 7, 8],
      ['d', 8, 9],
    ]);
  });
});

const skip = sharedSkipReason('data/oie') ?? sharedSkipReason('fixtures');

describe.skipIf(skip !== undefined)('real files (shared/data/oie)', () => {
  it('CaRB dev gold: most tuples are located; the rest are counted by reason', async () => {
    const sents: CarbSentence[] = await all(readCarb(sharedPath('data', 'oie', 'carb-data_gold_dev.tsv')));
    const { examples, report } = fromCarb(sents);
    expect(report.sentences).toBe(641);
    expect(report.tuples).toBe(2548);
    expect(report.kept + report.skipped.length).toBe(report.tuples);
    expect(report.kept / report.tuples).toBeGreaterThan(0.5); // 1,415 of 2,548: CaRB has many implicit relations ("is", "was an increase to")
    expect(report.byReason.relation_not_found).toBeGreaterThan(0);
    expect(examples.length).toBe(report.sentences - report.emptySentences);
    for (const e of examples) {
      expect(e.predicate).toHaveLength(e.words.length);
      for (const t of e.tuples) {
        expect(t.args).toHaveLength(e.words.length);
        for (const w of t.predicateWords) expect(e.predicate[w]).not.toBe('O');
      }
    }
  });

  it('Re-OIE2016 en/es/pt binary: nearly every tuple is placed, and rows encode with the fixture tokenizer', async () => {
    const tok = await XltTokenizer.fromFile(sharedPath('fixtures', 'tokenizer', 'tokenizer.json'));
    const parts = [];
    for (const [lang, f] of [
      ['en', 'm2oie-Re-OIE2016-Binary.json'],
      ['es', 'm2oie-Re-OIE2016-Spanish-Binary.json'],
      ['pt', 'm2oie-Re-OIE2016-Portuguese-Binary.json'],
    ] as const) {
      const sents: ReOieSentence[] = await all(readReOie(sharedPath('data', 'oie', f)));
      const c = fromReOie(sents, { lang, idPrefix: `reoie-${lang}` });
      expect(c.report.kept / c.report.tuples, lang).toBeGreaterThan(0.9);
      parts.push(c);
    }
    const merged = mergeConversions(...parts);
    expect(new Set(merged.examples.map((e) => e.lang))).toEqual(new Set(['en', 'es', 'pt']));
    const { rows, truncated } = await examplesToRows(tok, merged.examples.slice(0, 50), 128);
    expect(rows.length + truncated).toBe(
      merged.examples.slice(0, 50).reduce((s, e) => s + e.tuples.length, 0),
    );
    const b = collateRows(rows.slice(0, 4));
    for (const k of ['inputIds', 'predMask', 'predPosition', 'predLabels', 'argLabels'] as const)
      expect(new Set(b[k].map((r) => r.length)).size).toBe(1);
    // every row marks its predicate and labels some argument
    for (const r of rows) {
      expect(r.predMask).toContain(1);
      expect(r.argLabels.some((l) => l > 0)).toBe(true);
    }
  });
});
