import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { normalizeConfig } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { exportToOnnx } from './export.js';
import { loadCachedModel, ModelCacheKey } from './model-cache.js';
import { randomWeights } from './random.js';

const config = normalizeConfig({
  model_type: 'xlm-roberta',
  vocab_size: 40,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 24,
  max_position_embeddings: 20,
  id2label: { 0: 'O', 1: 'B-PER', 2: 'I-PER' },
});
const head = 'token-classification';
const root = mkdtempSync(path.join(tmpdir(), 'xlt-model-cache-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const inputs = { inputIds: [[0, 5, 6, 7, 2]], attentionMask: [[1, 1, 1, 1, 1]] };
const bytesOf = (seed: number) =>
  exportToOnnx({ config, head, weights: randomWeights(config, head, seed) }).model;
const entriesOf = (dir: string) => readdirSync(dir).filter((f) => /^[0-9a-f]{40}$/.test(f));

describe('loadCachedModel (optimised graphs kept on disk)', () => {
  it('builds and saves on a miss, then loads the entry without building, with the same outputs', async () => {
    const dir = path.join(root, 'a');
    let builds = 0;
    const build = () => {
      builds++;
      return bytesOf(1);
    };
    const first = await loadCachedModel('k1', build, dir, { threads: 1 });
    expect(first.hit).toBe(false);
    expect(builds).toBe(1);
    expect(readdirSync(first.entry).sort()).toEqual(['model.onnx', 'model.onnx.data']);
    const second = await loadCachedModel('k1', build, dir, { threads: 1 });
    expect(second.hit).toBe(true);
    expect(builds).toBe(1);
    expect(second.entry).toBe(first.entry);
    // the metadata (head, labels, config) survives onnxruntime's rewrite
    expect(second.model.head).toBe(head);
    expect(second.model.id2label).toEqual(first.model.id2label);
    const a = (await first.model.run(inputs)).logits?.data;
    const b = (await second.model.run(inputs)).logits?.data;
    expect(a).toBeDefined();
    expect(Array.from(b as Float32Array)).toEqual(Array.from(a as Float32Array));
    // another key is another entry, with its own weights' outputs
    const other = await loadCachedModel('k2', () => bytesOf(2), dir, { threads: 1 });
    expect(other.hit).toBe(false);
    expect(entriesOf(dir)).toHaveLength(2);
    const c = (await other.model.run(inputs)).logits?.data as Float32Array;
    expect(Array.from(c)).not.toEqual(Array.from(a as Float32Array));
    await Promise.all([first, second, other].map((m) => m.model.release()));
  });

  it('rebuilds an entry onnxruntime cannot load, and leaves no temporary folder behind', async () => {
    const dir = path.join(root, 'b');
    const first = await loadCachedModel('k', () => bytesOf(1), dir, { threads: 1 });
    await first.model.release();
    writeFileSync(path.join(first.entry, 'model.onnx'), 'not a model');
    let builds = 0;
    const again = await loadCachedModel(
      'k',
      () => {
        builds++;
        return bytesOf(1);
      },
      dir,
      { threads: 1 },
    );
    expect(again.hit).toBe(false);
    expect(builds).toBe(1);
    expect(readdirSync(dir)).toEqual([path.basename(again.entry)]);
    const hit = await loadCachedModel('k', () => bytesOf(1), dir, { threads: 1 });
    expect(hit.hit).toBe(true);
    await Promise.all([again, hit].map((m) => m.model.release()));
  });

  it('keeps at most maxEntries entries, deleting the least recently used', async () => {
    const dir = path.join(root, 'c');
    const load = (k: string) => loadCachedModel(k, () => bytesOf(1), dir, { threads: 1, maxEntries: 2 });
    for (const k of ['x', 'y', 'z']) await (await load(k)).model.release();
    expect(entriesOf(dir)).toHaveLength(2);
    // x went first: loading it again builds it
    const x = await load('x');
    expect(x.hit).toBe(false);
    const z = await load('z');
    expect(z.hit).toBe(true);
    await Promise.all([x, z].map((m) => m.model.release()));
  });

  it('a failed build leaves nothing in the folder and reaches the caller', async () => {
    const dir = path.join(root, 'd');
    await expect(loadCachedModel('k', () => new Uint8Array([1, 2, 3]), dir, { threads: 1 })).rejects.toThrow(
      /onnxruntime could not load the model/,
    );
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('ModelCacheKey', () => {
  it('differs when a value, a byte or a file changes, and is stable otherwise', () => {
    const file = path.join(root, 'w.bin');
    writeFileSync(file, Buffer.alloc(40 << 20, 7));
    const key = (cfg: unknown, data: Float32Array) =>
      new ModelCacheKey().json(cfg).bytes(data).file(file).digest();
    const base = key({ a: 1 }, new Float32Array([1, 2]));
    expect(key({ a: 1 }, new Float32Array([1, 2]))).toBe(base);
    expect(key({ a: 2 }, new Float32Array([1, 2]))).not.toBe(base);
    expect(key({ a: 1 }, new Float32Array([1, 3]))).not.toBe(base);
    const bytes = Buffer.alloc(40 << 20, 7);
    bytes[bytes.length - 1] = 8; // past the first 16 MiB chunk
    writeFileSync(file, bytes);
    expect(key({ a: 1 }, new Float32Array([1, 2]))).not.toBe(base);
  });
});
