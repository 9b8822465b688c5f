import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isXltError, type XltError } from './errors.js';
import { labelCount, normalizeConfig, oieHeadSizes, readXmodConfig } from './model-config.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'xlt-model-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sizes = {
  vocab_size: 30,
  hidden_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 16,
};

function folder(name: string, text: string): string {
  const dir = mkdtempSync(path.join(tmp, `${name}-`));
  writeFileSync(path.join(dir, 'config.json'), text);
  return dir;
}

function caught(f: () => unknown): XltError {
  try {
    f();
  } catch (e) {
    if (isXltError(e)) return e;
    throw e;
  }
  throw new Error('expected an XltError');
}

describe('XmodConfig: one config for every engine', () => {
  it("fills transformers' defaults, keeps unknown fields, and a normalized config normalizes to itself", () => {
    const cfg = normalizeConfig({ ...sizes, model_type: 'xmod', languages: ['en_XX'], bos_token_id: 0 });
    expect(cfg.layer_norm_eps).toBe(1e-5);
    expect(cfg.hidden_dropout_prob).toBe(0.1);
    expect(cfg.max_position_embeddings).toBe(514);
    expect(cfg.adapter_reuse_layer_norm).toBe(true);
    expect(cfg.bos_token_id).toBe(0);
    expect(normalizeConfig(cfg)).toEqual(cfg);
  });

  it('drops language fields of XLM-R (no language modules) and refuses what no engine computes', () => {
    const xlmr = normalizeConfig({
      ...sizes,
      model_type: 'xlm-roberta',
      languages: ['en_XX'],
      default_language: 'en_XX',
      pre_norm: true,
      adapter_layer_norm: true,
    });
    expect(xlmr.languages).toEqual([]);
    expect(xlmr.default_language).toBeNull();
    expect(xlmr.pre_norm).toBe(false);
    expect(xlmr.adapter_layer_norm).toBe(false);
    expect(caught(() => normalizeConfig({ ...sizes, hidden_act: 'relu' }, 'c.json')).field).toBe(
      'hidden_act',
    );
    expect(caught(() => normalizeConfig({ ...sizes, model_type: 'bert' })).field).toBe('model_type');
    expect(caught(() => normalizeConfig({ ...sizes, hidden_size: 9 })).field).toBe('num_attention_heads');
  });

  it('readXmodConfig: overrides applied before the checks; missing, broken or non-object files are errors naming the file', () => {
    const ok = folder('ok', JSON.stringify(sizes));
    expect(readXmodConfig(ok, { num_labels: 5 }).num_labels).toBe(5);
    expect(caught(() => readXmodConfig(ok, { hidden_size: 9 })).file).toBe(path.join(ok, 'config.json'));
    const missing = caught(() => readXmodConfig(path.join(tmp, 'nope')));
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.file).toBe(path.join(tmp, 'nope', 'config.json'));
    const broken = folder('broken', '{"vocab_size": ');
    expect(caught(() => readXmodConfig(broken)).code).toBe('FORMAT');
    const list = folder('list', '[1, 2]');
    expect(caught(() => readXmodConfig(list)).message).toMatch(/must hold a JSON object/);
  });

  it('label count and Open IE head sizes have one rule each', () => {
    expect(labelCount(normalizeConfig(sizes))).toBe(2);
    expect(labelCount(normalizeConfig({ ...sizes, id2label: { 0: 'a', 1: 'b', 2: 'c' } }))).toBe(3);
    expect(labelCount(normalizeConfig({ ...sizes, num_labels: 4, id2label: { 0: 'a' } }))).toBe(4);
    expect(oieHeadSizes(normalizeConfig({ ...sizes, oie: { n_arg_layers: 1 } }))).toEqual({
      pos_emb_dim: 64,
      n_arg_layers: 1,
      n_arg_heads: 8,
      d_feedforward: 2048,
    });
  });
});
