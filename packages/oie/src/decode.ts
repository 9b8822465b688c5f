import {
  ARGUMENT_TAGS,
  type ArgumentTag,
  assertTags,
  type OieTuple,
  PREDICATE_TAGS,
  type PredicateTag,
} from './tags.js';

/** Predicate spans from the predicate layer: runs that start at P-B (a P-I without a P-B starts one too). */
export function predicateSpans(tags: readonly PredicateTag[]): number[][] {
  assertTags(tags, PREDICATE_TAGS, 'predicate');
  const spans: number[][] = [];
  let cur: number[] | null = null;
  tags.forEach((t, i) => {
    if (t === 'P-B' || (t === 'P-I' && cur === null)) {
      cur = [i];
      spans.push(cur);
    } else if (t === 'P-I') (cur as number[]).push(i);
    else cur = null;
  });
  return spans;
}

/**
 * Argument spans by argument index from one predicate's argument layer. An argument's words are all
 * the words tagged with its index, in order, so a discontinuous argument (A0-B .. O .. A0-I) is one
 * argument; a second A0-B after the first begins is ignored (the first one wins).
 */
export function argumentSpans(tags: readonly ArgumentTag[]): Map<number, number[]> {
  assertTags(tags, ARGUMENT_TAGS, 'arguments');
  const spans = new Map<number, number[]>();
  const closed = new Set<number>();
  tags.forEach((t, i) => {
    if (t === 'O') return;
    const a = Number(t[1]);
    const begin = t.endsWith('-B');
    const cur = spans.get(a);
    if (cur === undefined) spans.set(a, [i]);
    else if (begin) closed.add(a);
    else if (!closed.has(a)) cur.push(i);
  });
  return spans;
}

export interface DecodeInput {
  words: string[];
  predicate: PredicateTag[];
  /** Probability of the predicate's P-B at its first word, per predicate span (default 1). */
  predicateScores?: number[];
  /** One argument layer per predicate span, in the order of {@link predicateSpans}. */
  arguments: ArgumentTag[][];
  /** Per predicate: probability of each argument tag's *-B at each word ([word][tag]); default 1. */
  argumentBeginScores?: Array<(i: number, arg: number) => number>;
}

export interface DecodeOptions {
  /** Drop tuples with fewer arguments than this (default 1; 2 for binary extractions). */
  minArgs?: number;
}

/**
 * Decodes the two tag layers into n-ary tuples (relation, arg0, arg1, ...). Missing arguments in the
 * middle are kept as empty strings so positions keep their meaning. Confidence = predicate score x
 * mean of the arguments' begin scores (Multi2OIE's combination of the two steps).
 */
export function decodeTuples(input: DecodeInput, options: DecodeOptions = {}): OieTuple[] {
  const minArgs = options.minArgs ?? 1;
  const preds = predicateSpans(input.predicate);
  const out: OieTuple[] = [];
  const text = (idx: number[]) => idx.map((i) => input.words[i]).join(' ');
  preds.forEach((p, k) => {
    const layer = input.arguments[k];
    if (layer === undefined) return;
    const spans = argumentSpans(layer);
    const present = [...spans.keys()].sort((a, b) => a - b);
    if (present.length < minArgs) return;
    const n = present.length > 0 ? (present.at(-1) as number) + 1 : 0;
    const args = Array.from({ length: n }, (_, a) => (spans.has(a) ? text(spans.get(a) as number[]) : ''));
    const predScore = input.predicateScores?.[k] ?? 1;
    const beginScore = input.argumentBeginScores?.[k];
    const argScore =
      present.length === 0
        ? 1
        : present.reduce(
            (s, a) => s + (beginScore ? beginScore((spans.get(a) as number[])[0] as number, a) : 1),
            0,
          ) / present.length;
    out.push({ relation: text(p), args, confidence: predScore * argScore });
  });
  return out;
}
