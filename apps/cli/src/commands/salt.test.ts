import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-salt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const skip = sharedSkipReason('data') ?? sharedSkipReason('fixtures');

describe.skipIf(skip !== undefined)(
  `finetune --preset salt with salt.source self (${skip ?? 'shared data found'})`,
  () => {
    const common = [
      '--task',
      'ner',
      '--train',
      'panx/train-en.tsv',
      '--data-root',
      sharedPath('data'),
      '--tokenizer',
      sharedPath('fixtures', 'tokenizer', 'tokenizer.json'),
      '--language',
      'en_XX',
      '--preset',
      'salt',
      '--set',
      'salt.source=self',
      '--set',
      'salt.ratio=0.2',
      '--max-train-examples',
      '48',
      '--batch-size',
      '8',
      '--max-length',
      '24',
      '--lr',
      '1e-3',
    ];

    it('augments with the checkpoint own masked-LM and trains task + augmented + KL on the compiled step', async () => {
      const run = path.join(dir, 'ft');
      const r = await cli(
        'finetune',
        '--model',
        sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
        ...common,
        '--steps',
        '6',
        '--run-dir',
        run,
      );
      expect(r.code, r.err + r.out).toBe(EXIT.ok);
      expect(r.out).toMatch(/salt: 48 self-augmented copies .*tokens re-sampled, (1\d|2\d)\.\d%\)/);
      expect(r.out).toMatch(/engine onnxruntime: the SALT objective/);
      const res = JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8')) as {
        stages: Array<{ steps: number; firstLoss: number; finalLoss: number }>;
      };
      expect(res.stages[0]?.steps).toBe(6);
      expect(Number.isFinite(res.stages[0]?.finalLoss)).toBe(true);
      expect(existsSync(path.join(run, 'model', 'model.safetensors'))).toBe(true);
    });

    it('a checkpoint without a masked-LM head is refused with the field to set', async () => {
      const r = await cli(
        'finetune',
        '--model',
        sharedPath('fixtures', 'xmod-postnorm', 'tokcls'),
        ...common,
        '--steps',
        '1',
        '--run-dir',
        path.join(dir, 'bad'),
      );
      expect(r.code).not.toBe(EXIT.ok);
      expect(r.err).toMatch(/salt\.mlm/);
    });
  },
);
