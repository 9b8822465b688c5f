import { isXltError, sharedPath, sharedSkipReason } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { alignLabels, wordPredictions, XltTokenizer } from './index.js';

const FIXTURE = sharedPath('fixtures', 'tokenizer', 'tokenizer.json');
const I = -100;

describe.skipIf(sharedSkipReason('fixtures') !== undefined)('alignLabels', () => {
  // Expected segmentation from shared/fixtures/tokenizer/encodings.json, en[0] ("Usually you always here..."):
  // <s> | ▁ U s u a ll y | ▁ y o u | ▁ al wa y s | </s>
  const words = ['Usually', 'you', 'always'];
  const labels = [1, 2, 3];

  it('gives the first sub-token the word label and -100 to the rest and to specials', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const { encoding, labels: out } = await alignLabels(tok, words, labels);
    expect(encoding.tokens).toEqual([
      '<s>',
      '▁',
      'U',
      's',
      'u',
      'a',
      'll',
      'y',
      '▁',
      'y',
      'o',
      'u',
      '▁',
      'al',
      'wa',
      'y',
      's',
      '</s>',
    ]);
    expect(out).toEqual([I, 1, I, I, I, I, I, I, 2, I, I, I, 3, I, I, I, I, I]);
    expect(encoding.wordIds).toEqual([null, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, null]);
  });

  it('labels every sub-token when asked', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const { labels: out } = await alignLabels(tok, words, labels, {
      labelAllSubtokens: true,
      ignoreIndex: -1,
    });
    expect(out).toEqual([-1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, -1]);
  });

  it('maps token predictions back to words (first sub-token, or majority)', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const { encoding, labels: all } = await alignLabels(tok, words, labels, { labelAllSubtokens: true });
    expect(wordPredictions(encoding.wordIds, all, 3, { fallback: -1 })).toEqual(labels);
    // word 0 has 7 tokens: predictions [9, 5, 5, 5, 9, 9, 5] -> first 9, majority 5 (4 votes to 3)
    const preds = [0, 9, 5, 5, 5, 9, 9, 5, 7, 8, 8, 8, 4, 4, 4, 4, 4, 0];
    expect(wordPredictions(encoding.wordIds, preds, 3, { fallback: -1 })).toEqual([9, 7, 4]);
    expect(wordPredictions(encoding.wordIds, preds, 3, { strategy: 'majority', fallback: -1 })).toEqual([
      5, 8, 4,
    ]);
  });

  it('keeps a word holding a space as one word, and drops empty words and truncated words', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const { encoding, labels: out } = await alignLabels(tok, ['New York', '', 'is', 'big'], [5, 6, 7, 8]);
    const wordsSeen = [...new Set(encoding.wordIds.filter((w) => w !== null))];
    expect(wordsSeen).toEqual([0, 2, 3]);
    expect(out.filter((l) => l !== I)).toEqual([5, 7, 8]);
    expect(wordPredictions(encoding.wordIds, out, 4, { fallback: -1 })).toEqual([5, -1, 7, 8]);
    const cut = await alignLabels(tok, words, labels, { maxLength: 10 });
    expect(cut.labels).toEqual([I, 1, I, I, I, I, I, I, 2, I]);
    expect(wordPredictions(cut.encoding.wordIds, cut.labels, 3, { fallback: -1 })).toEqual([1, 2, -1]);
  });

  it('rejects a label count that differs from the word count', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    await expect(alignLabels(tok, ['a', 'b'], [1])).rejects.toSatisfy((e: unknown) =>
      isXltError(e, 'CONFIG'),
    );
    expect(() => wordPredictions([0, 1], [1], 2, { fallback: 0 })).toThrow(/one prediction per token/);
  });
});
