import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  initBackend,
  isXltError,
  readSafetensors,
  writeSafetensors,
  XltConfigError,
  XltFormatError,
  XltNotFoundError,
  XltShapeError,
} from '@xlt/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  XmodForMaskedLM,
  XmodForQuestionAnswering,
  XmodForSequenceClassification,
  XmodForTokenClassification,
} from './index.js';
import { tinyConfig } from './test-config.js';

const tmp = mkdtempSync(join(tmpdir(), 'xmod-io-'));
const x = {
  inputIds: [
    [0, 5, 6, 7, 2],
    [0, 8, 9, 2, 1],
  ],
  attentionMask: [
    [1, 1, 1, 1, 1],
    [1, 1, 1, 1, 0],
  ],
  langIds: [1, 0],
};

function same(a: tf.Tensor, b: tf.Tensor): boolean {
  const u = a.dataSync();
  const v = b.dataSync();
  return u.length === v.length && u.every((e, i) => e === v[i]);
}

async function expectThrows(p: Promise<unknown>, check: (e: unknown) => void): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeDefined();
  check(caught);
}

describe('savePretrained / fromPretrained', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('round-trips every head bit-identically with HF names and config', async () => {
    for (const [Cls, extra] of [
      [XmodForMaskedLM, {}],
      [XmodForSequenceClassification, { num_labels: 3 }],
      [XmodForTokenClassification, { num_labels: 5 }],
      [XmodForQuestionAnswering, {}],
    ] as const) {
      const dir = join(tmp, `rt-${Cls.name}`);
      const model = new Cls({ ...tinyConfig(), ...extra });
      await model.savePretrained(dir);
      // the static method builds `this` (Cls); the cast only picks one overload for the type checker
      const back = await (Cls as typeof XmodForMaskedLM).fromPretrained(dir);
      expect(back.newlyInitialized).toEqual([]);
      const a = model.forward(x) as unknown as Record<string, tf.Tensor>;
      const b = back.forward(x) as unknown as Record<string, tf.Tensor>;
      for (const k of Object.keys(a))
        expect(same(a[k] as tf.Tensor, b[k] as tf.Tensor), `${Cls.name}.${k}`).toBe(true);
      const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
      expect(cfg.architectures).toEqual([model.architecture]);
      const names = [...(await readSafetensors(join(dir, 'model.safetensors'))).tensors.keys()];
      expect(names).toContain('roberta.encoder.layer.1.output.adapter_modules.de_DE.dense2.weight');
      expect(names).not.toContain('lm_head.decoder.weight');
      model.dispose();
      back.dispose();
    }
  });

  it('accepts a tied lm_head.decoder.weight equal to the embeddings and rejects a different one', async () => {
    const dir = join(tmp, 'tied');
    const model = new XmodForMaskedLM(tinyConfig());
    await model.savePretrained(dir);
    const f = join(dir, 'model.safetensors');
    const st = await readSafetensors(f);
    const emb = st.tensors.get('roberta.embeddings.word_embeddings.weight');
    if (emb === undefined) throw new Error('no embeddings');
    st.tensors.set('lm_head.decoder.weight', emb);
    await writeSafetensors(f, st.tensors);
    (await XmodForMaskedLM.fromPretrained(dir)).dispose();
    const changed = new Float32Array(emb.data as Float32Array);
    changed[0] = (changed[0] ?? 0) + 1;
    st.tensors.set('lm_head.decoder.weight', { ...emb, data: changed });
    await writeSafetensors(f, st.tensors);
    await expectThrows(XmodForMaskedLM.fromPretrained(dir), (e) => {
      expect(e).toBeInstanceOf(XltFormatError);
      expect((e as XltFormatError).tensor).toBe('lm_head.decoder.weight');
    });
    model.dispose();
  });

  it('names missing, unexpected and mis-shaped tensors', async () => {
    const dir = join(tmp, 'bad');
    const model = new XmodForMaskedLM(tinyConfig());
    await model.savePretrained(dir);
    const f = join(dir, 'model.safetensors');
    const orig = (await readSafetensors(f)).tensors;

    const missing = new Map(orig);
    missing.delete('roberta.encoder.layer.0.attention.self.key.bias');
    await writeSafetensors(f, missing);
    await expectThrows(XmodForMaskedLM.fromPretrained(dir), (e) => {
      expect(e).toBeInstanceOf(XltNotFoundError);
      expect(String(e)).toContain('roberta.encoder.layer.0.attention.self.key.bias');
    });

    const extra = new Map(orig);
    extra.set('roberta.encoder.layer.0.bogus.weight', {
      dtype: 'F32',
      shape: [1],
      data: new Float32Array(1),
    });
    extra.set('roberta.encoder.layer.1.other.bias', { dtype: 'F32', shape: [1], data: new Float32Array(1) });
    await writeSafetensors(f, extra);
    await expectThrows(XmodForMaskedLM.fromPretrained(dir), (e) => {
      expect(e).toBeInstanceOf(XltFormatError);
      expect(String(e)).toContain('roberta.encoder.layer.0.bogus.weight');
      expect(String(e)).toContain('roberta.encoder.layer.1.other.bias');
    });

    const shaped = new Map(orig);
    shaped.set('lm_head.dense.weight', { dtype: 'F32', shape: [8, 4], data: new Float32Array(32) });
    await writeSafetensors(f, shaped);
    await expectThrows(XmodForMaskedLM.fromPretrained(dir), (e) => {
      expect(e).toBeInstanceOf(XltShapeError);
      expect((e as XltShapeError).tensor).toBe('lm_head.dense.weight');
      expect((e as XltShapeError).expected).toEqual([8, 8]);
      expect((e as XltShapeError).got).toEqual([8, 4]);
    });
    model.dispose();
  });

  it('a masked-LM checkpoint loads into a classifier with a fresh head (strictHead makes it an error)', async () => {
    const dir = join(tmp, 'mlm-for-cls');
    const model = new XmodForMaskedLM(tinyConfig());
    await model.savePretrained(dir);
    const cls = await XmodForSequenceClassification.fromPretrained(dir, { config: { num_labels: 4 } });
    expect(cls.newlyInitialized.sort()).toEqual([
      'classifier.dense.bias',
      'classifier.dense.weight',
      'classifier.out_proj.bias',
      'classifier.out_proj.weight',
    ]);
    expect(
      same(
        cls.getParameter('roberta.embeddings.word_embeddings.weight'),
        model.getParameter('roberta.embeddings.word_embeddings.weight'),
      ),
    ).toBe(true);
    await expectThrows(XmodForSequenceClassification.fromPretrained(dir, { strictHead: true }), (e) => {
      expect(e).toBeInstanceOf(XltNotFoundError);
    });
    cls.dispose();
    model.dispose();
  });

  it('bad or missing config.json gives XltErrors naming the file and field', async () => {
    await expectThrows(XmodForMaskedLM.fromPretrained(join(tmp, 'nope')), (e) => {
      expect(isXltError(e, 'NOT_FOUND')).toBe(true);
    });
    const dir = join(tmp, 'badcfg');
    const model = new XmodForMaskedLM(tinyConfig());
    await model.savePretrained(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...tinyConfig(), hidden_size: 9 }));
    await expectThrows(XmodForMaskedLM.fromPretrained(dir), (e) => {
      expect(e).toBeInstanceOf(XltConfigError);
      expect((e as XltConfigError).field).toBe('num_attention_heads');
      expect((e as XltConfigError).file).toBe(join(dir, 'config.json'));
    });
    model.dispose();
  });
});

describe('language operations', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });

  it('addLanguage (random or copied) survives save/load; removeLanguage and setDefaultLanguage update config', async () => {
    const model = new XmodForMaskedLM(tinyConfig());
    model.addLanguage('fr_XX', { initFrom: 'de_DE' });
    model.addLanguage('sw_KE', { seed: 3 });
    expect(model.config.languages).toEqual(['en_XX', 'de_DE', 'fr_XX', 'sw_KE']);
    const fr = model.forward({ ...x, langIds: ['fr_XX', 'fr_XX'] }).logits;
    const de = model.forward({ ...x, langIds: ['de_DE', 'de_DE'] }).logits;
    expect(same(fr, de)).toBe(true);
    const w = model.getParameter('roberta.encoder.layer.1.output.adapter_modules.sw_KE.dense1.weight');
    const sd = Math.sqrt(tf.moments(w).variance.dataSync()[0] ?? 0);
    expect(sd).toBeGreaterThan(0.25); // N(0, initializer_range 0.5) on 32 values
    expect(sd).toBeLessThan(0.8);
    const dir = join(tmp, 'addlang');
    await model.savePretrained(dir);
    const back = await XmodForMaskedLM.fromPretrained(dir);
    expect(back.config.languages).toEqual(['en_XX', 'de_DE', 'fr_XX', 'sw_KE']);
    const a = model.forward({ ...x, langIds: ['sw_KE', 'fr_XX'] }).logits;
    const b = back.forward({ ...x, langIds: ['sw_KE', 'fr_XX'] }).logits;
    expect(same(a, b)).toBe(true);

    back.setDefaultLanguage('sw_KE');
    expect(back.config.default_language).toBe('sw_KE');
    const d = back.forward({ inputIds: x.inputIds }).logits;
    const s = back.forward({ inputIds: x.inputIds, langIds: ['sw_KE', 'sw_KE'] }).logits;
    expect(same(d, s)).toBe(true);
    back.removeLanguage('de_DE');
    expect(back.config.languages).toEqual(['en_XX', 'fr_XX', 'sw_KE']);
    expect(back.languageModuleParameterNames().some((n) => n.includes('de_DE'))).toBe(false);
    // indices now follow the new list: 1 = fr_XX
    const byIdx = back.forward({ ...x, langIds: [1, 1] }).logits;
    const byCode = back.forward({ ...x, langIds: ['fr_XX', 'fr_XX'] }).logits;
    expect(same(byIdx, byCode)).toBe(true);
    tf.dispose([fr, de, a, b, d, s, byIdx, byCode]);
    model.dispose();
    back.dispose();
  });

  it('unknown languages and invalid operations raise XltErrors', () => {
    const model = new XmodForMaskedLM(tinyConfig());
    expect(() => model.forward({ ...x, langIds: ['xx_YY', 'en_XX'] })).toThrow(XltNotFoundError);
    expect(() => model.forward({ ...x, langIds: [0, 7] })).toThrow(XltNotFoundError);
    expect(() => model.forward({ ...x, langIds: [0] })).toThrow(XltShapeError);
    expect(() => model.addLanguage('en_XX')).toThrow(XltConfigError);
    expect(() => model.addLanguage('fr_XX', { initFrom: 'xx_YY' })).toThrow(XltNotFoundError);
    expect(() => model.removeLanguage('xx_YY')).toThrow(XltNotFoundError);
    expect(() => model.removeLanguage('en_XX')).toThrow(XltConfigError);
    expect(() => model.setDefaultLanguage('xx_YY')).toThrow(XltNotFoundError);
    expect(() => model.forward({ inputIds: [[0, 25, 2]] })).toThrow(XltShapeError); // vocab_size 20
    expect(() => model.forward({ inputIds: [[0, 5, 2]], tokenTypeIds: [[0, 1, 0]] })).toThrow(XltShapeError);
    expect(() =>
      model.forward({
        inputIds: [
          [0, 5, 2],
          [0, 5],
        ],
      }),
    ).toThrow(XltShapeError);
    const xlmr = new XmodForMaskedLM({ ...tinyConfig(), model_type: 'xlm-roberta' });
    expect(() => xlmr.addLanguage('fr_XX')).toThrow(XltConfigError);
    model.dispose();
    xlmr.dispose();
  });

  it('parameter selectors for the training stages', () => {
    const model = new XmodForMaskedLM(tinyConfig());
    const all = model.namedParameters().map(([n]) => n);
    const shared = model.freezeEmbeddingsAndLanguageModules();
    expect(shared.some((n) => n.startsWith('roberta.embeddings.') || n.includes('adapter_modules'))).toBe(
      false,
    );
    expect(shared).toContain('roberta.encoder.layer.0.attention.self.query.weight');
    expect(shared).toContain('lm_head.dense.weight');
    expect(model.getParameter('roberta.embeddings.word_embeddings.weight').trainable).toBe(false);

    const sharedOnly = model.trainSharedOnly();
    expect(sharedOnly).toContain('roberta.embeddings.word_embeddings.weight');
    expect(sharedOnly.length + model.languageModuleParameterNames().length).toBe(all.length);

    const de = model.trainLanguageOnly('de_DE');
    expect(de.length).toBe(2 * 4); // 2 layers × dense1/dense2 weight+bias
    expect(de.every((n) => n.includes('.adapter_modules.de_DE.'))).toBe(true);
    expect(
      model
        .trainableParameters()
        .map(([n]) => n)
        .sort(),
    ).toEqual([...de].sort());
    model.dispose();
  });
});
