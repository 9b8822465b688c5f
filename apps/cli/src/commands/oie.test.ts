import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../cli/commands.js';
import { EXIT, runCli } from '../cli/main.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-oie-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const skip = sharedSkipReason('data/oie') ?? sharedSkipReason('fixtures');
const repo = path.resolve(import.meta.dirname, '..', '..', '..', '..');

describe.skipIf(skip !== undefined)(`xlt oie (${skip ?? 'shared data found'})`, () => {
  it('runs the MT4CrossIE recipe config end to end on a tiny budget and reports per set and language', async () => {
    let out = '';
    let err = '';
    const run = path.join(dir, 'run');
    const code = await runCli(
      [
        'oie',
        '--config',
        path.join(repo, 'examples', 'oie', 'mt4crossie.yaml'),
        '--data-root',
        sharedPath('data'),
        '--train-limit',
        '40',
        '--eval-limit',
        '8',
        '--sets',
        '["carb","reoie-es","benchie-de"]',
        '--set',
        'training.size.hiddenSize=32',
        '--set',
        'training.size.numLayers=1',
        '--set',
        'training.stages=[{"name":"s1","trainable":"embeddings+head","steps":3},{"name":"s2","trainable":"all-but-embeddings","steps":3},{"name":"s3","trainable":"lora+head","steps":3}]',
        '--run-dir',
        run,
      ],
      COMMANDS,
      { out: (s) => (out += s), err: (s) => (err += s) },
    );
    expect(code, err + out).toBe(EXIT.ok);
    const res = JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8')) as {
      rows: Array<{ benchmark: string; lang: string; system: string; f1: number }>;
      losses: number[];
    };
    expect(res.losses.length).toBe(9);
    const sets = new Set(res.rows.map((r) => `${r.benchmark}/${r.lang}`));
    expect(sets.size).toBe(3);
    for (const r of res.rows) expect(r.f1 >= 0 && r.f1 <= 1).toBe(true);
    expect(new Set(res.rows.map((r) => r.system)).size).toBeGreaterThanOrEqual(2);
    expect(existsSync(path.join(run, 'results.md'))).toBe(true);
    expect(out).toMatch(/\| benchmark \| lang \| system/);
  });
});
