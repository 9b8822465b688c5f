import { XltFormatError } from '@xlt/core';
import {
  type ArgumentTag,
  locate,
  MAX_ARGS,
  type OieTags,
  type OieTuple,
  type PredicateTag,
  tuplesToTags,
} from './tags.js';
import { splitWords } from './words.js';

/** One training sentence: its words, the predicate layer and one argument layer per tuple. */
export interface OieExample extends OieTags {
  /** Where it came from (`carb:12`, `reoie:es:3`, an annotation id, ...). */
  id: string;
  /** Language code (`en`, `de`, ...). */
  lang: string;
}

/** Why a gold tuple did not become a training target. */
export type SkipReason =
  | 'relation_not_found'
  | 'argument_not_found'
  | 'no_arguments'
  | 'bad_index'
  | 'overlap'
  | 'missing_span';

/** A tuple that could not be located, with the reason. */
export interface SkippedTuple {
  id: string;
  sentence: string;
  tuple: OieTuple;
  reason: SkipReason;
}

/** What a conversion did: counts, and every tuple it could not use. */
export interface ConversionReport {
  sentences: number;
  tuples: number;
  /** Tuples that became argument layers. */
  kept: number;
  /** Sentences with no usable tuple (left out of `examples`). */
  emptySentences: number;
  skipped: SkippedTuple[];
  /** Skipped tuples by reason. */
  byReason: Partial<Record<SkipReason, number>>;
}

/** Examples and the report of a conversion. */
export interface Conversion {
  examples: OieExample[];
  report: ConversionReport;
}

function newReport(): ConversionReport {
  return { sentences: 0, tuples: 0, kept: 0, emptySentences: 0, skipped: [], byReason: {} };
}

function skip(report: ConversionReport, s: SkippedTuple): void {
  report.skipped.push(s);
  report.byReason[s.reason] = (report.byReason[s.reason] ?? 0) + 1;
}

function whyNotFound(words: readonly string[], t: OieTuple): SkipReason {
  if (t.args.every((a) => a.trim() === '')) return 'no_arguments';
  return locate(words, t.relation) === undefined ? 'relation_not_found' : 'argument_not_found';
}

function addTextTuples(
  out: Conversion,
  id: string,
  lang: string,
  words: string[],
  sentence: string,
  tuples: readonly OieTuple[],
): void {
  const r = out.report;
  r.sentences++;
  r.tuples += tuples.length;
  const withArgs = tuples.filter((t) => t.args.some((a) => a.trim() !== ''));
  for (const t of tuples)
    if (!withArgs.includes(t)) skip(r, { id, sentence, tuple: t, reason: 'no_arguments' });
  const tags = tuplesToTags(words, withArgs);
  for (const t of tags.skipped) skip(r, { id, sentence, tuple: t, reason: whyNotFound(words, t) });
  r.kept += tags.tuples.length;
  if (tags.tuples.length === 0) {
    r.emptySentences++;
    return;
  }
  out.examples.push({ id, lang, words: tags.words, predicate: tags.predicate, tuples: tags.tuples });
}

/** A CaRB-style gold sentence (what `readCarb` of @xlt/data yields). */
export interface CarbLikeSentence {
  sentence: string;
  tuples: ReadonlyArray<{ relation: string; args: readonly string[] }>;
}

/**
 * CaRB gold (space-tokenised sentences) to training examples. Relations and arguments are located in
 * the sentence with {@link locate} (contiguous first, else in order with gaps); tuples that cannot be
 * located (CaRB's implicit `is` / `was` relations, paraphrased arguments) are counted in the report.
 */
export function fromCarb(
  sentences: Iterable<CarbLikeSentence>,
  options: { lang?: string; idPrefix?: string } = {},
): Conversion {
  const out: Conversion = { examples: [], report: newReport() };
  let k = 0;
  for (const s of sentences) {
    const words = s.sentence.split(' ').filter((w) => w !== '');
    addTextTuples(
      out,
      `${options.idPrefix ?? 'carb'}:${k++}`,
      options.lang ?? 'en',
      words,
      s.sentence,
      s.tuples.map((t) => ({ relation: t.relation, args: [...t.args] })),
    );
  }
  return out;
}

/** A Re-OIE2016 sentence (what `readReOie` of @xlt/data yields). */
export interface ReOieLikeSentence {
  sentence: string;
  tuples: ReadonlyArray<{
    pred: string;
    predIndex: readonly number[];
    args: readonly string[];
    argIndices: ReadonlyArray<readonly number[]>;
  }>;
}

/** Word indices of an inclusive `[start, end]` range when the words there spell `text`. */
function rangeSpan(words: readonly string[], text: string, idx: readonly number[]): number[] | undefined {
  if (idx.length !== 2) return undefined;
  const [a, b] = idx as [number, number];
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b < a || b >= words.length) return undefined;
  const span = Array.from({ length: b - a + 1 }, (_, i) => a + i);
  return span.map((i) => words[i]).join(' ') === text.trim().split(/\s+/).join(' ') ? span : undefined;
}

function bio<T extends string>(n: number, spans: Array<{ idx: number[]; b: T; i: T }>, o: T): T[] {
  const tags = new Array<T>(n).fill(o);
  for (const s of spans)
    s.idx.forEach((k, j) => {
      tags[k] = j === 0 || s.idx[j - 1] !== k - 1 ? s.b : s.i;
    });
  return tags;
}

/**
 * Re-OIE2016 (Multi2OIE's JSON, n-ary or binary, en/es/pt) to training examples. The file's word
 * ranges (`pred_index`, `argN_index`, inclusive) are used where the words there spell the phrase;
 * otherwise the phrase is located as in {@link fromCarb}. Arguments beyond A3 and the loc / temp /
 * context modifiers are not tagged.
 */
export function fromReOie(
  sentences: Iterable<ReOieLikeSentence>,
  options: { lang?: string; idPrefix?: string } = {},
): Conversion {
  const out: Conversion = { examples: [], report: newReport() };
  const r = out.report;
  let k = 0;
  for (const s of sentences) {
    const id = `${options.idPrefix ?? 'reoie'}:${k++}`;
    const words = s.sentence.split(' ').filter((w) => w !== '');
    r.sentences++;
    r.tuples += s.tuples.length;
    const preds: Array<{ idx: number[]; b: PredicateTag; i: PredicateTag }> = [];
    const layers: OieExample['tuples'] = [];
    for (const t of s.tuples) {
      const tuple: OieTuple = { relation: t.pred, args: [...t.args] };
      const fail = (reason: SkipReason) => skip(r, { id, sentence: s.sentence, tuple, reason });
      if (t.args.every((a) => a.trim() === '')) {
        fail('no_arguments');
        continue;
      }
      const rel = rangeSpan(words, t.pred, t.predIndex) ?? locate(words, t.pred);
      if (rel === undefined) {
        fail('relation_not_found');
        continue;
      }
      const taken = new Set(rel);
      const spans: Array<{ idx: number[]; b: ArgumentTag; i: ArgumentTag }> = [];
      let reason: SkipReason | undefined;
      for (const [a, text] of t.args.slice(0, MAX_ARGS).entries()) {
        if (text.trim() === '') continue;
        const byIndex = rangeSpan(words, text, t.argIndices[a] ?? []);
        if (byIndex?.some((i) => taken.has(i))) {
          reason = 'overlap';
          break;
        }
        const idx = byIndex ?? locate(words, text, taken);
        if (idx === undefined) {
          reason = 'argument_not_found';
          break;
        }
        for (const i of idx) taken.add(i);
        spans.push({ idx, b: `A${a}-B` as ArgumentTag, i: `A${a}-I` as ArgumentTag });
      }
      if (reason !== undefined) {
        fail(reason);
        continue;
      }
      preds.push({ idx: rel, b: 'P-B', i: 'P-I' });
      layers.push({ predicateWords: rel, args: bio(words.length, spans, 'O') });
    }
    r.kept += layers.length;
    if (layers.length === 0) {
      r.emptySentences++;
      continue;
    }
    out.examples.push({
      id,
      lang: options.lang ?? 'en',
      words,
      predicate: bio(words.length, preds, 'O'),
      tuples: layers,
    });
  }
  return out;
}

/**
 * The record shape of @xlt/augment's LLM annotation output (`AnnotatedExample`, one JSON object a
 * line): a translation and the source's labelled spans located in it (UTF-16 offsets, end exclusive).
 */
export interface AnnotatedRecord {
  id: string;
  lang: string;
  source?: string;
  translation: string;
  spans: ReadonlyArray<{ label: string; text: string; start: number; end: number }>;
}

/** Span labels for OIE annotation: `[<tuple>:]rel` and `[<tuple>:]arg<N>` (`subject` / `object` too). */
const LABEL = /^(?:(?:t)?(\d+)[:.])?(rel|relation|pred|predicate|arg(\d)|subject|object)$/i;

function parseLabel(label: string): { tuple: number; slot: 'rel' | number } | undefined {
  const m = LABEL.exec(label.trim());
  if (!m) return undefined;
  const tuple = m[1] !== undefined ? Number(m[1]) : 0;
  const name = (m[2] as string).toLowerCase();
  if (m[3] !== undefined) return { tuple, slot: Number(m[3]) };
  if (name === 'subject') return { tuple, slot: 0 };
  if (name === 'object') return { tuple, slot: 1 };
  return { tuple, slot: 'rel' };
}

/**
 * Source examples for @xlt/augment's `annotate` from OIE gold: one example per sentence, with span
 * labels `t<k>:rel`, `t<k>:arg<N>` for its k-th tuple (what {@link fromAnnotations} reads back).
 * Tuples with an empty relation are left out; empty arguments are not asked for.
 */
export function annotationSources(
  sentences: Iterable<CarbLikeSentence>,
  options: { idPrefix?: string; maxTuples?: number } = {},
): Array<{ id: string; sentence: string; spans: Array<{ label: string; text: string }> }> {
  const out: Array<{ id: string; sentence: string; spans: Array<{ label: string; text: string }> }> = [];
  let k = 0;
  for (const s of sentences) {
    const spans: Array<{ label: string; text: string }> = [];
    s.tuples.slice(0, options.maxTuples ?? Number.POSITIVE_INFINITY).forEach((t, j) => {
      if (t.relation.trim() === '') return;
      spans.push({ label: `t${j}:rel`, text: t.relation });
      t.args.slice(0, MAX_ARGS).forEach((a, n) => {
        if (a.trim() !== '') spans.push({ label: `t${j}:arg${n}`, text: a });
      });
    });
    out.push({ id: `${options.idPrefix ?? 'oie'}:${k++}`, sentence: s.sentence, spans });
  }
  return out;
}

/**
 * LLM-annotated multilingual records (@xlt/augment's JSONL) to training examples. The translation is
 * split into words ({@link splitWords}: whitespace, one word per Chinese / Japanese character); each
 * span's offsets give its words. Spans are grouped into tuples by their label (`t<k>:rel`,
 * `t<k>:arg<N>`; a record with plain `rel` / `arg0` / `subject` ... labels is one tuple). Tuples
 * without a relation or any argument, with a span whose offsets do not match its text, or whose
 * argument overlaps the relation are counted in the report.
 */
export function fromAnnotations(records: Iterable<AnnotatedRecord>): Conversion {
  const out: Conversion = { examples: [], report: newReport() };
  const r = out.report;
  for (const rec of records) {
    const id = `${rec.id}:${rec.lang}`;
    const words = splitWords(rec.translation);
    r.sentences++;
    const groups = new Map<
      number,
      { rel?: number[]; args: Map<number, number[]>; bad: boolean; text: OieTuple }
    >();
    for (const sp of rec.spans) {
      const lab = parseLabel(sp.label);
      if (lab === undefined) continue;
      let g = groups.get(lab.tuple);
      if (g === undefined) {
        g = { args: new Map(), bad: false, text: { relation: '', args: [] } };
        groups.set(lab.tuple, g);
      }
      const ok = rec.translation.slice(sp.start, sp.end) === sp.text && sp.end > sp.start;
      const idx = words.flatMap((w, i) => (w.start < sp.end && w.end > sp.start ? [i] : []));
      const join = (a: string | undefined) => (a ? `${a} ${sp.text}` : sp.text);
      if (lab.slot === 'rel') g.text.relation = join(g.text.relation);
      else g.text.args[lab.slot] = join(g.text.args[lab.slot]);
      if (!ok || idx.length === 0) {
        g.bad = true;
        continue;
      }
      const union = (prev: number[] | undefined) =>
        [...new Set([...(prev ?? []), ...idx])].sort((a, b) => a - b);
      if (lab.slot === 'rel') g.rel = union(g.rel);
      else if (lab.slot < MAX_ARGS) g.args.set(lab.slot, union(g.args.get(lab.slot)));
    }
    r.tuples += groups.size;
    const preds: Array<{ idx: number[]; b: PredicateTag; i: PredicateTag }> = [];
    const layers: OieExample['tuples'] = [];
    const sentence = rec.translation;
    for (const g of [...groups.keys()]
      .sort((a, b) => a - b)
      .map((k) => groups.get(k) as NonNullable<ReturnType<typeof groups.get>>)) {
      const tuple = { relation: g.text.relation, args: Array.from(g.text.args, (a) => a ?? '') };
      if (g.bad) {
        skip(r, { id, sentence, tuple, reason: 'missing_span' });
        continue;
      }
      if (g.rel === undefined) {
        skip(r, { id, sentence, tuple, reason: 'relation_not_found' });
        continue;
      }
      if (g.args.size === 0) {
        skip(r, { id, sentence, tuple, reason: 'no_arguments' });
        continue;
      }
      const rel = new Set(g.rel);
      if ([...g.args.values()].some((idx) => idx.some((i) => rel.has(i)))) {
        skip(r, { id, sentence, tuple, reason: 'overlap' });
        continue;
      }
      preds.push({ idx: g.rel, b: 'P-B', i: 'P-I' });
      const spans = [...g.args].map(([a, idx]) => ({
        idx,
        b: `A${a}-B` as ArgumentTag,
        i: `A${a}-I` as ArgumentTag,
      }));
      layers.push({ predicateWords: g.rel, args: bio(words.length, spans, 'O') });
    }
    r.kept += layers.length;
    if (layers.length === 0) {
      r.emptySentences++;
      continue;
    }
    out.examples.push({
      id,
      lang: rec.lang,
      words: words.map((w) => w.text),
      predicate: bio(words.length, preds, 'O'),
      tuples: layers,
    });
  }
  return out;
}

/** Parses JSONL text of annotation records (blank lines skipped). */
export function parseAnnotationJsonl(text: string, file = '<string>'): AnnotatedRecord[] {
  const out: AnnotatedRecord[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (cause) {
      throw new XltFormatError(`not JSON: ${(cause as Error).message}`, { file, line: i + 1, cause });
    }
    const o = v as Partial<AnnotatedRecord>;
    if (typeof o.id !== 'string' || typeof o.lang !== 'string' || typeof o.translation !== 'string')
      throw new XltFormatError('expected string id, lang and translation', { file, line: i + 1 });
    if (!Array.isArray(o.spans))
      throw new XltFormatError('expected a spans array', { file, line: i + 1, field: 'spans' });
    out.push(o as AnnotatedRecord);
  });
  return out;
}

/** Merges conversions (examples concatenated, reports summed). */
export function mergeConversions(...parts: Conversion[]): Conversion {
  const out: Conversion = { examples: [], report: newReport() };
  for (const p of parts) {
    out.examples.push(...p.examples);
    const r = out.report;
    r.sentences += p.report.sentences;
    r.tuples += p.report.tuples;
    r.kept += p.report.kept;
    r.emptySentences += p.report.emptySentences;
    for (const s of p.report.skipped) skip(r, s);
  }
  return out;
}
