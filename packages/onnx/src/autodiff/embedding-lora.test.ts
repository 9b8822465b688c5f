import { normalizeConfig } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { Weight, WeightSource } from '../export.js';
import { randomWeights } from '../random.js';
import { i64, maxAbsDiff, tinyBatch } from './parity-helpers.js';
import { buildTracedTrainGraph } from './train-graph.js';

const config = normalizeConfig({
  vocab_size: 20,
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 12,
  num_labels: 3,
  max_position_embeddings: 12,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});
const module = 'roberta.embeddings.word_embeddings';
const scaling = 2;
const r = 2;

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 0.6;
  });
}

/** The base model plus PEFT embedding-LoRA weights (A [r, V], B [H, r], both non-zero). */
function withEmbeddingLora(): WeightSource & { A: Weight; B: Weight } {
  const base = randomWeights(config, 'token-classification', 3, 0.3);
  const A = { data: rand(r * config.vocab_size, 5), shape: [r, config.vocab_size] };
  const B = { data: rand(config.hidden_size * r, 6), shape: [config.hidden_size, r] };
  const extra = new Map([
    [`${module}.lora_embedding_A`, A],
    [`${module}.lora_embedding_B`, B],
  ]);
  return { A, B, has: (n) => extra.has(n) || base.has(n), get: (n) => extra.get(n) ?? base.get(n) };
}

const batch = tinyBatch();
const labels = i64(
  [
    [-100, 0, 2, 1, 1, -100],
    [-100, 2, 0, -100, -100, -100],
  ],
  [2, 6],
);

describe('traced embedding LoRA (PEFT lora_embedding_A / lora_embedding_B)', () => {
  it('live LoRA gives the logits of the merged table E + scaling (B A)^T within 1e-5', async () => {
    const w = withEmbeddingLora();
    const [V, H] = [config.vocab_size, config.hidden_size];
    const E = w.get(`${module}.weight`).data;
    const merged = Float32Array.from(E);
    for (let v = 0; v < V; v++)
      for (let h = 0; h < H; h++) {
        let dot = 0;
        for (let k = 0; k < r; k++) dot += (w.B.data[h * r + k] as number) * (w.A.data[k * V + v] as number);
        merged[v * H + h] = (merged[v * H + h] as number) + scaling * dot;
      }
    const mergedSource: WeightSource = {
      has: (n) => w.has(n) && !n.includes('lora_embedding'),
      get: (n) => (n === `${module}.weight` ? { data: merged, shape: [V, H] } : w.get(n)),
    };
    const logits = async (weights: WeightSource, lora?: Map<string, number>) => {
      const { model } = buildTracedTrainGraph({
        config,
        weights,
        head: 'token-classification',
        trainable: [],
        mode: 'logits',
        batchSize: 2,
        sequenceLength: 6,
        ...(lora !== undefined ? { lora } : {}),
      });
      const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
      const out = await s.run(batch);
      await s.release();
      return out.logits?.data as Float32Array;
    };
    const live = await logits(w, new Map([[module, scaling]]));
    const plain = await logits(mergedSource);
    expect(maxAbsDiff(live, plain)).toBeLessThan(1e-5);
    // and the LoRA term matters
    expect(maxAbsDiff(live, await logits(w))).toBeGreaterThan(1e-3);
  });

  it('gradients of A and B agree with finite differences (float32, the largest entries)', async () => {
    const w = withEmbeddingLora();
    const trainable = [`${module}.lora_embedding_A`, `${module}.lora_embedding_B`];
    const { model, signature } = buildTracedTrainGraph({
      config,
      weights: w,
      head: 'token-classification',
      trainable,
      mode: 'grads',
      batchSize: 2,
      sequenceLength: 6,
      lora: new Map([[module, scaling]]),
    });
    const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
    const values = new Map(trainable.map((n) => [n, Float32Array.from(w.get(n).data)]));
    const run = (override?: { name: string; i: number; delta: number }) => {
      const feeds: Record<string, ort.Tensor> = { ...batch, labels };
      for (const q of signature.params) {
        const data = Float32Array.from(values.get(q.name) as Float32Array);
        if (override?.name === q.name) data[override.i] = (data[override.i] as number) + override.delta;
        feeds[q.input] = new ort.Tensor('float32', data, q.shape);
      }
      return session.run(feeds);
    };
    const out = await run();
    const eps = 1e-2;
    for (const q of signature.params) {
      const g = out[q.grad as string]?.data as Float32Array;
      const top = Array.from(g.keys())
        .sort((a, b) => Math.abs(g[b] as number) - Math.abs(g[a] as number))
        .slice(0, 4);
      expect(Math.abs(g[top[0] as number] as number), q.name).toBeGreaterThan(1e-3);
      for (const i of top) {
        const lp = (await run({ name: q.name, i, delta: eps })).loss?.data[0] as number;
        const lm = (await run({ name: q.name, i, delta: -eps })).loss?.data[0] as number;
        const fd = (lp - lm) / (2 * eps);
        const an = g[i] as number;
        expect(
          Math.abs(fd - an) / Math.max(Math.abs(fd), Math.abs(an), 1e-2),
          `${q.name}[${i}]`,
        ).toBeLessThan(2e-2);
      }
    }
    await session.release();
  });
});
