import { XltConfigError } from '@xlt/core';

function check<T>(gold: readonly T[], pred: readonly T[]): void {
  if (gold.length !== pred.length)
    throw new XltConfigError(`${gold.length} gold labels but ${pred.length} predictions`, { field: 'pred' });
}

/** Fraction of predictions equal to the gold label (XNLI, PAWS-X; UPOS over tokens). */
export function accuracy<T>(gold: readonly T[], pred: readonly T[]): number {
  check(gold, pred);
  if (gold.length === 0) return 0;
  let n = 0;
  gold.forEach((g, i) => {
    if (g === pred[i]) n++;
  });
  return n / gold.length;
}

/**
 * Macro-averaged F1 as scikit-learn's `f1_score(average='macro')`: the unweighted mean of the
 * per-label F1 over every label that occurs in gold or predictions (a label's F1 is 0 when its
 * precision and recall are both 0 or undefined).
 */
export function macroF1<T>(gold: readonly T[], pred: readonly T[]): number {
  check(gold, pred);
  const labels = [...new Set([...gold, ...pred])];
  if (labels.length === 0) return 0;
  let sum = 0;
  for (const l of labels) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    gold.forEach((g, i) => {
      const p = pred[i];
      if (p === l && g === l) tp++;
      else if (p === l) fp++;
      else if (g === l) fn++;
    });
    sum += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return sum / labels.length;
}

/** UPOS accuracy over all tokens of all sentences. */
export function tokenAccuracy(
  gold: readonly (readonly string[])[],
  pred: readonly (readonly string[])[],
): number {
  check(gold, pred);
  gold.forEach((g, i) => {
    check(g, pred[i] as readonly string[]);
  });
  return accuracy(gold.flat(), pred.flat());
}
