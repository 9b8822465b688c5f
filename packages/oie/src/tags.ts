import { XltConfigError } from '@xlt/core';

/** An n-ary extraction: a relation and its arguments (arg0 = subject, arg1 = object, ...). */
export interface OieTuple {
  relation: string;
  args: string[];
  /** Confidence in [0, 1] (decoded tuples). */
  confidence?: number;
}

/** Predicate tags (one layer for the whole sentence), as Multi2OIE names them. */
export const PREDICATE_TAGS = ['O', 'P-B', 'P-I'] as const;
export type PredicateTag = (typeof PREDICATE_TAGS)[number];

/** Argument tags (one layer per predicate): A0..A3, begin/inside, and O. */
export const ARGUMENT_TAGS = ['O', 'A0-B', 'A0-I', 'A1-B', 'A1-I', 'A2-B', 'A2-I', 'A3-B', 'A3-I'] as const;
export type ArgumentTag = (typeof ARGUMENT_TAGS)[number];
export const MAX_ARGS = 4;

/** Word-level training targets for one sentence: the predicate layer and one argument layer per tuple. */
export interface OieTags {
  words: string[];
  predicate: PredicateTag[];
  /** One entry per tuple: the words of its predicate and its argument tags. */
  tuples: Array<{ predicateWords: number[]; args: ArgumentTag[] }>;
}

const norm = (w: string) =>
  w.toLowerCase().replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, '') || w.toLowerCase();

/**
 * Finds `phrase` in `words`: a contiguous match first (leftmost, avoiding `taken` words), else the
 * phrase's words in order with gaps (a discontinuous span). Undefined when some word is missing.
 */
export function locate(
  words: readonly string[],
  phrase: string,
  taken: ReadonlySet<number> = new Set(),
): number[] | undefined {
  const target = phrase
    .split(/\s+/)
    .filter((w) => w !== '')
    .map(norm);
  if (target.length === 0) return undefined;
  const w = words.map(norm);
  for (let i = 0; i + target.length <= w.length; i++) {
    let ok = true;
    for (let k = 0; k < target.length; k++) {
      if (w[i + k] !== target[k] || taken.has(i + k)) {
        ok = false;
        break;
      }
    }
    if (ok) return target.map((_, k) => i + k);
  }
  const out: number[] = [];
  let j = 0;
  for (const t of target) {
    while (j < w.length && (w[j] !== t || taken.has(j))) j++;
    if (j >= w.length) return undefined;
    out.push(j++);
  }
  return out;
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
 * Converts OpenIE-style tuples of a sentence (given as words) to the two tag layers. Tuples whose
 * relation or an argument cannot be found in the sentence are skipped and returned in `skipped`;
 * arguments beyond A3 are dropped.
 */
export function tuplesToTags(
  words: readonly string[],
  tuples: readonly OieTuple[],
): OieTags & { skipped: OieTuple[] } {
  const out: OieTags & { skipped: OieTuple[] } = {
    words: [...words],
    predicate: new Array<PredicateTag>(words.length).fill('O'),
    tuples: [],
    skipped: [],
  };
  const predSpans: Array<{ idx: number[]; b: PredicateTag; i: PredicateTag }> = [];
  for (const t of tuples) {
    const rel = locate(words, t.relation);
    if (rel === undefined || t.args.length === 0) {
      out.skipped.push(t);
      continue;
    }
    const taken = new Set(rel);
    const argSpans: Array<{ idx: number[]; b: ArgumentTag; i: ArgumentTag }> = [];
    let ok = true;
    for (const [a, text] of t.args.slice(0, MAX_ARGS).entries()) {
      if (text.trim() === '') continue;
      const idx = locate(words, text, taken);
      if (idx === undefined) {
        ok = false;
        break;
      }
      for (const k of idx) taken.add(k);
      argSpans.push({ idx, b: `A${a}-B` as ArgumentTag, i: `A${a}-I` as ArgumentTag });
    }
    if (!ok) {
      out.skipped.push(t);
      continue;
    }
    predSpans.push({ idx: rel, b: 'P-B', i: 'P-I' });
    out.tuples.push({ predicateWords: rel, args: bio(words.length, argSpans, 'O') });
  }
  out.predicate = bio(words.length, predSpans, 'O');
  return out;
}

/** Checks a tag sequence's labels (for input validation). */
export function assertTags<T extends string>(
  tags: readonly string[],
  allowed: readonly T[],
  what: string,
): asserts tags is T[] {
  const ok = new Set<string>(allowed);
  tags.forEach((t, i) => {
    if (!ok.has(t))
      throw new XltConfigError(`${what}[${i}] is '${t}'; expected one of ${allowed.join(', ')}`, {
        field: what,
      });
  });
}
