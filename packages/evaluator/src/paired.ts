import { Rng, XltConfigError } from '@xlt/core';

/** A difference between two systems on the same examples, with a paired bootstrap 95% CI. */
export interface PairedDifference {
  /** Score of B minus score of A on the full sets. */
  diff: number;
  ciLow: number;
  ciHigh: number;
  /** Share of resamples where B's score is not above A's (a one-sided bootstrap p-value). */
  pNotBetter: number;
}

/** Per-language and target-average differences (B − A) of a paired bootstrap. */
export interface PairedReport {
  languages: Record<string, PairedDifference & { n: number }>;
  /** Average over the languages other than `source`. */
  targetAverage: PairedDifference;
  resamples: number;
}

/** Options of {@link pairedBootstrap}. */
export interface PairedBootstrapOptions<E> {
  /** The source language (left out of the target average). */
  source: string;
  /** The metric over a set of examples. */
  score: (examples: readonly E[]) => number;
  resamples?: number;
  seed?: number;
}

function percentile(sorted: readonly number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))));
  return sorted[i] as number;
}

function summarise(point: number, draws: number[]): PairedDifference {
  const sorted = [...draws].sort((x, y) => x - y);
  return {
    diff: point,
    ciLow: percentile(sorted, 0.025),
    ciHigh: percentile(sorted, 0.975),
    pNotBetter: draws.filter((d) => d <= 0).length / Math.max(1, draws.length),
  };
}

/**
 * Paired bootstrap of the difference between two systems (B − A) evaluated on the same examples:
 * each resample draws the same example indices (with replacement, per language) for both systems,
 * so the CI reflects the difference, not each system's own spread. The target average is resampled
 * jointly over all target languages. `a` and `b` hold per-example results in the same order.
 */
export function pairedBootstrap<E>(
  a: Record<string, readonly E[]>,
  b: Record<string, readonly E[]>,
  o: PairedBootstrapOptions<E>,
): PairedReport {
  const langs = Object.keys(a);
  for (const l of langs) {
    const n = a[l]?.length ?? 0;
    if (b[l] === undefined || b[l].length !== n)
      throw new XltConfigError(
        `paired bootstrap: language '${l}' has ${n} examples for A but ${b[l]?.length ?? 'none'} for B`,
        { field: l },
      );
    if (n === 0) throw new XltConfigError(`paired bootstrap: no examples for language '${l}'`, { field: l });
  }
  const targets = langs.filter((l) => l !== o.source);
  const B = o.resamples ?? 1000;
  const rng = new Rng(o.seed ?? 0).fork('paired');
  const point = Object.fromEntries(
    langs.map((l) => [l, o.score(b[l] as readonly E[]) - o.score(a[l] as readonly E[])]),
  );
  const draws: Record<string, number[]> = Object.fromEntries(langs.map((l) => [l, []]));
  const avgDraws: number[] = [];
  for (let r = 0; r < B; r++) {
    let sum = 0;
    for (const l of langs) {
      const xa = a[l] as readonly E[];
      const xb = b[l] as readonly E[];
      const sa: E[] = [];
      const sb: E[] = [];
      for (let k = 0; k < xa.length; k++) {
        const i = rng.int(xa.length);
        sa.push(xa[i] as E);
        sb.push(xb[i] as E);
      }
      const d = o.score(sb) - o.score(sa);
      (draws[l] as number[]).push(d);
      if (l !== o.source) sum += d;
    }
    avgDraws.push(targets.length > 0 ? sum / targets.length : Number.NaN);
  }
  const avgPoint =
    targets.length > 0 ? targets.reduce((s, l) => s + (point[l] as number), 0) / targets.length : Number.NaN;
  return {
    languages: Object.fromEntries(
      langs.map((l) => [
        l,
        { ...summarise(point[l] as number, draws[l] as number[]), n: (a[l] as E[]).length },
      ]),
    ),
    targetAverage: summarise(avgPoint, avgDraws),
    resamples: B,
  };
}

/** The mean of one value per seed (run) with a bootstrap 95% CI; NaN bounds for fewer than 2 seeds. */
export interface SeedMean {
  mean: number;
  ciLow: number;
  ciHigh: number;
  /** Number of seeds. */
  n: number;
}

/**
 * Bootstrap over seeds: the mean of `values` (one per seed, e.g. a loss, or a paired difference
 * B − A of two systems trained with the same seed) and the percentile 95% CI of the mean of `n`
 * values drawn with replacement. Non-finite values are an error naming their position.
 */
export function seedMean(values: readonly number[], o: { resamples?: number; seed?: number } = {}): SeedMean {
  values.forEach((v, i) => {
    if (!Number.isFinite(v))
      throw new XltConfigError(`seed mean: value ${i} is ${v}, expected a finite number`, {
        field: String(i),
      });
  });
  const n = values.length;
  const mean = n === 0 ? Number.NaN : values.reduce((a, v) => a + v, 0) / n;
  if (n < 2) return { mean, ciLow: Number.NaN, ciHigh: Number.NaN, n };
  const rng = new Rng(o.seed ?? 0).fork('seeds');
  const draws: number[] = [];
  for (let r = 0; r < (o.resamples ?? 1000); r++) {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += values[rng.int(n)] as number;
    draws.push(sum / n);
  }
  draws.sort((x, y) => x - y);
  return { mean, ciLow: percentile(draws, 0.025), ciHigh: percentile(draws, 0.975), n };
}
