import { XltError } from '@xlt/core';
import type { ServeTokenizer } from './tasks.js';

/** Loads the model's tokenizer (a `tokenizer.json`, or a folder holding one) for serving. */
export async function loadTokenizer(_path: string): Promise<ServeTokenizer> {
  throw new XltError('STATE', 'tokenizer loading is being wired to @xlt/tokenizer');
}
