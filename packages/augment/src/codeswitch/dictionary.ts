import { type Rng, XltConfigError } from '@xlt/core';

/** A bilingual dictionary: source word (lower-cased) -> its translations. */
export type BilingualDictionary = ReadonlyMap<string, readonly string[]>;

/** One example: words, and optionally one label per word (BIO tags or any strings). */
export interface WordExample {
  words: string[];
  labels?: string[];
}

/** The switched example and what was switched. */
export interface SwitchedExample extends WordExample {
  /** For each output word: the index of the source word it came from. */
  sourceIndex: number[];
  /** Per switched source word: its index and the language it was switched to. */
  switched: Array<{ index: number; lang: string; from: string; to: string }>;
}

export interface DictionarySwitchOptions {
  /** Dictionaries by target language. */
  dictionaries: ReadonlyMap<string, BilingualDictionary>;
  /** Fraction of the words that have a translation to switch (CoSDA-ML's ratio; default 0.5). */
  ratio?: number;
  /** Leave words with these labels alone (e.g. `['O']` to switch only entities, or none). */
  skipLabels?: readonly string[];
  /** Lower-case before lookup (MUSE dictionaries are lower-case; default true). */
  lowercase?: boolean;
  rng: Rng;
}

/** Inside-tag of a BIO/IOB2 label (`B-PER` -> `I-PER`); other labels stay as they are. */
function insideOf(label: string): string {
  return label.startsWith('B-') ? `I-${label.slice(2)}` : label;
}

/**
 * CoSDA-ML-style dictionary code-switching: a `ratio` of the words that have a translation are
 * replaced by a translation into a randomly chosen target language. Labels follow the words; a
 * multi-word translation of a `B-X` word continues with `I-X`, so token-classification data stays
 * aligned and valid.
 */
export function dictionaryCodeSwitch(
  example: WordExample,
  options: DictionarySwitchOptions,
): SwitchedExample {
  const ratio = options.ratio ?? 0.5;
  if (!(ratio >= 0 && ratio <= 1))
    throw new XltConfigError(`ratio must be in [0, 1], got ${ratio}`, { field: 'ratio' });
  if (example.labels !== undefined && example.labels.length !== example.words.length) {
    throw new XltConfigError(`${example.words.length} words but ${example.labels.length} labels`, {
      field: 'labels',
    });
  }
  const langs = [...options.dictionaries.keys()];
  if (langs.length === 0) throw new XltConfigError('no dictionaries given', { field: 'dictionaries' });
  const lower = options.lowercase ?? true;
  const skip = new Set(options.skipLabels ?? []);
  // candidates: words with at least one translation in at least one language
  const candidates: Array<{ index: number; langs: string[] }> = [];
  example.words.forEach((w, i) => {
    if (example.labels !== undefined && skip.has(example.labels[i] as string)) return;
    const key = lower ? w.toLowerCase() : w;
    const ls = langs.filter((l) => (options.dictionaries.get(l)?.get(key)?.length ?? 0) > 0);
    if (ls.length > 0) candidates.push({ index: i, langs: ls });
  });
  const n = Math.round(ratio * candidates.length);
  const chosen = new Map<number, string>();
  for (const c of options.rng.shuffle([...candidates]).slice(0, n))
    chosen.set(c.index, c.langs[options.rng.int(c.langs.length)] as string);
  const out: SwitchedExample = {
    words: [],
    sourceIndex: [],
    switched: [],
    ...(example.labels ? { labels: [] } : {}),
  };
  example.words.forEach((w, i) => {
    const lang = chosen.get(i);
    const label = example.labels?.[i];
    if (lang === undefined) {
      out.words.push(w);
      out.sourceIndex.push(i);
      if (label !== undefined) out.labels?.push(label);
      return;
    }
    const options2 = options.dictionaries.get(lang)?.get(lower ? w.toLowerCase() : w) as readonly string[];
    const to = options2[options.rng.int(options2.length)] as string;
    out.switched.push({ index: i, lang, from: w, to });
    to.split(/\s+/)
      .filter((p) => p !== '')
      .forEach((part, k) => {
        out.words.push(part);
        out.sourceIndex.push(i);
        if (label !== undefined) out.labels?.push(k === 0 ? label : insideOf(label));
      });
  });
  return out;
}
