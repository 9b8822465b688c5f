/**
 * The results of the fine-tuning experiments (`xlt experiment salt`, `xlt experiment mt4crossie`):
 * per task and setting the mean over seeds of each language's dev score and of the target average,
 * the differences to the baseline setting with paired bootstrap 95% CIs (over dev examples, paired
 * by example and seed; and over seeds where there are 2 or more), the Markdown report and the chart.
 */
import { type PairedDifference, pairedBootstrap, type SeedMean, seedMean } from '@xlt/evaluator';
import { statsScore } from './tasks.js';

/** One fine-tuned model of a grid, scored zero-shot on every language's dev set. */
export interface FinetuneCell {
  task: 'ner' | 'pos';
  setting: string;
  seed: number;
  source: string;
  /** Dev score per language (entity F1 or UPOS accuracy, x 100), the source included. */
  languages: Record<string, number>;
  /** Dev examples scored per language. */
  examples: Record<string, number>;
  /** Mean over the languages other than the source. */
  targetAverage: number;
  trainExamples: number;
  /** Optimiser steps over all stages. */
  steps: number;
  /** Wall time of the cell (fine-tuning and evaluation), seconds. */
  seconds: number;
}

/** Per cell name: per language the per-example sufficient statistics (`xlt evaluate`'s stats.json). */
export type GridStats = Record<string, Record<string, Array<[number, number, number]>>>;

/** A setting's differences to the baseline (setting − baseline). */
export interface BaselineDifference {
  /** Paired bootstrap over dev examples of the seed-averaged score (same examples and seeds). */
  examples: {
    targetAverage: PairedDifference;
    languages: Record<string, PairedDifference>;
  };
  /** The per-seed target-average differences: their mean and a bootstrap CI over seeds (NaN for 1 seed). */
  seeds: SeedMean;
}

/** One setting of one task, over its seeds. */
export interface SettingSummary {
  setting: string;
  seeds: number[];
  /** Mean over seeds per language. */
  languages: Record<string, number>;
  targetAverage: SeedMean;
  /** Mean wall time of a cell, seconds. */
  seconds: number;
  vsBaseline?: BaselineDifference;
}

export interface TaskSummary {
  task: 'ner' | 'pos';
  source: string;
  languages: string[];
  rows: SettingSummary[];
}

const meanOf = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
type Stat = [number, number, number];

/** The cell's name in {@link GridStats}: `<task>-<setting>-seed<seed>`. */
const key = (task: string, setting: string, seed: number) => `${task}-${setting}-seed${seed}`;

/**
 * Per task and setting: means over seeds and, for every setting but the baseline, the paired
 * differences to it over the seeds both ran. The example-level bootstrap draws the same dev
 * examples for both settings and every seed, and scores each resample as the mean over seeds.
 */
export function summariseGrid(
  cells: readonly FinetuneCell[],
  stats: GridStats,
  o: { baseline: string; resamples: number; seed: number },
): TaskSummary[] {
  const tasks = [...new Set(cells.map((c) => c.task))];
  return tasks.map((task) => {
    const ofTask = cells.filter((c) => c.task === task);
    const first = ofTask[0] as FinetuneCell;
    const languages = Object.keys(first.languages);
    const settings = [...new Set(ofTask.map((c) => c.setting))];
    const of = (s: string) => ofTask.filter((c) => c.setting === s).sort((a, b) => a.seed - b.seed);
    const rows = settings.map((setting): SettingSummary => {
      const cs = of(setting);
      const row: SettingSummary = {
        setting,
        seeds: cs.map((c) => c.seed),
        languages: Object.fromEntries(
          languages.map((l) => [l, meanOf(cs.map((c) => c.languages[l] as number))]),
        ),
        targetAverage: seedMean(
          cs.map((c) => c.targetAverage),
          o,
        ),
        seconds: meanOf(cs.map((c) => c.seconds)),
      };
      if (setting !== o.baseline) {
        const base = of(o.baseline);
        const seeds = cs.map((c) => c.seed).filter((s) => base.some((b) => b.seed === s));
        if (seeds.length > 0)
          row.vsBaseline = difference(task, first.source, languages, seeds, setting, o, stats, base, cs);
      }
      return row;
    });
    return { task, source: first.source, languages, rows };
  });
}

function difference(
  task: 'ner' | 'pos',
  source: string,
  languages: readonly string[],
  seeds: readonly number[],
  setting: string,
  o: { baseline: string; resamples: number; seed: number },
  stats: GridStats,
  base: readonly FinetuneCell[],
  cs: readonly FinetuneCell[],
): BaselineDifference {
  // per language, example i: the statistics of every seed (both settings saw the same examples)
  const joint = (s: string) =>
    Object.fromEntries(
      languages.map((l) => {
        const perSeed = seeds.map((seed) => stats[key(task, s, seed)]?.[l] ?? []);
        const n = (perSeed[0] as Stat[]).length;
        return [l, Array.from({ length: n }, (_, i) => perSeed.map((x) => x[i] as Stat))];
      }),
    );
  const score = (items: readonly Stat[][]) =>
    meanOf(
      seeds.map((_, k) =>
        statsScore(
          task,
          items.map((e) => e[k] as Stat),
        ),
      ),
    );
  const p = pairedBootstrap(joint(o.baseline), joint(setting), {
    source,
    score,
    resamples: o.resamples,
    seed: o.seed,
  });
  const perSeed = seeds.map(
    (s) =>
      (cs.find((c) => c.seed === s) as FinetuneCell).targetAverage -
      (base.find((c) => c.seed === s) as FinetuneCell).targetAverage,
  );
  return {
    examples: { targetAverage: p.targetAverage, languages: p.languages },
    seeds: seedMean(perSeed, o),
  };
}

const signed = (x: number, d = 2) => `${x > 0 ? '+' : ''}${x.toFixed(d)}`;
const ciText = (d: { ciLow: number; ciHigh: number }) =>
  Number.isFinite(d.ciLow) ? `${signed(d.ciLow)} to ${signed(d.ciHigh)}` : '–';

/** The report: per task the scores per setting and the differences to the baseline with CIs. */
export function gridMarkdown(
  summary: readonly TaskSummary[],
  cells: readonly FinetuneCell[],
  o: {
    experiment: string;
    labels: Record<string, string>;
    seeds: readonly number[];
    resamples: number;
    settings: string;
    seconds: number;
    /** The grid's own pre-training (undefined: the model was given, not pre-trained by the grid). */
    pretrainSeconds?: number;
  },
): string {
  const name = (s: string) => o.labels[s] ?? s;
  const lines = [
    `# ${o.experiment}: zero-shot transfer per fine-tuning setting`,
    '',
    `Split: **dev** (PAN-X dev for NER; UD en_ewt dev for English and GSD dev for the other languages for POS); model selection on the source-language dev set only. Metric: entity F1 (NER) or UPOS accuracy (POS), x 100. ${o.seeds.length} fine-tuning seed(s) (${o.seeds.join(', ')}) on one pre-trained model. Differences are setting − baseline (${name(summary[0]?.rows[0]?.setting ?? '')}): a paired bootstrap over dev examples (${o.resamples} resamples; the same examples for both settings and every seed, each resample scored as the mean over seeds) and, with 2 or more seeds, a bootstrap over the per-seed differences.`,
  ];
  for (const t of summary) {
    const targets = t.languages.filter((l) => l !== t.source);
    lines.push(
      '',
      `## ${t.task.toUpperCase()} (${t.source} → ${targets.join(' ')})`,
      '',
      `| setting | seeds | ${t.languages.map((l) => (l === t.source ? `${l} (src)` : l)).join(' | ')} | target avg | 95% CI over seeds | min per cell |`,
      `|---|---:|${t.languages.map(() => '---:').join('|')}|---:|---:|---:|`,
    );
    for (const r of t.rows)
      lines.push(
        `| ${name(r.setting)} | ${r.seeds.length} | ${t.languages.map((l) => (r.languages[l] as number).toFixed(1)).join(' | ')} | ${r.targetAverage.mean.toFixed(2)} | ${Number.isFinite(r.targetAverage.ciLow) ? `${r.targetAverage.ciLow.toFixed(2)} to ${r.targetAverage.ciHigh.toFixed(2)}` : '–'} | ${(r.seconds / 60).toFixed(1)} |`,
      );
    lines.push(
      '',
      `Differences to ${name(t.rows[0]?.setting ?? '')} (setting − baseline, points):`,
      '',
      `| setting | target avg | 95% CI (examples) | P(not better) | 95% CI (seeds) | source | 95% CI (examples) | ${targets.join(' | ')} |`,
      `|---|---:|---:|---:|---:|---:|---:|${targets.map(() => '---:').join('|')}|`,
    );
    for (const r of t.rows) {
      const d = r.vsBaseline;
      if (d === undefined) continue;
      const src = d.examples.languages[t.source] as PairedDifference;
      lines.push(
        `| ${name(r.setting)} | ${signed(d.examples.targetAverage.diff)} | ${ciText(d.examples.targetAverage)} | ${d.examples.targetAverage.pNotBetter.toFixed(3)} | ${ciText(d.seeds)} | ${signed(src.diff)} | ${ciText(src)} | ${targets.map((l) => signed((d.examples.languages[l] as PairedDifference).diff, 1)).join(' | ')} |`,
      );
    }
  }
  const wall = cells.reduce((a, c) => a + c.seconds, 0);
  lines.push(
    '',
    '## Settings',
    '',
    ...Object.entries(o.labels).map(([k, v]) => `- \`${k}\`: ${v}`),
    '',
    `Settings: ${o.settings}.`,
    `Wall time: ${o.pretrainSeconds !== undefined ? `pre-training ${(o.pretrainSeconds / 60).toFixed(1)} min` : 'no pre-training in this grid'}; ${(wall / 60).toFixed(1)} min of fine-tuning and evaluation summed over the ${cells.length} cells (each cell's first run; lanes run several at once); this invocation ${(o.seconds / 60).toFixed(1)} min.`,
  );
  return `${lines.join('\n')}\n`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * The chart: per task a panel with one row per setting, its target-average difference to the
 * baseline (a dot) and the example-level paired 95% CI (a whisker); a line at 0.
 */
export function gridChart(
  summary: readonly TaskSummary[],
  labels: Record<string, string>,
  title: string,
): string {
  const W = 680;
  const left = 200;
  const right = W - 30;
  const rowH = 22;
  const panels = summary.map((t) => ({ t, rows: t.rows.filter((r) => r.vsBaseline !== undefined) }));
  const H = 50 + panels.reduce((a, p) => a + 40 + p.rows.length * rowH + 30, 0);
  const values = panels.flatMap((p) =>
    p.rows.flatMap((r) => {
      const d = (r.vsBaseline as BaselineDifference).examples.targetAverage;
      return [d.diff, d.ciLow, d.ciHigh].filter(Number.isFinite);
    }),
  );
  let lo = Math.min(0, ...values);
  let hi = Math.max(0, ...values);
  const pad = (hi - lo) * 0.08 || 1;
  lo -= pad;
  hi += pad;
  const X = (v: number) => left + ((right - left) * (v - lo)) / (hi - lo);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(`${title}: target-average difference to the baseline (dev, 95% paired CI)`)}</text>`,
  ];
  let y = 50;
  for (const { t, rows } of panels) {
    const base = labels[t.rows[0]?.setting ?? ''] ?? t.rows[0]?.setting ?? '';
    parts.push(
      `<g data-task="${t.task}">`,
      `<text x="10" y="${y + 12}" font-weight="bold">${esc(`${t.task.toUpperCase()}: setting − ${base}`)}</text>`,
    );
    const top = y + 24;
    const bottom = top + rows.length * rowH;
    parts.push(
      `<line x1="${X(0).toFixed(1)}" y1="${top}" x2="${X(0).toFixed(1)}" y2="${bottom}" stroke="#999" stroke-dasharray="4,3"/>`,
      `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#333"/>`,
    );
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      parts.push(
        `<text x="${X(v).toFixed(1)}" y="${bottom + 14}" text-anchor="middle">${v.toFixed(1)}</text>`,
      );
    }
    rows.forEach((r, i) => {
      const d = (r.vsBaseline as BaselineDifference).examples.targetAverage;
      const cy = top + i * rowH + rowH / 2;
      const color = d.ciLow > 0 ? '#1b9e77' : d.ciHigh < 0 ? '#d95f02' : '#555';
      parts.push(
        `<g data-setting="${esc(r.setting)}">`,
        `<text x="${left - 8}" y="${cy + 4}" text-anchor="end">${esc(labels[r.setting] ?? r.setting)}</text>`,
      );
      if (Number.isFinite(d.ciLow))
        parts.push(
          `<line x1="${X(d.ciLow).toFixed(1)}" y1="${cy}" x2="${X(d.ciHigh).toFixed(1)}" y2="${cy}" stroke="${color}" stroke-width="2"/>`,
        );
      parts.push(
        `<circle cx="${X(d.diff).toFixed(1)}" cy="${cy}" r="4" fill="${color}"><title>${esc(`${r.setting}: ${signed(d.diff)} (95% CI ${ciText(d)})`)}</title></circle>`,
        '</g>',
      );
    });
    parts.push('</g>');
    y = bottom + 30 + 16;
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
