import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';

const skip = sharedSkipReason('data', 'panx');
if (skip !== undefined) console.warn(`experiment salt / mt4crossie tests ${skip}`);
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-experiment-ft-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// a tiny grid: NER en → de, a 1-layer h32 model pre-trained for 4 steps, 1 epoch of 32 sentences
const tiny = [
  '--tasks',
  '["ner"]',
  '--languages',
  '["en","de"]',
  '--vocab-size',
  '1500',
  '--hidden-size',
  '32',
  '--layers',
  '1',
  '--pretrain-steps',
  '4',
  '--pretrain-batch-size',
  '4',
  '--block-size',
  '32',
  '--max-sentences-per-language',
  '300',
  '--finetune-epochs',
  '1',
  '--finetune-batch-size',
  '8',
  '--max-train-examples',
  '32',
  '--max-dev-examples',
  '16',
  '--max-eval-examples',
  '24',
  '--threads',
  '1',
  '--resamples',
  '50',
];

const readJson = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

interface Cell {
  task: string;
  setting: string;
  seed: number;
  languages: Record<string, number>;
  examples: Record<string, number>;
  targetAverage: number;
  trainExamples: number;
  steps: number;
  seconds: number;
}

const SALT = ['plain', 'salt-switch', 'salt-mixup', 'salt-both', 'dict-switch'];

describe.skipIf(skip !== undefined)('xlt experiment salt and mt4crossie', () => {
  const run = path.join(dir, 'salt');
  it('salt: pre-trains once, fine-tunes every setting x seed, writes results.json, report.md with paired CIs and chart.svg', async () => {
    const r = await cli('experiment', 'salt', ...tiny, '--seeds', '2', '--run-dir', run);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    const res = readJson(path.join(run, 'results.json'));
    expect(res.split).toBe('dev');
    expect(res.baseline).toBe('plain');
    expect(res.seeds).toEqual([0, 1]);
    const cells = res.cells as Cell[];
    expect(cells).toHaveLength(10);
    for (const s of SALT)
      for (const seed of [0, 1]) {
        const c = cells.find((x) => x.setting === s && x.seed === seed) as Cell;
        expect(c.task).toBe('ner');
        expect(Object.keys(c.languages).sort()).toEqual(['de', 'en']);
        for (const l of ['en', 'de']) {
          expect(c.languages[l]).toBeGreaterThanOrEqual(0);
          expect(c.languages[l]).toBeLessThanOrEqual(100);
          expect(c.examples[l]).toBe(24);
        }
        expect(c.targetAverage).toBe(c.languages.de);
        expect(c.seconds).toBeGreaterThan(0);
        expect(c.steps).toBe(4); // 32 sentences at batch 8, one epoch
        // dictionary code-switching trains on the originals plus one switched copy
        expect(c.trainExamples).toBe(s === 'dict-switch' ? 64 : 32);
      }
    // one pre-trained model for every cell; each setting's own fine-tuning config
    const ft = (s: string, seed: number) =>
      readJson(path.join(run, `ner-${s}-seed${seed}`, 'finetune', 'config.json'));
    for (const s of SALT) expect(ft(s, 0).model).toBe(path.join(run, 'pretrain-shared', 'model'));
    expect(ft('plain', 1).preset).toBe('full');
    expect(ft('salt-switch', 1).salt).toMatchObject({ source: 'self', switch: true, mixup: 0, seed: 1 });
    expect(ft('salt-mixup', 0).salt).toMatchObject({ source: 'self', switch: false, mixup: 0.5 });
    expect(ft('salt-both', 0).salt).toMatchObject({ source: 'self', switch: true, mixup: 0.5 });
    expect(ft('dict-switch', 0).salt).toMatchObject({
      source: 'dictionary',
      dictionaries: { de: 'dict/muse-en-de.tsv' },
    });
    // the summary: every setting but the baseline has example- and seed-level paired differences
    const rows = res.summary[0].rows as Array<{
      setting: string;
      vsBaseline?: {
        examples: { targetAverage: { diff: number; ciLow: number; ciHigh: number } };
        seeds: { mean: number; n: number };
      };
    }>;
    expect(rows.map((x) => x.setting)).toEqual(SALT);
    expect(rows[0]?.vsBaseline).toBeUndefined();
    for (const x of rows.slice(1)) {
      const d = x.vsBaseline?.examples.targetAverage as { diff: number; ciLow: number; ciHigh: number };
      expect(d.ciLow).toBeLessThanOrEqual(d.diff + 1e-9);
      expect(d.ciHigh).toBeGreaterThanOrEqual(d.diff - 1e-9);
      const of = (s: string) =>
        cells.filter((c) => c.setting === s).reduce((a, c) => a + c.targetAverage, 0) / 2;
      // the point difference is the difference of the seed means
      expect(d.diff).toBeCloseTo(of(x.setting) - of('plain'), 6);
      expect(x.vsBaseline?.seeds.n).toBe(2);
      expect(x.vsBaseline?.seeds.mean).toBeCloseTo(d.diff, 6);
    }
    const md = readFileSync(path.join(run, 'report.md'), 'utf8');
    expect(md).toMatch(/Split: \*\*dev\*\*/);
    expect(md).toMatch(/\| setting \| seeds \| en \(src\) \| de \| target avg \| 95% CI over seeds \|/);
    for (const s of SALT.slice(1))
      expect(md).toMatch(
        new RegExp(
          `^\\| ${s.startsWith('dict') ? 'dictionary' : 'SALT'}[^|]*\\| [+-]?\\d+\\.\\d\\d \\| [+-]?\\d+\\.\\d\\d to [+-]?\\d+\\.\\d\\d \\| \\d\\.\\d{3} \\| [+-]?\\d+\\.\\d\\d to [+-]?\\d+\\.\\d\\d \\|`,
          'm',
        ),
      );
    const svg = readFileSync(path.join(run, 'chart.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    for (const s of SALT.slice(1)) expect(svg).toContain(`<g data-setting="${s}">`);
    expect(svg).not.toContain('data-setting="plain"');
    expect((svg.match(/<circle /g) ?? []).length).toBe(4);
  }, 900_000);

  it('salt: a re-run skips the finished cells and runs only a missing one', async () => {
    const before = readJson(path.join(run, 'results.json')).cells as Cell[];
    rmSync(path.join(run, 'ner-salt-both-seed1'), { recursive: true, force: true });
    const r = await cli('experiment', 'salt', ...tiny, '--seeds', '2', '--run-dir', run);
    expect(r.code, r.err).toBe(EXIT.ok);
    for (const s of ['corpus', 'tokenizer', 'pretrain-shared', 'ner-plain-seed0', 'ner-dict-switch-seed1'])
      expect(r.out).toMatch(new RegExp(`== \\d+/\\d+ ${s}: done before, skipped`));
    expect((r.out.match(/done before, skipped/g) ?? []).length).toBe(3 + 9);
    expect(r.out).toMatch(/== \d+\/\d+ ner-salt-both-seed1\n/);
    const after = readJson(path.join(run, 'results.json')).cells as Cell[];
    expect(after).toHaveLength(10);
    // the skipped cells read back the same scores
    for (const c of before.filter((x) => !(x.setting === 'salt-both' && x.seed === 1)))
      expect(after.find((x) => x.setting === c.setting && x.seed === c.seed)?.languages).toEqual(c.languages);
  }, 600_000);

  it('mt4crossie: three-stage LoRA mixtures and one LoRA of the same total rank against one-stage', async () => {
    const mt = path.join(dir, 'mt4');
    // the same corpus, tokenizer and pre-trained model (finished steps are skipped)
    for (const s of ['corpus', 'tokenizer', 'pretrain-shared'])
      cpSync(path.join(run, s), path.join(mt, s), { recursive: true });
    const r = await cli(
      'experiment',
      'mt4crossie',
      ...tiny,
      '--seeds',
      '1',
      '--settings',
      '["language","single-lora"]',
      '--run-dir',
      mt,
    );
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toMatch(/pretrain-shared: done before, skipped/);
    const res = readJson(path.join(mt, 'results.json'));
    expect(res.baseline).toBe('one-stage');
    const cells = res.cells as Cell[];
    expect(cells.map((c) => c.setting)).toEqual(['one-stage', 'language', 'single-lora']);
    // one-stage: 4 steps; three-stage: 1 + 4 + 2
    expect(cells.map((c) => c.steps)).toEqual([4, 7, 7]);
    const mix = (s: string) =>
      readJson(path.join(mt, `ner-${s}-seed0`, 'finetune', 'model', 'lora_mixture.json'));
    expect(mix('language')).toMatchObject({ mode: 'language', r: 8, languages: ['en', 'de'] });
    expect(mix('single-lora')).toMatchObject({ mode: 'static', r: 16, languages: ['en'] });
    expect(existsSync(path.join(mt, 'ner-one-stage-seed0', 'finetune', 'model', 'lora_mixture.json'))).toBe(
      false,
    );
    const md = readFileSync(path.join(mt, 'report.md'), 'utf8');
    expect(md).toMatch(/^# mt4crossie: /);
    expect(md).toMatch(
      /^\| three-stage with one LoRA[^|]*\| [+-]?\d+\.\d\d \| [+-]?\d+\.\d\d to [+-]?\d+\.\d\d \| \d\.\d{3} \| – \|/m,
    );
    const svg = readFileSync(path.join(mt, 'chart.svg'), 'utf8');
    expect(svg).toContain('<g data-setting="language">');
    expect(svg).toContain('<g data-setting="single-lora">');
  }, 900_000);

  it('refuses an unknown setting or language, naming the field', async () => {
    const a = await cli('experiment', 'salt', '--settings', '["nope"]', '--run-dir', path.join(dir, 'bad'));
    expect(a.code).not.toBe(EXIT.ok);
    expect(a.err).toMatch(/settings: nope not among plain, salt-switch, salt-mixup, salt-both, dict-switch/);
    const b = await cli(
      'experiment',
      'mt4crossie',
      '--languages',
      '["en","xx"]',
      '--run-dir',
      path.join(dir, 'bad2'),
    );
    expect(b.code).not.toBe(EXIT.ok);
    expect(b.err).toMatch(/languages: xx not in the ner\/pos recipes/);
  });
});
