import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CHECKPOINT_FILES,
  checkpointFiles,
  findCheckpoint,
  legacyKeyName,
  openCheckpoint,
  ShardedCheckpointReader,
} from './checkpoint.js';
import { XltFormatError, XltNotFoundError } from './errors.js';
import type { TensorReader } from './reader.js';
import { SafetensorsReader, writeSafetensors } from './safetensors.js';
import { TorchCheckpointReader } from './torch.js';

const fixture = (name: string) => fileURLToPath(new URL(`../test-fixtures/${name}`, import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'xlt-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
/** A new model folder holding copies of `files` (name in the folder -> source path). */
function folder(files: Record<string, string>): string {
  const dir = path.join(tmp, `m${n++}`);
  mkdirSync(dir);
  for (const [name, src] of Object.entries(files)) copyFileSync(src, path.join(dir, name));
  return dir;
}

const f32 = (values: number[], shape = [values.length]) => ({
  dtype: 'F32' as const,
  shape,
  data: new Float32Array(values),
});

function values(r: TensorReader): Record<string, number[]> {
  return Object.fromEntries(r.names().map((k) => [k, [...(r.get(k).data as Float32Array)]]));
}

function use<T>(r: TensorReader, fn: (r: TensorReader) => T): T {
  try {
    return fn(r);
  } finally {
    r.close();
  }
}

describe('openCheckpoint', () => {
  it('prefers model.safetensors, then the safetensors index, then pytorch_model.bin, then its index', async () => {
    const dir = folder({ 'pytorch_model.bin': fixture('nested.bin') });
    use(openCheckpoint(dir), (r) => {
      expect(r).toBeInstanceOf(TorchCheckpointReader);
      expect(r.path).toBe(path.join(dir, 'pytorch_model.bin'));
      expect(r.names()).toEqual(['encoder.weight', 'encoder.bias']);
    });
    await writeSafetensors(path.join(dir, 'model.safetensors'), { w: f32([1]) });
    use(openCheckpoint(dir), (r) => {
      expect(r).toBeInstanceOf(SafetensorsReader);
      expect(r.names()).toEqual(['w']);
    });
    expect(findCheckpoint(dir)).toBe(path.join(dir, 'model.safetensors'));
  });

  it('presents sharded safetensors (model.safetensors.index.json) as one checkpoint', async () => {
    const dir = folder({});
    await writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), {
      'a.weight': f32([1, 2], [1, 2]),
      'b.weight': f32([3]),
    });
    await writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), { 'c.bias': f32([4, 5]) });
    writeFileSync(
      path.join(dir, 'model.safetensors.index.json'),
      JSON.stringify({
        metadata: { total_size: 20 },
        weight_map: {
          'a.weight': 'model-00001-of-00002.safetensors',
          'b.weight': 'model-00001-of-00002.safetensors',
          'c.bias': 'model-00002-of-00002.safetensors',
        },
      }),
    );
    // a stray pytorch_model.bin loses to the safetensors index
    copyFileSync(fixture('nested.bin'), path.join(dir, 'pytorch_model.bin'));
    use(openCheckpoint(dir), (r) => {
      expect(r).toBeInstanceOf(ShardedCheckpointReader);
      expect(r.path).toBe(path.join(dir, 'model.safetensors.index.json'));
      expect((r as ShardedCheckpointReader).shards.map((s) => path.basename(s))).toEqual([
        'model-00001-of-00002.safetensors',
        'model-00002-of-00002.safetensors',
      ]);
      expect(r.info('a.weight')).toMatchObject({ dtype: 'F32', shape: [1, 2] });
      expect(values(r)).toEqual({ 'a.weight': [1, 2], 'b.weight': [3], 'c.bias': [4, 5] });
      expect(r.has('nope')).toBe(false);
      expect(() => r.get('nope')).toThrow(XltNotFoundError);
    });
    // the files a cache key must cover: the index and each shard once, not the stray .bin
    expect(checkpointFiles(dir).map((f) => path.basename(f))).toEqual([
      'model.safetensors.index.json',
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    expect(checkpointFiles(folder({}))).toEqual([]);
  });

  it('presents sharded pytorch_model.bin files as one checkpoint, LayerNorm gamma/beta renamed', () => {
    const dir = folder({
      'pytorch_model-00001-of-00002.bin': fixture('shard-1.bin'),
      'pytorch_model-00002-of-00002.bin': fixture('legacy.bin'),
    });
    writeFileSync(
      path.join(dir, 'pytorch_model.bin.index.json'),
      JSON.stringify({
        metadata: { total_size: 40 },
        weight_map: {
          'embeddings.weight': 'pytorch_model-00001-of-00002.bin',
          'encoder.LayerNorm.gamma': 'pytorch_model-00002-of-00002.bin',
          'encoder.LayerNorm.beta': 'pytorch_model-00002-of-00002.bin',
          'encoder.dense.weight': 'pytorch_model-00002-of-00002.bin',
        },
      }),
    );
    use(openCheckpoint(dir), (r) => {
      expect(r.path).toBe(path.join(dir, 'pytorch_model.bin.index.json'));
      expect(values(r)).toEqual({
        'embeddings.weight': [9, 8],
        'encoder.LayerNorm.weight': [1, 1],
        'encoder.LayerNorm.bias': [0, 0.5],
        'encoder.dense.weight': [1, 2, 3, 4],
      });
      expect(r.info('encoder.LayerNorm.weight')).toMatchObject({ dtype: 'F32', shape: [2] });
      expect(r.has('encoder.LayerNorm.gamma')).toBe(false);
    });
  });

  it('renames legacy LayerNorm.gamma/.beta names on read (as transformers does), unless the new name exists', async () => {
    expect(legacyKeyName('bert.embeddings.LayerNorm.gamma')).toBe('bert.embeddings.LayerNorm.weight');
    expect(legacyKeyName('x.LayerNorm.beta')).toBe('x.LayerNorm.bias');
    expect(legacyKeyName('x.gamma_1')).toBe('x.gamma_1');
    expect(legacyKeyName('x.betas.weight')).toBe('x.betas.weight');
    expect(legacyKeyName('mixer.gamma')).toBe('mixer.gamma'); // only LayerNorm parameters
    use(openCheckpoint(folder({ 'pytorch_model.bin': fixture('legacy.bin') })), (r) => {
      expect(r.names()).toEqual([
        'encoder.LayerNorm.weight',
        'encoder.LayerNorm.bias',
        'encoder.dense.weight',
      ]);
      expect([...r.get('encoder.LayerNorm.bias').data]).toEqual([0, 0.5]);
    });
    const dir = folder({});
    await writeSafetensors(path.join(dir, 'model.safetensors'), {
      'n.LayerNorm.gamma': f32([1]),
      'n.LayerNorm.weight': f32([2]),
      'm.LayerNorm.beta': f32([3]),
      'k.beta': f32([4]),
    });
    use(openCheckpoint(dir), (r) => {
      expect(values(r)).toEqual({
        'n.LayerNorm.gamma': [1],
        'n.LayerNorm.weight': [2],
        'm.LayerNorm.bias': [3],
        'k.beta': [4],
      });
    });
  });

  it('names the folder and every file it looked for when there are no weights', () => {
    const dir = folder({});
    expect(findCheckpoint(dir)).toBeUndefined();
    let err: unknown;
    try {
      openCheckpoint(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(XltNotFoundError);
    const e = err as XltNotFoundError;
    expect(e.file).toBe(dir);
    for (const f of CHECKPOINT_FILES) expect(e.message).toContain(f);
  });

  it('refuses an index whose shard lacks a mapped tensor, or that points outside its folder', async () => {
    const dir = folder({});
    await writeSafetensors(path.join(dir, 'one.safetensors'), { a: f32([1]) });
    const index = path.join(dir, 'model.safetensors.index.json');
    writeFileSync(index, JSON.stringify({ weight_map: { a: 'one.safetensors', b: 'one.safetensors' } }));
    expect(() => openCheckpoint(dir)).toThrow(expect.objectContaining({ tensor: 'b', code: 'FORMAT' }));
    writeFileSync(index, JSON.stringify({ weight_map: { a: '../one.safetensors' } }));
    expect(() => openCheckpoint(dir)).toThrow(XltFormatError);
    writeFileSync(index, JSON.stringify({ weight_map: { a: 'two.safetensors' } }));
    expect(() => openCheckpoint(dir)).toThrow(XltNotFoundError);
    writeFileSync(index, '{"weights": {}}');
    expect(() => openCheckpoint(dir)).toThrow(/weight_map/);
  });
});
