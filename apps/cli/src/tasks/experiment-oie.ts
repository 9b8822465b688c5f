/**
 * `xlt experiment oie`: the grid (pre-training languages, sizes, budgets), the paired comparison of
 * the trained Open IE model with the verb heuristic on the CaRB-scored sets, the report and chart.
 */
import { carbScore, type OieExtraction, pairedBootstrap, type SeedMean, seedMean } from '@xlt/evaluator';
import { groupedBarsSvg } from './bar-chart.js';
import { RECIPES, type RecipeSettings } from './recipes.js';

/** Pre-training languages of the encoder: the languages of the CaRB-scored test sets. */
export const OIE_LANGUAGES: readonly string[] = ['en', 'es', 'pt'];

/** The system the model is compared with, and the trivial reference. */
export const HEURISTIC = 'baseline:verb-like';
export const TRIVIAL = 'baseline:second-word';

/** Sizes, budgets and seeds of one variant of `experiment oie`. */
export interface OieExperimentSettings
  extends Pick<RecipeSettings, 'vocabSize' | 'hiddenSize' | 'layers' | 'pretrain'> {
  seeds: number;
  maxSentencesPerLanguage?: number;
  /** Open IE training on CaRB dev (the encoder's weights as a start, a new two-step head). */
  oie: { epochs: number; batchSize: number; lr: number; maxLength: number };
}

const FULL = RECIPES.ner.full;

/**
 * `full`: the recipes' h256 L4 encoder, 2,000 masked-LM steps on en es pt, Open IE 4 epochs at lr
 * 5e-4 (examples/oie/pretrained.yaml), 3 seeds. `quick`: h128 L2, vocabulary 8,000, 400 steps,
 * 8,000 sentences per language, 4 epochs, 2 seeds (each a pre-training and an Open IE run, about
 * 7 minutes per lane on 2 idle cores).
 */
export const OIE_EXPERIMENT: { full: OieExperimentSettings; quick: OieExperimentSettings } = {
  full: {
    vocabSize: FULL.vocabSize,
    hiddenSize: FULL.hiddenSize,
    layers: FULL.layers,
    pretrain: { ...FULL.pretrain, steps: 2000 },
    seeds: 3,
    oie: { epochs: 4, batchSize: 16, lr: 5e-4, maxLength: 96 },
  },
  quick: {
    vocabSize: 8000,
    hiddenSize: 128,
    layers: 2,
    pretrain: { ...FULL.pretrain, steps: 400 },
    seeds: 2,
    maxSentencesPerLanguage: 8000,
    oie: { epochs: 4, batchSize: 16, lr: 5e-4, maxLength: 96 },
  },
};

/** One scored test set of one seed's run: every system's extractions. */
export interface OieRunSet {
  /** e.g. `CaRB en`, `Re-OIE2016 es`. */
  set: string;
  /** system → extractions. */
  systems: Record<string, OieExtraction[]>;
}

/** One cell: a seed's model on one set, with the baselines' scores beside it. */
export interface OieCell {
  seed: number;
  set: string;
  /** system → CaRB P, R, F1, AUC (x 100). */
  scores: Record<string, { precision: number; recall: number; f1: number; auc: number }>;
  /** Wall time of the seed's pre-training and Open IE steps, seconds. */
  seconds: Record<string, number>;
}

/** Per set: the model's F1 over seeds, the baselines' and model − heuristic with its CIs. */
export interface OieSetSummary {
  set: string;
  sentences: number;
  model: SeedMean;
  modelPrecision: SeedMean;
  modelRecall: SeedMean;
  heuristic: { f1: number; precision: number; recall: number };
  trivial: number;
  /** Model − heuristic F1: mean over seeds with a bootstrap CI over seeds. */
  overSeeds: SeedMean;
  /** Model (mean over seeds) − heuristic F1, paired bootstrap over sentences. */
  overSentences: { diff: number; ciLow: number; ciHigh: number };
  /** `yes` when the sentence-level CI lies above 0, `no` when below, else `not resolved`. */
  beats: 'yes' | 'no' | 'not resolved';
}

const pct = (r: { precision: number; recall: number; f1: number; auc: number }) => ({
  precision: 100 * r.precision,
  recall: 100 * r.recall,
  f1: 100 * r.f1,
  auc: 100 * r.auc,
});

/** CaRB scores (x 100) of every system of one set. */
export function scoreSet(
  gold: ReadonlyMap<string, ReadonlyArray<{ relation: string; args: string[] }>>,
  systems: Record<string, OieExtraction[]>,
): OieCell['scores'] {
  return Object.fromEntries(Object.entries(systems).map(([k, preds]) => [k, pct(carbScore(gold, preds))]));
}

type Gold = ReadonlyMap<string, ReadonlyArray<{ relation: string; args: string[] }>>;

/**
 * Per gold sentence (in the gold's order), CaRB's sufficient statistics at a fixed confidence
 * threshold: [sum of the kept predictions' matched precision, kept predictions, sum of the gold
 * tuples' best recall, gold tuples]. CaRB pairs predictions with gold tuples within a sentence, so
 * the corpus precision is the sum of the first over the sum of the second, recall the third over
 * the fourth: the F1 of {@link statsF1} over all sentences equals `carbScore` at that threshold.
 */
export function carbSentenceStats(
  gold: Gold,
  preds: readonly OieExtraction[],
  threshold: number,
): Array<[number, number, number, number]> {
  const by = new Map<string, OieExtraction[]>();
  for (const p of preds)
    if ((p.confidence ?? 1) >= threshold) by.set(p.sentence, [...(by.get(p.sentence) ?? []), p]);
  return [...gold].map(([sentence, tuples]) => {
    const kept = (by.get(sentence) ?? []).map((p) => ({ ...p, confidence: 1 }));
    const r = carbScore(new Map([[sentence, tuples]]), kept);
    return [
      r.predictions > 0 ? r.precision * r.predictions : 0,
      r.predictions,
      r.recall * r.goldTuples,
      r.goldTuples,
    ];
  });
}

/** CaRB F1 (x 100) from summed {@link carbSentenceStats} (precision 1 when nothing is kept, as CaRB). */
export function statsF1(stats: ReadonlyArray<readonly [number, number, number, number]>): number {
  let ps = 0;
  let kept = 0;
  let rs = 0;
  let gold = 0;
  for (const [a, b, c, d] of stats) {
    ps += a;
    kept += b;
    rs += c;
    gold += d;
  }
  const p = kept > 0 ? ps / kept : 1;
  const r = gold > 0 ? rs / gold : 0;
  return p + r > 0 ? (200 * p * r) / (p + r) : 0;
}

/** A resampled item: the i-th gold sentence, scored for one system. */
interface Item {
  i: number;
  system: 'model' | 'heuristic';
}

/**
 * Paired bootstrap over sentences of (mean over seeds of the model's CaRB F1) − (the heuristic's),
 * per set. Each system is scored at its own best threshold on the full set (CaRB's reported
 * point), fixed in the resamples, so that a resample is a sum of per-sentence statistics
 * ({@link carbSentenceStats}); a sentence drawn twice counts twice, as in any bootstrap.
 */
export function modelVsHeuristic(
  gold: Record<string, Gold>,
  runs: Record<string, ReadonlyArray<Record<string, OieExtraction[]>>>,
  o: { resamples: number; seed: number },
): Record<string, { diff: number; ciLow: number; ciHigh: number }> {
  const statsOf = (g: Gold, preds: readonly OieExtraction[]) =>
    carbSentenceStats(g, preds, carbScore(g, preds).threshold);
  const out: Record<string, { diff: number; ciLow: number; ciHigh: number }> = {};
  for (const [set, g] of Object.entries(gold)) {
    const perSeed = (runs[set] ?? []).map((systems) => statsOf(g, systems.model ?? []));
    const heuristic = statsOf(g, runs[set]?.[0]?.[HEURISTIC] ?? []);
    const score = (items: readonly Item[]) => {
      if (items[0]?.system === 'heuristic')
        return statsF1(items.map((it) => heuristic[it.i] as [number, number, number, number]));
      const f1s = perSeed.map((st) =>
        statsF1(items.map((it) => st[it.i] as [number, number, number, number])),
      );
      return f1s.reduce((a, x) => a + x, 0) / Math.max(1, f1s.length);
    };
    const items = (system: Item['system']) => [...g.keys()].map((_, i) => ({ i, system }));
    const r = pairedBootstrap(
      { [set]: items('heuristic') },
      { [set]: items('model') },
      {
        source: '',
        score,
        resamples: o.resamples,
        seed: o.seed,
      },
    );
    const d = r.languages[set] as { diff: number; ciLow: number; ciHigh: number };
    out[set] = { diff: d.diff, ciLow: d.ciLow, ciHigh: d.ciHigh };
  }
  return out;
}

/** Per set: means over seeds, the baselines, model − heuristic over seeds and over sentences. */
export function summariseOie(
  cells: readonly OieCell[],
  overSentences: Record<string, { diff: number; ciLow: number; ciHigh: number }>,
  sentences: Record<string, number>,
  o: { resamples: number; seed: number },
): OieSetSummary[] {
  const sets = [...new Set(cells.map((c) => c.set))];
  const boot = (xs: number[]) => seedMean(xs, o);
  return sets.map((set) => {
    const cs = cells.filter((c) => c.set === set).sort((a, b) => a.seed - b.seed);
    const h = cs[0]?.scores[HEURISTIC] ?? { f1: Number.NaN, precision: Number.NaN, recall: Number.NaN };
    const model = (k: 'f1' | 'precision' | 'recall') =>
      boot(cs.map((c) => c.scores.model?.[k] ?? Number.NaN));
    const s = overSentences[set] ?? { diff: Number.NaN, ciLow: Number.NaN, ciHigh: Number.NaN };
    return {
      set,
      sentences: sentences[set] ?? 0,
      model: model('f1'),
      modelPrecision: model('precision'),
      modelRecall: model('recall'),
      heuristic: { f1: h.f1, precision: h.precision, recall: h.recall },
      trivial: cs[0]?.scores[TRIVIAL]?.f1 ?? Number.NaN,
      overSeeds: boot(
        cs.map((c) => (c.scores.model?.f1 ?? Number.NaN) - (c.scores[HEURISTIC]?.f1 ?? Number.NaN)),
      ),
      overSentences: s,
      beats: s.ciLow > 0 ? 'yes' : s.ciHigh < 0 ? 'no' : 'not resolved',
    };
  });
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');
const sg = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(1)}` : '–');
const withCi = (m: SeedMean) =>
  Number.isFinite(m.ciLow) ? `${f1(m.mean)} (${f1(m.ciLow)}–${f1(m.ciHigh)})` : f1(m.mean);

/** The Markdown report of `experiment oie`. */
export function oieMarkdown(
  rows: readonly OieSetSummary[],
  o: { seeds: readonly number[]; resamples: number; settings: string; seconds: number },
): string {
  const lines = [
    '# experiment oie: the trained Open IE model vs the verb heuristic',
    '',
    `${o.settings}. Seeds ${o.seeds.join(', ')} (each seed its own pre-training and Open IE training). Test sets: CaRB **test** (en) and Re-OIE2016 binary (**test** sets of Multi2OIE; en, es, pt zero-shot), all scored with the CaRB scorer (binary lenient match, F1 at the best confidence threshold). The heuristic (\`verb-like\`) is deterministic: one score per set.`,
    '',
    `| test set | sentences | model F1 (95% CI over seeds) | model P / R | verb heuristic F1 (P / R) | second-word F1 | model − heuristic, over seeds | 95% CI over seeds | model − heuristic, paired bootstrap over sentences (95% CI) | beats the heuristic |`,
    '|---|---:|---:|---|---:|---:|---:|---|---|---|',
  ];
  for (const r of rows)
    lines.push(
      `| ${r.set} | ${r.sentences} | ${withCi(r.model)} | ${f1(r.modelPrecision.mean)} / ${f1(r.modelRecall.mean)} | ${f1(r.heuristic.f1)} (${f1(r.heuristic.precision)} / ${f1(r.heuristic.recall)}) | ${f1(r.trivial)} | ${sg(r.overSeeds.mean)} | ${Number.isFinite(r.overSeeds.ciLow) ? `${sg(r.overSeeds.ciLow)} to ${sg(r.overSeeds.ciHigh)}` : '– (1 seed)'} | ${sg(r.overSentences.diff)} (${sg(r.overSentences.ciLow)} to ${sg(r.overSentences.ciHigh)}) | ${r.beats} |`,
    );
  const lost = rows.filter((r) => r.beats !== 'yes');
  lines.push(
    '',
    `Paired bootstrap: ${o.resamples} resamples of the test sentences; in each, the model's F1 (mean over the seeds' models) minus the heuristic's on the same sentences, each system at its best confidence threshold on the full set (CaRB's reported point), held fixed in the resamples. "beats" is "yes" when that CI lies above 0.`,
    '',
  );
  if (lost.length === 0) lines.push('The model beats the verb heuristic on every set.');
  else {
    lines.push('Where the model does not beat the heuristic, the numbers show why:', '');
    for (const r of lost) {
      const why =
        r.modelPrecision.mean < r.heuristic.precision
          ? `its precision is lower (${f1(r.modelPrecision.mean)} vs ${f1(r.heuristic.precision)})${r.modelRecall.mean < r.heuristic.recall ? ` and so is its recall (${f1(r.modelRecall.mean)} vs ${f1(r.heuristic.recall)})` : `, its recall ${f1(r.modelRecall.mean)} vs ${f1(r.heuristic.recall)}`}`
          : `its recall is lower (${f1(r.modelRecall.mean)} vs ${f1(r.heuristic.recall)})`;
      lines.push(
        `- ${r.set}: ${why}. The heuristic is hand-written for English (auxiliaries, -ed/-es verbs, prepositions); the model learns from CaRB dev's 1,415 taggable tuples with a small encoder pre-trained briefly.`,
      );
    }
  }
  lines.push(
    '',
    `Wall time of this invocation ${(o.seconds / 60).toFixed(1)} min (finished steps of an earlier run are not counted; each cell's step times are in results.json).`,
  );
  return `${lines.join('\n')}\n`;
}

/** F1 per set: the model (mean over seeds, CI), the verb heuristic and the second-word baseline. */
export function oieChart(rows: readonly OieSetSummary[]): string {
  return groupedBarsSvg(
    [
      {
        title: 'CaRB-scored F1 (test sets)',
        yLabel: 'F1 x 100',
        groups: rows.map((r) => ({
          label: r.set,
          bars: [
            { series: 'model', value: r.model.mean, ciLow: r.model.ciLow, ciHigh: r.model.ciHigh },
            { series: 'verb heuristic', value: r.heuristic.f1 },
            { series: 'second word', value: r.trivial },
          ],
        })),
      },
    ],
    {
      title: 'Open IE: trained model vs heuristics',
      series: [
        { name: 'model', color: '#1f77b4' },
        { name: 'verb heuristic', color: '#ff7f0e' },
        { name: 'second word', color: '#aaaaaa' },
      ],
      yDigits: 1,
    },
  );
}
