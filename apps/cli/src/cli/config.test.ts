import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { applyOverrides, readConfigFile, validateConfig } from './config.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-cfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const schema = z.strictObject({
  model: z.string(),
  train: z
    .strictObject({
      steps: z.number().int().positive().default(100),
      lr: z.number().positive().default(1e-4),
    })
    .default({ steps: 100, lr: 1e-4 }),
});

describe('config files', () => {
  it('reads YAML and JSON and applies overrides with typed values', () => {
    const y = path.join(dir, 'a.yaml');
    writeFileSync(y, 'model: runs/m\ntrain:\n  steps: 10\n');
    const cfg = applyOverrides(readConfigFile(y), ['train.lr=0.001', 'train.steps=20', 'model=other']);
    expect(validateConfig(schema, cfg, y)).toEqual({ model: 'other', train: { steps: 20, lr: 0.001 } });
    const j = path.join(dir, 'a.json');
    writeFileSync(j, '{"model": "m"}');
    expect(validateConfig(schema, readConfigFile(j), j)).toEqual({
      model: 'm',
      train: { steps: 100, lr: 1e-4 },
    });
  });

  it('rejects unknown keys with their path', () => {
    expect(() => validateConfig(schema, { model: 'm', train: { stpes: 3 } }, 'c.yaml')).toThrow(
      /train\.stpes: unknown key/,
    );
    expect(() => validateConfig(schema, { model: 'm', extra: 1 }, 'c.yaml')).toThrow(/extra: unknown key/);
  });

  it('reports wrong types with the key path', () => {
    expect(() => validateConfig(schema, { model: 'm', train: { steps: -1 } }, 'c.yaml')).toThrow(
      /train\.steps: /,
    );
  });

  it('names the file and line of a YAML syntax error', () => {
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'model: m\ntrain:\n  steps: [1, 2\n');
    expect(() => readConfigFile(bad)).toThrow(/not valid YAML.*bad\.yaml:\d/);
  });

  it('rejects a malformed override', () => {
    expect(() => applyOverrides({}, ['noequals'])).toThrow(/key\.path=value/);
    expect(() => applyOverrides({ model: 'x' }, ['model.sub=1'])).toThrow(/'model' is not a mapping/);
  });
});
