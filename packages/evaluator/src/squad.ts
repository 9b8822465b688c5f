/**
 * SQuAD v1.1 exact match and F1 (the official evaluate-v1.1.py), and MLQA's multilingual variant
 * (mlqa_evaluation_v1.py) when a language is given.
 */

const ASCII_PUNCT = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~');
const isUnicodePunct = (ch: string) => /^\p{P}$/u.test(ch) || ASCII_PUNCT.has(ch);

/** Word-boundary-aware (Unicode, as Python 3's `\b`) replacement of whole words. */
function removeWords(text: string, words: readonly string[]): string {
  const re = new RegExp(`(?<![\\p{L}\\p{N}_])(?:${words.join('|')})(?![\\p{L}\\p{N}_])`, 'gu');
  return text.replace(re, ' ');
}

/** The official SQuAD v1.1 normalisation: lower-case, drop ASCII punctuation and a/an/the, fold white space. */
export function normalizeSquad(s: string): string {
  let t = s.toLowerCase();
  t = [...t].filter((ch) => !ASCII_PUNCT.has(ch)).join('');
  t = t.replace(/\b(a|an|the)\b/g, ' ');
  return t
    .split(/\s+/)
    .filter((w) => w !== '')
    .join(' ');
}

const MLQA_ARTICLES: Record<string, readonly string[]> = {
  en: ['a', 'an', 'the'],
  es: ['un', 'una', 'unos', 'unas', 'el', 'la', 'los', 'las'],
  vi: ['của', 'là', 'cái', 'chiếc', 'những'],
  de: ['ein', 'eine', 'einen', 'einem', 'eines', 'einer', 'der', 'die', 'das', 'den', 'dem', 'des'],
};
const MIXED_SEGMENTATION = new Set(['zh']);

/** MLQA's mixed segmentation: each CJK character (and punctuation) is a token; the rest split on white space. */
function mixedSegmentation(text: string): string[] {
  const out: string[] = [];
  let buf = '';
  for (const ch of text) {
    if (/[\u4e00-\u9fa5]/.test(ch) || isUnicodePunct(ch)) {
      if (buf !== '') out.push(...buf.split(/\s+/).filter((w) => w !== ''));
      buf = '';
      out.push(ch);
    } else buf += ch;
  }
  if (buf !== '') out.push(...buf.split(/\s+/).filter((w) => w !== ''));
  return out;
}

/**
 * MLQA's normalisation for `lang`: lower-case, drop all Unicode punctuation, drop the language's
 * articles (en, es, vi, de; Arabic: every 'ال' as MLQA's regular expression does; none for hi, zh),
 * and tokenise (mixed segmentation for zh, white space otherwise). Languages MLQA does not cover are
 * treated like hi (no articles, white-space tokens).
 */
export function normalizeMlqa(s: string, lang: string): string {
  let t = s.toLowerCase();
  t = [...t].filter((ch) => !isUnicodePunct(ch)).join('');
  if (lang === 'ar') t = t.replaceAll('ال', ' ');
  else if (MLQA_ARTICLES[lang]) t = removeWords(t, MLQA_ARTICLES[lang] as readonly string[]);
  const tokens = MIXED_SEGMENTATION.has(lang) ? mixedSegmentation(t) : t.split(/\s+/);
  return tokens.filter((w) => w.trim() !== '').join(' ');
}

function f1(pred: string, gold: string): number {
  const p = pred.split(' ').filter((w) => w !== '');
  const g = gold.split(' ').filter((w) => w !== '');
  const counts = new Map<string, number>();
  for (const w of g) counts.set(w, (counts.get(w) ?? 0) + 1);
  let same = 0;
  for (const w of p) {
    const c = counts.get(w) ?? 0;
    if (c > 0) {
      same++;
      counts.set(w, c - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length;
  const recall = same / g.length;
  return (2 * precision * recall) / (precision + recall);
}

/**
 * Exact match and F1 of one prediction against its gold answers, in [0, 100], the maximum over the
 * gold answers, as the official scripts score each question. With `lang`, MLQA's normalisation.
 */
export function squadScores(
  prediction: string,
  goldAnswers: readonly string[],
  lang?: string,
): { exactMatch: number; f1: number } {
  if (goldAnswers.length === 0) return { exactMatch: 0, f1: 0 };
  const norm = (s: string) => (lang === undefined ? normalizeSquad(s) : normalizeMlqa(s, lang));
  const p = norm(prediction);
  let em = 0;
  let best = 0;
  for (const g of goldAnswers) {
    const n = norm(g);
    if (p === n) em = 100;
    best = Math.max(best, 100 * f1(p, n));
  }
  return { exactMatch: em, f1: best };
}

/** Mean exact match and F1 over questions (each with its gold answers), in [0, 100]. */
export function squadCorpus(
  items: ReadonlyArray<{ prediction: string; answers: readonly string[] }>,
  lang?: string,
): { exactMatch: number; f1: number } {
  if (items.length === 0) return { exactMatch: 0, f1: 0 };
  let em = 0;
  let f = 0;
  for (const it of items) {
    const s = squadScores(it.prediction, it.answers, lang);
    em += s.exactMatch;
    f += s.f1;
  }
  return { exactMatch: em / items.length, f1: f / items.length };
}
