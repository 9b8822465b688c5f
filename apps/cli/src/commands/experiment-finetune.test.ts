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

// the fine-tuning part of the tiny grid (its pre-training overrides are refused beside --pretrained)
const PRETRAIN_FLAGS = new Set([
  '--vocab-size',
  '--hidden-size',
  '--layers',
  '--pretrain-steps',
  '--pretrain-batch-size',
  '--block-size',
  '--max-sentences-per-language',
]);
const tinyFinetune = tiny.filter((_, i) => !PRETRAIN_FLAGS.has(tiny[i - (i % 2)] as string));

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

interface Diff {
  diff: number;
  ciLow: number;
  ciHigh: number;
}

interface Row {
  setting: string;
  vsBaseline?: { examples: { targetAverage: Diff }; seeds: { mean: number; n: number } };
}

describe.skipIf(skip !== undefined)('xlt experiment salt and mt4crossie', () => {
  const run = path.join(dir, 'salt');
  it('salt: pre-trains once, fine-tunes every setting, writes results.json, report.md with paired CIs and chart.svg', async () => {
    const r = await cli('experiment', 'salt', ...tiny, '--seeds', '1', '--run-dir', run);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    const res = readJson(path.join(run, 'results.json'));
    expect(res.split).toBe('dev');
    expect(res.baseline).toBe('plain');
    expect(res.seeds).toEqual([0]);
    const cells = res.cells as Cell[];
    expect(cells.map((c) => c.setting)).toEqual(SALT);
    for (const c of cells) {
      expect(c.task).toBe('ner');
      expect(c.seed).toBe(0);
      expect(Object.keys(c.languages).sort()).toEqual(['de', 'en']);
      for (const l of ['en', 'de']) {
        expect(c.languages[l]).toBeGreaterThanOrEqual(0);
        expect(c.languages[l]).toBeLessThanOrEqual(100);
        expect(c.examples[l]).toBe(24);
      }
      expect(c.targetAverage).toBe(c.languages.de);
      expect(c.seconds).toBeGreaterThan(0);
      // dictionary code-switching trains on the originals plus one switched copy (twice the
      // batches); SALT's copies ride in the originals' batches: 32 sentences at batch 8, one epoch
      expect(c.trainExamples).toBe(c.setting === 'dict-switch' ? 64 : 32);
      expect(c.steps).toBe(c.setting === 'dict-switch' ? 8 : 4);
    }
    // one pre-trained model for every cell; each setting's own fine-tuning config
    const ft = (s: string) => readJson(path.join(run, `ner-${s}-seed0`, 'finetune', 'config.json'));
    for (const s of SALT) expect(ft(s).model).toBe(path.join(run, 'pretrain-shared', 'model'));
    expect(ft('plain').preset).toBe('full');
    expect(ft('salt-switch').salt).toMatchObject({ source: 'self', switch: true, mixup: 0, seed: 0 });
    expect(ft('salt-mixup').salt).toMatchObject({ source: 'self', switch: false, mixup: 0.5 });
    expect(ft('salt-both').salt).toMatchObject({ source: 'self', switch: true, mixup: 0.5 });
    expect(ft('dict-switch').salt).toMatchObject({
      source: 'dictionary',
      dictionaries: { de: 'dict/muse-en-de.tsv' },
    });
    // every setting but the baseline has an example-level paired difference; one seed: no seed CI
    const rows = res.summary[0].rows as Row[];
    expect(rows.map((x) => x.setting)).toEqual(SALT);
    expect(rows[0]?.vsBaseline).toBeUndefined();
    for (const x of rows.slice(1)) {
      const d = x.vsBaseline?.examples.targetAverage as Diff;
      expect(d.ciLow).toBeLessThanOrEqual(d.diff + 1e-9);
      expect(d.ciHigh).toBeGreaterThanOrEqual(d.diff - 1e-9);
      const of = (s: string) => (cells.find((c) => c.setting === s) as Cell).targetAverage;
      expect(d.diff).toBeCloseTo(of(x.setting) - of('plain'), 6);
      expect(x.vsBaseline?.seeds.n).toBe(1);
    }
    const md = readFileSync(path.join(run, 'report.md'), 'utf8');
    expect(md).toMatch(/Split: \*\*dev\*\*/);
    expect(md).toMatch(/\| setting \| seeds \| en \(src\) \| de \| target avg \| 95% CI over seeds \|/);
    for (const s of SALT.slice(1))
      expect(md).toMatch(
        new RegExp(
          `^\\| ${s.startsWith('dict') ? 'dictionary' : 'SALT'}[^|]*\\| [+-]?\\d+\\.\\d\\d \\| [+-]?\\d+\\.\\d\\d to [+-]?\\d+\\.\\d\\d \\| \\d\\.\\d{3} \\| – \\|`,
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

  it('salt: a re-run with a second seed skips the finished cells, runs only the new ones and adds CIs over seeds', async () => {
    const before = readJson(path.join(run, 'results.json')).cells as Cell[];
    const r = await cli(
      'experiment',
      'salt',
      ...tiny,
      '--seeds',
      '2',
      '--settings',
      '["dict-switch"]',
      '--run-dir',
      run,
    );
    expect(r.code, r.err).toBe(EXIT.ok);
    for (const s of ['corpus', 'tokenizer', 'pretrain-shared', 'ner-plain-seed0', 'ner-dict-switch-seed0'])
      expect(r.out).toMatch(new RegExp(`== \\d+/\\d+ ${s}: done before, skipped`));
    expect((r.out.match(/done before, skipped/g) ?? []).length).toBe(5);
    for (const s of ['ner-plain-seed1', 'ner-dict-switch-seed1'])
      expect(r.out).toMatch(new RegExp(`== \\d+/\\d+ ${s}\n`));
    const res = readJson(path.join(run, 'results.json'));
    const after = res.cells as Cell[];
    expect(after.map((c) => `${c.setting}:${c.seed}`).sort()).toEqual([
      'dict-switch:0',
      'dict-switch:1',
      'plain:0',
      'plain:1',
    ]);
    // the skipped cells read back the same scores
    for (const c of after.filter((x) => x.seed === 0))
      expect(c.languages).toEqual(before.find((x) => x.setting === c.setting)?.languages);
    const row = (res.summary[0].rows as Row[])[1] as Row;
    expect(row.vsBaseline?.seeds.n).toBe(2);
    const perSeed = [0, 1].map(
      (s) =>
        (after.find((c) => c.setting === 'dict-switch' && c.seed === s) as Cell).targetAverage -
        (after.find((c) => c.setting === 'plain' && c.seed === s) as Cell).targetAverage,
    );
    expect(row.vsBaseline?.seeds.mean).toBeCloseTo(perSeed.reduce((a, x) => a + x, 0) / 2, 6);
    // the example-level difference is the difference of the seed means
    expect(row.vsBaseline?.examples.targetAverage.diff).toBeCloseTo(
      perSeed.reduce((a, x) => a + x, 0) / 2,
      6,
    );
    const md = readFileSync(path.join(run, 'report.md'), 'utf8');
    expect(md).toMatch(
      /^\| dictionary[^|]*\| [+-]?\d+\.\d\d \| [+-]?\d+\.\d\d to [+-]?\d+\.\d\d \| \d\.\d{3} \| [+-]?\d+\.\d\d to [+-]?\d+\.\d\d \|/m,
    );
  }, 900_000);

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

  it('salt --pretrained: fine-tunes a given model folder with no corpus, tokenizer or pre-training step', async () => {
    const given = path.join(run, 'pretrain-shared', 'model');
    const out = path.join(dir, 'given');
    const r = await cli(
      'experiment',
      'salt',
      ...tinyFinetune,
      '--seeds',
      '1',
      '--settings',
      '["salt-switch"]',
      '--pretrained',
      given,
      '--run-dir',
      out,
    );
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toMatch(/== 1\/3 ner-plain-seed0\n/);
    for (const s of ['corpus', 'tokenizer', 'pretrain-shared'])
      expect(existsSync(path.join(out, s))).toBe(false);
    const res = readJson(path.join(out, 'results.json'));
    expect(res.pretrained).toBe(given);
    expect((res.cells as Cell[]).map((c) => c.setting)).toEqual(['plain', 'salt-switch']);
    for (const s of ['plain', 'salt-switch'])
      expect(readJson(path.join(out, `ner-${s}-seed0`, 'finetune', 'config.json')).model).toBe(given);
    const md = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toContain(`pre-trained model ${given} (xlm-roberta, h32 L1, vocabulary `);
    expect(md).toContain('not pre-trained by this grid');
    expect(md).toContain('Wall time: no pre-training in this grid;');
    // a pre-training override would have no effect: refused, naming it; a folder without a model too
    const bad = await cli(
      'experiment',
      'salt',
      '--pretrained',
      given,
      '--pretrain-steps',
      '9',
      '--run-dir',
      path.join(dir, 'bad3'),
    );
    expect(bad.code).not.toBe(EXIT.ok);
    expect(bad.err).toMatch(
      /pretrainSteps: shape the grid's own pre-training, which does not run with pretrained/,
    );
    const none = await cli('experiment', 'salt', '--pretrained', dir, '--run-dir', path.join(dir, 'bad4'));
    expect(none.code).not.toBe(EXIT.ok);
    expect(none.err).toContain(`pretrained: ${path.join(dir, 'config.json')} not found`);
  }, 900_000);

  it('models: fine-tunes each folder alike; a copy of the baseline scores the same, difference 0', async () => {
    const a = path.join(run, 'pretrain-shared', 'model');
    const b = path.join(dir, 'copy-of-a');
    cpSync(a, b, { recursive: true });
    const out = path.join(dir, 'models');
    const r = await cli(
      'experiment',
      'models',
      ...tinyFinetune,
      '--models',
      JSON.stringify({ a, b }),
      '--seeds',
      '1',
      '--run-dir',
      out,
    );
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    for (const s of ['corpus', 'tokenizer', 'pretrain-shared'])
      expect(existsSync(path.join(out, s))).toBe(false);
    const res = readJson(path.join(out, 'results.json'));
    expect(res.models).toEqual({ a, b });
    expect(res.baseline).toBe('a');
    const cells = res.cells as Cell[];
    expect(cells.map((c) => c.setting)).toEqual(['a', 'b']);
    expect(readJson(path.join(out, 'ner-a-seed0', 'finetune', 'config.json')).model).toBe(a);
    expect(readJson(path.join(out, 'ner-b-seed0', 'finetune', 'config.json')).model).toBe(b);
    // the same weights, seed and data: the same scores, so the paired difference is exactly 0
    expect((cells[1] as Cell).languages).toEqual((cells[0] as Cell).languages);
    const row = (res.summary[0].rows as Row[])[1] as Row;
    expect(row.vsBaseline?.examples.targetAverage).toMatchObject({ diff: 0, ciLow: 0, ciHigh: 0 });
    const md = readFileSync(path.join(out, 'report.md'), 'utf8');
    expect(md).toMatch(/^# models: /);
    expect(md).toContain(`a = ${a} (xlm-roberta, h32 L1, vocabulary `);
    expect(md).toContain(`plain fine-tuning (preset full) of ${b}`);
    // refused: one model, a name that is no folder name, a folder without a model, a pre-training option
    const refuse = async (models: Record<string, string>, extra: string[], message: RegExp | string) => {
      const x = await cli(
        'experiment',
        'models',
        '--models',
        JSON.stringify(models),
        ...extra,
        '--run-dir',
        path.join(dir, 'bad-models'),
      );
      expect(x.code).not.toBe(EXIT.ok);
      if (typeof message === 'string') expect(x.err).toContain(message);
      else expect(x.err).toMatch(message);
    };
    await refuse({ a }, [], /models: 2 or more model folders to compare, got 1/);
    await refuse({ a, '../b': b }, [], /models: names \.\.\/b must be letters/);
    await refuse({ a, c: dir }, [], `models.c: ${path.join(dir, 'config.json')} not found`);
    await refuse(
      { a, b },
      ['--hidden-size', '64'],
      /hiddenSize: shape the grid's own pre-training, which does not run in xlt experiment models/,
    );
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
