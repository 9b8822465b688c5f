import { existsSync } from 'node:fs';
import path from 'node:path';
import { type BilingualDictionary, dictionaryCodeSwitch } from '@xlt/augment';
import { type Rng, XltConfigError } from '@xlt/core';
import { readMuseDictionary } from '@xlt/data';

/**
 * Dictionary code-switched copies in a pre-training corpus: cross-lingual anchors for a masked LM
 * that sees each language's text apart (translations of a word occur in the same contexts).
 */
export interface CorpusCodeSwitch {
  /** The language the dictionaries translate from (MUSE's are English to X). */
  source: string;
  /** Dictionary file per target language (`source` word, tab, translation; relative to the data root or absolute). */
  dictionaries: Record<string, string>;
  /** Share of the words with a translation that a copy switches (CoSDA-ML's ratio). */
  ratio: number;
}

/** What {@link codeSwitchedCopies} added, per language. */
export interface CodeSwitchRecord {
  source: string;
  ratio: number;
  dictionaries: Record<string, string>;
  /** Per language: copies added to its training text and words switched in them. */
  added: Record<string, { copies: number; switchedWords: number }>;
}

/** The MUSE dictionaries `dict/muse-<source>-<l>.tsv` of the data root for each of `languages` that has one. */
export function museDictionaries(
  dataRoot: string,
  source: string,
  languages: readonly string[],
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of languages) {
    const rel = `dict/muse-${source}-${l}.tsv`;
    if (l !== source && existsSync(path.join(dataRoot, rel))) out[l] = rel;
  }
  return out;
}

/** The dictionary read backwards: translation (lower-cased) -> source words. */
export function reverseDictionary(d: BilingualDictionary): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [src, tgts] of d)
    for (const t of tgts) {
      const key = t.toLowerCase();
      const list = out.get(key);
      if (list === undefined) out.set(key, [src]);
      else if (!list.includes(src)) list.push(src);
    }
  return out;
}

/**
 * One switched copy of every training unit that has a switchable word: the source language's
 * units switched into the target languages (a random one per word), each target language's units
 * switched into the source language by the reversed dictionary. Units split on whitespace, so text
 * written without spaces (zh, ja) only receives words, it gives none. Returns the copies per
 * language (to be mixed into that language's training text) and the record for the manifest.
 */
export async function codeSwitchedCopies(
  dataRoot: string,
  train: ReadonlyMap<string, readonly string[]>,
  o: CorpusCodeSwitch,
  rng: (lang: string) => Rng,
): Promise<{ copies: Map<string, string[]>; record: CodeSwitchRecord }> {
  if (!(o.ratio > 0 && o.ratio <= 1))
    throw new XltConfigError(`code-switch ratio must be in (0, 1], got ${o.ratio}`, {
      field: 'codeSwitch.ratio',
    });
  const dicts = new Map<string, BilingualDictionary>();
  for (const [lang, file] of Object.entries(o.dictionaries)) {
    if (!train.has(lang)) continue;
    const f = path.isAbsolute(file) ? file : path.join(dataRoot, file);
    if (!existsSync(f))
      throw new XltConfigError(`no dictionary file ${f} for language '${lang}'`, {
        field: `codeSwitch.dictionaries.${lang}`,
        file: f,
      });
    dicts.set(lang, await readMuseDictionary(f));
  }
  const copies = new Map<string, string[]>();
  const record: CodeSwitchRecord = { source: o.source, ratio: o.ratio, dictionaries: {}, added: {} };
  for (const l of dicts.keys()) record.dictionaries[l] = o.dictionaries[l] as string;
  const switchAll = (lang: string, dictionaries: ReadonlyMap<string, BilingualDictionary>) => {
    const r = rng(lang);
    const out: string[] = [];
    let words = 0;
    for (const unit of train.get(lang) ?? []) {
      const s = dictionaryCodeSwitch({ words: unit.split(' ') }, { dictionaries, ratio: o.ratio, rng: r });
      if (s.switched.length === 0) continue;
      words += s.switched.length;
      out.push(s.words.join(' '));
    }
    copies.set(lang, out);
    record.added[lang] = { copies: out.length, switchedWords: words };
  };
  if (dicts.size === 0) return { copies, record };
  if (train.has(o.source)) switchAll(o.source, dicts);
  for (const [lang, d] of dicts) switchAll(lang, new Map([[o.source, reverseDictionary(d)]]));
  return { copies, record };
}
