import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { normalizeConfig } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { randomWeights, weightShapes } from './random.js';
import { CompiledTrainStep } from './step.js';

const config = normalizeConfig({
  model_type: 'xlm-roberta',
  vocab_size: 40,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 24,
  num_labels: 3,
  max_position_embeddings: 20,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});
const head = 'token-classification';
const trainable = [...weightShapes(config, head).keys()].filter((n) => !n.includes('embeddings'));
const batch = {
  inputIds: [[0, 5, 6, 7, 2]],
  attentionMask: [[1, 1, 1, 1, 1]],
  labels: [[-100, 1, 2, 0, -100]],
};
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-session-cache-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('compiled step session cache', () => {
  const create = (seed: number, extra: { frozenAsInputs?: boolean } = { frozenAsInputs: true }) =>
    CompiledTrainStep.create({
      config,
      weights: randomWeights(config, head, seed),
      head,
      trainable,
      adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
      threads: 1,
      dropout: false,
      sessionCacheDir: dir,
      ...extra,
    });

  it('saves the optimised graph once (without weights) and loads it for the same setup, with other weights', async () => {
    const first = await create(1);
    expect(first.sessionFromCache).toBe(false);
    const files = readdirSync(dir).filter((f) => f.endsWith('.onnx'));
    expect(files).toHaveLength(1);
    // no weights in the file: the frozen word embeddings' bytes are not in it
    const saved = readFileSync(path.join(dir, files[0] as string));
    const emb = randomWeights(config, head, 1).get('roberta.embeddings.word_embeddings.weight').data;
    expect(saved.includes(Buffer.from(emb.buffer, emb.byteOffset, 64))).toBe(false);
    const again = await create(1);
    expect(again.sessionFromCache).toBe(true);
    expect((await again.run(batch, 1e-2)).loss).toBeCloseTo((await first.run(batch, 1e-2)).loss, 6);
    // other weights, the same graph: a hit, and the loss of those weights
    const other = await create(2);
    const fresh = await CompiledTrainStep.create({
      config,
      weights: randomWeights(config, head, 2),
      head,
      trainable,
      adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
      threads: 1,
      dropout: false,
    });
    expect(other.sessionFromCache).toBe(true);
    expect((await other.run(batch, 1e-2)).loss).toBeCloseTo((await fresh.run(batch, 1e-2)).loss, 5);
    await Promise.all([first, again, other, fresh].map((s) => s.release()));
  });

  it('refuses a cache without frozenAsInputs', async () => {
    await expect(create(1, {})).rejects.toThrow(/sessionCacheDir needs frozenAsInputs/);
  });
});
