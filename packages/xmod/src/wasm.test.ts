import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, sharedPath, sharedSkipReason } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { XmodForMaskedLM } from './index.js';

type Nested = number | Nested[];
const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);

describe.skipIf(sharedSkipReason('fixtures') !== undefined)('wasm backend: xmod-postnorm masked LM', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', log: false });
  });

  it('mixed-language logits, loss and gradients match transformers on wasm', async () => {
    const ref = JSON.parse(
      readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'),
    ) as {
      inputs: {
        input_ids: number[][];
        attention_mask: number[][];
        lang_ids: number[];
        mlm_labels: number[][];
      };
      mlm: { loss: number; logits: Nested; grads: Record<string, Nested> };
    };
    expect(tf.getBackend()).toBe('wasm');
    const model = await XmodForMaskedLM.fromPretrained(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
    const x = {
      inputIds: ref.inputs.input_ids,
      attentionMask: ref.inputs.attention_mask,
      langIds: ref.inputs.lang_ids,
      labels: ref.inputs.mlm_labels,
    };
    const out = model.forward(x);
    const got = out.logits.dataSync();
    const want = flat(ref.mlm.logits);
    let m = 0;
    for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs((got[i] ?? Number.NaN) - (want[i] ?? 0)));
    expect(m).toBeLessThan(1e-4);
    expect(Math.abs((out.loss?.dataSync()[0] ?? Number.NaN) - ref.mlm.loss)).toBeLessThan(1e-4);
    tf.dispose([out.logits, out.loss as tf.Tensor]);
    const names = Object.keys(ref.mlm.grads);
    const vars = names.map((n) => model.getParameter(n));
    const { value, grads } = tf.variableGrads(() => model.forward(x).loss as tf.Scalar, vars);
    for (const n of names) {
      const g = (grads[model.getParameter(n).name] as tf.Tensor).dataSync();
      const r = flat(ref.mlm.grads[n] as Nested);
      for (let i = 0; i < r.length; i++)
        expect(Math.abs((g[i] ?? Number.NaN) - (r[i] ?? 0)), n).toBeLessThanOrEqual(
          1e-3 * Math.abs(r[i] ?? 0) + 1e-5,
        );
    }
    value.dispose();
    tf.dispose(grads);
    model.dispose();
  });
});
