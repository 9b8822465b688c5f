// The training corpus of trainUnigram: sentences read per language, subsampled and weighted
// (p_l^alpha), split into NFKC-normalised words, and the alphabet that covers them.
import { readFile } from 'node:fs/promises';
import { Rng, XltConfigError, XltFormatError, XltNotFoundError } from '@xlt/core';
import { SPACE_MARK } from './unigram-json.js';
import type { Corpus } from './unigram-lattice.js';

/** A language of the corpus: sentences kept, its sampling share q_l and the weight of each of its sentences. */
export interface LanguageShare {
  lang: string;
  sentences: number;
  sentenceWeight: number;
  share: number;
}

/**
 * The non-blank sentences of `texts` and `files` (one sentence a line) by language.
 * @throws XltConfigError when a language of `texts` has no sentence, XltNotFoundError when a file
 * cannot be read, XltFormatError when a file is blank.
 */
export async function readSentences(options: {
  texts?: Record<string, readonly string[]>;
  files?: Record<string, string | readonly string[]>;
}): Promise<Map<string, string[]>> {
  const byLang = new Map<string, string[]>();
  const push = (lang: string, lines: Iterable<string>) => {
    let arr = byLang.get(lang);
    if (!arr) {
      arr = [];
      byLang.set(lang, arr);
    }
    const before = arr.length;
    for (const l of lines) if (l.trim().length > 0) arr.push(l);
    return arr.length - before;
  };
  for (const [lang, t] of Object.entries(options.texts ?? {})) {
    // a language named with nothing to learn from is a mistake to report, not to drop silently
    if (push(lang, t) === 0)
      throw new XltConfigError(`language '${lang}' has no non-blank sentence: its corpus is empty`, {
        field: `texts.${lang}`,
      });
  }
  for (const [lang, f] of Object.entries(options.files ?? {})) {
    for (const file of typeof f === 'string' ? [f] : f) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (cause) {
        throw new XltNotFoundError('cannot read training file', { file, cause });
      }
      if (push(lang, text.split(/\r?\n/)) === 0)
        throw new XltFormatError(
          `the training file of language '${lang}' is empty or blank: expected one sentence a line`,
          { file, field: `files.${lang}` },
        );
    }
  }
  return byLang;
}

/**
 * Keeps at most `cap` sentences per language (a seeded random subset) and weights the languages:
 * q_l = p_l^alpha / sum p^alpha, each sentence of language l counting q_l N / n_l.
 * @throws XltConfigError when no sentence is left.
 */
export function weighLanguages(
  byLang: Map<string, string[]>,
  alphaExp: number,
  cap: number | undefined,
  seed: number,
): { langs: [string, string[]][]; languages: LanguageShare[]; total: number } {
  const rng = new Rng(seed);
  for (const [lang, arr] of byLang) {
    if (cap !== undefined && arr.length > cap) byLang.set(lang, rng.shuffle([...arr]).slice(0, cap));
  }
  const langs = [...byLang.entries()].filter(([, a]) => a.length > 0);
  const total = langs.reduce((s, [, a]) => s + a.length, 0);
  if (total === 0)
    throw new XltConfigError('the training corpus is empty (no non-blank sentence)', { field: 'texts' });
  const qs = langs.map(([, a]) => (a.length / total) ** alphaExp);
  const qSum = qs.reduce((a, b) => a + b, 0);
  const languages = langs.map(([lang, a], i) => ({
    lang,
    sentences: a.length,
    share: qs[i] / qSum,
    sentenceWeight: ((qs[i] / qSum) * total) / a.length,
  }));
  return { langs, languages, total };
}

/** The corpus as distinct words, with what the progress report and the seed pieces need. */
export interface TrainingCorpus {
  corpus: Corpus;
  /** Weighted frequency of every code point seen (in the alphabet or not). */
  charFreq: Map<number, number>;
  /** Characters of all distinct words. */
  nChars: number;
}

/**
 * Splits every sentence into NFKC-normalised whitespace words (each prefixed by {@link SPACE_MARK}),
 * counts them with their language's sentence weight, and keeps the most frequent characters that
 * cover `coverage` of the weighted characters (plus the word-boundary mark) as the alphabet.
 * @throws XltConfigError when the alphabet does not fit in `pieceBudget`.
 */
export function buildCorpus(
  langs: [string, string[]][],
  languages: LanguageShare[],
  coverage: number,
  pieceBudget: number,
  vocabSize: number,
): TrainingCorpus {
  const words = new Map<string, number>();
  langs.forEach(([, arr], i) => {
    const wgt = languages[i].sentenceWeight;
    for (const line of arr) {
      for (const w of line.normalize('NFKC').split(/\s+/u)) {
        if (w.length === 0) continue;
        const key = SPACE_MARK + w;
        words.set(key, (words.get(key) ?? 0) + wgt);
      }
    }
  });
  const charFreq = new Map<number, number>();
  for (const [w, f] of words)
    for (const ch of w) {
      const cp = ch.codePointAt(0)!;
      charFreq.set(cp, (charFreq.get(cp) ?? 0) + f);
    }
  const sortedChars = [...charFreq.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  const charTotal = sortedChars.reduce((s, [, f]) => s + f, 0);
  const alphabet: number[] = [];
  let acc = 0;
  for (const [cp, f] of sortedChars) {
    if (alphabet.length > 0 && acc / charTotal >= coverage) break;
    alphabet.push(cp);
    acc += f;
  }
  // the word-boundary mark starts every word: always in the alphabet, whatever its share
  if (!alphabet.includes(0x2581)) alphabet.push(0x2581);
  if (alphabet.length > pieceBudget)
    throw new XltConfigError(
      `vocabSize ${vocabSize} is smaller than the alphabet (${alphabet.length} characters at coverage ${coverage}) plus 5 special tokens`,
      { field: 'vocabSize' },
    );
  const charId = new Map<number, number>();
  for (let i = 0; i < alphabet.length; i++) charId.set(alphabet[i], i);
  let nChars = 0;
  for (const w of words.keys()) for (const _ of w) nChars++;
  const corpus: Corpus = {
    alphabet,
    chars: new Int32Array(nChars),
    start: new Int32Array(words.size + 1),
    freq: new Float64Array(words.size),
  };
  {
    let p = 0;
    let wi = 0;
    for (const [w, f] of words) {
      corpus.start[wi] = p;
      corpus.freq[wi] = f;
      for (const ch of w) corpus.chars[p++] = charId.get(ch.codePointAt(0)!) ?? -1;
      wi++;
    }
    corpus.start[wi] = p;
  }
  return { corpus, charFreq, nChars };
}
