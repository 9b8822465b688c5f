import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { exportToOnnx, type HeadKind } from './export.js';
import { OnnxModel, readEncoderConfig, safetensorsWeights } from './runner.js';
import { withPeftAdapter } from './weights.js';

type Nested = number | Nested[];
const flat = (x: Nested): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x]);

function maxAbsDiff(a: ArrayLike<number>, b: number[]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}

async function exportDir(dir: string, head?: HeadKind): Promise<OnnxModel> {
  const config = readEncoderConfig(dir);
  const weights = safetensorsWeights(path.join(dir, 'model.safetensors'));
  try {
    const res = exportToOnnx({ config, weights, outputHiddenStates: true, ...(head ? { head } : {}) });
    return await OnnxModel.load(res.model, { threads: 1 });
  } finally {
    weights.close();
  }
}

const skip = sharedSkipReason('fixtures') !== undefined;

describe.skipIf(skip)('ONNX export of the xmod-postnorm fixtures (mixed-language batch)', () => {
  // biome-ignore lint/suspicious/noExplicitAny: reference JSON
  let ref: any;
  beforeAll(() => {
    ref = JSON.parse(readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'));
  });
  const inputs = () => ({
    inputIds: ref.inputs.input_ids as number[][],
    attentionMask: ref.inputs.attention_mask as number[][],
    langIds: ref.inputs.lang_ids as number[],
  });

  it('masked LM: logits and every hidden state within 1e-4', async () => {
    const m = await exportDir(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
    expect(m.head).toBe('masked-lm');
    expect(m.languages).toEqual(ref.inputs.languages);
    const out = await m.run(inputs());
    expect(out.logits!.dims).toEqual([4, 24, 2002]);
    expect(maxAbsDiff(out.logits!.data, flat(ref.mlm.logits))).toBeLessThan(1e-4);
    ref.mlm.hidden_states.forEach((h: Nested, k: number) => {
      expect(maxAbsDiff(out[`hidden_states_${k}`]!.data, flat(h)), `hidden_states_${k}`).toBeLessThan(1e-4);
    });
    await m.release();
  });

  it('languages by code give the same result as by index', async () => {
    const m = await exportDir(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
    const byIdx = await m.run(inputs());
    const codes = (ref.inputs.lang_ids as number[]).map((i) => ref.inputs.languages[i] as string);
    const byCode = await m.run({ ...inputs(), langIds: codes });
    expect(maxAbsDiff(byCode.logits!.data, Array.from(byIdx.logits!.data))).toBe(0);
    await expect(m.run({ ...inputs(), langIds: ['en_XX', 'xx', 'de_DE', 'de_DE'] })).rejects.toThrow(
      /unknown language 'xx'/,
    );
    await m.release();
  });

  it('sequence classification logits within 1e-4', async () => {
    const m = await exportDir(sharedPath('fixtures', 'xmod-postnorm', 'seqcls'));
    const out = await m.run(inputs());
    expect(out.logits!.dims).toEqual([4, 3]);
    expect(maxAbsDiff(out.logits!.data, flat(ref.seqcls.logits))).toBeLessThan(1e-4);
  });

  it('token classification logits within 1e-4', async () => {
    const m = await exportDir(sharedPath('fixtures', 'xmod-postnorm', 'tokcls'));
    const out = await m.run(inputs());
    expect(out.logits!.dims).toEqual([4, 24, 7]);
    expect(maxAbsDiff(out.logits!.data, flat(ref.tokcls.logits))).toBeLessThan(1e-4);
  });

  it('question answering start/end logits within 1e-4', async () => {
    const m = await exportDir(sharedPath('fixtures', 'xmod-postnorm', 'qa'));
    const out = await m.run(inputs());
    expect(maxAbsDiff(out.start_logits!.data, flat(ref.qa.start_logits))).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.end_logits!.data, flat(ref.qa.end_logits))).toBeLessThan(1e-4);
  });
});

describe.skipIf(skip)('ONNX export of plain XLM-R (xlmr-lora/base)', () => {
  it('gives base_logits within 1e-4 and takes no lang_ids', async () => {
    const ref = JSON.parse(readFileSync(sharedPath('fixtures', 'xlmr-lora', 'reference.json'), 'utf8'));
    const m = await exportDir(sharedPath('fixtures', 'xlmr-lora', 'base'));
    expect(m.languages).toEqual([]);
    expect(m.session.inputNames).not.toContain('lang_ids');
    const out = await m.run({ inputIds: ref.inputs.input_ids, attentionMask: ref.inputs.attention_mask });
    expect(maxAbsDiff(out.logits!.data, flat(ref.base_logits))).toBeLessThan(1e-4);
  });
});

describe.skipIf(skip)('ONNX export with a merged PEFT LoRA adapter', () => {
  it.each(['lora_qv', 'lora_all'])(
    '%s merged at export reproduces the PEFT logits within 1e-4',
    async (name) => {
      const ref = JSON.parse(readFileSync(sharedPath('fixtures', 'xlmr-lora', 'reference.json'), 'utf8'));
      const dir = sharedPath('fixtures', 'xlmr-lora', 'base');
      const config = readEncoderConfig(dir);
      const base = safetensorsWeights(path.join(dir, 'model.safetensors'));
      const weights = withPeftAdapter(base, sharedPath('fixtures', 'xlmr-lora', name));
      const m = await OnnxModel.load(exportToOnnx({ config, weights }).model, { threads: 1 });
      base.close();
      const out = await m.run({ inputIds: ref.inputs.input_ids, attentionMask: ref.inputs.attention_mask });
      const want = flat(ref[name].logits);
      expect(maxAbsDiff(out.logits!.data, want)).toBeLessThan(1e-4);
      // and the adapter really changes the output
      expect(maxAbsDiff(out.logits!.data, flat(ref.base_logits))).toBeGreaterThan(1e-3);
    },
  );
});
