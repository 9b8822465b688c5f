import { readFileSync } from 'node:fs';
import { isXltError, sharedPath, sharedSkipReason } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { extendVocabulary, readTaggedSentences, tokenStats, trainUnigram } from './index.js';

describe('extendVocabulary on synthetic text', () => {
  const en = Array.from({ length: 100 }, (_, i) => ['the cat', 'a dog', 'the dog sat', 'cats sit'][i % 4]);
  const xx = Array.from({ length: 100 }, (_, i) => ['kuku mbuzi', 'mbuzi kubwa', 'kuku kubwa sana'][i % 3]);

  it('adds pieces before <mask>, keeps old ids and shortens the new language', async () => {
    const base = await trainUnigram({ texts: { en }, vocabSize: 30, characterCoverage: 1 });
    const old = base.tokenizer;
    const oldSize = old.vocabSize;
    const before = await tokenStats(old, xx);
    const res = await extendVocabulary(old, xx, 20);
    expect(res.newIds.length).toBeGreaterThan(0);
    expect(res.newIds.length).toBeLessThanOrEqual(20);
    expect(res.vocabSize).toBe(oldSize + res.newIds.length);
    // every id but <mask> (the last) stays; <mask> moves to the end
    for (let i = 0; i < oldSize - 1; i++) expect(res.oldToNew[i]).toBe(i);
    expect(res.oldToNew[oldSize - 1]).toBe(res.vocabSize - 1);
    expect(res.tokenizer.tokenToId('<mask>')).toBe(res.vocabSize - 1);
    expect(res.newIds).toEqual(res.newIds.map((_, k) => oldSize - 1 + k));
    res.addedPieces.forEach((p, k) => {
      expect(old.tokenToId(p)).toBeUndefined();
      expect(res.tokenizer.tokenToId(p)).toBe(res.newIds[k]);
    });
    // characters the old vocabulary lacked ('k', 'u', 'm', 'b', 'z') were <unk> and must now be known
    expect(before.unkRate).toBeGreaterThan(0);
    const after = await tokenStats(res.tokenizer, xx);
    expect(after.unkRate).toBe(0);
    // (before is not comparable: runs of unknown characters fuse into one <unk>) fewer tokens than
    // characters: whole pieces like '▁kuku' were added, not only the letters
    const chars = xx.reduce((n, s) => n + s.replace(/ /g, '').length + s.split(' ').length, 0);
    expect(after.tokens).toBeLessThan(chars / 2);
  });

  it('rejects a non-positive count', async () => {
    const base = await trainUnigram({ texts: { en }, vocabSize: 30, characterCoverage: 1 });
    await expect(extendVocabulary(base.tokenizer, xx, 0)).rejects.toSatisfy((e: unknown) =>
      isXltError(e, 'CONFIG'),
    );
  });
});

describe.skipIf(
  sharedSkipReason('data', 'panx') !== undefined || sharedSkipReason('data', 'text') !== undefined,
)('extendVocabulary for Turkish on an en+de vocabulary (PAN-X text)', () => {
  it('lowers Turkish tokens per word on held-out FLORES', async () => {
    const texts: Record<string, string[]> = {};
    for (const l of ['en', 'de'])
      texts[l] = (await readTaggedSentences(sharedPath('data', 'panx', `train-${l}.tsv`), l)).slice(0, 2000);
    const base = await trainUnigram({ texts, vocabSize: 1500 });
    const tr = (await readTaggedSentences(sharedPath('data', 'panx', 'train-tr.tsv'), 'tr')).slice(0, 3000);
    const res = await extendVocabulary(base.tokenizer, tr, 300);
    expect(res.newIds.length).toBe(300);
    const flores = readFileSync(sharedPath('data', 'text', 'flores200-tur_Latn.devtest'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(900);
    const before = await tokenStats(base.tokenizer, flores);
    const after = await tokenStats(res.tokenizer, flores);
    expect(after.tokensPerWord).toBeLessThan(before.tokensPerWord * 0.95);
    // an embedding matrix resized with the mapping keeps every old row
    const E = Array.from({ length: base.tokenizer.vocabSize }, (_, i) => i);
    const E2 = new Array<number>(res.vocabSize).fill(-1);
    E.forEach((row, i) => {
      E2[res.oldToNew[i]] = row;
    });
    expect(E2.filter((r) => r === -1).length).toBe(300);
    expect(res.newIds.every((id) => E2[id] === -1)).toBe(true);
  });
});
