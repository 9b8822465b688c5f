import { Rng } from '@xlt/core';
import { pairedBootstrap } from '@xlt/evaluator';
import type { DemoResult } from './run.js';

const pct = (x: number) => (100 * x).toFixed(1);
const accuracy = (xs: readonly boolean[]) => (100 * xs.filter(Boolean).length) / Math.max(1, xs.length);

/** Target-average accuracy with a 95% bootstrap CI (examples resampled per language, seeded). */
export function targetAverageCi(
  correct: Record<string, boolean[]>,
  targets: readonly string[],
  resamples = 1000,
  seed = 0,
): { mean: number; low: number; high: number } {
  const rng = new Rng(seed).fork('demo-ci');
  const mean = targets.reduce((a, l) => a + accuracy(correct[l] ?? []), 0) / targets.length;
  const draws: number[] = [];
  for (let r = 0; r < resamples; r++) {
    let sum = 0;
    for (const l of targets) {
      const xs = correct[l] ?? [];
      let k = 0;
      for (let i = 0; i < xs.length; i++) if (xs[rng.int(xs.length)]) k++;
      sum += (100 * k) / Math.max(1, xs.length);
    }
    draws.push(sum / targets.length);
  }
  draws.sort((a, b) => a - b);
  return {
    mean,
    low: draws[Math.round(0.025 * (resamples - 1))] as number,
    high: draws[Math.round(0.975 * (resamples - 1))] as number,
  };
}

/**
 * The demo's per-language table (Markdown): accuracy per language, the target average with its 95%
 * bootstrap CI, the transfer gap, and the paired-bootstrap difference X-Mod − shared.
 */
export function demoReport(r: DemoResult): string {
  const langs = r.benchmark.languages.map((l) => l.code);
  const src = r.benchmark.source;
  const targets = langs.filter((l) => l !== src);
  const head = `| model | ${langs.map((l) => (l === src ? `${l} (source)` : l)).join(' | ')} | target avg (95% CI) | transfer gap |`;
  const sep = `|---|${langs.map(() => '---:').join('|')}|---:|---:|`;
  const rows = r.results.map((m) => {
    const ci = targetAverageCi(m.correct, targets);
    return `| ${m.model} | ${langs.map((l) => pct(m.accuracy[l] ?? 0)).join(' | ')} | ${ci.mean.toFixed(1)} (${ci.low.toFixed(1)}–${ci.high.toFixed(1)}) | ${(100 * (m.accuracy[src] ?? 0) - ci.mean).toFixed(1)} |`;
  });
  const lines = [
    `Zero-shot accuracy (%) on the synthetic benchmark, ${r.benchmark.labels.length} classes (chance ${pct(1 / r.benchmark.labels.length)})`,
    '',
    head,
    sep,
    ...rows,
    '',
  ];
  const shared = r.results.find((m) => m.model === 'shared');
  const xmod = r.results.find((m) => m.model === 'xmod');
  if (shared !== undefined && xmod !== undefined) {
    const num = (c: Record<string, boolean[]>) =>
      Object.fromEntries(Object.entries(c).map(([l, xs]) => [l, xs.map((x) => (x ? 1 : 0))]));
    const p = pairedBootstrap(num(shared.correct), num(xmod.correct), {
      source: src,
      score: (xs: readonly number[]) => (100 * xs.reduce((a, x) => a + x, 0)) / Math.max(1, xs.length),
      resamples: 1000,
    });
    lines.push(
      `X-Mod − shared, target average: ${p.targetAverage.diff.toFixed(1)} points (paired bootstrap 95% CI ${p.targetAverage.ciLow.toFixed(1)} to ${p.targetAverage.ciHigh.toFixed(1)})`,
      '',
    );
  }
  return lines.join('\n');
}
