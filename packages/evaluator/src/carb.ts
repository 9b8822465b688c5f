/**
 * CaRB (Bhardwaj et al., 2019) Open IE scoring, as the official scorer computes it
 * (github.com/dair-iitd/CaRB, `carb.py` `Benchmark.compare` with `matcher.py`
 * `Matcher.binary_linient_tuple_match`, the default and the one MT4CrossIE and Multi2OIE report).
 */
import { XltConfigError, XltError } from '@xlt/core';

/** One predicted extraction: relation, arguments (arg0 = subject) and an optional confidence (default 1). */
export interface OieExtraction {
  sentence: string;
  relation: string;
  args: string[];
  confidence?: number;
}

/** One gold CaRB tuple. `CarbTuple` records from `@xlt/data`'s `readCarb` fit this shape. */
export interface OieGoldTuple {
  relation: string;
  args: string[];
}

/** One point of the precision/recall curve: everything with confidence >= `threshold` is kept. */
export interface CarbPoint {
  threshold: number;
  precision: number;
  recall: number;
}

/** CaRB scores. precision, recall, f1 and auc are in [0, 1] (CaRB prints them rounded to 3 decimals). */
export interface CarbResult {
  /** Precision at the threshold with the best F1 (CaRB's "Optimal (precision, recall, F1)"). */
  precision: number;
  /** Recall at that threshold. */
  recall: number;
  /** The best F1 over all thresholds. */
  f1: number;
  /** Area under the P/R curve with the point (recall 0, precision 1) added, as CaRB computes it. */
  auc: number;
  /** The confidence threshold of the optimal point (0 when there are no predictions). */
  threshold: number;
  /** One point per distinct prediction confidence, ascending by threshold. */
  curve: CarbPoint[];
  /** Gold sentences (distinct after CaRB's sentence-key normalisation). */
  sentences: number;
  /** Gold tuples over those sentences. */
  goldTuples: number;
  /** Predictions that fall on gold sentences (the others are not scored). */
  predictions: number;
}

/** Matching function: CaRB's default `binary_linient_tuple_match`, `binary_tuple_match`, or `lexicalMatch`. */
export type CarbMatch = 'binary-lenient' | 'binary-strict' | 'lexical';

/** Options of {@link carbScore}. */
export interface CarbOptions {
  /** Default 'binary-lenient' (CaRB's default and the published numbers). */
  match?: CarbMatch;
}

/** [precision, recall] of one (gold, prediction) pair, as the matcher returns it. */
type PairScore = readonly [number, number];
const NO_MATCH: PairScore = [0, 0];

/** Python's `str.split()`: split on runs of white space, no empty pieces. */
function words(s: string): string[] {
  return s.split(/\s+/).filter((w) => w !== '');
}

/**
 * Counts gold words found in the predicted words, removing each matched word from the predicted
 * list (`for w in gold_words: if w in predicted_words: ...remove(w)`); mutates `pred`.
 */
function consume(gold: readonly string[], pred: string[]): number {
  let n = 0;
  for (const w of gold) {
    const i = pred.indexOf(w);
    if (i >= 0) {
      n++;
      pred.splice(i, 1);
    }
  }
  return n;
}

const FORMS_OF_BE = ['be', 'is', 'am', 'are', 'was', 'were', 'been', 'being'];
const SAID_TYPE = ['said', 'told', 'added', 'adds', 'says', 'adds'];

interface Tuple {
  pred: string;
  args: readonly string[];
}

/** `Matcher.linient_tuple_match` (the "STRICTER MATCH" version that carb.py uses). */
function lenientTupleMatch(ref: Tuple, ex: Tuple): PairScore {
  let precNum = 0;
  let precDen = 0;
  let recNum = 0;
  let recDen = 0;
  const predWords = words(ex.pred);
  const goldWords = words(ref.pred);
  precDen += predWords.length;
  recDen += goldWords.length;
  let matching = consume(goldWords, predWords);
  // 'be' in the prediction matches any form of 'be' in the gold relation
  if (predWords.includes('be') && FORMS_OF_BE.some((f) => goldWords.includes(f))) {
    matching++;
    predWords.splice(predWords.indexOf('be'), 1);
  }
  if (matching === 0) return NO_MATCH;
  precNum += matching;
  recNum += matching;
  for (let i = 0; i < ref.args.length; i++) {
    const g = words(ref.args[i] as string);
    recDen += g.length;
    if (ex.args.length <= i) {
      if (i < 2) return NO_MATCH;
      continue;
    }
    const p = words(ex.args[i] as string);
    precDen += p.length;
    const m = consume(g, p);
    precNum += m;
    recNum += m;
  }
  return [precDen === 0 ? 0 : precNum / precDen, recDen === 0 ? 0 : recNum / recDen];
}

/** `Matcher.tuple_match` (used by `binary_tuple_match`): relation, arg0 and arg1 must each overlap. */
function strictTupleMatch(ref: Tuple, ex: Tuple): PairScore {
  let precNum = 0;
  let precDen = 0;
  let recNum = 0;
  let recDen = 0;
  const predWords = words(ex.pred);
  const goldWords = words(ref.pred);
  precDen += predWords.length;
  recDen += goldWords.length;
  const matching = consume(goldWords, predWords);
  if (matching === 0) return NO_MATCH; // CaRB returns False here
  precNum += matching;
  recNum += matching;
  for (let i = 0; i < ref.args.length; i++) {
    const g = words(ref.args[i] as string);
    recDen += g.length;
    if (ex.args.length <= i) {
      if (i < 2) return NO_MATCH;
      continue;
    }
    const p = words(ex.args[i] as string);
    precDen += p.length;
    const m = consume(g, p);
    if (m === 0 && i < 2) return NO_MATCH;
    precNum += m;
    recNum += m;
  }
  return [precNum / precDen, recNum / recDen];
}

/** Joins arguments 1..n into one (`[args[0], ' '.join(args[1:])]`) when there are at least two. */
function binaryArgs(args: readonly string[]): readonly string[] {
  return args.length >= 2 ? [args[0] as string, args.slice(1).join(' ')] : args;
}

/** Python's `max` over two [prec, rec] lists: lexicographic. */
function maxPair(a: PairScore, b: PairScore): PairScore {
  if (a[0] !== b[0]) return a[0] > b[0] ? a : b;
  return a[1] >= b[1] ? a : b;
}

/** `Matcher.binary_linient_tuple_match`, including the reversed-argument retry for "said"-type relations. */
function binaryLenientMatch(ref: Tuple, ex: Tuple): PairScore {
  const r = { pred: ref.pred, args: binaryArgs(ref.args) };
  const straight = lenientTupleMatch(r, { pred: ex.pred, args: binaryArgs(ex.args) });
  // substring test on the gold relation, as in CaRB (`said_verb in ref.pred`)
  if (!SAID_TYPE.some((v) => ref.pred.includes(v))) return straight;
  const reversed = ex.args.length >= 2 ? [ex.args.slice(1).join(' '), ex.args[0] as string] : ex.args;
  return maxPair(straight, lenientTupleMatch(r, { pred: ex.pred, args: reversed }));
}

/** `Matcher.binary_tuple_match`. */
function binaryStrictMatch(ref: Tuple, ex: Tuple): PairScore {
  return strictTupleMatch(
    { pred: ref.pred, args: binaryArgs(ref.args) },
    { pred: ex.pred, args: binaryArgs(ex.args) },
  );
}

/**
 * `Matcher.lexicalMatch`: more than half of the gold bag of words (split on single spaces) is
 * covered, counting every equal (gold, predicted) word pair. CaRB returns a boolean that
 * `compare` cannot index; here true scores (1, 1) and false (0, 0).
 */
function lexicalMatch(ref: Tuple, ex: Tuple): PairScore {
  const sRef = [ref.pred, ...ref.args].join(' ').split(' ');
  const sEx = [ex.pred, ...ex.args].join(' ').split(' ');
  let count = 0;
  for (const w1 of sRef) for (const w2 of sEx) if (w1 === w2) count++;
  return count / sRef.length > 0.5 ? [1, 1] : NO_MATCH;
}

const MATCHERS: Record<CarbMatch, (ref: Tuple, ex: Tuple) => PairScore> = {
  'binary-lenient': binaryLenientMatch,
  'binary-strict': binaryStrictMatch,
  lexical: lexicalMatch,
};

const PTB_ESCAPES: ReadonlyArray<readonly [string, string]> = [
  ['(', '-LRB-'],
  [')', '-RRB-'],
  ['[', '-LSB-'],
  [']', '-RSB-'],
  ['{', '-LCB-'],
  ['}', '-RCB-'],
];
const ASCII_PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;

/**
 * CaRB's sentence key (`Benchmark.normalizeKey`): spaces removed, Penn Treebank bracket escapes
 * undone, ASCII punctuation removed. Gold and predictions are joined on this key.
 */
export function carbSentenceKey(sentence: string): string {
  let s = sentence.trim().replaceAll(' ', '');
  for (const [u, e] of PTB_ESCAPES) s = s.replaceAll(e, u);
  return s.replace(ASCII_PUNCT, '');
}

/**
 * Builds the gold map of {@link carbScore} from sentence records such as those of `@xlt/data`'s
 * `readCarb`, as CaRB's GoldReader reads the file: sentences seen twice have their tuples
 * concatenated, fields are trimmed and trailing empty arguments (from trailing tabs) dropped.
 */
export function carbGold(
  sentences: Iterable<{ sentence: string; tuples: readonly OieGoldTuple[] }>,
): Map<string, OieGoldTuple[]> {
  const out = new Map<string, OieGoldTuple[]>();
  for (const s of sentences) {
    const key = s.sentence.trim();
    let list = out.get(key);
    if (list === undefined) {
      list = [];
      out.set(key, list);
    }
    for (const t of s.tuples) list.push({ relation: t.relation.trim(), args: goldArgs(t.args) });
  }
  return out;
}

/**
 * Gold arguments as CaRB's GoldReader reads them: each trimmed, and trailing empty ones dropped
 * (it strips the whole line, so a trailing tab adds no argument; released gold has such lines).
 */
function goldArgs(args: readonly string[]): string[] {
  const out = args.map((a) => a.trim());
  while (out.length > 0 && out[out.length - 1] === '') out.pop();
  return out;
}

/**
 * `Benchmark.normalizeDict`: re-keys by {@link carbSentenceKey}. As in CaRB, when two distinct
 * sentence strings share a key the later one's list replaces the earlier one's.
 */
function normalizeDict<T>(groups: Iterable<readonly [string, T[]]>): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const [k, v] of groups) out.set(carbSentenceKey(k), v);
  return out;
}

/** sklearn.metrics.auc: trapezoidal area, x must be monotonic (decreasing x flips the sign). */
function sklearnAuc(x: readonly number[], y: readonly number[]): number {
  let direction = 1;
  let anyDec = false;
  let allNonInc = true;
  for (let i = 1; i < x.length; i++) {
    const dx = (x[i] as number) - (x[i - 1] as number);
    if (dx < 0) anyDec = true;
    if (dx > 0) allNonInc = false;
  }
  if (anyDec) {
    if (!allNonInc) throw new XltError('NUMERIC', 'CaRB AUC: recall is neither increasing nor decreasing');
    direction = -1;
  }
  let area = 0;
  for (let i = 1; i < x.length; i++) {
    area += (((x[i] as number) - (x[i - 1] as number)) * ((y[i] as number) + (y[i - 1] as number))) / 2;
  }
  return direction * area;
}

/** `Benchmark.f1`; 0 when precision + recall is 0 (CaRB's intent; numpy would give NaN there). */
function f1(p: number, r: number): number {
  return p + r === 0 ? 0 : (2 * p * r) / (p + r);
}

/**
 * Scores Open IE predictions against CaRB gold exactly as `carb.py` does (`Benchmark.compare`,
 * non-binarised, default matcher `binary_linient_tuple_match`):
 *
 * - Sentences are joined on {@link carbSentenceKey}; predictions on sentences absent from gold are
 *   not scored (their confidences still join the threshold list, as in CaRB).
 * - Each (gold, prediction) pair gets a [precision, recall] from word overlap per part
 *   (relation, arg0, and the remaining arguments joined into one), case-sensitive, words split on
 *   white space; no relation overlap, or fewer predicted than gold arguments, scores (0, 0).
 * - For every distinct confidence t, only predictions with confidence >= t count. Recall sums, per
 *   gold tuple, its best recall over kept predictions; precision greedily pairs gold tuples and
 *   kept predictions one-to-one by highest precision, divided by the number of kept predictions
 *   (precision is 1 when nothing is kept, recall 0 when there is no gold).
 * - The reported P/R/F1 are at the threshold with the best F1 (first on ties); AUC is sklearn's
 *   `auc` over (recall, precision) with (0, 1) appended.
 *
 * Values are not rounded (CaRB prints `np.round(x, 3)`). A prediction without confidence counts as 1.
 * Gold is read as GoldReader does (fields trimmed, trailing empty arguments dropped); predictions
 * are grouped by their `sentence` string as given, and when two different strings share a key the
 * later group replaces the earlier (CaRB's `normalizeDict`), so use the gold sentence strings.
 */
export function carbScore(
  gold: ReadonlyMap<string, readonly OieGoldTuple[]>,
  predictions: readonly OieExtraction[],
  options: CarbOptions = {},
): CarbResult {
  const matchFn = MATCHERS[options.match ?? 'binary-lenient'];
  if (matchFn === undefined)
    throw new XltConfigError(`unknown CaRB match '${String(options.match)}'`, { field: 'match' });

  const goldByKey = normalizeDict(
    [...gold].map(([s, tuples]): [string, Tuple[]] => [
      s.trim(),
      tuples.map((t) => ({ pred: t.relation.trim(), args: goldArgs(t.args) })),
    ]),
  );
  // TabReader keys predictions by their sentence text as given (gold sentences are trimmed), first-seen order
  const rawPred = new Map<string, Array<Tuple & { conf: number }>>();
  for (const p of predictions) {
    const key = p.sentence;
    let list = rawPred.get(key);
    if (list === undefined) {
      list = [];
      rawPred.set(key, list);
    }
    list.push({ pred: p.relation, args: p.args, conf: p.confidence ?? 1 });
  }
  const predByKey = normalizeDict(rawPred);

  const thresholds = [...new Set([...predByKey.values()].flatMap((l) => l.map((e) => e.conf)))].sort(
    (a, b) => a - b,
  );
  const thresholdIndex = new Map(thresholds.map((t, i) => [t, i]));
  const n = thresholds.length;
  const p = new Float64Array(n);
  const pl = new Float64Array(n);
  const r = new Float64Array(n);
  const rl = new Float64Array(n);
  let goldTuples = 0;
  let scored = 0;

  for (const [key, goldEx] of goldByKey) {
    goldTuples += goldEx.length;
    const predEx = predByKey.get(key) ?? [];
    scored += predEx.length;
    const scores = goldEx.map((g) => predEx.map((e) => matchFn(g, e)));
    const sentConf = predEx.map((e) => e.conf).sort((a, b) => a - b);
    let prevC = 0;
    for (const conf of sentConf) {
      const c = thresholdIndex.get(conf) as number;
      const ext: number[] = [];
      predEx.forEach((e, j) => {
        if (e.conf >= conf) ext.push(j);
      });
      let recallNum = 0;
      for (const row of scores) {
        let best = 0;
        for (const j of ext) best = Math.max(best, (row[j] as PairScore)[1]);
        recallNum += best;
      }
      // greedy one-to-one matching by precision ("OPTIMISED GLOBAL MATCH")
      let precisionNum = 0;
      const usedRows = new Set<number>();
      const usedCols = new Set<number>();
      const rounds = Math.min(scores.length, ext.length);
      for (let t = 0; t < rounds; t++) {
        let bestRow = -1;
        let bestCol = -1;
        let bestPrec = -1;
        for (let i = 0; i < scores.length; i++) {
          if (usedRows.has(i)) continue;
          for (const j of ext) {
            if (usedCols.has(j)) continue;
            const s = (scores[i] as PairScore[])[j] as PairScore;
            if (s[0] > bestPrec) {
              bestPrec = s[0];
              bestRow = i;
              bestCol = j;
            }
          }
        }
        usedRows.add(bestRow);
        usedCols.add(bestCol);
        precisionNum += bestPrec;
      }
      for (let k = prevC; k <= c; k++) {
        p[k] = (p[k] as number) + precisionNum;
        pl[k] = (pl[k] as number) + ext.length;
        r[k] = (r[k] as number) + recallNum;
        rl[k] = (rl[k] as number) + scores.length;
      }
      prevC = Math.max(prevC, c + 1);
    }
    // thresholds above this sentence's highest confidence keep no prediction but all its gold
    for (let k = prevC; k < n; k++) rl[k] = (rl[k] as number) + scores.length;
  }

  const prec = thresholds.map((_, k) => ((pl[k] as number) > 0 ? (p[k] as number) / (pl[k] as number) : 1));
  const rec = thresholds.map((_, k) => ((rl[k] as number) > 0 ? (r[k] as number) / (rl[k] as number) : 0));
  const f1s = prec.map((pk, k) => f1(pk, rec[k] as number));
  const curve = thresholds.map((threshold, k) => ({
    threshold,
    precision: prec[k] as number,
    recall: rec[k] as number,
  }));
  const base = { curve, sentences: goldByKey.size, goldTuples, predictions: scored };
  if (n === 0) return { precision: 0, recall: 0, f1: 0, auc: 0, threshold: 0, ...base };
  let best = 0;
  for (let k = 1; k < n; k++) if ((f1s[k] as number) > (f1s[best] as number)) best = k;
  return {
    precision: prec[best] as number,
    recall: rec[best] as number,
    f1: f1s[best] as number,
    auc: sklearnAuc([...rec, 0], [...prec, 1]),
    threshold: thresholds[best] as number,
    ...base,
  };
}
