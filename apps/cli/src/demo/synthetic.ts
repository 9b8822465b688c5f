import { Rng, XltConfigError } from '@xlt/core';

/**
 * A small synthetic multilingual benchmark, built in memory from a seed: artificial languages that
 * share one grammar (and so one meaning space) but not a word order or an adjective position, and
 * only part of a vocabulary: proper names, digits and a fraction of cognates are shared across
 * languages, as in real languages, which gives a multilingual model the anchors it needs to align them.
 * Verbs and adjectives follow selectional preferences (a subject's class makes some verbs likely), so
 * a word's contexts reflect its meaning. The task is sentence classification: which kind of thing
 * the sentence's subject is.
 */

/** Semantic classes of nouns; the label of a sentence is its subject's class. */
export const DEMO_LABELS = ['animal', 'person', 'food', 'tool'] as const;
export type DemoLabel = (typeof DEMO_LABELS)[number];

const NOUNS: Record<DemoLabel, string[]> = {
  animal: ['dog', 'cat', 'horse', 'bird', 'fish', 'cow', 'goat', 'wolf'],
  person: ['man', 'woman', 'child', 'teacher', 'farmer', 'doctor', 'king', 'friend'],
  food: ['bread', 'apple', 'rice', 'cheese', 'soup', 'egg', 'milk', 'cake'],
  tool: ['knife', 'hammer', 'rope', 'spoon', 'wheel', 'key', 'needle', 'axe'],
};
const VERBS = ['see', 'like', 'find', 'carry', 'want', 'touch', 'take', 'watch', 'follow', 'keep'];
const ADJECTIVES = ['big', 'small', 'old', 'new', 'red', 'green', 'good', 'bad', 'warm', 'cold'];
/**
 * Selectional preferences, as real languages have: a subject's class makes some verbs likely, and a
 * noun's class some adjectives. They give every noun a context that reflects its meaning, which is
 * what lets masked-LM pre-training align the words of different languages (through the shared
 * anchors) rather than only memorise each language.
 */
const CLASS_VERBS: Record<DemoLabel, string[]> = {
  animal: ['chase', 'bite', 'smell'],
  person: ['buy', 'write', 'teach'],
  food: ['spoil', 'nourish', 'sweeten'],
  tool: ['cut', 'break', 'fix'],
};
const CLASS_ADJECTIVES: Record<DemoLabel, string[]> = {
  animal: ['wild', 'furry', 'hungry'],
  person: ['kind', 'tall', 'wise'],
  food: ['sweet', 'fresh', 'salty'],
  tool: ['sharp', 'heavy', 'rusty'],
};
/** Probability that a verb (adjective) is one its subject's (noun's) class prefers. */
const PREFERENCE = 0.6;
const PLACES = ['house', 'field', 'river', 'market', 'forest', 'village'];
const FUNCTION_WORDS = ['the', 'a', 'in', 'near'];
const NAMES = ['Anna', 'Bruno', 'Chen', 'Dara', 'Elif', 'Femi', 'Goran', 'Hana', 'Ivo', 'Juma'];

type Order = 'SVO' | 'SOV' | 'VSO';

/** One artificial language: its lexicon and its word-order parameters. */
export interface DemoLanguage {
  code: string;
  order: Order;
  adjectiveAfterNoun: boolean;
  /** English concept -> this language's word. */
  lexicon: Map<string, string>;
}

/** One example of the task. */
export interface DemoExample {
  lang: string;
  text: string;
  label: number;
}

export interface DemoBenchmark {
  languages: DemoLanguage[];
  /** Source language (the only one with training labels). */
  source: string;
  /** Unlabelled text per language, for tokenizer training and masked-LM pre-training. */
  raw: Map<string, string[]>;
  /** Labelled training set in the source language. */
  train: DemoExample[];
  /** Labelled test sets for every language (source included). */
  test: Map<string, DemoExample[]>;
  labels: readonly string[];
}

export interface DemoOptions {
  seed?: number;
  /** Number of languages (2..8); the first is the source. */
  numLanguages?: number;
  rawSentencesPerLanguage?: number;
  trainSize?: number;
  testSizePerLanguage?: number;
  /**
   * Fraction of each artificial language's words that are the same as the source language's
   * (shared loanwords and cognates, as related real languages have; default 0.25). They are the
   * anchors a multilingual model aligns the languages through.
   */
  cognateRatio?: number;
}

const ALPHABETS = [
  { c: 'ptkbdgmnslr', v: 'aeiou' },
  { c: 'zhvfsnmlkt', v: 'aoiuy' },
  { c: 'qxcjwrpnms', v: 'eaiou' },
  { c: 'bdgvzmnlrh', v: 'äöüei' },
  { c: 'tksnhmyrw', v: 'aiueo' },
  { c: 'ptfsšžrln', v: 'aeiıo' },
  { c: 'bcdfgklmnp', v: 'aãeõu' },
  { c: 'dlmnrstvz', v: 'aeéiou' },
];
const ORDERS: Order[] = ['SVO', 'SOV', 'VSO', 'SVO', 'SOV', 'VSO', 'SVO', 'SOV'];

function makeWord(rng: Rng, alpha: { c: string; v: string }, used: Set<string>): string {
  for (;;) {
    const syll = 1 + rng.int(3);
    let w = '';
    for (let i = 0; i < syll; i++) w += alpha.c[rng.int(alpha.c.length)]! + alpha.v[rng.int(alpha.v.length)]!;
    if (rng.bernoulli(0.3)) w += alpha.c[rng.int(alpha.c.length)]!;
    if (!used.has(w) && w.length >= 2) {
      used.add(w);
      return w;
    }
  }
}

function makeLanguage(index: number, rng: Rng, cognateRatio: number): DemoLanguage {
  const alpha = ALPHABETS[index % ALPHABETS.length]!;
  const used = new Set<string>();
  const lexicon = new Map<string, string>();
  const concepts = [
    ...Object.values(NOUNS).flat(),
    ...VERBS,
    ...Object.values(CLASS_VERBS).flat(),
    ...ADJECTIVES,
    ...Object.values(CLASS_ADJECTIVES).flat(),
    ...PLACES,
    ...FUNCTION_WORDS,
  ];
  for (const c of concepts)
    lexicon.set(c, index === 0 || rng.bernoulli(cognateRatio) ? c : makeWord(rng, alpha, used));
  return {
    code: index === 0 ? 'en' : `x${String.fromCharCode(97 + index - 1)}`,
    order: index === 0 ? 'SVO' : ORDERS[index % ORDERS.length]!,
    adjectiveAfterNoun: index === 0 ? false : index % 2 === 1,
    lexicon,
  };
}

const pick = (rng: Rng, xs: readonly string[]): string => xs[rng.int(xs.length)] as string;

function classOf(noun: string): DemoLabel {
  return DEMO_LABELS.find((c) => NOUNS[c].includes(noun)) as DemoLabel;
}

function nounPhrase(lang: DemoLanguage, noun: string, rng: Rng): string[] {
  if (rng.bernoulli(0.15)) return [NAMES[rng.int(NAMES.length)]!];
  const det = lang.lexicon.get(rng.bernoulli(0.5) ? 'the' : 'a')!;
  const n = lang.lexicon.get(noun)!;
  if (!rng.bernoulli(0.5)) return [det, n];
  const adjConcept = rng.bernoulli(PREFERENCE)
    ? pick(rng, CLASS_ADJECTIVES[classOf(noun)])
    : pick(rng, ADJECTIVES);
  const adj = lang.lexicon.get(adjConcept)!;
  return lang.adjectiveAfterNoun ? [det, n, adj] : [det, adj, n];
}

function sentence(lang: DemoLanguage, rng: Rng): { words: string[]; label: number } {
  const label = rng.int(DEMO_LABELS.length);
  const subjNouns = NOUNS[DEMO_LABELS[label]!];
  let subj = nounPhrase(lang, subjNouns[rng.int(subjNouns.length)]!, rng);
  // a name is a person
  const isName = subj.length === 1;
  const allNouns = Object.values(NOUNS).flat();
  const obj = nounPhrase(lang, allNouns[rng.int(allNouns.length)]!, rng);
  if (isName && DEMO_LABELS[label] !== 'person') subj = nounPhrase(lang, subjNouns[0]!, rng).slice(0, 2);
  const subjIsName = subj.length === 1 && NAMES.includes(subj[0]!);
  const subjClass: DemoLabel = subjIsName ? 'person' : DEMO_LABELS[label]!;
  const verbConcept = rng.bernoulli(PREFERENCE) ? pick(rng, CLASS_VERBS[subjClass]) : pick(rng, VERBS);
  const verb = [lang.lexicon.get(verbConcept)!];
  let words: string[];
  if (lang.order === 'SVO') words = [...subj, ...verb, ...obj];
  else if (lang.order === 'SOV') words = [...subj, ...obj, ...verb];
  else words = [...verb, ...subj, ...obj];
  if (rng.bernoulli(0.4)) {
    const prep = lang.lexicon.get(rng.bernoulli(0.5) ? 'in' : 'near')!;
    const place = lang.lexicon.get(PLACES[rng.int(PLACES.length)]!)!;
    const det = lang.lexicon.get('the')!;
    words.push(prep, det, place);
  }
  if (rng.bernoulli(0.2)) words.push(String(1 + rng.int(99)));
  return { words, label: subjIsName ? DEMO_LABELS.indexOf('person') : label };
}

/** Builds the benchmark deterministically from `options.seed`. */
export function buildDemoBenchmark(options: DemoOptions = {}): DemoBenchmark {
  const numLanguages = options.numLanguages ?? 4;
  if (!Number.isInteger(numLanguages) || numLanguages < 2 || numLanguages > ALPHABETS.length) {
    throw new XltConfigError(
      `numLanguages must be an integer in 2..${ALPHABETS.length}, got ${numLanguages}`,
      {
        field: 'numLanguages',
      },
    );
  }
  const rng = new Rng(options.seed ?? 0);
  const cognateRatio = options.cognateRatio ?? 0.25;
  if (!(cognateRatio >= 0 && cognateRatio <= 1))
    throw new XltConfigError(`cognateRatio must be in [0, 1], got ${cognateRatio}`, {
      field: 'cognateRatio',
    });
  const languages = Array.from({ length: numLanguages }, (_, i) =>
    makeLanguage(i, rng.fork(`lang${i}`), cognateRatio),
  );
  const raw = new Map<string, string[]>();
  const test = new Map<string, DemoExample[]>();
  const rawN = options.rawSentencesPerLanguage ?? 2000;
  const testN = options.testSizePerLanguage ?? 200;
  for (const lang of languages) {
    const r = rng.fork(`raw:${lang.code}`);
    raw.set(
      lang.code,
      Array.from({ length: rawN }, () => sentence(lang, r).words.join(' ')),
    );
    const t = rng.fork(`test:${lang.code}`);
    test.set(
      lang.code,
      Array.from({ length: testN }, () => {
        const s = sentence(lang, t);
        return { lang: lang.code, text: s.words.join(' '), label: s.label };
      }),
    );
  }
  const src = languages[0]!;
  const tr = rng.fork('train');
  const train = Array.from({ length: options.trainSize ?? 1000 }, () => {
    const s = sentence(src, tr);
    return { lang: src.code, text: s.words.join(' '), label: s.label };
  });
  return { languages, source: src.code, raw, train, test, labels: DEMO_LABELS };
}
