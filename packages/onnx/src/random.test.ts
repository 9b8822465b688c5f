import { normalizeConfig } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { exportToOnnx } from './export.js';
import { randomWeights, weightShapes } from './random.js';
import { OnnxModel } from './runner.js';

const tiny = normalizeConfig({
  model_type: 'xmod',
  vocab_size: 50,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 32,
  languages: ['en', 'de', 'fr'],
  default_language: 'en',
  adapter_reduction_factor: 4,
  adapter_layer_norm: true,
  adapter_reuse_layer_norm: false,
  ln_before_adapter: false,
  pre_norm: true,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});

describe('export of generated models', () => {
  it('lists the Hugging Face names with pre-norm and adapter LayerNorm', () => {
    const s = weightShapes(tiny, 'masked-lm');
    expect(s.get('roberta.encoder.LayerNorm.weight')).toEqual([16]);
    expect(s.get('roberta.encoder.layer.1.output.adapter_layer_norm.bias')).toEqual([16]);
    expect(s.get('roberta.encoder.layer.0.output.adapter_modules.fr.dense1.weight')).toEqual([4, 16]);
  });

  it('routes each example through its own language module and pads without changing real tokens', async () => {
    const m = await OnnxModel.load(
      exportToOnnx({ config: tiny, weights: randomWeights(tiny, 'masked-lm', 1), head: 'masked-lm' }).model,
    );
    const ids = [0, 5, 6, 7, 2];
    const single = async (lang: string) => (await m.run({ inputIds: [ids], langIds: [lang] })).logits!.data;
    const en = await single('en');
    const de = await single('de');
    expect(Array.from(en)).not.toEqual(Array.from(de));
    // mixed batch, with padding on the second row: each row equals its single-example run
    const out = await m.run({
      inputIds: [ids, [...ids.slice(0, 4), 1]],
      attentionMask: [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
      ],
      langIds: ['de', 'en'],
    });
    const V = 50;
    const row0 = Array.from(out.logits!.data.slice(0, 5 * V));
    expect(row0.every((v, i) => Math.abs(v - (de[i] as number)) < 1e-5)).toBe(true);
    const shorter = (await m.run({ inputIds: [ids.slice(0, 4)], langIds: ['en'] })).logits!.data;
    const row1 = out.logits!.data.slice(5 * V, 9 * V);
    expect(Array.from(row1).every((v, i) => Math.abs(v - (shorter[i] as number)) < 1e-5)).toBe(true);
    // the default language is used when langIds is omitted
    const dflt = (await m.run({ inputIds: [ids] })).logits!.data;
    expect(Array.from(dflt)).toEqual(Array.from(en));
  });

  it('names a missing weight', () => {
    const w = randomWeights(tiny, 'masked-lm');
    const holey = {
      has: (n: string) => n !== 'roberta.encoder.layer.1.attention.self.key.weight' && w.has(n),
      get: w.get,
    };
    expect(() => exportToOnnx({ config: tiny, weights: holey, head: 'masked-lm' })).toThrow(
      /layer\.1\.attention\.self\.key\.weight/,
    );
  });

  it('names a weight of the wrong shape', () => {
    const w = randomWeights({ ...tiny, intermediate_size: 40 }, 'masked-lm');
    expect(() => exportToOnnx({ config: tiny, weights: w, head: 'masked-lm' })).toThrow(
      /intermediate\.dense\.weight.*expected \[32, 16\], got \[40, 16\]|expected \[32, 16\], got \[40, 16\].*intermediate/,
    );
  });

  it('stores large weights in an external file that onnxruntime loads', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const { writeOnnxModel } = await import('./files.js');
    const dir = mkdtempSync(path.join(tmpdir(), 'xlt-onnx-'));
    try {
      const w = randomWeights(tiny, 'masked-lm', 2);
      const inMem = await OnnxModel.load(exportToOnnx({ config: tiny, weights: w, head: 'masked-lm' }).model);
      const res = exportToOnnx({
        config: tiny,
        weights: w,
        head: 'masked-lm',
        externalThreshold: 256,
        externalLocation: 'm.onnx.data',
      });
      expect(res.external?.size ?? 0).toBeGreaterThan(0);
      const file = path.join(dir, 'm.onnx');
      writeOnnxModel(file, res);
      const ext = await OnnxModel.load(file);
      const a = (await inMem.run({ inputIds: [[0, 4, 2]] })).logits!.data;
      const b = (await ext.run({ inputIds: [[0, 4, 2]] })).logits!.data;
      expect(Array.from(b)).toEqual(Array.from(a));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('transformers-style initialisation', () => {
  it('zeros biases and the padding row, ones LayerNorm weights, N(0, std) elsewhere', () => {
    const w = randomWeights(tiny, 'sequence-classification', 3, 0.02, 'hf');
    expect(
      Array.from(w.get('roberta.encoder.layer.0.attention.self.query.bias').data).every((v) => v === 0),
    ).toBe(true);
    expect(Array.from(w.get('roberta.embeddings.LayerNorm.weight').data).every((v) => v === 1)).toBe(true);
    const emb = w.get('roberta.embeddings.word_embeddings.weight').data;
    expect(Array.from(emb.slice(16, 32)).every((v) => v === 0)).toBe(true); // row 1 = <pad>
    const q = Array.from(w.get('roberta.encoder.layer.0.attention.self.query.weight').data);
    const sd = Math.sqrt(q.reduce((a, v) => a + v * v, 0) / q.length);
    expect(sd).toBeGreaterThan(0.015);
    expect(sd).toBeLessThan(0.025);
  });
});
