import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend, readSafetensors, writeSafetensors } from '@xlt/core';
import { XmodForMaskedLM } from '@xlt/xmod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareModels, compareWeights } from './bit-identity.js';
import { seededInit } from './common.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-bit-identity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = path.join(dir, 'base');
const added = path.join(dir, 'added');

/** Copies a model folder's weights with `tensor`'s element `at` (default 0) shifted by `delta`. */
async function perturbed(from: string, to: string, tensor: string, delta: number, at = 0): Promise<void> {
  const model = await XmodForMaskedLM.fromPretrained(from);
  await model.savePretrained(to);
  model.dispose();
  const file = path.join(to, 'model.safetensors');
  const { tensors } = await readSafetensors(file);
  const t = tensors.get(tensor);
  if (t === undefined) throw new Error(`no tensor ${tensor}`);
  (t.data as Float32Array)[at] = ((t.data as Float32Array)[at] as number) + delta;
  await writeSafetensors(file, tensors);
}

// blocks of token ids per language (3 blocks of 12 tokens, one shorter)
const blocks = new Map([
  [
    'en',
    [
      [0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 2],
      [0, 15, 16, 17, 18, 2],
      [0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 2],
    ],
  ],
  [
    'de',
    [
      [0, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 2],
      [0, 9, 8, 7, 2],
    ],
  ],
]);

beforeAll(async () => {
  await initBackend({ backend: 'cpu', log: false });
  const m = new XmodForMaskedLM({
    model_type: 'xmod',
    vocab_size: 24,
    hidden_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 40,
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    pad_token_id: 1,
    languages: ['en', 'de'],
    default_language: 'en',
    initializer_range: 0.5,
  });
  seededInit(m, 'all', 3);
  m.eval();
  await m.savePretrained(base);
  m.addLanguage('ko', { initFrom: 'en' });
  await m.savePretrained(added);
  m.dispose();
});

describe('bit-identity check of a language added post hoc', () => {
  it('finds every base tensor and every output of the base languages byte-identical after adding a module', async () => {
    const r = await compareModels(base, added, blocks, { batchSize: 2 });
    expect(r.identical).toBe(true);
    expect(r.weights.compared).toBeGreaterThan(10);
    expect(r.weights.identical).toBe(r.weights.compared);
    expect(r.weights.missing).toEqual([]);
    // the new module's tensors, in every layer
    expect(r.weights.added.length).toBeGreaterThan(0);
    expect(r.weights.added.every((n) => n.includes('ko'))).toBe(true);
    for (const l of ['en', 'de']) {
      const o = r.languages[l];
      expect(o?.identical).toBe(true);
      // logits (24 per token) and the hidden states of the embeddings and both layers
      expect(o?.outputs.length).toBeGreaterThanOrEqual(2);
      expect(o?.values).toBeGreaterThan(blocks.get(l)?.flat().length ?? 0);
      expect(o?.maxAbsDiff).toBe(0);
      expect(o?.differing).toEqual([]);
      expect(o?.sha256[0]).toBe(o?.sha256[1]);
      expect(o?.sha256[0]).toMatch(/^[0-9a-f]{64}$/);
    }
  }, 60_000);

  it('a changed shared weight fails the check: the tensor is named and the outputs differ', async () => {
    const changed = path.join(dir, 'changed');
    const name = (await readSafetensors(path.join(added, 'model.safetensors'))).tensors.has(
      'roberta.encoder.layer.0.attention.self.query.weight',
    )
      ? 'roberta.encoder.layer.0.attention.self.query.weight'
      : '';
    expect(name).not.toBe('');
    await perturbed(added, changed, name, 1e-3);
    const w = compareWeights(base, changed);
    expect(w.differing).toEqual([name]);
    const r = await compareModels(base, changed, blocks, { batchSize: 2 });
    expect(r.identical).toBe(false);
    for (const l of ['en', 'de']) {
      expect(r.languages[l]?.identical).toBe(false);
      expect(r.languages[l]?.maxAbsDiff).toBeGreaterThan(0);
      expect(r.languages[l]?.sha256[0]).not.toBe(r.languages[l]?.sha256[1]);
      // layer 0 onwards differ, the embeddings' output does not
      expect(r.languages[l]?.differing).toEqual([
        'hidden_states_1',
        'hidden_states_2',
        'last_hidden_state',
        'logits',
      ]);
    }
  }, 60_000);

  it("a changed embedding row that the blocks never use changes the tied decoder's logits only", async () => {
    const row = path.join(dir, 'unused-row');
    // row 22 of the 24-piece vocabulary: no block holds token 22
    await perturbed(added, row, 'roberta.embeddings.word_embeddings.weight', 0.5, 22 * 16);
    const r = await compareModels(base, row, blocks, { batchSize: 2 });
    expect(r.weights.differing).toEqual(['roberta.embeddings.word_embeddings.weight']);
    for (const l of ['en', 'de']) expect(r.languages[l]?.differing).toEqual(['logits']);
  }, 60_000);

  it('a change in the new module alone leaves the base languages identical', async () => {
    const moduleOnly = path.join(dir, 'module-only');
    const w0 = compareWeights(base, added);
    const koTensor = w0.added[0] as string;
    await perturbed(added, moduleOnly, koTensor, 0.5);
    const r = await compareModels(base, moduleOnly, blocks, { batchSize: 2 });
    expect(r.identical).toBe(true);
  }, 60_000);
});
