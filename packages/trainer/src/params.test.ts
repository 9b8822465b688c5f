import { initBackend } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { applyTrainable, globToRegExp, uniqueParameters } from './params.js';
import { TinyModel } from './test-model.js';

beforeAll(async () => {
  await initBackend();
});

describe('selectors', () => {
  it('globs: * stays within a segment, ** crosses segments, a module path selects everything under it', () => {
    const g = globToRegExp('roberta.encoder.layer.*.output.adapter_modules.*');
    expect(g.test('roberta.encoder.layer.0.output.adapter_modules.en_XX.dense1.weight')).toBe(true);
    expect(g.test('roberta.encoder.layer.11.output.adapter_modules.de_DE')).toBe(true);
    expect(g.test('roberta.encoder.layer.0.output.dense.weight')).toBe(false);
    expect(g.test('roberta.encoder.layer.0.1.output.adapter_modules.x.w')).toBe(false);
    expect(globToRegExp('**.embeddings').test('embeddings.word_embeddings.weight')).toBe(true);
    expect(globToRegExp('**.embeddings').test('roberta.embeddings.LayerNorm.bias')).toBe(true);
    expect(globToRegExp('**.embeddings').test('roberta.embeddingsX.weight')).toBe(false);
    expect(globToRegExp('classifier.bias').test('classifier.bias_extra')).toBe(false);
  });

  it('applyTrainable sets trainable exactly for include minus exclude (globs, regex, predicates)', () => {
    const m = new TinyModel();
    const names = applyTrainable(m, {
      include: ['roberta.encoder.layer.1.**', /^classifier\./],
      exclude: [(n) => n.includes('lora'), 'roberta.encoder.layer.*.output.adapter_modules.de_DE'],
    });
    expect(names).toEqual([
      'roberta.encoder.layer.1.dense.weight',
      'roberta.encoder.layer.1.dense.bias',
      'roberta.encoder.layer.1.output.adapter_modules.en_XX.dense1.weight',
      'roberta.encoder.layer.1.output.adapter_modules.en_XX.dense1.bias',
      'roberta.encoder.layer.1.output.adapter_modules.en_XX.dense2.weight',
      'roberta.encoder.layer.1.output.adapter_modules.en_XX.dense2.bias',
      'classifier.weight',
      'classifier.bias',
    ]);
    for (const [n, v] of m.namedParameters()) expect(v.trainable, n).toBe(names.includes(n));
    expect(() => applyTrainable(m, { include: ['nothing.here'] })).toThrow(/match no parameter/);
    m.dispose();
  });

  it('uniqueParameters keeps a tied variable once, under its first name', () => {
    const m = new TinyModel();
    const tied = m.namedParameters();
    const fake = {
      namedParameters: () => [
        ...tied,
        ['lm_head.decoder.weight', tied[0]?.[1]] as [string, (typeof tied)[0][1]],
      ],
    };
    const u = uniqueParameters(fake);
    expect(u.length).toBe(tied.length);
    expect(u[0]?.[0]).toBe('roberta.embeddings.word_embeddings.weight');
    m.dispose();
  });
});
