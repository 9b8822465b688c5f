import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { iso3Of, Rng, writeFileAtomic, XltConfigError } from '@xlt/core';
import { readConllu, readLines, readSquad } from '@xlt/data';
import { NO_SPACE_LANGUAGES, readTaggedSentences } from '@xlt/tokenizer';
import { type CodeSwitchRecord, type CorpusCodeSwitch, codeSwitchedCopies } from './corpus-switch.js';

/** How a source file holds its text. */
export type CorpusSourceKind = 'tagged' | 'lines' | 'conllu' | 'squad';

/** One file of raw text for a language, relative to the data root. */
export interface CorpusSource {
  lang: string;
  file: string;
  kind: CorpusSourceKind;
}

/**
 * Files that xlt's recipes and reports evaluate on: never pre-trained on (PAN-X dev, UD dev/test,
 * XNLI and PAWS-X dev). Paths relative to the data root; a source matching one is left out and
 * listed in the manifest.
 */
export const EVALUATED_FILES: readonly RegExp[] = [
  /^panx\/dev-/,
  /^ud\/.*-(dev|test)\.conllu$/,
  /^xnli\//,
  /^pawsx\//,
];

/** FLORES-200 codes where the ISO 639-3 macro-language code differs from the file's. */
const FLORES_CODE: Record<string, string> = {
  ar: 'arb',
  sw: 'swh',
  zh: 'zho',
  fa: 'pes',
  et: 'est',
  ms: 'zsm',
};

/**
 * Every file of `dataRoot` (laid out as `../shared/data`) with raw text of `lang`: PAN-X training
 * sentences (tags dropped), FLORES-200, UD sentences, QA contexts (XQuAD, MLQA, TyDi QA). Files
 * that match `exclude` are returned separately.
 */
export function discoverSources(
  dataRoot: string,
  lang: string,
  exclude: readonly RegExp[] = EVALUATED_FILES,
): { sources: CorpusSource[]; excluded: string[] } {
  const all: CorpusSource[] = [];
  const list = (dir: string) =>
    existsSync(path.join(dataRoot, dir)) ? readdirSync(path.join(dataRoot, dir)) : [];
  for (const f of list('panx'))
    if (f === `train-${lang}.tsv` || f === `dev-${lang}.tsv`)
      all.push({ lang, file: `panx/${f}`, kind: 'tagged' });
  const flores = FLORES_CODE[lang] ?? iso3Of(lang);
  for (const f of list('text'))
    if (flores !== undefined && f.startsWith(`flores200-${flores}_`))
      all.push({ lang, file: `text/${f}`, kind: 'lines' });
  for (const f of list('ud'))
    if (f.startsWith(`${lang}_`) && f.endsWith('.conllu'))
      all.push({ lang, file: `ud/${f}`, kind: 'conllu' });
  for (const f of list('qa')) {
    if (!f.endsWith('.json')) continue;
    const m =
      /^(?:xquad\.([a-z]+)|tydiqa\.goldp\.([a-z]+)\.\w+|dev-context-([a-z]+)-question-[a-z]+)\.json$/.exec(f);
    if (m !== null && (m[1] ?? m[2] ?? m[3]) === lang) all.push({ lang, file: `qa/${f}`, kind: 'squad' });
  }
  for (const dir of ['xnli', 'pawsx'])
    for (const f of list(dir))
      if (f === `dev-${lang}.tsv`) all.push({ lang, file: `${dir}/${f}`, kind: 'lines' });
  const sources = all.filter((s) => !exclude.some((re) => re.test(s.file)));
  const excluded = all.filter((s) => exclude.some((re) => re.test(s.file))).map((s) => s.file);
  return { sources, excluded };
}

/** Reads the text units (sentences or paragraphs) of one source. */
export async function readSourceText(dataRoot: string, s: CorpusSource): Promise<string[]> {
  const file = path.join(dataRoot, s.file);
  if (s.kind === 'tagged') return readTaggedSentences(file, s.lang);
  const out: string[] = [];
  if (s.kind === 'lines') {
    // pair files (tab-separated) give each sentence of a pair; plain files one sentence a line
    for await (const l of readLines(file)) for (const part of l.split('\t').slice(0, 2)) out.push(part);
  } else if (s.kind === 'conllu') {
    const joiner = NO_SPACE_LANGUAGES.has(s.lang) ? '' : ' ';
    for await (const sent of readConllu(file)) out.push(sent.text ?? sent.forms.join(joiner));
  } else {
    let last = '';
    for await (const r of readSquad(file)) {
      if (r.context !== last) out.push(r.context);
      last = r.context;
    }
  }
  return out;
}

/** What a built corpus holds, written to `manifest.json`. */
export interface CorpusManifest {
  dataRoot: string;
  seed: number;
  heldOutFraction: number;
  excludedPatterns: string[];
  languages: Record<
    string,
    {
      train: string;
      heldOut: string;
      trainUnits: number;
      heldOutUnits: number;
      characters: number;
      duplicates: number;
      sources: Array<{ file: string; units: number }>;
      excluded: string[];
      /** Dictionary code-switched copies mixed into the training text (see `codeSwitch`). */
      switchedCopies?: number;
    }
  >;
  /** Present when the training text holds dictionary code-switched copies (held-out text never does). */
  codeSwitch?: CodeSwitchRecord;
}

/** Options of {@link buildCorpus}. */
export interface BuildCorpusOptions {
  dataRoot: string;
  languages: readonly string[];
  /** Output folder: `<lang>.txt`, `<lang>.heldout.txt`, `manifest.json`. */
  out: string;
  /** Share of each language's de-duplicated units held out for masked-LM loss (default 0.02, at most maxHeldOut). */
  heldOutFraction?: number;
  maxHeldOut?: number;
  seed?: number;
  exclude?: readonly RegExp[];
  /** Mix dictionary code-switched copies of the training units into the training text. */
  codeSwitch?: CorpusCodeSwitch;
  log?: (line: string) => void;
}

const normalise = (s: string) => s.normalize('NFC').replace(/\s+/g, ' ').trim();

/**
 * Builds a pre-training corpus: all raw text of each language in the data root (except files that
 * reports evaluate on), whitespace-normalised, de-duplicated, shuffled with `seed`, with a held-out
 * slice per language. One unit (sentence or paragraph) a line. Returns the manifest.
 */
export async function buildCorpus(o: BuildCorpusOptions): Promise<CorpusManifest> {
  const frac = o.heldOutFraction ?? 0.02;
  const maxHeld = o.maxHeldOut ?? 1000;
  const seed = o.seed ?? 0;
  const exclude = o.exclude ?? EVALUATED_FILES;
  const manifest: CorpusManifest = {
    dataRoot: path.resolve(o.dataRoot),
    seed,
    heldOutFraction: frac,
    excludedPatterns: exclude.map((r) => r.source),
    languages: {},
  };
  const trains = new Map<string, string[]>();
  for (const lang of o.languages) {
    const { sources, excluded } = discoverSources(o.dataRoot, lang, exclude);
    if (sources.length === 0)
      throw new XltConfigError(`no raw text for language '${lang}' under the data root`, {
        field: 'languages',
        file: o.dataRoot,
      });
    const seen = new Set<string>();
    const units: string[] = [];
    let duplicates = 0;
    const used: Array<{ file: string; units: number }> = [];
    for (const s of sources) {
      let n = 0;
      for (const raw of await readSourceText(o.dataRoot, s)) {
        const t = normalise(raw);
        if (t.length === 0) continue;
        if (seen.has(t)) {
          duplicates++;
          continue;
        }
        seen.add(t);
        units.push(t);
        n++;
      }
      used.push({ file: s.file, units: n });
    }
    if (units.length < 2)
      throw new XltConfigError(`language '${lang}' has fewer than 2 distinct text units`, {
        field: 'languages',
      });
    new Rng(seed).fork(`corpus-${lang}`).shuffle(units);
    const held = Math.max(1, Math.min(maxHeld, Math.round(units.length * frac)));
    const heldOut = units.slice(0, held);
    const train = units.slice(held);
    const trainFile = `${lang}.txt`;
    const heldFile = `${lang}.heldout.txt`;
    trains.set(lang, train);
    writeFileAtomic(path.join(o.out, heldFile), `${heldOut.join('\n')}\n`);
    manifest.languages[lang] = {
      train: trainFile,
      heldOut: heldFile,
      trainUnits: train.length,
      heldOutUnits: heldOut.length,
      characters: train.reduce((a, s) => a + s.length, 0),
      duplicates,
      sources: used,
      excluded,
    };
    o.log?.(
      `${lang}: ${train.length} units for training, ${heldOut.length} held out, ${duplicates} duplicates dropped, from ${used.map((u) => `${u.file} (${u.units})`).join(', ')}`,
    );
  }
  if (o.codeSwitch !== undefined) {
    const { copies, record } = await codeSwitchedCopies(o.dataRoot, trains, o.codeSwitch, (l) =>
      new Rng(seed).fork(`code-switch-${l}`),
    );
    manifest.codeSwitch = record;
    for (const [lang, extra] of copies) {
      const train = trains.get(lang) as string[];
      const entry = manifest.languages[lang];
      if (entry !== undefined) entry.switchedCopies = extra.length;
      trains.set(lang, new Rng(seed).fork(`code-switch-mix-${lang}`).shuffle([...train, ...extra]));
      o.log?.(
        `${lang}: ${extra.length} dictionary code-switched copies (${record.added[lang]?.switchedWords ?? 0} words switched, ratio ${o.codeSwitch.ratio})`,
      );
    }
  }
  for (const [lang, train] of trains)
    writeFileAtomic(path.join(o.out, `${lang}.txt`), `${train.join('\n')}\n`);
  writeFileAtomic(path.join(o.out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
