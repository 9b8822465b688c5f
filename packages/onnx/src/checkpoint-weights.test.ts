import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors, XltNotFoundError } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { checkpointWeights } from './runner.js';

/** torch.save fixtures of @xlt/core (written by its test-fixtures/make_torch_fixtures.py). */
const torchFixture = (name: string) =>
  fileURLToPath(new URL(`../../core/test-fixtures/${name}`, import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'onnx-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('checkpointWeights', () => {
  it('reads a folder holding only pytorch_model.bin, as float32 (views gathered, F16/I64 converted)', () => {
    const dir = path.join(tmp, 'bin');
    mkdirSync(dir);
    copyFileSync(torchFixture('basic.bin'), path.join(dir, 'pytorch_model.bin'));
    const w = checkpointWeights(dir);
    try {
      expect(w.has('transposed')).toBe(true);
      expect(w.has('nope')).toBe(false);
      expect(w.get('transposed')).toEqual({ data: new Float32Array([0, 3, 1, 4, 2, 5]), shape: [3, 2] });
      expect(w.get('f16').data).toEqual(new Float32Array([1, -2.5, 65504]));
      expect(w.get('i64').data).toEqual(new Float32Array([0, -1, 2 ** 40 + 3, -(2 ** 62)]));
    } finally {
      w.close();
    }
  });

  it('prefers model.safetensors, and names the folder when it has no weights', async () => {
    const dir = path.join(tmp, 'both');
    mkdirSync(dir);
    copyFileSync(torchFixture('basic.bin'), path.join(dir, 'pytorch_model.bin'));
    await writeSafetensors(path.join(dir, 'model.safetensors'), {
      x: { dtype: 'F32', shape: [1], data: new Float32Array([7]) },
    });
    const w = checkpointWeights(dir);
    try {
      expect(w.has('x')).toBe(true);
      expect(w.has('f32')).toBe(false);
    } finally {
      w.close();
    }
    const empty = path.join(tmp, 'empty');
    mkdirSync(empty);
    expect(() => checkpointWeights(empty)).toThrow(XltNotFoundError);
    expect(() => checkpointWeights(empty)).toThrow(/pytorch_model\.bin/);
  });
});
