import { Rng, XltConfigError } from '@xlt/core';
import { LanguageSampler, type SampledItem } from '@xlt/data';
import { collateMlm, type MlmExample, type MlmOptions, type TokenBatch } from './objectives.js';
import type { BatchFn } from './run.js';

/** How the examples of a multilingual batch are arranged by language. */
export type LanguageGrouping = 'none' | 'sort' | 'single';

/** One tokenised sentence of a language's corpus: its token ids, or ids with word ids (whole-word masking). */
export type CorpusExample = readonly number[] | Omit<MlmExample, 'langId'>;

/** Options of {@link multilingualMlmBatches}. */
export interface MultilingualBatchOptions {
  /** Per language (keyed by the model's language code, e.g. `de_DE`): tokenised sentences. */
  corpora: Readonly<Record<string, ReadonlyArray<CorpusExample>>>;
  /** Examples per batch. */
  batchSize: number;
  /** Masking settings given to {@link collateMlm}. */
  mlm: MlmOptions;
  /** Exponent of the language distribution, p_l ∝ n_l^alpha (default 0.3, as XLM-R). */
  alpha?: number;
  /** Seed of the language/example draws (default 0). Masking uses the batch's own `rng`. */
  seed?: number;
  /**
   * `none`: examples in the order drawn (languages mixed); `sort`: the same examples sorted by
   * language (X-Mod runs one contiguous slice per language module); `single`: every batch is one
   * language, chosen with the same probabilities, so each layer calls one language module.
   */
  groupByLanguage?: LanguageGrouping;
  /**
   * The model's `config.languages`: `langIds` are indices into it (default: the order of the keys
   * of `corpora`). Every corpus language must be in it.
   */
  languages?: readonly string[];
  /** Truncate longer sentences to this many tokens (a final special token is kept at the end). */
  maxLength?: number;
}

/** What {@link multilingualMlmBatches} returns. */
export interface MultilingualBatches {
  /** The batch of a micro-batch index, for `fit`: depends only on `seed` and the index (and fit's per-index rng for masking). */
  data: BatchFn<TokenBatch>;
  /** Which sentences batch `index` holds (language and index into that language's corpus), in batch order. */
  plan(index: number): SampledItem[];
  /** The corpus languages, in the sampler's (sorted) order. */
  languages: string[];
  /** Probability of each language (per example; per batch with `single`). */
  probabilities: Record<string, number>;
  /** X-Mod language index of each corpus language. */
  languageIds: Record<string, number>;
}

const CACHE = 64;

/**
 * Masked-LM batches over several languages for {@link fit}: languages are drawn with
 * `@xlt/data`'s {@link LanguageSampler} (p ∝ n_l^alpha, each language's sentences in a shuffled order
 * renewed every epoch), collated with {@link collateMlm} and tagged with X-Mod `langIds`.
 *
 * The draws are a sequence, but batch `index` depends only on the seed and the index: batches
 * asked for in order are drawn incrementally, and asking for an earlier index (a resumed run, a
 * re-evaluation) replays the sampler from the seed. So a run resumed from a checkpoint sees
 * exactly the batches of an uninterrupted one.
 */
export function multilingualMlmBatches(options: MultilingualBatchOptions): MultilingualBatches {
  const { batchSize } = options;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new XltConfigError(`batchSize must be a positive integer, got ${batchSize}`, {
      field: 'batchSize',
    });
  const grouping = options.groupByLanguage ?? 'none';
  if (grouping !== 'none' && grouping !== 'sort' && grouping !== 'single')
    throw new XltConfigError(
      `groupByLanguage must be 'none', 'sort' or 'single', got '${String(grouping)}'`,
      {
        field: 'groupByLanguage',
      },
    );
  const maxLength = options.maxLength;
  if (maxLength !== undefined && (!Number.isInteger(maxLength) || maxLength < 2))
    throw new XltConfigError(`maxLength must be an integer >= 2, got ${maxLength}`, { field: 'maxLength' });
  const seed = options.seed ?? 0;
  const alpha = options.alpha ?? 0.3;
  const corpora = options.corpora;
  const sizes: Record<string, number> = {};
  for (const [lang, sentences] of Object.entries(corpora)) {
    if (sentences.length === 0)
      throw new XltConfigError(`the corpus of '${lang}' is empty`, { field: `corpora.${lang}` });
    sizes[lang] = sentences.length;
  }
  const modelLangs = options.languages ?? Object.keys(corpora);
  const languageIds: Record<string, number> = {};
  for (const lang of Object.keys(corpora)) {
    const id = modelLangs.indexOf(lang);
    if (id < 0)
      throw new XltConfigError(
        `corpus language '${lang}' is not one of the model's languages (${modelLangs.join(', ')})`,
        { field: `corpora.${lang}` },
      );
    languageIds[lang] = id;
  }

  // The sampler's sequence, drawn lazily. `single` draws the batch's language with one sampler and
  // its sentences from a per-language stream (a one-language sampler: shuffled, renewed each epoch).
  const fresh = () => {
    const sampler = new LanguageSampler(sizes, { alpha, seed });
    const root = new Rng(seed).fork('multilingual-streams');
    const streams = new Map<string, LanguageSampler>();
    if (grouping === 'single')
      for (const l of sampler.langs)
        streams.set(l, new LanguageSampler({ [l]: sizes[l] as number }, { seed: root.fork(l).seed() }));
    return { sampler, streams, next: 0 };
  };
  const probe = fresh();
  const probabilities: Record<string, number> = {};
  probe.sampler.langs.forEach((l, i) => {
    probabilities[l] = probe.sampler.probs[i] as number;
  });
  let state = probe;
  const recent = new Map<number, SampledItem[]>();

  const drawOne = (): SampledItem[] => {
    if (grouping === 'single') {
      const { lang } = state.sampler.next();
      const stream = state.streams.get(lang) as LanguageSampler;
      return Array.from({ length: batchSize }, () => stream.next());
    }
    const items = Array.from({ length: batchSize }, () => state.sampler.next());
    if (grouping === 'sort')
      items.sort((a, b) => (languageIds[a.lang] as number) - (languageIds[b.lang] as number));
    return items;
  };

  const plan = (index: number): SampledItem[] => {
    if (!Number.isInteger(index) || index < 0)
      throw new XltConfigError(`batch index must be a non-negative integer, got ${index}`, {
        field: 'index',
      });
    const hit = recent.get(index);
    if (hit !== undefined) return hit.map((x) => ({ ...x }));
    if (index < state.next) state = fresh();
    let items: SampledItem[] = [];
    while (state.next <= index) {
      items = drawOne();
      state.next++;
      if (state.next > index - CACHE) {
        recent.set(state.next - 1, items);
        if (recent.size > CACHE) recent.delete(recent.keys().next().value as number);
      }
    }
    return items.map((x) => ({ ...x }));
  };

  const special = new Set(options.mlm.specialIds);
  const truncate = (ex: Omit<MlmExample, 'langId'>): Omit<MlmExample, 'langId'> => {
    if (maxLength === undefined || ex.inputIds.length <= maxLength) return ex;
    const ids = ex.inputIds.slice(0, maxLength);
    const last = ex.inputIds[ex.inputIds.length - 1] as number;
    if (special.has(last)) ids[maxLength - 1] = last;
    const out: Omit<MlmExample, 'langId'> = { inputIds: ids };
    if (ex.wordIds !== undefined) {
      const w = ex.wordIds.slice(0, maxLength);
      if (special.has(last)) w[maxLength - 1] = null;
      out.wordIds = w;
    }
    return out;
  };

  const data: BatchFn<TokenBatch> = ({ index, rng }) => {
    const examples: MlmExample[] = plan(index).map(({ lang, index: i }) => {
      const raw = (corpora[lang] as ReadonlyArray<CorpusExample>)[i] as CorpusExample;
      const ex = truncate(isIdList(raw) ? { inputIds: [...raw] } : raw);
      return { ...ex, langId: languageIds[lang] as number };
    });
    return collateMlm(examples, options.mlm, rng);
  };

  return { data, plan, languages: [...probe.sampler.langs], probabilities, languageIds };
}

function isIdList(x: CorpusExample): x is readonly number[] {
  return Array.isArray(x);
}
