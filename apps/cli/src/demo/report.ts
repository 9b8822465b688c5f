import type { DemoResult } from './run.js';

const pct = (x: number) => (100 * x).toFixed(1);

/** The demo's per-language table (Markdown): accuracy per language, target average and transfer gap. */
export function demoReport(r: DemoResult): string {
  const langs = r.benchmark.languages.map((l) => l.code);
  const src = r.benchmark.source;
  const targets = langs.filter((l) => l !== src);
  const head = `| model | ${langs.map((l) => (l === src ? `${l} (source)` : l)).join(' | ')} | target avg | transfer gap |`;
  const sep = `|---|${langs.map(() => '---:').join('|')}|---:|---:|`;
  const rows = r.results.map((m) => {
    const avg = targets.reduce((a, l) => a + (m.accuracy[l] ?? 0), 0) / targets.length;
    return `| ${m.model} | ${langs.map((l) => pct(m.accuracy[l] ?? 0)).join(' | ')} | ${pct(avg)} | ${pct((m.accuracy[src] ?? 0) - avg)} |`;
  });
  return [
    `Zero-shot accuracy (%) on the synthetic benchmark, ${r.benchmark.labels.length} classes (chance ${pct(1 / r.benchmark.labels.length)})`,
    '',
    head,
    sep,
    ...rows,
    '',
  ].join('\n');
}
