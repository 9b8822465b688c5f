import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, sharedPath, sharedSkipReason } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  XmodForMaskedLM,
  XmodForQuestionAnswering,
  XmodForSequenceClassification,
  XmodForTokenClassification,
  type XmodPreTrainedModel,
} from './index.js';

type Nested = number | Nested[];
interface Ref {
  inputs: {
    input_ids: number[][];
    attention_mask: number[][];
    lang_ids: number[];
    mlm_labels: number[][];
    tag_labels: number[][];
    cls_labels: number[];
    start_positions: number[];
    end_positions: number[];
  };
  [task: string]: unknown;
}
interface TaskRef {
  loss: number;
  grads: Record<string, Nested>;
  [k: string]: unknown;
}

const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);

function maxAbsDiff(t: tf.Tensor, ref: Nested): number {
  const a = t.dataSync();
  const b = flat(ref);
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs((a[i] ?? Number.NaN) - (b[i] ?? 0)));
  return m;
}

/** Gradient check: |g - ref| <= 1e-3 |ref| + 1e-5 elementwise. */
function expectGradClose(g: tf.Tensor, ref: Nested, name: string): void {
  const a = g.dataSync();
  const b = flat(ref);
  expect(a.length, name).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < b.length; i++) {
    const r = b[i] ?? 0;
    const err = Math.abs((a[i] ?? Number.NaN) - r) - (1e-3 * Math.abs(r) + 1e-5);
    worst = Math.max(worst, err);
  }
  expect(worst, name).toBeLessThanOrEqual(0);
}

function checkGrads(
  model: XmodPreTrainedModel,
  lossFn: () => tf.Scalar,
  grads: Record<string, Nested>,
): void {
  const names = Object.keys(grads);
  const vars = names.map((n) => model.getParameter(n));
  const { value, grads: g } = tf.variableGrads(lossFn, vars);
  for (const n of names) {
    const v = model.getParameter(n);
    const gt = g[v.name];
    expect(gt, n).toBeDefined();
    expectGradClose(gt as tf.Tensor, grads[n] as Nested, n);
  }
  value.dispose();
  tf.dispose(g);
}

const skip = sharedSkipReason('fixtures');

describe.skipIf(skip !== undefined)('xmod-postnorm fixture (transformers XmodFor*)', () => {
  let ref: Ref;
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
    ref = JSON.parse(readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8')) as Ref;
  });
  const base = () => ({
    inputIds: ref.inputs.input_ids,
    attentionMask: ref.inputs.attention_mask,
    langIds: ref.inputs.lang_ids,
  });

  it('masked LM: logits, every hidden state, loss and gradients match', async () => {
    const model = await XmodForMaskedLM.fromPretrained(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
    const r = ref.mlm as TaskRef;
    const before = tf.memory().numTensors;
    const out = model.forward({ ...base(), labels: ref.inputs.mlm_labels, outputHiddenStates: true });
    expect(maxAbsDiff(out.logits, r.logits as Nested)).toBeLessThan(1e-4);
    const hs = r.hidden_states as Nested[];
    expect(out.hiddenStates?.length).toBe(hs.length);
    hs.forEach((h, i) => {
      expect(maxAbsDiff(out.hiddenStates?.[i] as tf.Tensor, h)).toBeLessThan(1e-4);
    });
    expect(Math.abs((out.loss?.dataSync()[0] ?? Number.NaN) - r.loss)).toBeLessThan(1e-4);
    tf.dispose([out.logits, out.loss as tf.Tensor, ...(out.hiddenStates ?? [])]);
    expect(tf.memory().numTensors).toBe(before);
    checkGrads(
      model,
      () => model.forward({ ...base(), labels: ref.inputs.mlm_labels }).loss as tf.Scalar,
      r.grads,
    );
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it('language codes work as langIds and give the same logits as indices', async () => {
    const model = await XmodForMaskedLM.fromPretrained(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
    const codes = ref.inputs.lang_ids.map((i) => model.config.languages[i] as string);
    const a = model.forward(base()).logits;
    const b = model.forward({ ...base(), langIds: codes }).logits;
    expect(maxAbsDiff(a, b.arraySync() as Nested)).toBe(0);
    tf.dispose([a, b]);
    model.dispose();
  });

  it('sequence classification: logits, loss and gradients match', async () => {
    const model = await XmodForSequenceClassification.fromPretrained(
      sharedPath('fixtures', 'xmod-postnorm', 'seqcls'),
    );
    const r = ref.seqcls as TaskRef;
    const out = model.forward({ ...base(), labels: ref.inputs.cls_labels });
    expect(maxAbsDiff(out.logits, r.logits as Nested)).toBeLessThan(1e-4);
    expect(Math.abs((out.loss?.dataSync()[0] ?? Number.NaN) - r.loss)).toBeLessThan(1e-4);
    checkGrads(
      model,
      () => model.forward({ ...base(), labels: ref.inputs.cls_labels }).loss as tf.Scalar,
      r.grads,
    );
    model.dispose();
  });

  it('token classification: logits, loss (ignore -100) and gradients match', async () => {
    const model = await XmodForTokenClassification.fromPretrained(
      sharedPath('fixtures', 'xmod-postnorm', 'tokcls'),
    );
    const r = ref.tokcls as TaskRef;
    const out = model.forward({ ...base(), labels: ref.inputs.tag_labels });
    expect(maxAbsDiff(out.logits, r.logits as Nested)).toBeLessThan(1e-4);
    expect(Math.abs((out.loss?.dataSync()[0] ?? Number.NaN) - r.loss)).toBeLessThan(1e-4);
    checkGrads(
      model,
      () => model.forward({ ...base(), labels: ref.inputs.tag_labels }).loss as tf.Scalar,
      r.grads,
    );
    model.dispose();
  });

  it('question answering: start/end logits, loss and gradients match', async () => {
    const model = await XmodForQuestionAnswering.fromPretrained(
      sharedPath('fixtures', 'xmod-postnorm', 'qa'),
    );
    const r = ref.qa as TaskRef;
    const lab = { startPositions: ref.inputs.start_positions, endPositions: ref.inputs.end_positions };
    const out = model.forward({ ...base(), ...lab });
    expect(maxAbsDiff(out.startLogits, r.start_logits as Nested)).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.endLogits, r.end_logits as Nested)).toBeLessThan(1e-4);
    expect(Math.abs((out.loss?.dataSync()[0] ?? Number.NaN) - r.loss)).toBeLessThan(1e-4);
    checkGrads(model, () => model.forward({ ...base(), ...lab }).loss as tf.Scalar, r.grads);
    model.dispose();
  });
});

describe.skipIf(skip !== undefined)('xlmr-lora/base fixture (XLMRobertaForMaskedLM)', () => {
  it('plain XLM-R masked-LM logits match base_logits', async () => {
    await initBackend({ backend: 'cpu', log: false });
    const r = JSON.parse(readFileSync(sharedPath('fixtures', 'xlmr-lora', 'reference.json'), 'utf8')) as {
      inputs: { input_ids: number[][]; attention_mask: number[][] };
      base_logits: Nested;
    };
    const model = await XmodForMaskedLM.fromPretrained(sharedPath('fixtures', 'xlmr-lora', 'base'));
    expect(model.config.model_type).toBe('xlm-roberta');
    expect(model.languageModuleParameterNames()).toEqual([]);
    const out = model.forward({ inputIds: r.inputs.input_ids, attentionMask: r.inputs.attention_mask });
    expect(maxAbsDiff(out.logits, r.base_logits)).toBeLessThan(1e-4);
    out.logits.dispose();
    model.dispose();
  });
});
