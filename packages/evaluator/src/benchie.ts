/**
 * BenchIE (Gashteovski et al., 2022) fact-synset Open IE scoring, as the official code computes it
 * (github.com/gkiril/benchie, `src/gold_annotations.py` for the optional-token expansion and
 * `src/scores.py` for precision and recall).
 */
import { XltConfigError, XltFormatError } from '@xlt/core';

/** A gold slot: the text as written (optional tokens in [brackets]), or an object with it in `raw` (as `@xlt/data` gives). */
export type BenchieGoldSlot = string | { readonly raw: string };

/**
 * A gold sentence with its fact synsets (clusters of equivalent triples). `@xlt/data`'s
 * `readBenchie` records (`BenchieSentence`) fit this shape.
 */
export interface BenchieGoldSentence {
  sentId: number | string;
  sentence?: string;
  clusters: ReadonlyArray<{
    readonly triples: ReadonlyArray<readonly [BenchieGoldSlot, BenchieGoldSlot, BenchieGoldSlot]>;
  }>;
}

/** A predicted triple, tied to its gold sentence by `sentenceId` (BenchIE's sent_id) or else by `sentence` text. */
export interface BenchiePrediction {
  sentenceId?: number | string;
  sentence?: string;
  subject: string;
  relation: string;
  object: string;
}

/** Options of {@link benchieScore}. */
export interface BenchieOptions {
  /**
   * 'slot' (BenchIE's default): subject, relation and object each equal a variant's slot.
   * 'lexical': `subject relation object` joined by spaces equals a variant's joined slots.
   */
  match?: 'slot' | 'lexical';
  /**
   * 'benchie' (default, as the official code): slots compared case-sensitively after trimming.
   * 'lenient': also lower-cased and with white-space runs folded to one space.
   */
  normalize?: 'benchie' | 'lenient';
  /** Add per-sentence counts to the result. */
  perSentence?: boolean;
}

/** Counts for one gold sentence. */
export interface BenchieSentenceScore {
  sentId: string;
  /** Fact synsets in the gold sentence. */
  synsets: number;
  /** Synsets matched by at least one prediction. */
  hit: number;
  /** Predictions scored on this sentence. */
  predictions: number;
  /** Predictions that match no synset. */
  falsePositives: number;
}

/** BenchIE scores; precision, recall and f1 in [0, 1]. */
export interface BenchieResult {
  precision: number;
  recall: number;
  f1: number;
  /** Synsets hit (BenchIE's true positives: several predictions hitting one synset count once). */
  truePositives: number;
  /** Predictions on gold sentences that match no synset. */
  falsePositives: number;
  /** Synsets not hit. */
  falseNegatives: number;
  /** All gold synsets. */
  synsets: number;
  /** Predictions on gold sentences. */
  predictions: number;
  /** Predictions whose sentence is not in the gold (not scored, as in BenchIE). */
  ignored: number;
  perSentence?: BenchieSentenceScore[];
}

const slotText = (s: BenchieGoldSlot): string => (typeof s === 'string' ? s : s.raw);

/**
 * All surface forms of a gold slot, as BenchIE's `__generate_golden_extractions_from_optional_tokens`
 * builds them: tokens are split on single spaces, a bracketed group (`[the]`, `[of Australia]`)
 * is one optional unit, every subset of optional units may be dropped, brackets are removed.
 * The first variant keeps every token. Variants are trimmed (BenchIE strips slots when comparing).
 */
export function benchieVariants(slot: string): string[] {
  const tokens = slot.split(' ');
  const units: string[] = [];
  for (let i = 0; i < tokens.length; ) {
    const tok = tokens[i] as string;
    const open = tok.includes('[');
    const close = tok.includes(']');
    if (open === close) {
      units.push(tok);
      i++;
    } else if (open) {
      let j = i + 1;
      while (j < tokens.length && !(tokens[j] as string).includes(']')) j++;
      if (j < tokens.length) {
        units.push(tokens.slice(i, j + 1).join(' '));
        // BenchIE skips one token too few, then drops the closing token as a lone ']' token
        i = j;
      } else {
        i++; // an unclosed '[' token is dropped
      }
    } else {
      i++; // a token with only ']' is dropped
    }
  }
  const optional = units.flatMap((u, k) => (u.includes('[') ? [k] : []));
  const subsets: number[][] = [[]];
  // itertools.combinations(index, r) for r = 1..n, lexicographic
  const combos = (start: number, r: number, acc: number[]): void => {
    if (r === 0) {
      subsets.push([...acc]);
      return;
    }
    for (let k = start; k <= optional.length - r; k++) {
      acc.push(optional[k] as number);
      combos(k + 1, r - 1, acc);
      acc.pop();
    }
  };
  for (let r = 1; r <= optional.length; r++) combos(0, r, []);
  return subsets.map((drop) =>
    units
      .filter((_, k) => !drop.includes(k))
      .join(' ')
      .replace(/[[\]]/g, '')
      .trim(),
  );
}

interface Synset {
  /** Per gold triple, the variant sets of its three slots. */
  triples: Array<[Set<string>, Set<string>, Set<string>]>;
}

const MAX_OPTIONAL = 16;

/**
 * Scores predicted triples against BenchIE gold as `scores.py` does: a prediction is correct when
 * it equals some variant of some triple of one of its sentence's fact synsets (optional tokens
 * expanded by {@link benchieVariants}); it marks the first such synset. True positives are the
 * synsets marked, false positives the predictions that match nothing, so
 * precision = TP / (TP + FP) (0 when both are 0) and recall = TP / all synsets.
 * Predictions for sentences not in the gold are ignored. Comparison is exact and case-sensitive
 * after trimming each slot, as in BenchIE; `normalize: 'lenient'` also lower-cases and folds white space.
 */
export function benchieScore(
  gold: readonly BenchieGoldSentence[],
  predictions: readonly BenchiePrediction[],
  options: BenchieOptions = {},
): BenchieResult {
  const match = options.match ?? 'slot';
  if (match !== 'slot' && match !== 'lexical') {
    throw new XltConfigError(`unknown BenchIE match '${String(match)}'`, { field: 'match' });
  }
  const lenient = (options.normalize ?? 'benchie') === 'lenient';
  const norm = lenient
    ? (s: string): string => s.toLowerCase().replace(/\s+/g, ' ').trim()
    : (s: string): string => s.trim();

  const byId = new Map<string, { synsets: Synset[]; score: BenchieSentenceScore; hit: Uint8Array }>();
  const bySentence = new Map<string, string>();
  const variantCache = new Map<string, Set<string>>();
  const variants = (slot: BenchieGoldSlot, sentId: string): Set<string> => {
    const raw = slotText(slot);
    let v = variantCache.get(raw);
    if (v === undefined) {
      const optional = (raw.match(/\[/g) ?? []).length;
      if (optional > MAX_OPTIONAL) {
        throw new XltFormatError(`gold slot has ${optional} optional groups (> ${MAX_OPTIONAL}): '${raw}'`, {
          field: `sent_id ${sentId}`,
        });
      }
      v = new Set(benchieVariants(raw).map(norm));
      variantCache.set(raw, v);
    }
    return v;
  };
  for (const s of gold) {
    const id = String(s.sentId);
    if (byId.has(id)) throw new XltFormatError(`duplicate gold sent_id ${id}`, { field: 'sentId' });
    const synsets = s.clusters.map(
      (c): Synset => ({
        triples: c.triples.map(([a, b, o]) => [variants(a, id), variants(b, id), variants(o, id)]),
      }),
    );
    byId.set(id, {
      synsets,
      hit: new Uint8Array(synsets.length),
      score: { sentId: id, synsets: synsets.length, hit: 0, predictions: 0, falsePositives: 0 },
    });
    if (s.sentence !== undefined) {
      const key = s.sentence.replace(/\s+/g, ' ').trim();
      if (!bySentence.has(key)) bySentence.set(key, id);
    }
  }

  const tripleMatches = (
    t: [Set<string>, Set<string>, Set<string>],
    subj: string,
    rel: string,
    obj: string,
  ) => {
    if (match === 'slot') return t[0].has(subj) && t[1].has(rel) && t[2].has(obj);
    // lexical: 'subj rel obj' equals some variant's joined slots
    const whole = `${subj} ${rel} ${obj}`;
    for (const s of t[0]) {
      if (!whole.startsWith(`${s} `)) continue;
      const rest = whole.slice(s.length + 1);
      for (const r of t[1]) if (rest.startsWith(`${r} `) && t[2].has(rest.slice(r.length + 1))) return true;
    }
    return false;
  };

  let ignored = 0;
  for (const p of predictions) {
    const id =
      p.sentenceId !== undefined
        ? String(p.sentenceId)
        : p.sentence !== undefined
          ? bySentence.get(p.sentence.replace(/\s+/g, ' ').trim())
          : undefined;
    const entry = id === undefined ? undefined : byId.get(id);
    if (entry === undefined) {
      ignored++;
      continue;
    }
    entry.score.predictions++;
    const subj = norm(p.subject);
    const rel = norm(p.relation);
    const obj = norm(p.object);
    const k = entry.synsets.findIndex((syn) => syn.triples.some((t) => tripleMatches(t, subj, rel, obj)));
    if (k < 0) entry.score.falsePositives++;
    else if (entry.hit[k] === 0) {
      entry.hit[k] = 1;
      entry.score.hit++;
    }
  }

  let tp = 0;
  let fp = 0;
  let synsets = 0;
  let scored = 0;
  for (const { score } of byId.values()) {
    tp += score.hit;
    fp += score.falsePositives;
    synsets += score.synsets;
    scored += score.predictions;
  }
  const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
  const recall = synsets === 0 ? 0 : tp / synsets;
  const result: BenchieResult = {
    precision,
    recall,
    f1: precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall),
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: synsets - tp,
    synsets,
    predictions: scored,
    ignored,
  };
  if (options.perSentence) result.perSentence = [...byId.values()].map((e) => ({ ...e.score }));
  return result;
}
