import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  initBackend,
  Rng,
  readSafetensors,
  type SafetensorsTensor,
  sharedPath,
  sharedSkipReason,
  toFloat32,
  XltConfigError,
  XltShapeError,
} from '@xlt/core';
import * as xmod from '@xlt/xmod';
import { Linear, Module, ModuleList } from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  addLanguageExpert,
  applyLora,
  applyLoraMixture,
  type LoraLinear,
  loadLanguageExpert,
  loadPeftAdapter,
  loraLayers,
  mergeLora,
  readPeftConfig,
  routedForward,
  savePeftAdapter,
  unmergeLora,
} from './index.js';

const maxAbs = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];

/** Module tree with XLM-R's linear names (no forward): enough to load/save adapter files. */
class Named extends Module {
  add(name: string, m: Module): this {
    this.registerModule(name, m);
    Reflect.set(this, name, m);
    return this;
  }
}
function skeleton(hidden: number, ffn: number, layers: number): Module {
  const rng = new Rng(3);
  const lin = (i: number, o: number) => new Linear(i, o, { rng });
  const list = new ModuleList<Module>();
  for (let l = 0; l < layers; l++) {
    const self = new Named()
      .add('query', lin(hidden, hidden))
      .add('key', lin(hidden, hidden))
      .add('value', lin(hidden, hidden));
    const attention = new Named()
      .add('self', self)
      .add('output', new Named().add('dense', lin(hidden, hidden)));
    list.push(
      new Named()
        .add('attention', attention)
        .add('intermediate', new Named().add('dense', lin(hidden, ffn)))
        .add('output', new Named().add('dense', lin(ffn, hidden))),
    );
  }
  return new Named()
    .add('roberta', new Named().add('encoder', new Named().add('layer', list)))
    .add('lm_head', new Named().add('dense', lin(hidden, hidden)));
}

const FIX = sharedSkipReason('fixtures');
const fx = (...p: string[]) => sharedPath('fixtures', 'xlmr-lora', ...p);

beforeAll(async () => {
  await initBackend();
});

describe.skipIf(FIX !== undefined)('PEFT adapter files (fixtures xlmr-lora)', () => {
  for (const name of ['lora_qv', 'lora_all']) {
    it(`${name}: loads onto a model with XLM-R names and saves back with PEFT's names, shapes and config keys`, async () => {
      const model = skeleton(32, 64, 2);
      await loadPeftAdapter(model, fx(name));
      const orig = await readSafetensors(fx(name, 'adapter_model.safetensors'));
      expect(loraLayers(model).length * 2).toBe(orig.tensors.size);
      const dir = mkdtempSync(join(tmpdir(), 'xlt-lora-'));
      await savePeftAdapter(model, dir);
      const back = await readSafetensors(join(dir, 'adapter_model.safetensors'));
      expect([...back.tensors.keys()].sort()).toEqual([...orig.tensors.keys()].sort());
      for (const [k, t] of orig.tensors) {
        const b = back.tensors.get(k);
        expect(b?.shape).toEqual(t.shape);
        expect(b?.dtype).toBe('F32');
        expect(Array.from(toFloat32(b as SafetensorsTensor))).toEqual(Array.from(toFloat32(t)));
      }
      const c0 = JSON.parse(readFileSync(fx(name, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
      const c1 = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8')) as Record<
        string,
        unknown
      >;
      for (const key of [
        'peft_type',
        'r',
        'lora_alpha',
        'lora_dropout',
        'use_rslora',
        'use_dora',
        'bias',
        'fan_in_fan_out',
        'rank_pattern',
        'alpha_pattern',
      ])
        expect(c1[key]).toEqual(c0[key]);
      expect([...(c1.target_modules as string[])].sort()).toEqual(
        [...(c0.target_modules as string[])].sort(),
      );
      expect(readPeftConfig(dir).r).toBe(c0.r);
    });
  }

  it('lora_all also wraps attention.output.dense, intermediate.dense, output.dense and lm_head.dense', async () => {
    const model = skeleton(32, 64, 2);
    await loadPeftAdapter(model, fx('lora_all'));
    const names = loraLayers(model).map(([n]) => n);
    expect(names).toContain('roberta.encoder.layer.1.attention.output.dense');
    expect(names).toContain('roberta.encoder.layer.0.intermediate.dense');
    expect(names).toContain('roberta.encoder.layer.0.output.dense');
    expect(names).toContain('lm_head.dense');
    expect(names.length).toBe(13);
    const q = model.getModule('roberta.encoder.layer.0.attention.self.query') as LoraLinear;
    expect(q.scaling).toBe(2);
    expect(model.trainableParameters().every(([n]) => /lora_[AB]/.test(n))).toBe(true);
  });

  it('a base model of another size is a shape error naming the tensor', async () => {
    await expect(loadPeftAdapter(skeleton(16, 64, 2), fx('lora_qv'))).rejects.toThrow(XltShapeError);
    await expect(loadPeftAdapter(skeleton(16, 64, 2), fx('lora_qv'))).rejects.toThrow(/lora_A\.weight/);
  });

  it('an adapter with tensors the model lacks (fewer layers) is an error naming the tensor', async () => {
    await expect(loadPeftAdapter(skeleton(32, 64, 1), fx('lora_qv'))).rejects.toThrow(/layer\.1\./);
  });
});

describe('adapter config checks', () => {
  it('rank 0 and non-LoRA configs are config errors naming the field and file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xlt-lora-'));
    writeFileSync(
      join(dir, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: 0, target_modules: ['query'] }),
    );
    expect(() => readPeftConfig(dir)).toThrow(XltConfigError);
    expect(() => readPeftConfig(dir)).toThrow(/field 'r'/);
    writeFileSync(
      join(dir, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'IA3', r: 2, target_modules: ['query'] }),
    );
    expect(() => readPeftConfig(dir)).toThrow(/peft_type/);
  });
  it('saving and loading round-trips a trained adapter exactly', async () => {
    const a = skeleton(8, 16, 1);
    applyLora(a, { r: 2, alpha: 4, targetModules: ['query', 'value'] });
    for (const [, p] of a.trainableParameters()) p.assign(tf.randomNormal(p.shape, 0, 1, 'float32', 5));
    const dir = mkdtempSync(join(tmpdir(), 'xlt-lora-'));
    await savePeftAdapter(a, dir);
    const b = await loadPeftAdapter(skeleton(8, 16, 1), dir);
    const pa = new Map(a.namedParameters());
    for (const [n, p] of b.namedParameters())
      expect([n, Array.from(p.dataSync())]).toEqual([n, Array.from(pa.get(n)?.dataSync() ?? [])]);
  });
});

// The full-model numerics need @xlt/xmod's MaskedLM class (it loads XLM-R checkpoints too).
type MlmModel = Module & {
  forward(inputs: { inputIds: tf.Tensor; attentionMask?: tf.Tensor; labels?: tf.Tensor }): {
    logits: tf.Tensor;
    loss?: tf.Tensor;
  };
};
type MlmClass = { fromPretrained(dir: string): Promise<MlmModel> };
const xm = xmod as Record<string, unknown>;
const mlmClass = (xm.XmodForMaskedLM ?? xm.XLMRobertaForMaskedLM) as MlmClass | undefined;
const MODEL_SKIP =
  FIX ?? (mlmClass === undefined ? '@xlt/xmod does not export XmodForMaskedLM yet' : undefined);

describe.skipIf(MODEL_SKIP !== undefined)(`PEFT numerics against reference.json ${MODEL_SKIP ?? ''}`, () => {
  interface Ref {
    inputs: { input_ids: number[][]; attention_mask: number[][]; mlm_labels: number[][] };
    [k: string]: unknown;
  }
  for (const name of ['lora_qv', 'lora_all']) {
    it(`${name}: logits and loss within 1e-4, layer-0 LoRA grads within 1e-3 relative`, async () => {
      const ref = JSON.parse(readFileSync(fx('reference.json'), 'utf8')) as Ref;
      const exp = ref[name] as { logits: number[][][]; loss: number; grads: Record<string, number[][]> };
      const model = await loadPeftAdapter(await (mlmClass as MlmClass).fromPretrained(fx('base')), fx(name));
      const inputIds = tf.tensor2d(ref.inputs.input_ids, undefined, 'int32');
      const attentionMask = tf.tensor2d(ref.inputs.attention_mask, undefined, 'int32');
      const labels = tf.tensor2d(ref.inputs.mlm_labels, undefined, 'int32');
      const out = model.forward({ inputIds, attentionMask, labels });
      const dl = tf.max(tf.abs(tf.sub(out.logits, tf.tensor(exp.logits)))).dataSync()[0];
      expect(dl).toBeLessThan(1e-4);
      expect(Math.abs((out.loss as tf.Tensor).dataSync()[0] - exp.loss)).toBeLessThan(1e-4);
      const { grads } = tf.variableGrads(
        () => model.forward({ inputIds, attentionMask, labels }).loss as tf.Scalar,
      );
      const params = new Map(model.namedParameters());
      for (const [key, g] of Object.entries(exp.grads)) {
        const pname = key.replace('base_model.model.', '').replace('.default', '');
        const ours = grads[(params.get(pname) as tf.Variable).name];
        const err = tf.max(tf.abs(tf.sub(ours, tf.tensor(g)))).dataSync()[0];
        const scale = tf.max(tf.abs(tf.tensor(g))).dataSync()[0];
        expect(err).toBeLessThan(1e-3 * scale + 1e-5);
      }
      // merge() keeps the logits; unmerge() puts back the exact base weights.
      const baseBefore = model.namedParameters().filter(([n]) => n.includes('base_layer'));
      const copies = baseBefore.map(([, p]) => p.dataSync().slice());
      mergeLora(model);
      expect(maxAbs(model.forward({ inputIds, attentionMask }).logits, out.logits)).toBeLessThan(1e-5);
      unmergeLora(model);
      baseBefore.forEach(([, p], i) => {
        expect(p.dataSync()).toEqual(copies[i]);
      });
    });
  }

  it('a language mixture whose en expert is lora_qv reproduces lora_qv on en examples and the base on the others', async () => {
    const ref = JSON.parse(readFileSync(fx('reference.json'), 'utf8')) as Ref;
    const exp = ref.lora_qv as { logits: number[][][] };
    const base = ref.base_logits as unknown as number[][][];
    const model = await (mlmClass as MlmClass).fromPretrained(fx('base'));
    applyLoraMixture(model, {
      r: 4,
      alpha: 8,
      languages: ['en'],
      targetModules: ['query', 'value'],
      mode: 'language',
    });
    await loadLanguageExpert(model, 'en', fx('lora_qv'));
    addLanguageExpert(model, 'de');
    const inputIds = tf.tensor2d(ref.inputs.input_ids, undefined, 'int32');
    const attentionMask = tf.tensor2d(ref.inputs.attention_mask, undefined, 'int32');
    const langIds = ['en', 'de', 'en', 'de'];
    const out = routedForward(
      model as MlmModel & {
        forward(i: { inputIds: tf.Tensor; attentionMask: tf.Tensor; langIds: string[] }): {
          logits: tf.Tensor;
        };
      },
      { inputIds, attentionMask, langIds },
    );
    for (let b = 0; b < 4; b++) {
      const want = langIds[b] === 'en' ? exp.logits[b] : base[b];
      const got = tf.squeeze(tf.slice(out.logits, [b, 0, 0], [1, -1, -1]), [0]);
      expect(maxAbs(got, tf.tensor(want))).toBeLessThan(1e-4);
    }
  });
});
