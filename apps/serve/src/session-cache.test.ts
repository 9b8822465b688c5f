import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServedModel } from './model.js';
import { writeTinyModel, writeTinyModule } from './testing.js';

const root = mkdtempSync(path.join(tmpdir(), 'xlt-serve-cache-'));
const modelDir = path.join(root, 'model');
const modulesDir = path.join(root, 'modules');
const cacheDir = path.join(root, 'cache');

beforeAll(async () => {
  await writeTinyModel(modelDir, 'token-classification');
  mkdirSync(modulesDir);
  await writeTinyModule(path.join(modulesDir, 'sw_KE.safetensors'), 'sw_KE');
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
const logits = async (m: ServedModel, lang: string) =>
  Array.from((await m.run({ inputIds, attentionMask, langIds: [lang, lang] })).logits?.data ?? []);
const entries = () => readdirSync(cacheDir).filter((f) => /^[0-9a-f]{40}$/.test(f)).length;

describe('xlt-serve --cache-dir (ServedModel cacheDir option)', () => {
  it('a restart loads the graph from the cache, with the outputs of an uncached start', async () => {
    const plain = await ServedModel.load(modelDir, { threads: 1 });
    expect(plain.sessionFromCache).toBeUndefined();
    const cold = await ServedModel.load(modelDir, { threads: 1, cacheDir });
    expect(cold.sessionFromCache).toBe(false);
    const warm = await ServedModel.load(modelDir, { threads: 1, cacheDir });
    expect(warm.sessionFromCache).toBe(true);
    const want = await logits(plain, 'de_DE');
    expect(want.length).toBeGreaterThan(0);
    expect(await logits(cold, 'de_DE')).toEqual(want);
    expect(await logits(warm, 'de_DE')).toEqual(want);
    await Promise.all([plain, cold, warm].map((m) => m.close()));
  });

  it('a language added is a new graph; a restart with the module loads both graphs from the cache', async () => {
    const before = entries();
    const m = await ServedModel.load(modelDir, { threads: 1, cacheDir });
    await m.addLanguage('sw_KE', path.join(modulesDir, 'sw_KE.safetensors'));
    expect(m.sessionFromCache).toBe(false);
    expect(entries()).toBe(before + 1);
    const want = await logits(m, 'sw_KE');
    const again = await ServedModel.load(modelDir, { threads: 1, cacheDir, modulesDir });
    expect(again.sessionFromCache).toBe(true);
    expect(again.languages).toContain('sw_KE');
    expect(await logits(again, 'sw_KE')).toEqual(want);
    await Promise.all([m, again].map((x) => x.close()));
  });

  it('int8 and float32 graphs of the same weights are separate entries', async () => {
    const fp32 = await ServedModel.load(modelDir, { threads: 1, cacheDir });
    expect(fp32.sessionFromCache).toBe(true);
    const int8 = await ServedModel.load(modelDir, { threads: 1, cacheDir, quantize: 'int8' });
    expect(int8.sessionFromCache).toBe(false);
    const int8Again = await ServedModel.load(modelDir, { threads: 1, cacheDir, quantize: 'int8' });
    expect(int8Again.sessionFromCache).toBe(true);
    expect(await logits(int8Again, 'de_DE')).toEqual(await logits(int8, 'de_DE'));
    expect(await logits(int8, 'de_DE')).not.toEqual(await logits(fp32, 'de_DE'));
    await Promise.all([fp32, int8, int8Again].map((x) => x.close()));
  });
});
