import type { Rng } from '@xlt/core';

/**
 * BERT-style masking for masked-LM training: each non-special token is chosen with probability
 * `prob`; chosen tokens become `<mask>` 80% of the time, a random token 10%, and stay 10%. Labels are
 * the original ids at chosen positions and -100 elsewhere. At least one token per row is chosen.
 */
export function maskForMlm(
  rows: number[][],
  rng: Rng,
  options: { maskId: number; vocabSize: number; specialIds: ReadonlySet<number>; prob?: number },
): { inputIds: number[][]; labels: number[][] } {
  const prob = options.prob ?? 0.15;
  const inputIds: number[][] = [];
  const labels: number[][] = [];
  for (const row of rows) {
    const inp = [...row];
    const lab = row.map(() => -100);
    const eligible = row.map((_, i) => i).filter((i) => !options.specialIds.has(row[i] as number));
    let chosen = eligible.filter(() => rng.bernoulli(prob));
    if (chosen.length === 0 && eligible.length > 0) chosen = [eligible[rng.int(eligible.length)] as number];
    for (const i of chosen) {
      lab[i] = row[i] as number;
      const u = rng.next();
      if (u < 0.8) inp[i] = options.maskId;
      else if (u < 0.9) {
        let r = rng.int(options.vocabSize);
        while (options.specialIds.has(r)) r = rng.int(options.vocabSize);
        inp[i] = r;
      }
    }
    inputIds.push(inp);
    labels.push(lab);
  }
  return { inputIds, labels };
}

/** Pads rows with `padId` to the longest; returns ids and the attention mask. */
export function pad(rows: number[][], padId: number): { inputIds: number[][]; attentionMask: number[][] } {
  const S = Math.max(...rows.map((r) => r.length));
  return {
    inputIds: rows.map((r) => [...r, ...new Array<number>(S - r.length).fill(padId)]),
    attentionMask: rows.map((r) => [
      ...new Array<number>(r.length).fill(1),
      ...new Array<number>(S - r.length).fill(0),
    ]),
  };
}
