import { readFile } from 'node:fs/promises';
import { XltFormatError, XltNotFoundError } from '@xlt/core';

/** Languages written without spaces between words: their PAN-X tokens are joined without a space. */
export const NO_SPACE_LANGUAGES: ReadonlySet<string> = new Set(['zh', 'ja', 'th', 'my']);

/**
 * Reads the sentences of a PAN-X / CoNLL-style file (`token \t tag` lines, blank line between
 * sentences): the first column, with a leading `xx:` language prefix removed, joined by spaces (no
 * space for {@link NO_SPACE_LANGUAGES}, when `lang` is given).
 */
export async function readTaggedSentences(file: string, lang?: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (cause) {
    throw new XltNotFoundError('cannot read tagged file', { file, cause });
  }
  const joiner = lang !== undefined && NO_SPACE_LANGUAGES.has(lang) ? '' : ' ';
  const prefix = /^[a-z]{2,3}:/;
  const out: string[] = [];
  let cur: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === '') {
      if (cur.length > 0) out.push(cur.join(joiner));
      cur = [];
      continue;
    }
    const tab = line.indexOf('\t');
    const tok = tab >= 0 ? line.slice(0, tab) : line;
    if (tok.length === 0) throw new XltFormatError('empty token column', { file, line: i + 1 });
    cur.push(prefix.test(tok) && tok.length > 3 ? tok.replace(prefix, '') : tok);
  }
  if (cur.length > 0) out.push(cur.join(joiner));
  return out;
}
