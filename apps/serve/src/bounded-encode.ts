import { type Encoded, type ServeTokenizer, truncate } from './tasks.js';

/** An encoding cut to the model's length, and whether anything was cut. */
export interface BoundedEncoding {
  enc: Encoded;
  truncated: boolean;
}

/** `text` cut to at most `chars` code units, never between the halves of a surrogate pair. */
function prefix(text: string, chars: number): string {
  const code = text.charCodeAt(chars - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? chars - 1 : chars);
}

/**
 * Index of the first token of the last word of sequence `seq` (0: the text, 1: the pair's second
 * text): a word the cut may have split, so its tokens may differ from the full text's. -1 when the
 * sequence has no word.
 */
function lastWordStart(e: Encoded, seq: 0 | 1): number {
  let last: number | null = null;
  let start = -1;
  e.wordIds.forEach((w, t) => {
    if (w === null || (e.sequenceIds?.[t] ?? 0) !== seq) return;
    if (w !== last) {
      last = w;
      start = t;
    }
  });
  return start;
}

/**
 * Encodes `text` (or the pair `first`, `text`) to at most `maxTokens` tokens, the final special token
 * kept, without tokenizing more of `text` than that needs: prefixes of 8 characters per token,
 * growing 4x, are encoded until the tokens before the prefix's last (possibly cut) word are enough.
 * The result equals encoding the whole text and then truncating it; the work is bounded by the
 * model's length, not by the text's.
 */
export async function encodeBounded(
  tokenizer: ServeTokenizer,
  text: string,
  maxTokens: number,
  first?: string,
): Promise<BoundedEncoding> {
  const encode = (t: string) => (first !== undefined ? tokenizer.encode(first, t) : tokenizer.encode(t));
  const seq = first !== undefined ? 1 : 0;
  for (let chars = Math.max(64, maxTokens * 8); chars < text.length; chars *= 4) {
    const e = await encode(prefix(text, chars));
    // the first maxTokens - 1 tokens are kept: they must all come before the last, maybe cut, word
    if (lastWordStart(e, seq) >= maxTokens - 1) return { enc: truncate(e, maxTokens), truncated: true };
  }
  const full = await encode(text);
  return { enc: truncate(full, maxTokens), truncated: full.ids.length > maxTokens };
}
