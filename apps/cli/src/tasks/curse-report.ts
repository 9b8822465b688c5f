/**
 * The results of `xlt experiment xmod-curse`: every cell's held-out masked-LM losses, the means over
 * seeds with bootstrap CIs, the paired X-Mod − shared differences, the Markdown report and the chart.
 */
import { type LineSeries, lineChartSvg, type SeedMean, seedMean } from '@xlt/evaluator';

export type Architecture = 'shared' | 'xmod';

export const ARCHITECTURES: readonly Architecture[] = ['shared', 'xmod'];

const NAMES: Record<Architecture, string> = { shared: 'shared', xmod: 'X-Mod' };

/** One pre-trained model of the grid. */
export interface CurseCell {
  architecture: Architecture;
  /** Number of pre-training languages. */
  count: number;
  languages: string[];
  seed: number;
  /** Held-out masked-LM loss (nats per masked token, 15% masked) of each language of the model. */
  heldOut: Record<string, number>;
  /** Masked tokens each language's loss averages. */
  maskedTokens: Record<string, number>;
  steps: number;
  finalTrainingLoss: number;
  /** Wall time of the cell's step (pre-training and held-out scoring), seconds. */
  seconds: number;
}

/** English's loss and the mean over the model's languages, over seeds. */
export interface CurseMetrics {
  english: SeedMean;
  mean: SeedMean;
}

/** One language count: each architecture's metrics and the paired difference X-Mod − shared. */
export interface CurseSummaryRow {
  count: number;
  languages: string[];
  shared?: CurseMetrics;
  xmod?: CurseMetrics;
  /** Over the seeds both architectures ran: the mean of the per-seed differences, bootstrap CI. */
  xmodMinusShared?: CurseMetrics;
  /**
   * The curse on English: its loss here minus its loss in the grid's smallest model (one language
   * unless --counts says otherwise), per architecture, paired by seed; and X-Mod's rise minus the
   * shared model's, over the seeds where all four cells exist. Absent for the smallest count.
   */
  englishRise?: { shared?: SeedMean; xmod?: SeedMean; xmodMinusShared?: SeedMean };
}

const meanOf = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;

/** The mean held-out loss over the cell's languages. */
export function cellMean(c: CurseCell): number {
  return meanOf(c.languages.map((l) => c.heldOut[l] as number));
}

/** seed → `f` of the cells of one architecture and language count, in seed order. */
function bySeed(
  cells: readonly CurseCell[],
  a: Architecture,
  count: number,
  f: (c: CurseCell) => number,
): Map<number, number> {
  const cs = cells.filter((c) => c.count === count && c.architecture === a).sort((x, y) => x.seed - y.seed);
  return new Map(cs.map((c) => [c.seed, f(c)]));
}

/** `hi − lo` for the seeds both have, in `hi`'s order: the pairing by seed. */
function minusBySeed(hi: Map<number, number>, lo: Map<number, number>): Map<number, number> {
  return new Map(
    [...hi].flatMap(([seed, v]) => (lo.has(seed) ? [[seed, v - (lo.get(seed) as number)]] : [])),
  );
}

const english = (c: CurseCell) => c.heldOut.en as number;

/** Per language count: each architecture's means over seeds and the paired differences. */
export function summariseCurse(
  cells: readonly CurseCell[],
  o: { resamples: number; seed: number },
): CurseSummaryRow[] {
  const counts = [...new Set(cells.map((c) => c.count))].sort((a, b) => a - b);
  const boot = (m: Map<number, number>) => (m.size > 0 ? seedMean([...m.values()], o) : undefined);
  const base = counts[0] as number;
  return counts.map((count) => {
    const en = (a: Architecture, n = count) => bySeed(cells, a, n, english);
    const mean = (a: Architecture) => bySeed(cells, a, count, cellMean);
    const row: CurseSummaryRow = { count, languages: cells.find((c) => c.count === count)?.languages ?? [] };
    for (const a of ARCHITECTURES) {
      const [e, m] = [boot(en(a)), boot(mean(a))];
      if (e !== undefined && m !== undefined) row[a] = { english: e, mean: m };
    }
    const [e, m] = [
      boot(minusBySeed(en('xmod'), en('shared'))),
      boot(minusBySeed(mean('xmod'), mean('shared'))),
    ];
    if (e !== undefined && m !== undefined) row.xmodMinusShared = { english: e, mean: m };
    if (count !== base) {
      const [shared, xmod] = ARCHITECTURES.map((a) => minusBySeed(en(a), en(a, base))) as [
        Map<number, number>,
        Map<number, number>,
      ];
      const rise: NonNullable<CurseSummaryRow['englishRise']> = {};
      const [rs, rx, rd] = [boot(shared), boot(xmod), boot(minusBySeed(xmod, shared))];
      if (rs !== undefined) rise.shared = rs;
      if (rx !== undefined) rise.xmod = rx;
      if (rd !== undefined) rise.xmodMinusShared = rd;
      row.englishRise = rise;
    }
    return row;
  });
}

const num = (m: SeedMean | undefined, sign = false) => {
  if (m === undefined) return '–';
  const v = (x: number) => `${sign && x > 0 ? '+' : ''}${x.toFixed(3)}`;
  return Number.isFinite(m.ciLow) ? `${v(m.mean)} (${v(m.ciLow)} to ${v(m.ciHigh)})` : v(m.mean);
};

/** The report: the summary table, every language's loss per model, settings and wall times. */
export function curseMarkdown(
  rows: readonly CurseSummaryRow[],
  cells: readonly CurseCell[],
  o: {
    order: readonly string[];
    seeds: readonly number[];
    resamples: number;
    settings: string;
    seconds: number;
  },
): string {
  const ci = o.seeds.length > 1;
  const base = rows[0]?.count ?? 1;
  const lines = [
    '# xmod-curse: held-out masked-LM loss against the number of pre-training languages',
    '',
    `Shared (XLM-R layout) and X-Mod models of the same size and steps, pre-trained on the first 1…${o.order.length} of ${o.order.join(' ')} (nested sets, English in every one); one tokenizer and one corpus for all. Loss in nats per masked token (15% masked, the same held-out tokens in every model): lower is better. ${o.seeds.length} seed(s) (${o.seeds.join(', ')})${ci ? `; 95% bootstrap CIs over seeds (${o.resamples} resamples), the difference paired by seed` : '; one seed: no CIs'}.`,
    '',
    '| languages | shared: en | shared: mean | X-Mod: en | X-Mod: mean | X-Mod − shared: en | X-Mod − shared: mean |',
    '|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.count} | ${num(r.shared?.english)} | ${num(r.shared?.mean)} | ${num(r.xmod?.english)} | ${num(r.xmod?.mean)} | ${num(r.xmodMinusShared?.english, true)} | ${num(r.xmodMinusShared?.mean, true)} |`,
    ),
    '',
    `## The curse on English: its loss rise from the ${base}-language model`,
    '',
    `English's held-out loss in each model minus its loss in the same architecture's ${base}-language model of the same seed (positive: adding languages hurt English); X-Mod's rise minus the shared model's, paired by seed; and the share of the shared model's rise that X-Mod removes (1 − X-Mod's mean rise / the shared model's).`,
    '',
    '| languages | shared: rise | X-Mod: rise | X-Mod − shared | share removed |',
    '|---:|---:|---:|---:|---:|',
    ...rows.flatMap((r) => {
      const e = r.englishRise;
      if (e === undefined) return [];
      const removed =
        e.shared !== undefined && e.xmod !== undefined && e.shared.mean > 0
          ? `${Math.round(100 * (1 - e.xmod.mean / e.shared.mean))}%`
          : '–';
      return [
        `| ${r.count} | ${num(e.shared, true)} | ${num(e.xmod, true)} | ${num(e.xmodMinusShared, true)} | ${removed} |`,
      ];
    }),
    '',
    '## Every language (mean over seeds)',
    '',
    `| model | languages | ${o.order.join(' | ')} |`,
    `|---|---:|${o.order.map(() => '---:').join('|')}|`,
  ];
  for (const a of ARCHITECTURES)
    for (const r of rows) {
      const cs = cells.filter((c) => c.architecture === a && c.count === r.count);
      if (cs.length === 0) continue;
      const loss = (l: string) => {
        const xs = cs.flatMap((c) => (c.heldOut[l] === undefined ? [] : [c.heldOut[l]]));
        return xs.length === 0 ? '–' : meanOf(xs).toFixed(3);
      };
      lines.push(`| ${NAMES[a]} | ${r.count} | ${o.order.map(loss).join(' | ')} |`);
    }
  const wall = cells.reduce((a, c) => a + c.seconds, 0);
  lines.push(
    '',
    `Settings: ${o.settings}.`,
    `Wall time: ${(wall / 60).toFixed(1)} min of pre-training summed over the ${cells.length} cells (each cell's first run; lanes run several at once); this invocation ${(o.seconds / 60).toFixed(1)} min.`,
  );
  return `${lines.join('\n')}\n`;
}

/** The chart: English's loss and the mean loss against the number of languages, both architectures. */
export function curseChart(rows: readonly CurseSummaryRow[]): string {
  const colors: Record<Architecture, string> = { shared: '#1b9e77', xmod: '#d95f02' };
  const series: LineSeries[] = ARCHITECTURES.flatMap((a) =>
    (['english', 'mean'] as const).map((k) => ({
      name: `${NAMES[a]}: ${k === 'english' ? 'English' : 'mean over its languages'}`,
      color: colors[a],
      dashed: k === 'mean',
      points: rows.flatMap((r) => {
        const m = r[a]?.[k];
        return m === undefined ? [] : [{ x: r.count, y: m.mean, ciLow: m.ciLow, ciHigh: m.ciHigh }];
      }),
    })),
  );
  return lineChartSvg(series, {
    title: 'Held-out masked-LM loss against the number of pre-training languages',
    xLabel: 'pre-training languages',
    yLabel: 'loss (nats per masked token)',
    logX: true,
  });
}
