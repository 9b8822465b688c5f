import { decodeTuples } from './decode.js';
import { collateRows, encodeWords, type OieRow } from './features.js';
import type { OieModel } from './model.js';
import { ARGUMENT_TAGS, type ArgumentTag, PREDICATE_TAGS, type PredicateTag } from './tags.js';
import { splitWords } from './words.js';

/** One extraction of a sentence (the shape CaRB / BenchIE scorers take). */
export interface OieExtraction {
  sentence: string;
  relation: string;
  args: string[];
  confidence: number;
}

/** Options of {@link extract}. */
export interface ExtractOptions {
  batchSize?: number;
  /** Drop tuples with fewer arguments (default 2: a relation and two arguments, as CaRB expects). */
  minArgs?: number;
  /** When no predicate is tagged, use the word with the highest P-B probability (default true). */
  forcePredicate?: boolean;
  /**
   * Also start a predicate at a word tagged O whose P(P-B) is at least this (default 1: argmax
   * tags only). Lower values give more, lower-confidence extractions (CaRB picks its best threshold).
   */
  predicateThreshold?: number;
  /** X-Mod models: the language module every sentence runs through (default: the config's default language). */
  language?: string;
}

const softmaxRow = (a: Float32Array, off: number, n: number): number[] => {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) m = Math.max(m, a[off + i] as number);
  const e = Array.from({ length: n }, (_, i) => Math.exp((a[off + i] as number) - m));
  const s = e.reduce((x, y) => x + y, 0);
  return e.map((x) => x / s);
};
const argmax = (p: number[]) => p.reduce((b, v, i) => (v > (p[b] as number) ? i : b), 0);

/**
 * Extracts tuples from sentences with the two steps of Multi2OIE: predicates are tagged on the
 * sentence, then the argument tagger runs once per predicate; tags are read on each word's first
 * token and decoded with {@link decodeTuples} (confidence = P(P-B) x mean P(A*-B)). Sentences are
 * split into words by whitespace (Chinese / Japanese: one word per character), or given as words.
 */
export async function extract(
  model: OieModel,
  sentences: ReadonlyArray<string | readonly string[]>,
  options: ExtractOptions = {},
): Promise<OieExtraction[]> {
  const bs = options.batchSize ?? 32;
  const out: OieExtraction[] = [];
  const lang = options.language;
  const withLang = <T extends { inputIds: number[][] }>(b: T): T & { langIds?: string[] } =>
    lang === undefined ? b : { ...b, langIds: b.inputIds.map(() => lang) };
  for (let b0 = 0; b0 < sentences.length; b0 += bs) {
    const chunk = sentences.slice(b0, b0 + bs);
    const items = await Promise.all(
      chunk.map(async (s) => {
        const words = typeof s === 'string' ? splitWords(s).map((w) => w.text) : [...s];
        const sentence = typeof s === 'string' ? s : s.join(' ');
        return { sentence, words, enc: await encodeWords(model.tokenizer, words, model.maxLength) };
      }),
    );
    const base: OieRow[] = items.map(({ enc }) => ({
      inputIds: enc.ids,
      predMask: enc.ids.map((_, i) => (i === 0 ? 1 : 0)),
      predPosition: enc.ids.map(() => 2),
      predLabels: [],
      argLabels: [],
    }));
    if (base.length === 0) continue;
    const step1 = await model.run(withLang(collateRows(base, model.tokenizer.padId)));
    const S1 = step1.dims[1];
    // step 1: predicate tags per word
    const preds = items.map(({ words, enc }, b) => {
      const probs = enc.firstToken.map((t) =>
        t < 0 ? [1, 0, 0] : softmaxRow(step1.pred, (b * S1 + t) * 3, 3),
      );
      const tags = probs.map((p) => PREDICATE_TAGS[argmax(p)] as PredicateTag);
      const thr = options.predicateThreshold ?? 1;
      probs.forEach((p, i) => {
        if (tags[i] === 'O' && (p[1] as number) >= thr) tags[i] = 'P-B';
      });
      if (
        options.forcePredicate !== false &&
        !tags.includes('P-B') &&
        !tags.includes('P-I') &&
        words.length > 0
      ) {
        const best = argmax(probs.map((p) => (p[1] as number) + (p[2] as number)));
        tags[best] = 'P-B';
      }
      return { tags, probs };
    });
    // step 2: one row per predicate span
    const jobs: Array<{ b: number; span: number[] }> = [];
    const rows: OieRow[] = [];
    items.forEach(({ enc }, b) => {
      const spans: number[][] = [];
      let cur: number[] | null = null;
      (preds[b] as { tags: PredicateTag[] }).tags.forEach((t, i) => {
        if (t === 'P-B' || (t === 'P-I' && cur === null)) {
          cur = [i];
          spans.push(cur);
        } else if (t === 'P-I') (cur as number[]).push(i);
        else cur = null;
      });
      for (const span of spans) {
        const inPred = new Set(span);
        const predMask = enc.wordIds.map((w) => (w !== null && inPred.has(w) ? 1 : 0));
        jobs.push({ b, span });
        rows.push({
          inputIds: enc.ids,
          predMask,
          predPosition: predMask.map((m) => (m === 1 ? 1 : 2)),
          predLabels: [],
          argLabels: [],
        });
      }
    });
    const argTags = new Map<number, ArgumentTag[][]>();
    const argBegin = new Map<number, Array<(i: number, a: number) => number>>();
    for (let r0 = 0; r0 < rows.length; r0 += bs) {
      const part = rows.slice(r0, r0 + bs);
      const res = await model.run(withLang(collateRows(part, model.tokenizer.padId)));
      const S = res.dims[1];
      part.forEach((_, k) => {
        const { b } = jobs[r0 + k] as { b: number };
        const { enc } = items[b] as (typeof items)[number];
        const probs = enc.firstToken.map((t) =>
          t < 0 ? [1, 0, 0, 0, 0, 0, 0, 0, 0] : softmaxRow(res.arg, (k * S + t) * 9, 9),
        );
        const tags = probs.map((p) => ARGUMENT_TAGS[argmax(p)] as ArgumentTag);
        const lt = argTags.get(b) ?? [];
        lt.push(tags);
        argTags.set(b, lt);
        const lb = argBegin.get(b) ?? [];
        lb.push((i, a) => (probs[i]?.[1 + 2 * a] as number | undefined) ?? 1);
        argBegin.set(b, lb);
      });
    }
    items.forEach(({ sentence, words }, b) => {
      const p = preds[b] as { tags: PredicateTag[]; probs: number[][] };
      const layers = argTags.get(b) ?? [];
      const spanStarts: number[] = [];
      p.tags.forEach((t, i) => {
        if (t === 'P-B' || (t === 'P-I' && (i === 0 || p.tags[i - 1] === 'O'))) spanStarts.push(i);
      });
      const tuples = decodeTuples(
        {
          words,
          predicate: p.tags,
          predicateScores: spanStarts.map((i) => Math.max(p.probs[i]?.[1] ?? 0, p.probs[i]?.[2] ?? 0)),
          arguments: layers,
          argumentBeginScores: argBegin.get(b) ?? [],
        },
        { minArgs: options.minArgs ?? 2 },
      );
      for (const t of tuples)
        out.push({ sentence, relation: t.relation, args: t.args, confidence: t.confidence ?? 1 });
    });
  }
  return out;
}
