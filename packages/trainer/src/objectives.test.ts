import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  batchTensors,
  collateLabelled,
  collateMlm,
  IGNORE_INDEX,
  type MlmExample,
  modelLoss,
} from './objectives.js';
import { TinyModel } from './test-model.js';

beforeAll(async () => {
  await initBackend();
});

const MLM = { maskTokenId: 99, vocabSize: 50, padTokenId: 1, specialIds: [0, 2] };

function examples(n: number, rng: Rng): MlmExample[] {
  return Array.from({ length: n }, (_, i) => {
    const len = 10 + (i % 7);
    const body = Array.from({ length: len - 2 }, () => 5 + rng.int(40));
    return { inputIds: [0, ...body, 2], wordIds: [null, ...body.map((_, k) => Math.floor(k / 2)), null] };
  });
}

describe('collateMlm', () => {
  it('selects ~15% of non-special tokens, 80% of them <mask>, ~10% random, and never specials or padding', () => {
    const exs = examples(2000, new Rng(1));
    const b = collateMlm(exs, MLM, new Rng(2));
    let candidates = 0;
    let selected = 0;
    let masked = 0;
    let kept = 0;
    b.inputIds.forEach((row, i) => {
      const orig = exs[i]?.inputIds as number[];
      const labels = (b.labels as number[][])[i] as number[];
      row.forEach((id, t) => {
        const o = orig[t];
        if (o === undefined) {
          expect(id).toBe(1); // padding
          expect(labels[t]).toBe(IGNORE_INDEX);
          expect(b.attentionMask[i]?.[t]).toBe(0);
          return;
        }
        if (o === 0 || o === 2) {
          expect(id).toBe(o);
          expect(labels[t]).toBe(IGNORE_INDEX);
          return;
        }
        candidates++;
        if (labels[t] === IGNORE_INDEX) {
          expect(id).toBe(o);
          return;
        }
        expect(labels[t]).toBe(o);
        selected++;
        if (id === 99) masked++;
        else if (id === o) kept++;
      });
    });
    // ~22,000 candidates: binomial std of the 15% rate is ~0.0024, of the 80% share ~0.0074
    expect(Math.abs(selected / candidates - 0.15)).toBeLessThan(0.01);
    expect(Math.abs(masked / selected - 0.8)).toBeLessThan(0.03);
    // kept = 10% unchanged + random draws that hit the original id (1/50 of 10%)
    expect(Math.abs(kept / selected - 0.102)).toBeLessThan(0.03);
  });

  it('is reproducible from the seed and differs for another seed', () => {
    const exs = examples(20, new Rng(3));
    expect(collateMlm(exs, MLM, new Rng(4))).toEqual(collateMlm(exs, MLM, new Rng(4)));
    expect(collateMlm(exs, MLM, new Rng(4)).labels).not.toEqual(collateMlm(exs, MLM, new Rng(5)).labels);
  });

  it('whole-word masking selects all sub-tokens of a word together', () => {
    const exs = examples(300, new Rng(6));
    const b = collateMlm(exs, { ...MLM, wholeWord: true }, new Rng(7));
    let words = 0;
    exs.forEach((ex, i) => {
      const labels = (b.labels as number[][])[i] as number[];
      const byWord = new Map<number, boolean[]>();
      ex.wordIds?.forEach((w, t) => {
        if (w === null) {
          expect(labels[t]).toBe(IGNORE_INDEX);
          return;
        }
        byWord.set(w, [...(byWord.get(w) ?? []), labels[t] !== IGNORE_INDEX]);
      });
      for (const sel of byWord.values()) {
        expect(new Set(sel).size).toBe(1);
        if (sel[0]) words++;
      }
    });
    expect(words).toBeGreaterThan(0);
    expect(() => collateMlm([{ inputIds: [0, 5, 2] }], { ...MLM, wholeWord: true }, new Rng(1))).toThrow(
      /wordIds/,
    );
  });
});

describe('labelled batches and model losses', () => {
  it('pads token labels with -100 and builds int32 tensors of the right shapes', () => {
    const b = collateLabelled(
      [
        { inputIds: [0, 5, 6, 2], tokenLabels: [-100, 3, 4, -100], langId: 1 },
        { inputIds: [0, 7, 2], tokenLabels: [-100, 2, -100], langId: 0 },
      ],
      1,
    );
    expect(b.inputIds[1]).toEqual([0, 7, 2, 1]);
    expect(b.labels).toEqual([
      [-100, 3, 4, -100],
      [-100, 2, -100, -100],
    ]);
    const t = tf.tidy(() => {
      const x = batchTensors(b);
      return [x.inputIds.shape, x.labels?.shape, x.labels?.dtype, x.langIds?.shape];
    });
    expect(t).toEqual([[2, 4], [2, 4], 'int32', [2]]);
    const qa = collateLabelled([{ inputIds: [0, 5, 2], start: 1, end: 1 }], 1);
    expect([qa.startPositions, qa.endPositions]).toEqual([[1], [1]]);
  });

  it("modelLoss returns the model's own loss plus extra losses, and refuses a batch without targets", () => {
    const m = new TinyModel(41);
    const b = collateLabelled(
      [
        { inputIds: [0, 5, 6, 2], label: 2, langId: 1 },
        { inputIds: [0, 7, 8, 2], label: 0, langId: 0 },
      ],
      1,
    );
    const ctx = { step: 0, micro: 0, rng: new Rng(0) };
    const own = tf.tidy(() => (m.forward(batchTensors(b)).loss as tf.Tensor).dataSync()[0] as number);
    const viaObjective = tf.tidy(() => modelLoss(m)(b, ctx).dataSync()[0] as number);
    const withExtra = tf.tidy(() => modelLoss(m, [() => tf.scalar(0.25)])(b, ctx).dataSync()[0] as number);
    expect(viaObjective).toBe(own);
    expect(withExtra).toBeCloseTo(own + 0.25, 6);
    expect(() => modelLoss(m)({ inputIds: b.inputIds, attentionMask: b.attentionMask }, ctx)).toThrow(
      /labels/,
    );
    m.dispose();
  });
});
