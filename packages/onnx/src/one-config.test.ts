import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initBackend, XltConfigError } from '@xlt/core';
import { XmodForMaskedLM } from '@xlt/xmod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTrainGraph } from './autodiff/train-graph.js';
import { exportToOnnx } from './export.js';
import { checkpointWeights, OnnxModel, readEncoderConfig } from './runner.js';

// One config type (`XmodConfig` of @xlt/core) for both engines: the folder's config.json is read and
// given transformers' defaults once, so the ONNX graphs and the tfjs modules cannot disagree on a
// field the file leaves out or that does not apply to the model type.

const tmp = mkdtempSync(path.join(tmpdir(), 'xlt-one-config-'));

/** A config.json as a user may write it: sizes only, transformers' defaults left out. */
const sparseConfig = {
  model_type: 'xlm-roberta',
  architectures: ['XLMRobertaForMaskedLM'],
  vocab_size: 30,
  hidden_size: 8,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 16,
  max_position_embeddings: 20,
};

/** Writes a random tiny XLM-R masked-LM (weights from @xlt/xmod) whose config.json is `config`. */
async function modelDir(name: string, config: Record<string, unknown>): Promise<string> {
  const dir = path.join(tmp, name);
  const model = new XmodForMaskedLM({ ...sparseConfig, initializer_range: 0.5 });
  await model.savePretrained(dir);
  model.dispose();
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

describe('one config type for the tfjs and ONNX engines', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('an XLM-R config.json with X-Mod-only fields: the export reads what @xlt/xmod reads and gives its logits', async () => {
    // XLMRobertaConfig has no language modules and no pre-norm: transformers ignores these fields
    const dir = await modelDir('xmod-fields', {
      ...sparseConfig,
      languages: ['en_XX', 'de_DE'],
      pre_norm: true,
    });
    const tfjs = await XmodForMaskedLM.fromPretrained(dir);
    const config = readEncoderConfig(dir);
    expect(config).toEqual(tfjs.config);
    expect(config.languages).toEqual([]);
    expect(config.pre_norm).toBe(false);
    const weights = checkpointWeights(dir);
    const onnx = await OnnxModel.load(exportToOnnx({ config, weights }).model, { threads: 1 });
    weights.close();
    const inputIds = [
      [0, 5, 6, 7, 2],
      [0, 8, 9, 2, 1],
    ];
    const attentionMask = [
      [1, 1, 1, 1, 1],
      [1, 1, 1, 1, 0],
    ];
    const got = (await onnx.run({ inputIds, attentionMask })).logits;
    await onnx.release();
    tfjs.eval();
    const out = tfjs.forward({ inputIds, attentionMask });
    const want = out.logits.dataSync();
    out.logits.dispose();
    tfjs.dispose();
    expect(got?.dims).toEqual([2, 5, 30]);
    let worst = 0;
    want.forEach((v, i) => {
      worst = Math.max(worst, Math.abs(v - (got?.data[i] as number)));
    });
    expect(worst).toBeLessThan(1e-4);
  });

  it("transformers' dropout defaults reach the compiled training step as they reach the tfjs model", async () => {
    const dir = await modelDir('default-dropout', sparseConfig);
    const tfjs = await XmodForMaskedLM.fromPretrained(dir);
    const config = readEncoderConfig(dir);
    expect(tfjs.config.hidden_dropout_prob).toBe(0.1);
    expect(config.hidden_dropout_prob).toBe(0.1);
    expect(config.attention_probs_dropout_prob).toBe(0.1);
    tfjs.dispose();
    const weights = checkpointWeights(dir);
    const withDefaults = buildTrainGraph({
      config,
      weights,
      head: 'masked-lm',
      trainable: ['lm_head.bias'],
      mode: 'grads',
    });
    const withoutDropout = buildTrainGraph({
      config: { ...config, hidden_dropout_prob: 0, attention_probs_dropout_prob: 0 },
      weights,
      head: 'masked-lm',
      trainable: ['lm_head.bias'],
      mode: 'grads',
    });
    weights.close();
    expect(withDefaults.signature.batch).toContain('dropout_seed');
    expect(withoutDropout.signature.batch).not.toContain('dropout_seed');
  });

  it('a hidden_act the graphs do not compute is refused by the ONNX reader as by @xlt/xmod, naming file and field', async () => {
    const dir = await modelDir('gelu-new', { ...sparseConfig, hidden_act: 'gelu_new' });
    const file = path.join(dir, 'config.json');
    const refusals: unknown[] = [];
    try {
      readEncoderConfig(dir);
    } catch (e) {
      refusals.push(e);
    }
    await XmodForMaskedLM.fromPretrained(dir).catch((e: unknown) => refusals.push(e));
    expect(refusals).toHaveLength(2);
    for (const e of refusals) {
      expect(e).toBeInstanceOf(XltConfigError);
      expect((e as XltConfigError).field).toBe('hidden_act');
      expect((e as XltConfigError).file).toBe(file);
    }
  });
});
