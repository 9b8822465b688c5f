import { XltConfigError } from '@xlt/core';
import { XltTokenizer } from '@xlt/tokenizer';
import type { ServeTokenizer } from './tasks.js';

/** Wraps an {@link XltTokenizer} for the server (mask and pad ids from its vocabulary). */
export function serveTokenizer(tok: XltTokenizer): ServeTokenizer {
  const maskTokenId = tok.tokenToId('<mask>');
  const padTokenId = tok.tokenToId('<pad>');
  if (padTokenId === undefined) throw new XltConfigError('the tokenizer has no <pad> token');
  return {
    maskTokenId: maskTokenId ?? -1,
    padTokenId,
    idToToken: (id) => tok.idToToken(id),
    async encode(text, pair) {
      const e = await tok.encode(text, pair !== undefined ? { pair } : {});
      return { ids: e.ids, offsets: e.offsets, wordIds: e.wordIds, sequenceIds: e.sequenceIds };
    },
  };
}

/** Loads the model's tokenizer (a `tokenizer.json`, or a folder holding one) for serving. */
export async function loadTokenizer(path: string): Promise<ServeTokenizer> {
  return serveTokenizer(await XltTokenizer.fromFile(path));
}
