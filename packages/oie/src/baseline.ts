import type { OieExtraction } from './extract.js';
import { splitWords } from './words.js';

const AUX = new Set(
  'is are was were be been being has have had do does did will would can could may might shall should must'.split(
    ' ',
  ),
);
const PREP = new Set('in on at by to of for from with as into'.split(' '));
const PUNCT = /^[,.;:!?()"'`]+$/;

/** Baselines for Open IE without a model (references for scores). */
export type BaselineKind = 'second-word' | 'verb-like';

/**
 * Trivial extractors, one tuple per sentence, confidence 1:
 * - `second-word`: relation = the second word, arg0 = the first word, arg1 = the rest.
 * - `verb-like`: relation = the first word after the first that looks like an English verb (an
 *   auxiliary, or ending in -ed / -es), plus a following preposition; arg0 = the words before it back
 *   to the previous punctuation; arg1 = the words after it up to the next punctuation. Falls back to
 *   `second-word` when no word looks like a verb.
 */
export function baselineExtract(
  sentences: readonly string[],
  kind: BaselineKind = 'verb-like',
): OieExtraction[] {
  const out: OieExtraction[] = [];
  for (const sentence of sentences) {
    const w = splitWords(sentence).map((x) => x.text);
    if (w.length < 3) continue;
    const second = (): OieExtraction => ({
      sentence,
      relation: w[1] as string,
      args: [w[0] as string, w.slice(2).join(' ')],
      confidence: 1,
    });
    if (kind === 'second-word') {
      out.push(second());
      continue;
    }
    let v = -1;
    for (let i = 1; i < w.length - 1; i++) {
      const x = (w[i] as string).toLowerCase();
      if (AUX.has(x) || (/^[a-z]{3,}(ed|es)$/.test(x) && !PUNCT.test(x))) {
        v = i;
        break;
      }
    }
    if (v < 0) {
      out.push(second());
      continue;
    }
    let end = v + 1;
    if (end < w.length - 1 && PREP.has((w[end] as string).toLowerCase())) end++;
    let s = v - 1;
    while (s > 0 && !PUNCT.test(w[s - 1] as string)) s--;
    let e = end;
    while (e < w.length && !PUNCT.test(w[e] as string)) e++;
    const arg0 = w.slice(s, v).join(' ');
    const arg1 = w.slice(end, e).join(' ');
    if (arg0 === '' || arg1 === '') {
      out.push(second());
      continue;
    }
    out.push({ sentence, relation: w.slice(v, end).join(' '), args: [arg0, arg1], confidence: 1 });
  }
  return out;
}
