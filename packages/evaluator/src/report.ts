import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Rng, writeFileAtomic, XltConfigError } from '@xlt/core';

/** One language's row of a zero-shot report. */
export interface LanguageRow {
  lang: string;
  /** Score on the full set (a metric value, e.g. accuracy x 100). */
  score: number;
  /** Bootstrap 95% confidence interval (percentile method). */
  ciLow: number;
  ciHigh: number;
  n: number;
  isSource: boolean;
}

/** A per-language zero-shot report: rows, the source score, the target average and the transfer gap. */
export interface ZeroShotReport {
  metric: string;
  source: string;
  rows: LanguageRow[];
  sourceScore: number;
  targetAverage: number;
  /** Source score minus the target average. */
  transferGap: number;
  resamples: number;
}

export interface ReportOptions<E> {
  /** The language trained on. */
  source: string;
  /** Name of the metric, for the table and chart. */
  metric: string;
  /** The metric over a set of examples (e.g. accuracy of correct flags, or entity F1 of sentences). */
  score: (examples: readonly E[]) => number;
  /** Bootstrap resamples (default 1000). */
  resamples?: number;
  seed?: number;
}

/**
 * Builds a per-language report from per-example results: each language's score, a bootstrap 95%
 * confidence interval (resampling examples with replacement, percentile method, seeded), the source
 * score, the average over the target languages and the transfer gap.
 */
export function zeroShotReport<E>(
  examplesByLang: ReadonlyMap<string, readonly E[]> | Record<string, readonly E[]>,
  options: ReportOptions<E>,
): ZeroShotReport {
  const entries =
    examplesByLang instanceof Map ? [...examplesByLang.entries()] : Object.entries(examplesByLang);
  if (!entries.some(([l]) => l === options.source))
    throw new XltConfigError(`no results for the source language '${options.source}'`, { field: 'source' });
  const B = options.resamples ?? 1000;
  const rng = new Rng(options.seed ?? 0);
  const rows: LanguageRow[] = entries.map(([lang, exs]) => {
    if (exs.length === 0) throw new XltConfigError(`no examples for language '${lang}'`, { field: lang });
    const r = rng.fork(lang);
    const stats: number[] = [];
    for (let b = 0; b < B; b++)
      stats.push(options.score(Array.from({ length: exs.length }, () => exs[r.int(exs.length)] as E)));
    stats.sort((x, y) => x - y);
    const q = (p: number) => stats[Math.min(B - 1, Math.max(0, Math.floor(p * B)))] as number;
    return {
      lang,
      score: options.score(exs),
      ciLow: q(0.025),
      ciHigh: q(0.975),
      n: exs.length,
      isSource: lang === options.source,
    };
  });
  const sourceScore = (rows.find((r) => r.isSource) as LanguageRow).score;
  const targets = rows.filter((r) => !r.isSource);
  const targetAverage =
    targets.length === 0 ? Number.NaN : targets.reduce((a, r) => a + r.score, 0) / targets.length;
  return {
    metric: options.metric,
    source: options.source,
    rows,
    sourceScore,
    targetAverage,
    transferGap: sourceScore - targetAverage,
    resamples: B,
  };
}

const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');

/** The report as a Markdown table. */
export function reportMarkdown(r: ZeroShotReport): string {
  const lines = [
    `| language | ${r.metric} | 95% CI | n |`,
    '|---|---:|---:|---:|',
    ...r.rows.map(
      (x) =>
        `| ${x.lang}${x.isSource ? ' (source)' : ''} | ${f(x.score)} | ${f(x.ciLow)}–${f(x.ciHigh)} | ${x.n} |`,
    ),
    `| **target average** | ${f(r.targetAverage)} | | |`,
    `| **transfer gap** (source − target avg) | ${f(r.transferGap)} | | |`,
  ];
  return `${lines.join('\n')}\n`;
}

/** The report as CSV (one row per language, then the average and the gap). */
export function reportCsv(r: ZeroShotReport): string {
  const rows = r.rows.map((x) =>
    [x.lang, x.isSource ? 'source' : 'target', x.score, x.ciLow, x.ciHigh, x.n].join(','),
  );
  return `language,role,${r.metric},ci_low,ci_high,n\n${rows.join('\n')}\ntarget_average,,${r.targetAverage},,,\ntransfer_gap,,${r.transferGap},,,\n`;
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * A self-contained SVG bar chart: one bar per language with its 95% CI whisker, the source language
 * highlighted, and a dashed line at the target average.
 */
export function reportSvg(r: ZeroShotReport, title = `Zero-shot ${r.metric} per language`): string {
  const W = Math.max(360, 60 + r.rows.length * 44);
  const H = 300;
  const top = 40;
  const bottom = 250;
  const left = 50;
  const max = Math.max(100, ...r.rows.map((x) => x.ciHigh));
  const y = (v: number) => bottom - ((bottom - top) * Math.max(0, v)) / max;
  const bw = 28;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<line x1="${left}" y1="${bottom}" x2="${W - 10}" y2="${bottom}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`,
  ];
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    const v = t * max;
    parts.push(
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>`,
      `<line x1="${left}" y1="${y(v)}" x2="${W - 10}" y2="${y(v)}" stroke="#eee"/>`,
    );
  }
  r.rows.forEach((x, i) => {
    const cx = left + 22 + i * 44;
    parts.push(
      `<rect x="${cx - bw / 2}" y="${y(x.score)}" width="${bw}" height="${bottom - y(x.score)}" fill="${x.isSource ? '#d95f02' : '#1b9e77'}"><title>${esc(x.lang)}: ${f(x.score)} (95% CI ${f(x.ciLow)}–${f(x.ciHigh)}, n=${x.n})</title></rect>`,
      `<line x1="${cx}" y1="${y(x.ciLow)}" x2="${cx}" y2="${y(x.ciHigh)}" stroke="#222"/>`,
      `<line x1="${cx - 6}" y1="${y(x.ciLow)}" x2="${cx + 6}" y2="${y(x.ciLow)}" stroke="#222"/>`,
      `<line x1="${cx - 6}" y1="${y(x.ciHigh)}" x2="${cx + 6}" y2="${y(x.ciHigh)}" stroke="#222"/>`,
      `<text x="${cx}" y="${bottom + 14}" text-anchor="middle">${esc(x.lang)}</text>`,
      `<text x="${cx}" y="${y(x.ciHigh) - 4}" text-anchor="middle" font-size="9">${f(x.score)}</text>`,
    );
  });
  if (Number.isFinite(r.targetAverage)) {
    parts.push(
      `<line x1="${left}" y1="${y(r.targetAverage)}" x2="${W - 10}" y2="${y(r.targetAverage)}" stroke="#7570b3" stroke-dasharray="5,4"/>`,
      `<text x="${W - 12}" y="${y(r.targetAverage) - 4}" text-anchor="end" fill="#7570b3">target avg ${f(r.targetAverage)} · gap ${f(r.transferGap)}</text>`,
    );
  }
  parts.push(
    `<rect x="${left}" y="${H - 28}" width="10" height="10" fill="#d95f02"/><text x="${left + 14}" y="${H - 19}">source (${esc(r.source)})</text>`,
    `<rect x="${left + 120}" y="${H - 28}" width="10" height="10" fill="#1b9e77"/><text x="${left + 134}" y="${H - 19}">zero-shot targets</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}

/** A model x language heatmap of scores (rows: models, columns: languages), self-contained SVG. */
export function heatmapSvg(
  scores: Record<string, Record<string, number>>,
  languages: readonly string[],
  title = 'Scores',
): string {
  const models = Object.keys(scores);
  const cw = 52;
  const ch = 28;
  const left = 110;
  const top = 50;
  const W = left + cw * languages.length + 20;
  const H = top + ch * models.length + 20;
  const all = models
    .flatMap((m) => languages.map((l) => scores[m]?.[l] ?? Number.NaN))
    .filter(Number.isFinite);
  const lo = Math.min(...all);
  const hi = Math.max(...all);
  const color = (v: number) => {
    if (!Number.isFinite(v)) return '#ddd';
    const t = hi === lo ? 0.5 : (v - lo) / (hi - lo);
    return `rgb(${Math.round(247 - 200 * t)},${Math.round(251 - 120 * t)},${Math.round(255 - 80 * t)})`;
  };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    ...languages.map(
      (l, j) => `<text x="${left + j * cw + cw / 2}" y="${top - 8}" text-anchor="middle">${esc(l)}</text>`,
    ),
  ];
  models.forEach((m, i) => {
    parts.push(`<text x="${left - 8}" y="${top + i * ch + ch / 2 + 4}" text-anchor="end">${esc(m)}</text>`);
    languages.forEach((l, j) => {
      const v = scores[m]?.[l] ?? Number.NaN;
      parts.push(
        `<rect x="${left + j * cw}" y="${top + i * ch}" width="${cw - 2}" height="${ch - 2}" fill="${color(v)}"/>`,
        `<text x="${left + j * cw + cw / 2 - 1}" y="${top + i * ch + ch / 2 + 4}" text-anchor="middle">${f(v)}</text>`,
      );
    });
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** Writes `<base>.md`, `<base>.csv`, `<base>.json` and `<base>.svg` (atomically) and returns their paths. */
export function writeReport(
  r: ZeroShotReport,
  base: string,
): { md: string; csv: string; json: string; svg: string } {
  mkdirSync(path.dirname(base), { recursive: true });
  const out = { md: `${base}.md`, csv: `${base}.csv`, json: `${base}.json`, svg: `${base}.svg` };
  writeFileAtomic(out.md, reportMarkdown(r));
  writeFileAtomic(out.csv, reportCsv(r));
  writeFileAtomic(out.json, `${JSON.stringify(r, null, 2)}\n`);
  writeFileAtomic(out.svg, reportSvg(r));
  return out;
}

/** One line of {@link lineChartSvg}: points (x ascending), each with an optional 95% CI. */
export interface LineSeries {
  name: string;
  color: string;
  /** Dashed line (e.g. a second metric of the same system). */
  dashed?: boolean;
  points: ReadonlyArray<{ x: number; y: number; ciLow?: number; ciHigh?: number }>;
}

/**
 * A self-contained SVG line chart: one polyline per series (a `<g data-series="name">` with a
 * marker per point and its CI whisker where given), axes with ticks, a legend; x on a log2 scale
 * with `logX` (e.g. numbers of languages 1, 2, 4, 8).
 */
export function lineChartSvg(
  series: readonly LineSeries[],
  o: { title: string; xLabel: string; yLabel: string; logX?: boolean; yDigits?: number },
): string {
  const W = 680;
  const H = 340;
  const left = 60;
  // room for the legend: 46 px of line and gap, then about 6.5 px a character
  const right = W - 56 - Math.ceil(6.5 * Math.max(10, ...series.map((s) => s.name.length)));
  const top = 40;
  const bottom = H - 50;
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y));
  const xs = [...new Set(pts.map((p) => p.x))].sort((a, b) => a - b);
  const ys = pts.flatMap((p) => [p.y, p.ciLow ?? p.y, p.ciHigh ?? p.y]).filter(Number.isFinite);
  const tx = (v: number) => (o.logX ? Math.log2(Math.max(v, 1e-9)) : v);
  const x0 = tx(xs[0] ?? 0);
  const x1 = tx(xs[xs.length - 1] ?? 1);
  let y0 = ys.length > 0 ? Math.min(...ys) : 0;
  let y1 = ys.length > 0 ? Math.max(...ys) : 1;
  const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.05 || 1;
  y0 -= pad;
  y1 += pad;
  const X = (v: number) =>
    x1 === x0 ? (left + right) / 2 : left + ((right - left) * (tx(v) - x0)) / (x1 - x0);
  const Y = (v: number) => bottom - ((bottom - top) * (v - y0)) / (y1 - y0);
  const d = o.yDigits ?? 2;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(o.title)}</text>`,
    `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#333"/>`,
    `<text x="${(left + right) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="14" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(top + bottom) / 2})">${esc(o.yLabel)}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    parts.push(
      `<line x1="${left}" y1="${Y(v).toFixed(1)}" x2="${right}" y2="${Y(v).toFixed(1)}" stroke="#eee"/>`,
      `<text x="${left - 6}" y="${(Y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(d)}</text>`,
    );
  }
  for (const v of xs)
    parts.push(`<text x="${X(v).toFixed(1)}" y="${bottom + 16}" text-anchor="middle">${v}</text>`);
  series.forEach((s, i) => {
    const ok = s.points.filter((p) => Number.isFinite(p.y));
    const line = ok.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ');
    parts.push(
      `<g data-series="${esc(s.name)}">`,
      `<polyline points="${line}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6,4"' : ''}/>`,
    );
    for (const p of ok) {
      const cx = X(p.x).toFixed(1);
      const ci =
        p.ciLow !== undefined &&
        p.ciHigh !== undefined &&
        Number.isFinite(p.ciLow) &&
        Number.isFinite(p.ciHigh);
      if (ci)
        parts.push(
          `<line x1="${cx}" y1="${Y(p.ciLow as number).toFixed(1)}" x2="${cx}" y2="${Y(p.ciHigh as number).toFixed(1)}" stroke="${s.color}"/>`,
        );
      parts.push(
        `<circle cx="${cx}" cy="${Y(p.y).toFixed(1)}" r="3" fill="${s.color}"><title>${esc(s.name)} at ${p.x}: ${p.y.toFixed(d + 1)}${ci ? ` (95% CI ${(p.ciLow as number).toFixed(d + 1)}–${(p.ciHigh as number).toFixed(d + 1)})` : ''}</title></circle>`,
      );
    }
    const ly = top + 10 + i * 18;
    parts.push(
      `<line x1="${right + 14}" y1="${ly}" x2="${right + 40}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6,4"' : ''}/>`,
      `<text x="${right + 46}" y="${ly + 4}">${esc(s.name)}</text>`,
      '</g>',
    );
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
