import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isXltError, sharedPath, sharedSkipReason, type XltError } from '@xlt/core';
import { Tokenizer } from 'tokenizers';
import { describe, expect, it } from 'vitest';
import {
  normalizeText,
  readTaggedSentences,
  type TrainProgress,
  tokenStats,
  trainUnigram,
  XltTokenizer,
} from './index.js';

const FLORES: Record<string, string> = {
  en: 'eng_Latn',
  de: 'deu_Latn',
  fr: 'fra_Latn',
  es: 'spa_Latn',
  zh: 'zho_Hans',
  ar: 'arb_Arab',
  hi: 'hin_Deva',
  ru: 'rus_Cyrl',
  sw: 'swh_Latn',
  tr: 'tur_Latn',
};

/** FLORES devtest lines 900..1011: held out from the fixture tokenizer's training (encodings.json uses 900..919). */
function heldOut(lang: string): string[] {
  return readFileSync(sharedPath('data', 'text', `flores200-${FLORES[lang]}.devtest`), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(900);
}

async function rejectsWith(p: Promise<unknown>, code: string, re: RegExp): Promise<XltError> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(isXltError(err, code as never), String(err)).toBe(true);
  expect((err as Error).message).toMatch(re);
  return err as XltError;
}

describe('trainUnigram on synthetic text', () => {
  const words = ['low', 'lower', 'lowest', 'newer', 'newest', 'wider', 'widest', 'new', 'wide'];
  const sentences = Array.from(
    { length: 200 },
    (_, i) => `${words[i % 9]} ${words[(i * 4 + 1) % 9]} ${words[(i * 7 + 2) % 9]}`,
  );

  it('writes the XLM-R layout (creating the output folder) and learns the frequent words as pieces', async () => {
    const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'xlt-train-')), 'not', 'yet', 'tokenizer.json');
    const res = await trainUnigram({ texts: { en: sentences }, vocabSize: 24, output: out });
    const vocab = res.json.model.vocab;
    expect(vocab.length).toBe(24);
    expect(vocab.slice(0, 4).map(([p]) => p)).toEqual(['<s>', '<pad>', '</s>', '<unk>']);
    expect(vocab[23][0]).toBe('<mask>');
    expect(res.json.model.unk_id).toBe(3);
    const pieces = vocab.slice(4, -1);
    // scores sorted best first, all log-probabilities
    for (let i = 1; i < pieces.length; i++) expect(pieces[i][1]).toBeLessThanOrEqual(pieces[i - 1][1]);
    expect(pieces.every(([, s]) => s < 0)).toBe(true);
    // every character of the corpus is in the vocabulary (coverage 0.9995 of an 11-character alphabet keeps all)
    for (const ch of '▁lowernstid')
      expect(
        pieces.some(([p]) => p === ch),
        ch,
      ).toBe(true);
    // 'low' starts 1/3 of the words: it must be a piece
    expect(pieces.some(([p]) => p === '▁low')).toBe(true);
    const tok = await XltTokenizer.fromFile(out);
    const e = await tok.encode('lowest newer');
    expect(e.ids.length).toBeLessThan(2 + 'lowest newer'.length);
    expect(await tok.decode(e.ids)).toBe('lowest newer');
  });

  it('returns a smaller vocabulary when the corpus has fewer useful pieces than asked (documented)', async () => {
    const res = await trainUnigram({ texts: { en: sentences }, vocabSize: 500 });
    const n = res.json.model.vocab.length;
    expect(n).toBeLessThan(500);
    expect(n).toBeGreaterThan(16);
    expect(res.json.model.vocab[n - 1][0]).toBe('<mask>');
    expect(res.json.added_tokens.at(-1)).toMatchObject({ id: n - 1, content: '<mask>' });
    expect(res.tokenizer.vocabSize).toBe(n);
  });

  it('is deterministic', async () => {
    const a = await trainUnigram({ texts: { en: sentences }, vocabSize: 30 });
    const b = await trainUnigram({ texts: { en: sentences }, vocabSize: 30 });
    expect(a.json).toEqual(b.json);
  });

  it('weights languages by p^alpha (hand-computed case)', async () => {
    // 90 and 10 sentences, alpha 0.5: p = 0.9, 0.1; sqrt -> 0.94868, 0.31623; shares 0.75, 0.25.
    // Per-sentence weight = share * 100 / n: 0.75*100/90 = 0.83333, 0.25*100/10 = 2.5.
    const res = await trainUnigram({
      texts: { en: sentences.slice(0, 90), de: sentences.slice(100, 110) },
      vocabSize: 30,
      alpha: 0.5,
    });
    const [en, de] = res.languages;
    expect(en.share).toBeCloseTo(0.75, 10);
    expect(de.share).toBeCloseTo(0.25, 10);
    expect(en.sentenceWeight).toBeCloseTo(0.833333333, 8);
    expect(de.sentenceWeight).toBeCloseTo(2.5, 10);
  });

  it('leaves characters beyond the coverage out of the vocabulary (they encode as <unk>)', async () => {
    // 200 sentences of ~17 characters plus one 'q': 'q' is < 0.05% of the characters, so coverage 0.999 drops it
    const res = await trainUnigram({
      texts: { en: [...sentences, 'q'] },
      vocabSize: 40,
      characterCoverage: 0.999,
    });
    expect(res.json.model.vocab.some(([p]) => p.includes('q'))).toBe(false);
    const e = await res.tokenizer.encode('low q');
    expect(e.ids).toContain(3);
  });

  it('applies NFKC normalisation in training and encoding', async () => {
    const res = await trainUnigram({
      texts: { en: [...sentences, 'ﬁne Ｗide'] },
      vocabSize: 40,
      characterCoverage: 1,
    });
    expect(res.json.normalizer).toEqual({ type: 'NFKC' });
    expect(res.json.model.vocab.some(([p]) => p.includes('ﬁ') || p.includes('Ｗ'))).toBe(false);
    expect(normalizeText('  ﬁne\u00a0 Ｗide ')).toBe('fine Wide');
    const e = await res.tokenizer.encode('ﬁne');
    expect(e.tokens.join('')).toBe('<s>▁fine</s>');
    // offsets still index the original (un-normalised) string
    expect(e.offsets[1][0]).toBe(0);
  });

  it('trains on a 1 MB single line without spaces (one 1M-character word)', async () => {
    const w = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'];
    let line = '';
    let x = 7;
    while (line.length < 1_000_000) {
      x = (x * 1103515245 + 12345) % 2147483648;
      line += w[x % 5];
    }
    const res = await trainUnigram({ texts: { en: [line] }, vocabSize: 100 });
    expect(res.json.model.vocab.length).toBe(100);
    expect(res.distinctWords).toBe(1);
    // '▁' occurs once in 1M characters but is always kept; the pieces learnt are the repeated words
    expect(res.json.model.vocab.some(([p]) => p === '▁')).toBe(true);
    expect(res.json.model.vocab.some(([p]) => p === 'epsilon' || p.includes('epsilon'))).toBe(true);
    const e = await res.tokenizer.encode(line.slice(0, 200));
    expect(e.ids).not.toContain(3);
  });

  it('reports progress through the callback, stage by stage', async () => {
    const seen: TrainProgress[] = [];
    await trainUnigram({ texts: { en: sentences }, vocabSize: 30, onProgress: (p) => seen.push(p) });
    const stages = seen.map((p) => p.stage);
    expect(stages[0]).toBe('read');
    expect(stages).toContain('em');
    expect(stages.at(-1)).toBe('finalize');
    expect(seen.filter((p) => p.stage === 'em').every((p) => Number.isFinite(p.loss))).toBe(true);
  });

  it('refuses a language whose file is blank, naming the file and language, and writes nothing', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xlt-blank-'));
    const en = path.join(dir, 'en.txt');
    const sw = path.join(dir, 'sw.txt');
    const out = path.join(dir, 'tokenizer.json');
    writeFileSync(en, `${sentences.join('\n')}\n`);
    writeFileSync(sw, '\n   \n\t\n');
    const e = await rejectsWith(
      trainUnigram({ files: { en, sw }, vocabSize: 30, output: out }),
      'FORMAT',
      /the training file of language 'sw' is empty or blank/,
    );
    expect(e.file).toBe(sw);
    expect(e.field).toBe('files.sw');
    expect(existsSync(out)).toBe(false);
    // one language of texts with nothing in it is refused the same way
    await rejectsWith(
      trainUnigram({ texts: { en: sentences, sw: [' '] }, vocabSize: 30 }),
      'CONFIG',
      /language 'sw' has no non-blank sentence/,
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it('rejects an empty corpus, a vocabulary smaller than the alphabet and a missing file', async () => {
    await rejectsWith(trainUnigram({ texts: {}, vocabSize: 100 }), 'CONFIG', /empty/);
    await rejectsWith(trainUnigram({ texts: { en: ['', '   '] }, vocabSize: 100 }), 'CONFIG', /empty/);
    await rejectsWith(
      trainUnigram({ texts: { en: sentences }, vocabSize: 12 }),
      'CONFIG',
      /vocabSize 12 is smaller than the alphabet \(11 characters/,
    );
    await rejectsWith(
      trainUnigram({ files: { en: '/nonexistent/x.txt' }, vocabSize: 100 }),
      'NOT_FOUND',
      /x\.txt/,
    );
    await rejectsWith(
      trainUnigram({ texts: { en: sentences }, vocabSize: 100, alpha: 2 }),
      'CONFIG',
      /alpha/,
    );
  });
});

describe.skipIf(sharedSkipReason('data', 'panx') !== undefined || sharedSkipReason('fixtures') !== undefined)(
  'trainUnigram on PAN-X text (reduced: 3 languages, 3000 sentences each, 2000 pieces)',
  () => {
    it('loads in tokenizers, encodes identically, round-trips held-out FLORES and has a sane fertility', async () => {
      const langs = ['en', 'de', 'sw'];
      const texts: Record<string, string[]> = {};
      for (const l of langs)
        texts[l] = (await readTaggedSentences(sharedPath('data', 'panx', `train-${l}.tsv`), l)).slice(
          0,
          3000,
        );
      const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'xlt-panx-')), 'tokenizer.json');
      const res = await trainUnigram({ texts, vocabSize: 2000, output: out });
      expect(res.json.model.vocab.length).toBe(2000);
      const native = Tokenizer.fromFile(out);
      expect(native.getVocabSize(true)).toBe(2000);
      const ours = await XltTokenizer.fromFile(out);
      const fixture = await XltTokenizer.fromFile(sharedPath('fixtures', 'tokenizer', 'tokenizer.json'));
      for (const l of langs) {
        const lines = heldOut(l);
        let roundTrips = 0;
        for (const s of lines.slice(0, 40)) {
          const e = await ours.encode(s);
          expect(e.ids).toEqual((await native.encode(s)).getIds());
          const back = await ours.decode(e.ids);
          if (!e.ids.includes(3)) {
            expect(back).toBe(normalizeText(s));
            roundTrips++;
          }
        }
        expect(roundTrips).toBeGreaterThan(35);
        const a = await tokenStats(ours, lines);
        const b = await tokenStats(fixture, lines);
        // the fixture (2000 pieces, 9 languages) is the reference fertility; a 3-language 2000 vocab must be within 1.5x
        expect(a.tokensPerWord / b.tokensPerWord, l).toBeLessThan(1.5);
        expect(a.tokensPerWord).toBeGreaterThan(1);
      }
    });
  },
);

describe.skipIf(process.env.XLT_INTEGRATION !== '1' || sharedSkipReason('data') !== undefined)(
  'trainUnigram full run (XLT_INTEGRATION=1): 8000 pieces on PAN-X text of 10 languages',
  () => {
    it('is within 1.5x of the fixture fertility on held-out FLORES for every language', async () => {
      const langs = Object.keys(FLORES);
      const texts: Record<string, string[]> = {};
      for (const l of langs)
        texts[l] = await readTaggedSentences(sharedPath('data', 'panx', `train-${l}.tsv`), l);
      const res = await trainUnigram({ texts, vocabSize: 8000, verbose: true });
      const fixture = await XltTokenizer.fromFile(sharedPath('fixtures', 'tokenizer', 'tokenizer.json'));
      for (const l of langs) {
        const lines = heldOut(l);
        const a = await tokenStats(res.tokenizer, lines);
        const b = await tokenStats(fixture, lines);
        process.stderr.write(
          `${l}: ours ${a.tokensPerWord.toFixed(3)} fixture ${b.tokensPerWord.toFixed(3)}\n`,
        );
        expect(a.tokensPerWord / b.tokensPerWord, l).toBeLessThan(1.5);
        for (const s of lines) {
          const e = await res.tokenizer.encode(s);
          if (!e.ids.includes(3)) expect(await res.tokenizer.decode(e.ids)).toBe(normalizeText(s));
        }
      }
    }, 600_000);
  },
);
