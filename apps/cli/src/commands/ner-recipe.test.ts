import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { findRepoRoot, sharedPath, sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../cli/commands.js';
import { EXIT, runCli } from '../cli/main.js';

const skip = sharedSkipReason('data', 'panx') ?? sharedSkipReason('fixtures', 'tokenizer');
if (skip !== undefined) console.warn(`NER recipe test ${skip}`);

const root = findRepoRoot(import.meta.dirname) ?? process.cwd();
const recipe = (f: string) => path.join(root, 'examples', 'ner', f);
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-ner-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function cli(...argv: string[]) {
  let out = '';
  let err = '';
  const code = await runCli(argv, COMMANDS, { out: (s) => (out += s), err: (s) => (err += s) });
  if (code !== EXIT.ok || process.env.XLT_TEST_VERBOSE) console.error(out, err);
  return { code, out, err };
}

const small = ['--backend', 'cpu', '--engine', 'tfjs', '--max-length', '32', '--seed', '1'];

describe.skipIf(skip !== undefined)('the NER recipe (examples/ner) end to end with a tiny model', () => {
  it('pre-trains an X-Mod model, fine-tunes it on English PAN-X and reports 8 target languages', async () => {
    const pt = path.join(dir, 'pretrain');
    const r1 = await cli(
      'pretrain',
      '--config',
      recipe('pretrain-xmod.yaml'),
      '--init',
      'tiny',
      '--tokenizer',
      sharedPath('fixtures', 'tokenizer', 'tokenizer.json'),
      '--max-sentences-per-language',
      '40',
      '--steps',
      '3',
      '--batch-size',
      '8',
      '--checkpoint-every',
      '3',
      ...small,
      '--run-dir',
      pt,
    );
    expect(r1.code).toBe(EXIT.ok);
    const ptConfig = JSON.parse(readFileSync(path.join(pt, 'model', 'config.json'), 'utf8'));
    expect(ptConfig.languages).toEqual(['en', 'de', 'es', 'fr', 'ru', 'zh', 'ar', 'hi', 'tr']);
    expect(existsSync(path.join(pt, 'model', 'tokenizer.json'))).toBe(true);

    const ft = path.join(dir, 'finetune');
    const r2 = await cli(
      'finetune',
      '--config',
      recipe('finetune-xmod.yaml'),
      '--model',
      path.join(pt, 'model'),
      '--max-train-examples',
      '200',
      '--steps',
      '8',
      '--batch-size',
      '16',
      '--lr',
      '0.003',
      '--max-dev-examples',
      '20',
      ...small,
      '--run-dir',
      ft,
    );
    expect(r2.code).toBe(EXIT.ok);
    const ftConfig = JSON.parse(readFileSync(path.join(ft, 'model', 'config.json'), 'utf8'));
    expect(ftConfig.architectures).toEqual(['XmodForTokenClassification']);
    expect(ftConfig.xlt.task).toBe('ner');
    const ftResults = JSON.parse(readFileSync(path.join(ft, 'results.json'), 'utf8'));
    expect(ftResults.stages[0].steps).toBe(8);
    expect(Number.isFinite(ftResults.stages[0].finalLoss)).toBe(true);

    const ev = path.join(dir, 'evaluate');
    const r3 = await cli(
      'evaluate',
      '--config',
      recipe('evaluate.yaml'),
      '--model',
      path.join(ft, 'model'),
      '--max-examples-per-language',
      '30',
      '--resamples',
      '20',
      '--backend',
      'cpu',
      '--run-dir',
      ev,
    );
    expect(r3.code).toBe(EXIT.ok);
    for (const ext of ['md', 'csv', 'json', 'svg'])
      expect(existsSync(path.join(ev, `report.${ext}`))).toBe(true);
    const report = JSON.parse(readFileSync(path.join(ev, 'report.json'), 'utf8'));
    expect(report.metric).toBe('entity F1');
    expect(report.source).toBe('en');
    const targets = report.rows.filter((r: { isSource: boolean }) => !r.isSource);
    expect(targets.map((r: { lang: string }) => r.lang)).toEqual([
      'de',
      'es',
      'fr',
      'ru',
      'zh',
      'ar',
      'hi',
      'tr',
    ]);
    for (const row of report.rows) {
      expect(Number.isFinite(row.score)).toBe(true);
      expect(row.n).toBe(30);
    }
    expect(Number.isFinite(report.targetAverage)).toBe(true);
    expect(readFileSync(path.join(ev, 'report.md'), 'utf8')).toMatch(/\| en \(source\) \|/);
    expect(readFileSync(path.join(ev, 'report.svg'), 'utf8')).toMatch(/^<svg/);
  });
});
