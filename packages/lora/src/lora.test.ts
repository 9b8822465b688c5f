import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng, XltConfigError, XltNotFoundError } from '@xlt/core';
import { Embedding, Linear, Module } from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  applyLora,
  LoraEmbedding,
  LoraLinear,
  loraLayers,
  markOnlyLoraTrainable,
  mergeLora,
  targetMatches,
  unmergeLora,
} from './index.js';

class Block extends Module {
  query: Linear;
  value: Linear;
  dense: Linear;
  word_embeddings: Embedding;
  constructor(rng: Rng) {
    super();
    this.query = this.registerModule('query', new Linear(6, 6, { rng, std: 0.5 }));
    this.value = this.registerModule('value', new Linear(6, 6, { rng, std: 0.5 }));
    this.dense = this.registerModule('dense', new Linear(6, 4, { rng, std: 0.5 }));
    this.word_embeddings = this.registerModule('word_embeddings', new Embedding(10, 6, { rng, std: 0.5 }));
  }
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const h = this.word_embeddings.apply(ids);
      return this.dense.apply(tf.add(this.query.apply(h), this.value.apply(h)));
    });
  }
}

class Tiny extends Module {
  block: Block;
  head: Linear;
  constructor(seed = 1) {
    super();
    const rng = new Rng(seed);
    this.block = this.registerModule('block', new Block(rng));
    this.head = this.registerModule('head', new Linear(4, 3, { rng }));
  }
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.head.apply(this.block.forward(ids)));
  }
}

function randomizeB(model: Module, seed: number): void {
  const rng = new Rng(seed);
  for (const [name, p] of model.namedParameters())
    if (/lora_(B|embedding_A)/.test(name)) {
      const d = new Float32Array(p.size).map(() => rng.normal(0, 0.5));
      p.assign(tf.tensor(d, p.shape));
    }
}

let ids: tf.Tensor;

beforeAll(async () => {
  await initBackend();
  ids = tf.tensor2d(
    [
      [1, 2, 3],
      [4, 5, 9],
    ],
    [2, 3],
    'int32',
  );
});

describe('target selection as PEFT check_target_module_exists', () => {
  it('a list matches the exact name or a dotted suffix, a string is a full-match regex', () => {
    expect(targetMatches('a.b.query', ['query'])).toBe(true);
    expect(targetMatches('query', ['query'])).toBe(true);
    expect(targetMatches('a.myquery', ['query'])).toBe(false);
    expect(targetMatches('a.output.dense', ['output.dense'])).toBe(true);
    expect(targetMatches('a.query', '.*query')).toBe(true);
    expect(targetMatches('a.query.x', '.*query')).toBe(false);
  });
  it('wraps only the selected modules, and wrapped models still run', () => {
    const m = new Tiny();
    const names = applyLora(m, { r: 2, targetModules: ['query', 'word_embeddings'] });
    expect(names).toEqual(['block.query', 'block.word_embeddings']);
    expect(m.block.query).toBeInstanceOf(LoraLinear);
    expect(m.block.word_embeddings).toBeInstanceOf(LoraEmbedding);
    expect(m.block.value).toBeInstanceOf(Linear);
    expect(m.forward(ids).shape).toEqual([2, 3, 3]);
  });
});

describe('PEFT initialisation', () => {
  it('A is Kaiming-uniform within 1/sqrt(in), B zero, so the output equals the base at init', async () => {
    const base = new Tiny();
    const y0 = await base.forward(ids).array();
    const m = new Tiny();
    applyLora(m, { r: 3, alpha: 6, targetModules: ['query', 'value', 'dense', 'word_embeddings'] });
    const q = m.block.query as unknown as LoraLinear;
    expect(q.lora_A.weight.shape).toEqual([3, 6]);
    expect(q.lora_B.weight.shape).toEqual([6, 3]);
    const a = await q.lora_A.weight.data();
    expect(Math.max(...Array.from(a, Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(6));
    expect(Math.max(...Array.from(a, Math.abs))).toBeGreaterThan(0);
    expect(Array.from(await q.lora_B.weight.data()).every((v) => v === 0)).toBe(true);
    const e = m.block.word_embeddings as unknown as LoraEmbedding;
    expect(e.lora_embedding_A.shape).toEqual([3, 10]);
    expect(e.lora_embedding_B.shape).toEqual([6, 3]);
    expect(Array.from(await e.lora_embedding_A.data()).every((v) => v === 0)).toBe(true);
    expect(q.scaling).toBe(2);
    const y1 = await m.forward(ids).array();
    expect(y1).toEqual(y0);
  });
  it('rsLoRA scales by alpha / sqrt(r)', () => {
    const m = new Tiny();
    applyLora(m, { r: 4, alpha: 8, useRslora: true, targetModules: ['query'] });
    expect((m.block.query as unknown as LoraLinear).scaling).toBe(4);
  });
});

describe('merge and unmerge', () => {
  it('merge leaves outputs unchanged and unmerge restores the base weights bit for bit', async () => {
    const m = new Tiny();
    const before = new Map(m.namedParameters().map(([n, p]) => [n, p.dataSync().slice()]));
    applyLora(m, { r: 2, alpha: 4, targetModules: ['query', 'value', 'dense', 'word_embeddings'] });
    randomizeB(m, 7);
    const y = m.forward(ids);
    const base = new Tiny().forward(ids);
    expect(tf.max(tf.abs(tf.sub(y, base))).dataSync()[0]).toBeGreaterThan(1e-3);
    mergeLora(m);
    expect(loraLayers(m).every(([, l]) => l.merged)).toBe(true);
    const ym = m.forward(ids);
    expect(tf.max(tf.abs(tf.sub(y, ym))).dataSync()[0]).toBeLessThan(1e-5);
    unmergeLora(m);
    for (const [n, p] of m.namedParameters()) {
      const orig = before.get(n.replace('.base_layer', ''));
      if (n.includes('base_layer') || n.startsWith('head')) expect(p.dataSync()).toEqual(orig);
    }
    const yu = m.forward(ids);
    expect(tf.max(tf.abs(tf.sub(y, yu))).dataSync()[0]).toBeLessThan(1e-6);
  });
});

describe('trainable-parameter selection', () => {
  it('only LoRA trains, or LoRA plus named heads', () => {
    const m = new Tiny();
    applyLora(m, { r: 2, targetModules: ['query'] });
    expect(markOnlyLoraTrainable(m)).toEqual(['block.query.lora_A.weight', 'block.query.lora_B.weight']);
    expect(markOnlyLoraTrainable(m, ['head'])).toEqual([
      'block.query.lora_A.weight',
      'block.query.lora_B.weight',
      'head.weight',
      'head.bias',
    ]);
  });
  it('LoRA gradients flow to A and B (B gets a non-zero gradient at init)', () => {
    const m = new Tiny();
    applyLora(m, { r: 2, targetModules: ['query'] });
    markOnlyLoraTrainable(m);
    const { grads } = tf.variableGrads(() => tf.sum(tf.square(m.forward(ids))) as tf.Scalar);
    const names = Object.keys(grads);
    expect(names.length).toBe(2);
    const gB = grads[(m.block.query as unknown as LoraLinear).lora_B.weight.name];
    expect(tf.max(tf.abs(gB)).dataSync()[0]).toBeGreaterThan(0);
  });
});

describe('bad input', () => {
  it('a target name that matches nothing is an XltNotFoundError naming target_modules', () => {
    expect(() => applyLora(new Tiny(), { r: 2, targetModules: ['qurey'] })).toThrow(XltNotFoundError);
    expect(() => applyLora(new Tiny(), { r: 2, targetModules: ['qurey'] })).toThrow(/target_modules/);
  });
  it('a target that is not a linear or embedding is a config error', () => {
    expect(() => applyLora(new Tiny(), { r: 2, targetModules: ['block'] })).toThrow(XltConfigError);
  });
  it('rank 0 is a config error', () => {
    expect(() => applyLora(new Tiny(), { r: 0, targetModules: ['query'] })).toThrow(XltConfigError);
    expect(() => applyLora(new Tiny(), { r: 0, targetModules: ['query'] })).toThrow(/rank/);
  });
});
