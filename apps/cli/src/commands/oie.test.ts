import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { XmodForMaskedLM } from '@xlt/xmod';
import { afterAll, describe, expect, it, vi } from 'vitest';
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
    const warn = vi.spyOn(console, 'warn');
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
    // the backend is chosen and reported, and tfjs prints no "install our node backend" notice
    const warned = warn.mock.calls.map((c) => c.join(' ')).join('\n');
    warn.mockRestore();
    expect(warned).not.toMatch(/node backend|tfjs-node/);
    expect(out + err).toMatch(/\[backend\] \[xlt\] tfjs backend: /);
    const res = JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8')) as {
      rows: Array<{ benchmark: string; lang: string; system: string; f1: number }>;
      losses: number[];
    };
    expect(res.losses.length).toBe(9);
    // every stage ran through @xlt/trainer's fit on the compiled engine, and the log says so
    for (const stage of ['s1', 's2', 's3'])
      expect(out + err).toMatch(
        new RegExp(`\\[${stage}\\] engine onnxruntime: supported model and head loss`),
      );
    const sets = new Set(res.rows.map((r) => `${r.benchmark}/${r.lang}`));
    expect(sets.size).toBe(3);
    for (const r of res.rows) expect(r.f1 >= 0 && r.f1 <= 1).toBe(true);
    expect(new Set(res.rows.map((r) => r.system)).size).toBeGreaterThanOrEqual(2);
    expect(existsSync(path.join(run, 'results.md'))).toBe(true);
    expect(out).toMatch(/\| benchmark \| lang \| system/);
  });

  it('examples/oie/pretrained.yaml: starts from a pre-trained encoder folder (training.encoder)', async () => {
    const enc = path.join(dir, 'encoder');
    const mlm = new XmodForMaskedLM({
      model_type: 'xlm-roberta',
      vocab_size: 2002, // the fixture tokenizer's
      hidden_size: 32,
      num_hidden_layers: 1,
      num_attention_heads: 2,
      intermediate_size: 64,
    });
    await mlm.savePretrained(enc);
    mlm.dispose();
    const common = [
      'oie',
      '--config',
      path.join(repo, 'examples', 'oie', 'pretrained.yaml'),
      '--data-root',
      sharedPath('data'),
      '--tokenizer',
      sharedPath('fixtures', 'tokenizer', 'tokenizer.json'),
      '--train-limit',
      '20',
      '--eval-limit',
      '4',
      '--sets',
      '["carb"]',
      '--set',
      'training.steps=2',
      '--set',
      'training.size.oie.n_arg_heads=2',
    ];
    let out = '';
    let err = '';
    const io = { out: (s: string) => (out += s), err: (s: string) => (err += s) };
    const run = path.join(dir, 'run-enc');
    const code = await runCli(
      [...common, '--set', `training.encoder=${enc}`, '--run-dir', run],
      COMMANDS,
      io,
    );
    expect(code, err + out).toBe(EXIT.ok);
    const res = JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8')) as {
      losses: number[];
      config: { training: { encoder: string } };
    };
    expect(res.config.training.encoder).toBe(enc);
    expect(res.losses.length).toBe(2);
    err = '';
    const bad = await runCli(
      [...common, '--set', `training.encoder=${path.join(dir, 'nowhere')}`, '--run-dir', path.join(dir, 'x')],
      COMMANDS,
      io,
    );
    expect(bad).toBe(EXIT.usage);
    expect(err).toMatch(/training\.encoder: no model folder/);
  });
});
