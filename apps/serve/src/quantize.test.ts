import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type SafetensorsTensor, writeSafetensors } from '@xlt/core';
import { randomWeights } from '@xlt/onnx';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServedModel } from './model.js';
import { writeTinyModel } from './testing.js';

const root = mkdtempSync(path.join(tmpdir(), 'xlt-serve-int8-'));
const modelDir = path.join(root, 'model');
const moduleFile = path.join(root, 'sw_KE.safetensors');

beforeAll(async () => {
  const config = await writeTinyModel(modelDir, 'token-classification');
  const w = randomWeights({ ...config, languages: ['sw_KE'] }, 'token-classification', 9, 0.5);
  const tensors: Record<string, SafetensorsTensor> = {};
  for (const n of w.names().filter((x) => x.includes('adapter_modules'))) {
    const t = w.get(n);
    tensors[n] = { dtype: 'F32', shape: t.shape, data: t.data };
  }
  await writeSafetensors(moduleFile, tensors);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const inputIds = [
  [0, 5, 9, 17, 33, 2],
  [0, 40, 41, 42, 2, 1],
];
const attentionMask = [
  [1, 1, 1, 1, 1, 1],
  [1, 1, 1, 1, 1, 0],
];

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - (b[i] as number))), 0);
}

describe('xlt-serve --quantize int8 (ServedModel quantize option)', () => {
  it('serves int8 weight MatMuls, close to float32, and stays int8 after a language is added', async () => {
    const fp32 = await ServedModel.load(modelDir, { threads: 1 });
    const int8 = await ServedModel.load(modelDir, { threads: 1, quantize: 'int8' });
    expect(fp32.quantize).toBeUndefined();
    expect(int8.quantize).toBe('int8');
    const compare = async (lang: string) => {
      const a = (await fp32.run({ inputIds, attentionMask, langIds: [lang, lang] })).logits!;
      const b = (await int8.run({ inputIds, attentionMask, langIds: [lang, lang] })).logits!;
      expect(b.dims).toEqual(a.dims);
      return maxAbsDiff(a.data, b.data);
    };
    const before = await compare('de_DE');
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(0.1); // measured 0.050
    await fp32.addLanguage('sw_KE', moduleFile);
    await int8.addLanguage('sw_KE', moduleFile);
    const after = await compare('sw_KE');
    expect(after).toBeGreaterThan(0);
    expect(after).toBeLessThan(0.2); // measured 0.138
    console.log(
      `[xlt-serve] int8 tiny model: max |logit change| ${before.toFixed(4)}, ${after.toFixed(4)} after sw_KE`,
    );
    await fp32.close();
    await int8.close();
  });
});
