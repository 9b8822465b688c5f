/** A word of a text with its `[start, end)` UTF-16 offsets. */
export interface WordSpan {
  text: string;
  start: number;
  end: number;
}

/** Han, Hiragana, Katakana and Hangul syllables count as one word per character. */
const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u;
const UNIT =
  /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]|[^\s\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]+/gu;

/**
 * Splits a text into words with offsets: runs of non-space characters, except that each Chinese /
 * Japanese character is a word of its own (the BenchIE zh and Re-OIE conventions).
 */
export function splitWords(text: string): WordSpan[] {
  const out: WordSpan[] = [];
  for (const m of text.matchAll(UNIT)) {
    const start = m.index ?? 0;
    out.push({ text: m[0], start, end: start + m[0].length });
  }
  return out;
}

/** True when the text contains Chinese or Japanese characters (words are then joined without spaces). */
export function hasCjk(text: string): boolean {
  return CJK.test(text);
}
