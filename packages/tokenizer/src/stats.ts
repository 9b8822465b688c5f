import type { XltTokenizer } from './tokenizer.js';

/** Fertility figures of a tokenizer on some sentences. */
export interface TokenStats {
  sentences: number;
  /** Whitespace-separated words. */
  words: number;
  /** Tokens, special tokens excluded. */
  tokens: number;
  /** tokens / words. */
  tokensPerWord: number;
  /** Fraction of tokens that are `<unk>`. */
  unkRate: number;
}

/** Tokens per (whitespace-separated) word and `<unk>` rate, without special tokens. */
export async function tokenStats(tokenizer: XltTokenizer, sentences: readonly string[]): Promise<TokenStats> {
  const encs = await tokenizer.encodeBatch(sentences, { addSpecialTokens: false });
  let words = 0;
  let tokens = 0;
  let unk = 0;
  sentences.forEach((s, i) => {
    words += s.split(/\s+/u).filter((w) => w.length > 0).length;
    tokens += encs[i].ids.length;
    for (const id of encs[i].ids) if (id === tokenizer.unkId) unk++;
  });
  return {
    sentences: sentences.length,
    words,
    tokens,
    tokensPerWord: words > 0 ? tokens / words : 0,
    unkRate: tokens > 0 ? unk / tokens : 0,
  };
}
