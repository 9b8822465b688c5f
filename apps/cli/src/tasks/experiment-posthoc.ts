/**
 * `xlt experiment xmod-posthoc`: the grid (languages, sizes, budgets of the quick and full variants),
 * the summary of its cells (means over seeds, paired differences) and the report and chart.
 */
import { pairedBootstrap, type SeedMean, seedMean } from '@xlt/evaluator';
import { groupedBarsSvg } from './bar-chart.js';
import type { BitIdentityCheck } from './bit-identity.js';
import { RECIPES, type RecipeSettings } from './recipes.js';
import { statsScore } from './tasks.js';

/** Pre-training languages of the post-hoc model (Latin, Cyrillic, Han, Arabic and Devanagari script). */
export const POSTHOC_BASE: readonly string[] = ['en', 'de', 'ru', 'zh', 'ar', 'hi'];

/**
 * Languages added after pre-training: Spanish (Latin script, seen through en and de) and Korean
 * (Hangul, a script none of the base languages writes). Dutch, the paper-style choice, has no
 * PAN-X training text here (FLORES' 1,012 sentences only), so Spanish stands in for the seen script.
 */
export const POSTHOC_ADDED: readonly string[] = ['es', 'ko'];

/** The two settings compared: the added languages in pre-training from the start, or added post hoc. */
export type PosthocSetting = 'from-start' | 'post-hoc';
export const POSTHOC_SETTINGS: readonly PosthocSetting[] = ['from-start', 'post-hoc'];

/** Sizes, budgets and seeds of one variant of `xmod-posthoc`. */
export interface PosthocSettings
  extends Pick<RecipeSettings, 'vocabSize' | 'hiddenSize' | 'layers' | 'pretrain'> {
  seeds: number;
  maxSentencesPerLanguage?: number;
  /** Module-only masked-LM training of each added language (`xlt add-language`). */
  addLanguage: { steps: number; lr: number; batchSize: number };
  /** NER fine-tuning on English (PAN-X train), X-Mod's preset (modules and embeddings frozen). */
  finetune: RecipeSettings['finetune'] & { maxTrainExamples?: number };
  /** Cap on PAN-X dev sentences scored per language (undefined: all 10,000). */
  maxEvalExamples?: number;
  /** Held-out blocks per base language that the bit-identity check runs through both models. */
  identityBlocks: number;
}

const FULL = RECIPES.ner.full;

/**
 * `full`: the recipes' h256 L4 model, 2,000 pre-training steps, 1,000 module steps per added
 * language, 3 NER epochs on all 20,000 English sentences, 3 seeds. `quick`: h128 L2, vocabulary
 * 12,000, 400 steps, 200 module steps per language, 2 epochs on 5,000 sentences, 2,000 dev sentences
 * per language, 1 seed: about 15 minutes on 2 idle cores (2 lanes).
 */
export const XMOD_POSTHOC: { full: PosthocSettings; quick: PosthocSettings } = {
  full: {
    vocabSize: FULL.vocabSize,
    hiddenSize: FULL.hiddenSize,
    layers: FULL.layers,
    pretrain: { ...FULL.pretrain, steps: 2000 },
    seeds: 3,
    addLanguage: { steps: 1000, lr: 1e-3, batchSize: FULL.pretrain.batchSize },
    finetune: { ...FULL.finetune, epochs: 3 },
    identityBlocks: 16,
  },
  quick: {
    vocabSize: 12000,
    hiddenSize: 128,
    layers: 2,
    pretrain: { ...FULL.pretrain, steps: 400 },
    seeds: 1,
    maxSentencesPerLanguage: 8000,
    addLanguage: { steps: 200, lr: 1e-3, batchSize: FULL.pretrain.batchSize },
    finetune: { ...FULL.finetune, epochs: 2, maxTrainExamples: 5000, maxDevExamples: 1000 },
    maxEvalExamples: 2000,
    identityBlocks: 8,
  },
};

/** Per-sentence NER sufficient statistics (true positives, predicted, gold entities) per language. */
export type NerStats = Record<string, Array<[number, number, number]>>;

/** One model of the grid: a setting and a seed. */
export interface PosthocCell {
  setting: PosthocSetting;
  seed: number;
  /** Held-out masked-LM loss per language (nats per masked token, 15% masked). */
  heldOut: Record<string, number>;
  /** Zero-shot PAN-X dev entity F1 (x 100) per language (en: the source). */
  nerF1: Record<string, number>;
  /** Wall time of each of the cell's steps, seconds. */
  seconds: Record<string, number>;
}

/** A difference (post hoc − from start) per seed, with its paired bootstrap over dev sentences. */
export interface PosthocDifference {
  /** Mean over seeds with a bootstrap CI over seeds (NaN bounds for one seed). */
  overSeeds: SeedMean;
  /** Per seed: the difference on the full dev set and its paired-bootstrap 95% CI over sentences. */
  perSeed: Array<{ seed: number; diff: number; ciLow: number; ciHigh: number }>;
}

/** Means over seeds of each setting and the post-hoc − from-start differences. */
export interface PosthocSummary {
  heldOut: Record<string, { fromStart: SeedMean; postHoc: SeedMean; diff: SeedMean }>;
  ner: Record<string, { fromStart: SeedMean; postHoc: SeedMean; diff: PosthocDifference }>;
}

/** Summarises the cells; `stats` holds each (setting, seed)'s per-sentence NER statistics. */
export function summarisePosthoc(
  cells: readonly PosthocCell[],
  stats: (setting: PosthocSetting, seed: number) => NerStats,
  o: { languages: readonly string[]; nerLanguages: readonly string[]; resamples: number; seed: number },
): PosthocSummary {
  const seeds = [...new Set(cells.map((c) => c.seed))].sort((a, b) => a - b);
  const cell = (s: PosthocSetting, seed: number) => cells.find((c) => c.setting === s && c.seed === seed);
  const pairs = seeds.flatMap((seed) => {
    const a = cell('from-start', seed);
    const b = cell('post-hoc', seed);
    return a !== undefined && b !== undefined ? [{ seed, a, b }] : [];
  });
  const boot = (xs: number[]) => seedMean(xs, { resamples: o.resamples, seed: o.seed });
  const heldOut: PosthocSummary['heldOut'] = {};
  for (const l of o.languages)
    heldOut[l] = {
      fromStart: boot(pairs.map((p) => p.a.heldOut[l] as number)),
      postHoc: boot(pairs.map((p) => p.b.heldOut[l] as number)),
      diff: boot(pairs.map((p) => (p.b.heldOut[l] as number) - (p.a.heldOut[l] as number))),
    };
  // entity F1 x 100, as the cells' nerF1 (statsScore is already a percentage)
  const score = (items: readonly (readonly [number, number, number])[]) => statsScore('ner', items);
  const paired = pairs.map((p) => ({
    seed: p.seed,
    report: pairedBootstrap(stats('from-start', p.seed), stats('post-hoc', p.seed), {
      source: 'en',
      score,
      resamples: o.resamples,
      seed: o.seed,
    }),
  }));
  const ner: PosthocSummary['ner'] = {};
  for (const l of o.nerLanguages) {
    const perSeed = paired.map(({ seed, report }) => {
      const d = report.languages[l];
      return {
        seed,
        diff: d?.diff ?? Number.NaN,
        ciLow: d?.ciLow ?? Number.NaN,
        ciHigh: d?.ciHigh ?? Number.NaN,
      };
    });
    ner[l] = {
      fromStart: boot(pairs.map((p) => p.a.nerF1[l] as number)),
      postHoc: boot(pairs.map((p) => p.b.nerF1[l] as number)),
      diff: { overSeeds: boot(perSeed.map((x) => x.diff)), perSeed },
    };
  }
  return { heldOut, ner };
}

const fmt = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const signed = (x: number, d: number) => (Number.isFinite(x) && x >= 0 ? `+${x.toFixed(d)}` : fmt(x, d));
const ci = (m: { ciLow: number; ciHigh: number }, d: number) =>
  Number.isFinite(m.ciLow) ? `${signed(m.ciLow, d)} to ${signed(m.ciHigh, d)}` : '– (1 seed)';
const withCi = (m: SeedMean, d: number) =>
  Number.isFinite(m.ciLow) ? `${fmt(m.mean, d)} (${fmt(m.ciLow, d)}–${fmt(m.ciHigh, d)})` : fmt(m.mean, d);

/** The Markdown report of `xmod-posthoc`. */
export function posthocMarkdown(
  summary: PosthocSummary,
  checks: ReadonlyArray<{ seed: number; check: BitIdentityCheck }>,
  o: {
    base: readonly string[];
    added: readonly string[];
    seeds: readonly number[];
    resamples: number;
    settings: string;
    seconds: number;
    devExamples: string;
    /**
     * The embedding rows trained with the added modules: `all` (`--new-embeddings`) or only those
     * of pieces no earlier language uses (`--new-embeddings --unseen-rows`); none when absent.
     */
    embeddings?: 'all' | 'unseen-rows';
  },
): string {
  const kind = (l: string) => (o.added.includes(l) ? `${l} (added)` : l);
  const rows = o.embeddings === 'unseen-rows';
  // hidden states of every base language identical in every check (the logits may differ)
  const hiddenSame = checks.every((c) =>
    Object.values(c.check.languages).every((r) =>
      (r.differing ?? (r.identical ? [] : ['?'])).every((n) => n === 'logits'),
    ),
  );
  // the wording that differs when the added modules were trained with the word embeddings
  const words = rows
    ? {
        how: "a new module per layer, copied from en and trained by masked LM together with the word-embedding rows of the pieces that no earlier language uses (`--new-embeddings --unseen-rows`: every piece of the earlier languages' corpus text, training and held-out, keeps its row); every other weight frozen",
        baseLoss:
          'the base languages scored on the model after adding: their input rows are unchanged, but the tied MLM decoder also scores the trained rows',
        identityTitle: "## The other languages' hidden states: bit-identity check",
        changed: hiddenSame
          ? "Every base language's hidden states (the embeddings' output and every layer's) are bit-identical before and after; only the MLM logits differ, as expected: the tied decoder scores every row of the vocabulary, the trained ones included, and the word-embedding tensor differs in those rows."
          : '**Some hidden states of the base languages changed** (see the outputs that differ above): a piece of their held-out text had a row that trained.',
      }
    : o.embeddings === 'all'
      ? {
          how: 'a new module per layer, copied from en and trained with the word embeddings by masked LM, `--new-embeddings`; every other weight frozen: an ablation, so the base languages are not expected to stay bit-identical',
          baseLoss: 'the base languages scored on the model after adding, whose word embeddings moved',
          identityTitle: '## How far the other languages changed: bit-identity check',
          changed:
            'The base languages changed, as expected: the word embeddings they share were trained with the added modules (`--new-embeddings`); the table shows by how much.',
        }
      : {
          how: 'a new module per layer, copied from en and trained alone with masked LM; every other weight frozen',
          baseLoss: 'for the base languages the post-hoc model is the base model',
          identityTitle: '## The other languages are unchanged: bit-identity check',
          changed: '**The check failed**: some outputs or weights of the base languages changed (see above).',
        };
  const lines = [
    '# xmod-posthoc: languages added after pre-training vs from the start',
    '',
    `Post hoc: an X-Mod model pre-trained on ${o.base.join(' ')}; then ${o.added.join(' and ')} added one after the other with \`xlt add-language\` (${words.how}). From start: the same model pre-trained on ${[...o.base, ...o.added].join(' ')}. ${o.settings}. Seeds ${o.seeds.join(', ')}.`,
    '',
    '## Held-out masked-LM loss (nats per masked token, 15% masked, the same tokens in both models)',
    '',
    `Mean over seeds (95% bootstrap CI over seeds with 2 or more); difference post hoc − from start paired by seed (lower loss is better; ${words.baseLoss}).`,
    '',
    '| language | from start | post hoc | post hoc − from start | 95% CI |',
    '|---|---:|---:|---:|---|',
  ];
  for (const [l, r] of Object.entries(summary.heldOut))
    lines.push(
      `| ${kind(l)} | ${withCi(r.fromStart, 3)} | ${withCi(r.postHoc, 3)} | ${signed(r.diff.mean, 3)} | ${ci(r.diff, 3)} |`,
    );
  lines.push(
    '',
    `## NER zero-shot, PAN-X dev (${o.devExamples}), entity F1 x 100, fine-tuned on English`,
    '',
    `Both models fine-tuned alike on English PAN-X train (X-Mod fine-tuning: modules and embeddings frozen; best epoch on English dev); each language runs through its own module. Difference post hoc − from start: per seed with a paired bootstrap over dev sentences (${o.resamples} resamples), and the mean over seeds with a bootstrap CI over seeds.`,
    '',
    '| language | from start | post hoc | post hoc − from start | 95% CI over seeds | per seed: diff (95% CI over sentences) |',
    '|---|---:|---:|---:|---|---|',
  );
  for (const [l, r] of Object.entries(summary.ner))
    lines.push(
      `| ${l === 'en' ? 'en (source)' : kind(l)} | ${withCi(r.fromStart, 1)} | ${withCi(r.postHoc, 1)} | ${signed(r.diff.overSeeds.mean, 2)} | ${ci(r.diff.overSeeds, 2)} | ${r.diff.perSeed.map((p) => `s${p.seed}: ${signed(p.diff, 2)} (${signed(p.ciLow, 2)} to ${signed(p.ciHigh, 2)})`).join('; ')} |`,
    );
  lines.push(
    '',
    words.identityTitle,
    '',
    'Base model vs the model after adding the languages (before fine-tuning): every weight tensor of the base compared byte for byte with the same tensor after, and the outputs (MLM logits and the hidden states of the embeddings and of every layer) on held-out blocks of each base language, through its own module, compared byte for byte.',
    '',
    `| seed | tensors identical / compared | new tensors | language | values compared | identical | max abs diff |${rows ? ' outputs that differ |' : ''} SHA-256 before / after |`,
    `|---:|---|---:|---|---:|---|---:|${rows ? '---|' : ''}---|`,
  );
  for (const { seed, check } of checks) {
    const w = check.weights;
    for (const [l, r] of Object.entries(check.languages)) {
      const differing = rows ? ` ${r.differing === undefined ? '?' : r.differing.join(', ') || '–'} |` : '';
      lines.push(
        `| ${seed} | ${w.identical} / ${w.compared}${w.missing.length > 0 ? ` (${w.missing.length} missing)` : ''} | ${w.added.length} | ${l} | ${r.values} | ${r.identical ? 'yes' : '**no**'} | ${r.maxAbsDiff} |${differing} ${r.sha256[0].slice(0, 12)} / ${r.sha256[1].slice(0, 12)} |`,
      );
    }
  }
  const all = checks.every((c) => c.check.identical);
  lines.push(
    '',
    all
      ? `Every base language's outputs are bit-identical before and after adding ${o.added.join(' and ')} (${checks.length} seed(s)).`
      : words.changed,
    '',
    `Wall time of this invocation ${(o.seconds / 60).toFixed(1)} min (finished steps of an earlier run are not counted; each cell's step times are in results.json).`,
  );
  return `${lines.join('\n')}\n`;
}

const COLORS = [
  { name: 'from start', color: '#1f77b4' },
  { name: 'post hoc', color: '#d62728' },
];

/** Two panels: the added languages' held-out loss and their zero-shot NER F1, both settings. */
export function posthocChart(summary: PosthocSummary, added: readonly string[]): string {
  const bars = (fromStart: SeedMean, postHoc: SeedMean) => [
    { series: 'from start', value: fromStart.mean, ciLow: fromStart.ciLow, ciHigh: fromStart.ciHigh },
    { series: 'post hoc', value: postHoc.mean, ciLow: postHoc.ciLow, ciHigh: postHoc.ciHigh },
  ];
  return groupedBarsSvg(
    [
      {
        title: 'held-out masked-LM loss',
        yLabel: 'nats per masked token',
        groups: added.flatMap((l) => {
          const r = summary.heldOut[l];
          return r === undefined ? [] : [{ label: l, bars: bars(r.fromStart, r.postHoc) }];
        }),
      },
      {
        title: 'NER zero-shot F1 (PAN-X dev)',
        yLabel: 'entity F1 x 100',
        groups: Object.entries(summary.ner).map(([l, r]) => ({
          label: l === 'en' ? 'en (src)' : l,
          bars: bars(r.fromStart, r.postHoc),
        })),
      },
    ],
    { title: 'Languages added post hoc vs from the start (X-Mod)', series: COLORS },
  );
}
