import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isXltError } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { readTaggedSentences, trainUnigram } from './index.js';

describe('readTaggedSentences', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xlt-corpus-'));
  const write = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('takes the first column, strips an xx: prefix and splits sentences at blank lines', async () => {
    const p = write('train-de.tsv', 'de:Anton\tB-PER\nde:Wilhelm\tI-PER\nlebt\tO\n\n\nde:Berlin\tB-LOC\n');
    expect(await readTaggedSentences(p, 'de')).toEqual(['Anton Wilhelm lebt', 'Berlin']);
  });

  it('joins tokens without spaces for languages written without them', async () => {
    const p = write('train-zh.tsv', '中\tB-LOC\n国\tI-LOC\n人\tO\r\n\r\n好\tO\n');
    expect(await readTaggedSentences(p, 'zh')).toEqual(['中国人', '好']);
    expect(await readTaggedSentences(p)).toEqual(['中 国 人', '好']);
  });

  it('reports a missing file and an empty token column', async () => {
    await expect(readTaggedSentences(path.join(dir, 'none.tsv'))).rejects.toSatisfy((e: unknown) =>
      isXltError(e, 'NOT_FOUND'),
    );
    const p = write('bad.tsv', 'a\tO\n\tO\n');
    await expect(readTaggedSentences(p)).rejects.toThrow(/bad\.tsv:2/);
  });
});

describe('trainUnigram inputs', () => {
  it('reads plain-text files by language and subsamples with maxSentencesPerLanguage', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xlt-files-'));
    const en = path.join(dir, 'en.txt');
    const fr = path.join(dir, 'fr.txt');
    writeFileSync(en, Array.from({ length: 50 }, (_, i) => `the cat number ${i % 7}`).join('\n'));
    writeFileSync(fr, Array.from({ length: 20 }, (_, i) => `le chat numéro ${i % 5}`).join('\n'));
    const res = await trainUnigram({
      files: { en, fr: [fr, fr] },
      vocabSize: 60,
      maxSentencesPerLanguage: 30,
    });
    expect(res.languages.map((l) => [l.lang, l.sentences])).toEqual([
      ['en', 30],
      ['fr', 30],
    ]);
    expect(res.json.model.vocab.some(([p]) => p === 'é' || p.includes('é'))).toBe(true);
  });
});
