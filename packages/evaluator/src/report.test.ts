import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { heatmapSvg, lineChartSvg, reportMarkdown, writeReport, zeroShotReport } from './report.js';

const XNLI = ['ar', 'bg', 'de', 'el', 'en', 'es', 'fr', 'hi', 'ru', 'sw', 'th', 'tr', 'ur', 'vi', 'zh'];
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-report-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('per-language zero-shot report', () => {
  // toy predictions: en has 85 of 100 correct; target language i has 50 + 2i of 100 correct
  const data: Record<string, boolean[]> = {};
  XNLI.forEach((l, i) => {
    const k = l === 'en' ? 85 : 50 + 2 * i;
    data[l] = Array.from({ length: 100 }, (_, j) => j < k);
  });
  const acc = (xs: readonly boolean[]) => (100 * xs.filter(Boolean).length) / xs.length;
  const r = zeroShotReport(data, { source: 'en', metric: 'accuracy', score: acc, resamples: 400, seed: 1 });

  it('gives the source score, the target average and the transfer gap', () => {
    expect(r.rows).toHaveLength(15);
    expect(r.sourceScore).toBe(85);
    // targets: 50 + 2i for i in 0..14 except i = 4 (en): sum = 14*50 + 2*(105 - 4) = 902
    expect(r.targetAverage).toBeCloseTo(902 / 14, 10);
    expect(r.transferGap).toBeCloseTo(85 - 902 / 14, 10);
  });

  it('puts each score inside its bootstrap 95% interval, about 2 x 1.96 x sqrt(p(1-p)/n) wide', () => {
    for (const row of r.rows) {
      expect(row.ciLow).toBeLessThanOrEqual(row.score);
      expect(row.ciHigh).toBeGreaterThanOrEqual(row.score);
      const p = row.score / 100;
      const width = (row.ciHigh - row.ciLow) / 100;
      expect(width).toBeGreaterThan(0.6 * 3.92 * Math.sqrt((p * (1 - p)) / 100));
      expect(width).toBeLessThan(1.4 * 3.92 * Math.sqrt((p * (1 - p)) / 100));
    }
    // seeded: the same report twice
    expect(
      zeroShotReport(data, { source: 'en', metric: 'accuracy', score: acc, resamples: 400, seed: 1 }),
    ).toEqual(r);
  });

  it('writes Markdown, CSV, JSON and a self-contained SVG chart with one bar per language', () => {
    const out = writeReport(r, path.join(dir, 'xnli'));
    const md = readFileSync(out.md, 'utf8');
    expect(md).toContain('| en (source) | 85.0 |');
    expect(md).toMatch(/\| \*\*transfer gap\*\* \(source − target avg\) \| 20\.6 \|/);
    expect(readFileSync(out.csv, 'utf8').split('\n')[1]).toBe(
      `ar,target,50,${r.rows[0]?.ciLow},${r.rows[0]?.ciHigh},100`,
    );
    expect(JSON.parse(readFileSync(out.json, 'utf8')).sourceScore).toBe(85);
    const svg = readFileSync(out.svg, 'utf8');
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect((svg.match(/<rect x="[\d.]+" y="[\d.]+" width="28"/g) ?? []).length).toBe(15);
    expect(svg).toContain('fill="#d95f02"'); // the source bar
    expect(svg).not.toMatch(/href=|<script/); // nothing external
    expect(reportMarkdown(r).split('\n').length).toBe(2 + 15 + 2 + 1);
  });

  it('draws a model x language heatmap and refuses a report without the source language', () => {
    const svg = heatmapSvg({ shared: { en: 80, de: 60 }, xmod: { en: 82, de: 70 } }, ['en', 'de'], 'XNLI');
    expect((svg.match(/<rect x=/g) ?? []).length).toBe(4);
    expect(svg).toContain('>70.0<');
    expect(() => zeroShotReport({ de: [true] }, { source: 'en', metric: 'accuracy', score: acc })).toThrow(
      /source language 'en'/,
    );
  });
});

describe('lineChartSvg', () => {
  it('draws one group per series with a point and CI whisker per x, on a log2 x axis', () => {
    const svg = lineChartSvg(
      [
        {
          name: 'shared: en',
          color: '#1b9e77',
          points: [1, 2, 4].map((x) => ({ x, y: 5 + x / 4, ciLow: 4.9 + x / 4, ciHigh: 5.1 + x / 4 })),
        },
        {
          name: 'xmod & co: en',
          color: '#d95f02',
          dashed: true,
          points: [1, 2, 4].map((x) => ({ x, y: 5 })),
        },
      ],
      { title: 'loss', xLabel: 'languages', yLabel: 'nats', logX: true },
    );
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('<g data-series="shared: en">');
    expect(svg).toContain('<g data-series="xmod &amp; co: en">');
    expect((svg.match(/<circle /g) ?? []).length).toBe(6);
    expect(svg).toContain('stroke-dasharray="6,4"');
    // x = 1, 2, 4 equally spaced on the log2 scale
    const xs = [...svg.matchAll(/<circle cx="([\d.]+)"/g)].slice(0, 3).map((m) => Number(m[1]));
    expect((xs[1] as number) - (xs[0] as number)).toBeCloseTo((xs[2] as number) - (xs[1] as number), 0);
    expect(svg).not.toMatch(/NaN|href=|<script/);
  });
});
