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

    const mixupRun = async (name: string, ...extra: string[]) => {
      const run = path.join(dir, name);
      const r = await cli(
        'finetune',
        '--model',
        sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
        ...common,
        ...extra,
        '--steps',
        '2',
        '--run-dir',
        run,
      );
      expect(r.code, r.err + r.out).toBe(EXIT.ok);
      const res = JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8')) as {
        stages: Array<{ steps: number; firstLoss: number }>;
      };
      return { out: r.out, firstLoss: res.stages[0]?.firstLoss as number };
    };

    it('embedding mixup without code-switching: the copies keep their tokens and the mixing weight changes the loss', async () => {
      const half = await mixupRun('mix-half', '--set', 'salt.switch=false', '--set', 'salt.mixup=0.5');
      expect(half.out).toMatch(/salt: 48 self-augmented copies .*tokens mixed \(embedding mixup 0\.5\)/);
      expect(half.out).not.toMatch(/re-sampled and mixed/);
      const full = await mixupRun('mix-full', '--set', 'salt.switch=false', '--set', 'salt.mixup=1');
      // same seed, same batches: only the mixing weight differs, so the first loss must too
      expect(Number.isFinite(half.firstLoss)).toBe(true);
      expect(Math.abs(half.firstLoss - full.firstLoss)).toBeGreaterThan(1e-6);
      const both = await mixupRun('mix-both', '--set', 'salt.mixup=0.5');
      expect(both.out).toMatch(/tokens re-sampled and mixed \(embedding mixup 0\.5\)/);
    }, 600_000);

    it('refuses copies that would equal the originals (salt.switch false without mixup)', async () => {
      const r = await cli(
        'finetune',
        '--model',
        sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
        ...common,
        '--set',
        'salt.switch=false',
        '--steps',
        '1',
        '--run-dir',
        path.join(dir, 'nothing'),
      );
      expect(r.code).not.toBe(EXIT.ok);
      expect(r.err).toMatch(/salt\.switch false needs salt\.mixup > 0/);
    });
  },
);
