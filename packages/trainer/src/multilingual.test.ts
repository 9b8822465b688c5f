import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng } from '@xlt/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MultilingualBatchOptions, multilingualMlmBatches } from './multilingual.js';
import { IGNORE_INDEX, modelLoss, type TokenBatch } from './objectives.js';
import { fit } from './run.js';
import { seededXmod, tinyXmodConfig } from './test-xmod.js';

const tmp = mkdtempSync(join(tmpdir(), 'xlt-trainer-ml-'));
beforeAll(async () => {
  await initBackend({ backend: 'cpu', log: false });
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const LANGS = ['en_XX', 'de_DE', 'ru_RU'];
const MLM = { maskTokenId: 3, vocabSize: 40, padTokenId: 1, specialIds: [0, 2] };

/** Sentence i of language k: <s> (10 + k) (4 + i % 6) ... </s>, 3 to 8 tokens; lengths vary. */
function corpus(k: number, n: number): number[][] {
  return Array.from({ length: n }, (_, i) => [
    0,
    10 + k,
    ...Array.from({ length: 1 + (i % 6) }, (_, j) => 4 + ((i + j) % 6) + 10 * (k + 1)),
    2,
  ]);
}

function options(over: Partial<MultilingualBatchOptions> = {}): MultilingualBatchOptions {
  return {
    corpora: { en_XX: corpus(0, 400), de_DE: corpus(1, 100), ru_RU: corpus(2, 25) },
    batchSize: 8,
    mlm: MLM,
    alpha: 0.5,
    seed: 7,
    languages: LANGS,
    ...over,
  };
}

/** Fraction of draws per language over `batches` batches (per example, or per batch). */
function fractions(b: ReturnType<typeof multilingualMlmBatches>, batches: number, perBatch: boolean) {
  const count: Record<string, number> = {};
  let total = 0;
  for (let i = 0; i < batches; i++) {
    const items = b.plan(i);
    const langs = perBatch ? [(items[0] as { lang: string }).lang] : items.map((x) => x.lang);
    for (const l of langs) count[l] = (count[l] ?? 0) + 1;
    total += langs.length;
  }
  return Object.fromEntries(Object.entries(count).map(([l, c]) => [l, c / total]));
}

describe('multilingualMlmBatches', () => {
  it('draws languages with probability ∝ n_l^alpha (alpha 0.5, 0 and 1) within 0.02', () => {
    for (const alpha of [0.5, 0, 1]) {
      const b = multilingualMlmBatches(options({ alpha }));
      const w = { en_XX: 400 ** alpha, de_DE: 100 ** alpha, ru_RU: 25 ** alpha };
      const z = w.en_XX + w.de_DE + w.ru_RU;
      for (const [l, p] of Object.entries(b.probabilities))
        expect(p, `${l} alpha ${alpha}`).toBeCloseTo(w[l as keyof typeof w] / z, 12);
      const got = fractions(b, 1000, false); // 8000 examples
      for (const l of LANGS)
        expect(Math.abs((got[l] ?? 0) - (b.probabilities[l] as number)), `${l} alpha ${alpha}`).toBeLessThan(
          0.02,
        );
    }
  });

  it('gives the same batch for the same (seed, index), in any order of asking and across instances', () => {
    const rngOf = (i: number) => new Rng(1000 + i);
    const a = multilingualMlmBatches(options());
    const seq = Array.from({ length: 120 }, (_, i) => a.data({ index: i, rng: rngOf(i) }));
    // a fresh instance (a resumed run) starting at 97, then going back to 3 (replay from the seed)
    const b = multilingualMlmBatches(options());
    expect(b.data({ index: 97, rng: rngOf(97) })).toEqual(seq[97]);
    expect(b.data({ index: 3, rng: rngOf(3) })).toEqual(seq[3]);
    expect(b.data({ index: 119, rng: rngOf(119) })).toEqual(seq[119]);
    expect(a.data({ index: 5, rng: rngOf(5) })).toEqual(seq[5]);
    // another seed draws other sentences
    const c = multilingualMlmBatches(options({ seed: 8 }));
    expect(c.plan(0)).not.toEqual(a.plan(0));
    // every batch is an MLM batch with X-Mod langIds matching the sentences' language tokens
    for (const batch of seq.slice(0, 20)) {
      expect(batch.inputIds.length).toBe(8);
      const langIds = batch.langIds as number[];
      const labels = batch.labels as number[][];
      batch.inputIds.forEach((row, r) => {
        const original = row.map((t, j) =>
          (labels[r] as number[])[j] !== IGNORE_INDEX ? labels[r]?.[j] : t,
        );
        // token 1 is the language marker 10 + k unless masked (labels keep the original)
        expect(original[1]).toBe(10 + (langIds[r] as number));
      });
    }
  });

  it("groups by language: 'sort' keeps the drawn examples in language order, 'single' one language a batch", () => {
    const none = multilingualMlmBatches(options());
    const sorted = multilingualMlmBatches(options({ groupByLanguage: 'sort' }));
    let mixed = 0;
    for (let i = 0; i < 50; i++) {
      const n = none.plan(i);
      const s = sorted.plan(i);
      const key = (x: { lang: string; index: number }) => `${x.lang}:${x.index}`;
      expect(s.map(key).sort()).toEqual(n.map(key).sort());
      const ids = s.map((x) => sorted.languageIds[x.lang] as number);
      expect(ids).toEqual([...ids].sort((p, q) => p - q));
      if (new Set(ids).size > 1) mixed++;
    }
    expect(mixed).toBeGreaterThan(25);

    const single = multilingualMlmBatches(options({ groupByLanguage: 'single' }));
    for (let i = 0; i < 200; i++) {
      const batch = single.data({ index: i, rng: new Rng(i) });
      expect(new Set(batch.langIds).size).toBe(1);
    }
    // per batch, languages still follow n_l^alpha
    const got = fractions(single, 2000, true);
    for (const l of LANGS)
      expect(Math.abs((got[l] ?? 0) - (single.probabilities[l] as number)), l).toBeLessThan(0.04);
    // each language's sentences are visited once per epoch: the first 25 ru_RU draws are 0..24
    const ru: number[] = [];
    for (let i = 0; ru.length < 25; i++) {
      const items = single.plan(i);
      if (items[0]?.lang === 'ru_RU') ru.push(...items.map((x) => x.index));
    }
    expect(ru.slice(0, 25).sort((p, q) => p - q)).toEqual(Array.from({ length: 25 }, (_, i) => i));
  });

  it('truncates to maxLength keeping the final </s>, and rejects bad options', () => {
    const b = multilingualMlmBatches(options({ maxLength: 4, mlm: { ...MLM, probability: 1e-9 } }));
    const batch = b.data({ index: 0, rng: new Rng(0) });
    for (const [r, row] of batch.inputIds.entries()) {
      const n = (batch.attentionMask[r] as number[]).reduce((s, v) => s + v, 0);
      expect(n).toBeLessThanOrEqual(4);
      expect(row[n - 1]).toBe(2);
    }
    expect(() => multilingualMlmBatches(options({ batchSize: 0 }))).toThrow(/batchSize/);
    expect(() => multilingualMlmBatches(options({ languages: ['en_XX', 'de_DE'] }))).toThrow(/ru_RU/);
    expect(() => multilingualMlmBatches(options({ corpora: { en_XX: [] } }))).toThrow(/empty/);
    expect(() => multilingualMlmBatches(options({ groupByLanguage: 'mixed' as unknown as 'none' }))).toThrow(
      /groupByLanguage/,
    );
  });
});

describe('fit on multilingual batches with a tiny X-Mod', () => {
  // engine 'tfjs': these tests are about tfjs (tensor bookkeeping), not the compiled onnxruntime step
  const base = { lr: 5e-3, totalSteps: 8, weightDecay: 0.01, seed: 3, engine: 'tfjs' as const };

  it('resumes to exactly the losses of an uninterrupted run', async () => {
    const m0 = seededXmod(tinyXmodConfig(), 1);
    const full = await fit<TokenBatch>(m0, modelLoss(m0), {
      ...base,
      data: multilingualMlmBatches(options({ groupByLanguage: 'sort' })).data,
    });
    m0.dispose();
    const runDir = join(tmp, 'resume');
    const m1 = seededXmod(tinyXmodConfig(), 1);
    await expect(
      fit<TokenBatch>(m1, modelLoss(m1), {
        ...base,
        data: multilingualMlmBatches(options({ groupByLanguage: 'sort' })).data,
        runDir,
        checkpointEvery: 5,
        callbacks: {
          onCheckpoint: () => {
            throw new Error('interrupted');
          },
        },
      }),
    ).rejects.toThrow('interrupted');
    m1.dispose();
    const m2 = seededXmod(tinyXmodConfig(), 2);
    const resumed = await fit<TokenBatch>(m2, modelLoss(m2), {
      ...base,
      data: multilingualMlmBatches(options({ groupByLanguage: 'sort' })).data, // a new process
      runDir,
      resume: true,
    });
    m2.dispose();
    expect(resumed.resumedFrom).toBe(5);
    expect(resumed.losses).toEqual(full.losses.slice(5));
  });

  it('keeps tf.memory().numTensors flat across 100 fit steps', async () => {
    const model = seededXmod(tinyXmodConfig(), 4);
    const counts: number[] = [];
    const before = tf.memory().numTensors;
    const summary = await fit<TokenBatch>(model, modelLoss(model), {
      ...base,
      totalSteps: 100,
      gradAccumulation: 2,
      data: multilingualMlmBatches(options({ groupByLanguage: 'none' })).data,
      callbacks: { onStep: () => counts.push(tf.memory().numTensors) },
    });
    expect(summary.steps).toBe(100);
    expect(counts.length).toBe(100);
    // after the first step (which creates the AdamW moments) the count never changes
    expect(new Set(counts.slice(1)).size).toBe(1);
    expect(counts[99]).toBe(counts[0]);
    // fit disposes its optimiser: back to the model's own tensors
    expect(tf.memory().numTensors).toBe(before);
    expect(summary.losses.slice(-10).reduce((s, v) => s + v, 0)).toBeLessThan(
      summary.losses.slice(0, 10).reduce((s, v) => s + v, 0),
    );
    model.dispose();
  });
});
