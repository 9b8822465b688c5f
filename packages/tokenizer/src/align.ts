import { XltConfigError } from '@xlt/core';
import type { XltEncodeOptions, XltEncoding, XltTokenizer } from './tokenizer.js';

/** Options of {@link alignLabels}. */
export interface AlignOptions extends Pick<XltEncodeOptions, 'addSpecialTokens' | 'maxLength' | 'padding'> {
  /** Give every sub-token its word's label (default false: only the first sub-token; the rest get `ignoreIndex`). */
  labelAllSubtokens?: boolean;
  /** Label of special, padding and non-first sub-tokens (default -100, PyTorch's ignore index). */
  ignoreIndex?: number;
}

/** Result of {@link alignLabels}: the encoding (with `wordIds` indexing the input words) and one label per token. */
export interface AlignedLabels {
  encoding: XltEncoding;
  labels: number[];
}

/**
 * Tokenizes pre-split words (joined by single spaces) and gives each token its word's label.
 * `encoding.wordIds[t]` is the index into `words` (a word that holds whitespace counts as one word).
 * Empty or whitespace-only words produce no token; their labels are dropped, as are labels of words
 * cut by truncation.
 */
export async function alignLabels(
  tokenizer: XltTokenizer,
  words: readonly string[],
  labels: readonly number[],
  options: AlignOptions = {},
): Promise<AlignedLabels> {
  if (words.length !== labels.length)
    throw new XltConfigError(`expected one label per word: ${words.length} words, ${labels.length} labels`, {
      field: 'labels',
    });
  const ignore = options.ignoreIndex ?? -100;
  // code-unit position -> word index
  const text = words.join(' ');
  const owner = new Int32Array(text.length).fill(-1);
  let pos = 0;
  for (let w = 0; w < words.length; w++) {
    owner.fill(w, pos, pos + words[w].length);
    pos += words[w].length + 1;
  }
  const encOpts: XltEncodeOptions = { ...options };
  const encoding = await tokenizer.encode(text, encOpts);
  const out: number[] = new Array(encoding.ids.length).fill(ignore);
  let prev = -1;
  for (let t = 0; t < encoding.ids.length; t++) {
    if (encoding.specialTokensMask[t] === 1) {
      encoding.wordIds[t] = null;
      continue;
    }
    const [s, e] = encoding.offsets[t];
    let w = -1;
    for (let p = s; p < Math.max(e, s + 1) && p < owner.length; p++) {
      if (owner[p] >= 0) {
        w = owner[p];
        break;
      }
    }
    encoding.wordIds[t] = w >= 0 ? w : null;
    if (w < 0) continue;
    if (w !== prev || options.labelAllSubtokens) out[t] = labels[w];
    prev = w;
  }
  return { encoding, labels: out };
}

/**
 * The inverse of {@link alignLabels}: turns one prediction per token into one per word, taking each
 * word's first sub-token (`'first'`, default) or the most frequent prediction among its sub-tokens
 * (`'majority'`, ties to the earliest). Words with no token (empty, or truncated away) get `fallback`.
 */
export function wordPredictions<T>(
  wordIds: readonly (number | null)[],
  tokenPredictions: readonly T[],
  numWords: number,
  options: { strategy?: 'first' | 'majority'; fallback: T },
): T[] {
  if (wordIds.length !== tokenPredictions.length)
    throw new XltConfigError(
      `expected one prediction per token: ${wordIds.length} tokens, ${tokenPredictions.length} predictions`,
      { field: 'tokenPredictions' },
    );
  const out: T[] = new Array(numWords).fill(options.fallback);
  const votes: Map<T, number>[] = [];
  const seen = new Uint8Array(numWords);
  for (let t = 0; t < wordIds.length; t++) {
    const w = wordIds[t];
    if (w === null || w < 0 || w >= numWords) continue;
    if (options.strategy === 'majority') {
      votes[w] ??= new Map();
      const m = votes[w];
      m.set(tokenPredictions[t], (m.get(tokenPredictions[t]) ?? 0) + 1);
    } else if (!seen[w]) {
      out[w] = tokenPredictions[t];
    }
    seen[w] = 1;
  }
  if (options.strategy === 'majority') {
    for (let w = 0; w < numWords; w++) {
      const m = votes[w];
      if (!m) continue;
      let best = -1;
      for (const [k, c] of m) {
        if (c > best) {
          best = c;
          out[w] = k;
        }
      }
    }
  }
  return out;
}
