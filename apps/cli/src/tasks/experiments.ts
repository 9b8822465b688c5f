/**
 * The grids of `xlt experiment`: which languages, sizes and budgets each experiment runs, in its
 * quick and full variants.
 */
import { XltConfigError } from '@xlt/core';
import { RECIPES, type RecipeSettings } from './recipes.js';

/**
 * The 12 languages with PAN-X training text, in the order the nested language sets of
 * `xmod-curse` add them: English first, then a new script at each step of the small sets
 * (2: + Cyrillic; 4: + Han and Arabic script), then Devanagari, a Latin-script neighbour of
 * English, Japanese (shares Han with zh) and a smaller Latin-script language (8), then Hangul and
 * three more Latin-script languages (12).
 */
export const CURSE_LANGUAGES: readonly string[] = [
  'en',
  'ru',
  'zh',
  'ar',
  'hi',
  'de',
  'ja',
  'sw',
  'ko',
  'es',
  'fr',
  'tr',
];

/** Numbers of pre-training languages of the default grid. */
export const CURSE_COUNTS: readonly number[] = [1, 2, 4, 8, 12];

/** Sizes, budget and seeds of one variant of `xmod-curse`. */
export interface CurseSettings
  extends Pick<RecipeSettings, 'vocabSize' | 'hiddenSize' | 'layers' | 'pretrain'> {
  /** Seeds per cell (architecture x language count). */
  seeds: number;
  /** Cap on sentences per language read for the tokenizer and for pre-training (undefined: all). */
  maxSentencesPerLanguage?: number;
}

const FULL = RECIPES.ner.full;

/**
 * `full`: the recipes' model (h256 L4, vocabulary 16,000, blocks of 16 x 128 tokens) for 2,000
 * steps, 3 seeds (30 pre-trainings; about 2 s a step on 2 cores, so a day and more: a grid for a
 * bigger machine or lower steps). `quick`: h128 L2, vocabulary 12,000 (the 12 languages' alphabet
 * alone is about 6,000 characters), 200 steps of 16 x 128 tokens, 1 seed, 8,000 sentences per
 * language: 10 models of 410k tokens each; h128 L2 trains at 2,000–2,800 tokens/s on 2 busy cores
 * (load 6.5) and about 3,700 on idle ones (scaled from h256 L4's 970), so about 2.5 minutes a
 * model with corpus loading and held-out scoring, 25–30 minutes in all.
 */
export const XMOD_CURSE: { full: CurseSettings; quick: CurseSettings } = {
  full: {
    vocabSize: FULL.vocabSize,
    hiddenSize: FULL.hiddenSize,
    layers: FULL.layers,
    pretrain: { ...FULL.pretrain, steps: 2000 },
    seeds: 3,
  },
  quick: {
    vocabSize: 12000,
    hiddenSize: 128,
    layers: 2,
    pretrain: { ...FULL.pretrain, steps: 200 },
    seeds: 1,
    maxSentencesPerLanguage: 8000,
  },
};

/** One cell of the grid: the first `count` languages of the order. */
export interface LanguageSet {
  count: number;
  languages: string[];
}

/**
 * The nested language sets of `xmod-curse`: `languages` (an order of some of
 * {@link CURSE_LANGUAGES}, English moved first) cut after each of `counts` (default: the
 * {@link CURSE_COUNTS} up to the number of languages, and all of them). Bad values are
 * {@link XltConfigError}s naming the field.
 */
export function curseLanguageSets(
  languages: readonly string[] = CURSE_LANGUAGES,
  counts?: readonly number[],
): LanguageSet[] {
  const unknown = languages.filter((l) => !CURSE_LANGUAGES.includes(l));
  if (unknown.length > 0)
    throw new XltConfigError(
      `languages: ${unknown.join(', ')} not among the languages with PAN-X training text (${CURSE_LANGUAGES.join(' ')})`,
      { field: 'languages' },
    );
  const repeated = languages.filter((l, i) => languages.indexOf(l) !== i);
  if (repeated.length > 0)
    throw new XltConfigError(`languages: ${repeated.join(', ')} given more than once`, {
      field: 'languages',
    });
  if (!languages.includes('en'))
    throw new XltConfigError('languages: English (en) is in every model; add it', { field: 'languages' });
  const order = ['en', ...languages.filter((l) => l !== 'en')];
  const n = order.length;
  const wanted = counts ?? [...CURSE_COUNTS.filter((c) => c < n), n];
  const bad = wanted.filter((c) => !Number.isInteger(c) || c < 1 || c > n);
  if (bad.length > 0)
    throw new XltConfigError(`counts: ${bad.join(', ')} not between 1 and the ${n} languages`, {
      field: 'counts',
    });
  return [...new Set(wanted)]
    .sort((a, b) => a - b)
    .map((count) => ({ count, languages: order.slice(0, count) }));
}
