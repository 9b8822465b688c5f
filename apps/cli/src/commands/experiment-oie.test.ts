import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';

const skip = sharedSkipReason('data', 'oie');
if (skip !== undefined) console.warn(`experiment oie test ${skip}`);
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-oie-exp-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// two seeds of a tiny encoder and a short Open IE training, two test sets cut to 25 sentences
const tiny = [
  '--sets',
  '["carb","reoie-es"]',
  '--vocab-size',
  '1500',
  '--hidden-size',
  '32',
  '--layers',
  '1',
  '--pretrain-steps',
  '3',
  '--pretrain-batch-size',
  '4',
  '--block-size',
  '32',
  '--max-sentences-per-language',
  '200',
  '--oie-epochs',
  '1',
  '--train-limit',
  '40',
  '--eval-limit',
  '25',
  '--seeds',
  '2',
  '--resamples',
  '30',
  '--threads',
  '1',
];

const readJson = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

describe.skipIf(skip !== undefined)('xlt experiment oie', () => {
  const run = path.join(dir, 'oie');
  it('trains the Open IE model per seed on a pre-trained encoder and compares it with the verb heuristic', async () => {
    const r = await cli('experiment', 'oie', ...tiny, '--run-dir', run);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    const res = readJson(path.join(run, 'results.json'));
    expect(res.split).toBe('test');
    expect(res.sets).toEqual(['CaRB en', 'Re-OIE2016 es']);
    expect(res.cells).toHaveLength(4);
    // the encoder of each seed's Open IE run is that seed's pre-trained model
    for (const seed of [0, 1])
      expect(readJson(path.join(run, `oie-seed${seed}`, 'config.json')).training.encoder).toBe(
        path.join(run, `pretrain-seed${seed}`, 'model'),
      );
    for (const c of res.cells) {
      for (const sys of ['model', 'baseline:verb-like', 'baseline:second-word']) {
        expect(c.scores[sys].f1).toBeGreaterThanOrEqual(0);
        expect(c.scores[sys].f1).toBeLessThanOrEqual(100);
      }
      expect(c.seconds[`oie-seed${c.seed}`]).toBeGreaterThan(0);
    }
    // the scores recomputed from predictions.json are the ones xlt oie reported
    const rows = readJson(path.join(run, 'oie-seed0', 'results.json')).rows;
    const carb = res.cells.find((c: { seed: number; set: string }) => c.seed === 0 && c.set === 'CaRB en');
    const row = rows.find(
      (x: { benchmark: string; system: string }) => x.benchmark === 'CaRB' && x.system === 'model',
    );
    expect(carb.scores.model.f1).toBeCloseTo(100 * row.f1, 9);
    // the deterministic heuristic scores the same in both seeds
    const h = res.cells
      .filter((c: { set: string }) => c.set === 'CaRB en')
      .map((c: { scores: Record<string, { f1: number }> }) => c.scores['baseline:verb-like'].f1);
    expect(h[0]).toBe(h[1]);
    const md = readFileSync(path.join(run, 'report.md'), 'utf8');
    expect(md).toMatch(/CaRB \*\*test\*\*/);
    expect(md).toMatch(
      /^\| CaRB en \| 25 \| [\d.]+ \([\d.]+–[\d.]+\) \| [\d.]+ \/ [\d.]+ \| [\d.]+ \([\d.]+ \/ [\d.]+\) \| [\d.]+ \| [+-][\d.]+ \| [+-][\d.]+ to [+-][\d.]+ \| [+-][\d.]+ \([+-][\d.]+ to [+-][\d.]+\) \| (yes|no|not resolved) \|$/m,
    );
    expect(res.summary).toHaveLength(2);
    const svg = readFileSync(path.join(run, 'chart.svg'), 'utf8');
    expect((svg.match(/<rect data-series=/g) ?? []).length).toBe(6);
  }, 600_000);

  it('a re-run skips every finished step and writes the same cells', async () => {
    const before = readJson(path.join(run, 'results.json'));
    const r = await cli('experiment', 'oie', ...tiny, '--run-dir', run);
    expect(r.code).toBe(EXIT.ok);
    // corpus, tokenizer, 2 x (pre-training, Open IE)
    expect(r.out.match(/done before, skipped/g)?.length).toBe(6);
    expect(readJson(path.join(run, 'results.json')).cells).toEqual(before.cells);
  }, 120_000);
});
