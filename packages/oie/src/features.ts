import { type OpenIeBatch, padTokenRows, XltConfigError } from '@xlt/core';
import type { XltTokenizer } from '@xlt/tokenizer';
import { alignLabels } from '@xlt/tokenizer';
import type { OieExample } from './convert.js';
import { ARGUMENT_TAGS, PREDICATE_TAGS } from './tags.js';

/** A sentence's words encoded: token ids, the word of each token, and each word's first token (-1 if cut). */
export interface EncodedWords {
  ids: number[];
  wordIds: (number | null)[];
  firstToken: number[];
}

/** Encodes pre-split words (joined by spaces) with `<s>`/`</s>`, truncated to `maxLength` tokens. */
export async function encodeWords(
  tokenizer: XltTokenizer,
  words: readonly string[],
  maxLength: number,
): Promise<EncodedWords> {
  const { encoding } = await alignLabels(tokenizer, words, new Array<number>(words.length).fill(0), {
    maxLength,
  });
  const firstToken = new Array<number>(words.length).fill(-1);
  encoding.wordIds.forEach((w, t) => {
    if (w !== null && firstToken[w] === -1) firstToken[w] = t;
  });
  return { ids: encoding.ids, wordIds: encoding.wordIds, firstToken };
}

/** One training row: a sentence with one of its predicates (the unit Multi2OIE's head trains on). */
export interface OieRow {
  inputIds: number[];
  /** 1 on every token of the row's predicate. */
  predMask: number[];
  /** 1 inside the predicate, 2 elsewhere (0 is padding). */
  predPosition: number[];
  /** Predicate tag index per token on each word's first token; -100 elsewhere. */
  predLabels: number[];
  /** Argument tag index of this predicate per word's first token; -100 elsewhere. */
  argLabels: number[];
  /** The sentence's language code (X-Mod models pick their language modules by it). */
  lang?: string;
}

/**
 * Training rows of examples: one per (sentence, tuple). Words cut by truncation get no label; a
 * tuple whose predicate was cut entirely is dropped (counted in `truncated`).
 */
export async function examplesToRows(
  tokenizer: XltTokenizer,
  examples: readonly OieExample[],
  maxLength = 128,
): Promise<{ rows: OieRow[]; truncated: number }> {
  const rows: OieRow[] = [];
  let truncated = 0;
  const pIdx = new Map<string, number>(PREDICATE_TAGS.map((t, i) => [t, i]));
  const aIdx = new Map<string, number>(ARGUMENT_TAGS.map((t, i) => [t, i]));
  for (const ex of examples) {
    const enc = await encodeWords(tokenizer, ex.words, maxLength);
    const n = enc.ids.length;
    const predLabels = new Array<number>(n).fill(-100);
    enc.firstToken.forEach((t, w) => {
      if (t >= 0) predLabels[t] = pIdx.get(ex.predicate[w] as string) as number;
    });
    for (const tup of ex.tuples) {
      const inPred = new Set(tup.predicateWords);
      const predMask = enc.wordIds.map((w) => (w !== null && inPred.has(w) ? 1 : 0));
      if (!predMask.includes(1)) {
        truncated++;
        continue;
      }
      const argLabels = new Array<number>(n).fill(-100);
      enc.firstToken.forEach((t, w) => {
        if (t >= 0) argLabels[t] = aIdx.get(tup.args[w] as string) as number;
      });
      rows.push({
        inputIds: enc.ids,
        predMask,
        predPosition: predMask.map((m) => (m === 1 ? 1 : 2)),
        predLabels,
        argLabels,
        lang: ex.lang,
      });
    }
  }
  return { rows, truncated };
}

/** A padded batch of rows ([B][S] each): `@xlt/core`'s one batch type with the Open IE fields. */
export type OieBatch = OpenIeBatch;

/** Options of {@link collateRows} for X-Mod models. */
export interface CollateLanguages {
  /** The model's `languages`: each row's `lang` becomes its index here. */
  languages: readonly string[];
  /** The module for rows whose language has none (default: an error). */
  fallback?: string;
}

/**
 * Pads rows to the longest (pad id, mask 0, labels -100, position 0). With `languages` (X-Mod
 * models), adds `langIds` from each row's `lang`.
 */
export function collateRows(rows: readonly OieRow[], padId = 1, languages?: CollateLanguages): OieBatch {
  const S = Math.max(...rows.map((r) => r.inputIds.length));
  const pad = (a: number[], v: number) => [...a, ...new Array<number>(S - a.length).fill(v)];
  const langIds =
    languages === undefined || languages.languages.length === 0
      ? undefined
      : rows.map((r, i) => {
          let k = r.lang === undefined ? -1 : languages.languages.indexOf(r.lang);
          if (k < 0 && languages.fallback !== undefined) k = languages.languages.indexOf(languages.fallback);
          if (k < 0)
            throw new XltConfigError(
              `row ${i} has language ${JSON.stringify(r.lang)}, which has no module (the model has ${languages.languages.join(', ')})`,
              { field: `rows[${i}].lang` },
            );
          return k;
        });
  return {
    ...(langIds !== undefined ? { langIds } : {}),
    ...padTokenRows(
      rows.map((r) => r.inputIds),
      padId,
    ),
    predMask: rows.map((r) => pad(r.predMask, 0)),
    predPosition: rows.map((r) => pad(r.predPosition, 0)),
    predLabels: rows.map((r) => pad(r.predLabels, -100)),
    argLabels: rows.map((r) => pad(r.argLabels, -100)),
  };
}
