import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../cli/commands.js';
import { EXIT, runCli } from '../cli/main.js';
import { RECIPES } from '../tasks/recipes.js';
import { cli } from '../test-cli.js';
import { chainOrder, recipeNerCommand, recipeSettings } from './recipe.js';

const skipNer = sharedSkipReason('data', 'panx');
const skipPos = sharedSkipReason('data', 'ud');
if (skipNer !== undefined) console.warn(`recipe ner test ${skipNer}`);
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-recipe-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// a tiny configuration: the whole pipeline in well under a minute
const tiny = [
  '--vocab-size',
  '1000',
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
  '--finetune-epochs',
  '1',
  '--max-train-examples',
  '64',
  '--max-sentences-per-language',
  '300',
  '--max-eval-examples',
  '30',
  '--max-dev-examples',
  '30',
  '--resamples',
  '50',
  '--threads',
  '1',
];

/** `xlt recipe ner` on en, de, fr with the baseline, the tiny budget, `extra` options, into `runDir` */
const nerArgs = (runDir: string, ...extra: string[]) => [
  'recipe',
  'ner',
  '--languages',
  '["en","de","fr"]',
  '--baseline',
  'true',
  ...tiny,
  ...extra,
  '--run-dir',
  runDir,
];

const readJson = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

describe('recipe settings', () => {
  it('take the fine-tuning batch size and the X-Mod preset from the command line over the variant', () => {
    const parse = (extra: object) => recipeNerCommand.schema.parse({ quick: true, ...extra });
    const base = recipeSettings(RECIPES.ner, parse({}));
    expect(base.finetune).toMatchObject({
      batchSize: RECIPES.ner.quick.finetune.batchSize,
      xmodPreset: 'full',
    });
    const over = recipeSettings(RECIPES.ner, parse({ finetuneBatchSize: 16, xmodPreset: 'xmod-finetune' }));
    expect(over.finetune).toMatchObject({ batchSize: 16, xmodPreset: 'xmod-finetune' });
    expect(() => parse({ xmodPreset: 'frozen' })).toThrow();
  });

  it('start the longest model chains first, so that the baseline fills the lane that frees first', () => {
    expect(chainOrder(['shared', 'xmod', 'random'])).toEqual(['xmod', 'shared', 'random']);
    expect(chainOrder(['shared', 'random'])).toEqual(['shared', 'random']);
  });
});

describe.skipIf(skipNer !== undefined)('xlt recipe ner', () => {
  const run = path.join(dir, 'ner');
  it('runs corpus, tokenizer, shared + X-Mod pre-training, fine-tuning with dev selection and evaluation into one run directory', async () => {
    const r = await cli(...nerArgs(run));
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    // the corpus never holds the files reports evaluate on
    const manifest = readJson(path.join(run, 'corpus', 'manifest.json'));
    expect(manifest.languages.en.excluded).toContain('panx/dev-en.tsv');
    expect(manifest.languages.en.sources.map((s: { file: string }) => s.file)).not.toContain(
      'panx/dev-en.tsv',
    );
    // pre-training packs full blocks: no padding, and held-out masked-LM loss per language
    const pt = readJson(path.join(run, 'pretrain-xmod', 'results.json'));
    expect(pt.packing).toBe(true);
    expect(Object.keys(pt.heldOut).sort()).toEqual(['de', 'en', 'fr']);
    expect(pt.heldOut.en.loss).toBeGreaterThan(0);
    // beside it, a unigram model of the training text on the same masked tokens
    expect(pt.heldOut.en.unigramLoss).toBeGreaterThan(0);
    expect(Number.isFinite(pt.heldOut.en.unigramLoss)).toBe(true);
    expect(r.out).toMatch(
      /held-out masked-LM loss \(unigram of the training text on the same tokens\): en \d+\.\d+ \(\d+\.\d+\)/,
    );
    expect(r.out).toMatch(/\[pretrain\] step 4\/4 .* pad 0%/);
    // fine-tuning scores the source dev set and keeps the best weights
    expect(r.out).toMatch(/kept the weights of step \d+ \(dev entity F1/);
    // the selected models are Hugging Face folders with their tokenizer, reports beside them
    for (const m of ['shared', 'xmod']) {
      expect(existsSync(path.join(run, 'model', m, 'config.json'))).toBe(true);
      expect(existsSync(path.join(run, 'model', m, 'tokenizer.json'))).toBe(true);
      expect(existsSync(path.join(run, 'model', `${m}.dev.report.md`))).toBe(true);
    }
    expect(readJson(path.join(run, 'model', 'xmod', 'config.json')).model_type).toBe('xmod');
    // the X-Mod model is fine-tuned fully by default, with the recipe's batch size
    expect(readJson(path.join(run, 'finetune-xmod', 'config.json'))).toMatchObject({
      preset: 'full',
      batchSize: 64,
    });
    const results = readJson(path.join(run, 'results.json'));
    expect(results.settings.finetune).toMatchObject({ batchSize: 64, xmodPreset: 'full' });
    expect(Object.keys(results.results)).toEqual(
      expect.arrayContaining([
        'dev:shared',
        'dev:xmod',
        'dev:random',
        'dev:xmod-minus-shared',
        'dev:shared-minus-random',
      ]),
    );
    const diff = results.results['dev:xmod-minus-shared'].targetAverage;
    expect(diff.ciLow).toBeLessThanOrEqual(diff.diff);
    expect(diff.ciHigh).toBeGreaterThanOrEqual(diff.diff);
    expect(readFileSync(path.join(run, 'results.md'), 'utf8')).toMatch(
      /\| shared \| [\d.]+ \([\d.]+–[\d.]+\)/,
    );
  }, 240_000);

  it('resumes: a second run skips every finished step and writes the same results', async () => {
    const before = readFileSync(path.join(run, 'results.md'), 'utf8').split('Wall time')[0];
    const r = await cli(...nerArgs(run));
    expect(r.code).toBe(EXIT.ok);
    expect(r.out.match(/done before, skipped/g)?.length).toBe(11);
    expect(readFileSync(path.join(run, 'results.md'), 'utf8').split('Wall time')[0]).toBe(before);
  }, 120_000);

  it('builds only the shared model with --architectures ["shared"], compared with the baseline alone', async () => {
    const only = path.join(dir, 'ner-shared');
    // every step of the shared chain and the baseline finished before: copied, so only the summary runs
    for (const d of ['corpus', 'tokenizer', 'pretrain-shared', 'init-random'])
      cpSync(path.join(run, d), path.join(only, d), { recursive: true });
    for (const m of ['shared', 'random'])
      for (const d of [`finetune-${m}`, `eval-dev-${m}`])
        cpSync(path.join(run, d), path.join(only, d), { recursive: true });
    const r = await cli(...nerArgs(only, '--architectures', '["shared"]'));
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out.match(/done before, skipped/g)?.length).toBe(8);
    expect(r.out).toMatch(/== 9\/9 results/);
    expect(existsSync(path.join(only, 'pretrain-xmod'))).toBe(false);
    expect(readdirSync(path.join(only, 'model')).filter((f) => !f.includes('.'))).toEqual(['shared']);
    const results = readJson(path.join(only, 'results.json')).results;
    expect(Object.keys(results).sort()).toEqual(['dev:random', 'dev:shared', 'dev:shared-minus-random']);
    // the same comparison as in the run with both architectures
    expect(results['dev:shared-minus-random']).toEqual(
      readJson(path.join(run, 'results.json')).results['dev:shared-minus-random'],
    );
  }, 120_000);

  // the built CLI (pnpm build runs before the tests): lanes are child processes of it
  const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/bin.js');
  it.skipIf(!existsSync(bin))(
    'with --lanes 2 runs each model in its own xlt process, to the same results as in one process',
    async () => {
      const laned = path.join(dir, 'ner-lanes');
      // the finished corpus and tokenizer are reused: only the models' chains run again
      for (const d of ['corpus', 'tokenizer'])
        cpSync(path.join(run, d), path.join(laned, d), { recursive: true });
      let out = '';
      const code = await runCli(nerArgs(laned, '--lanes', '2'), COMMANDS, {
        out: (t) => (out += t),
        err: (t) => (out += t),
        self: bin,
      });
      if (code !== EXIT.ok) console.error(out);
      expect(code).toBe(EXIT.ok);
      expect(out).toMatch(/2 lanes \(one xlt process per model\), 1 thread\(s\) each/);
      // the children's lines come back tagged with their step
      expect(out).toMatch(/\[pretrain-xmod\] \[pretrain\] step 4\/4/);
      const table = (d: string) => readFileSync(path.join(d, 'results.md'), 'utf8').split('Wall time')[0];
      expect(table(laned)).toBe(table(run));
      expect(readdirSync(path.join(laned, 'model')).sort()).toEqual(
        readdirSync(path.join(run, 'model')).sort(),
      );
    },
    300_000,
  );

  it('names a language that is not in the recipe', async () => {
    const r = await cli('recipe', 'ner', '--languages', '["en","xx"]', '--run-dir', path.join(dir, 'bad'));
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/languages: xx not in the ner recipe/);
  });
});

describe.skipIf(skipPos !== undefined || skipNer !== undefined)('xlt recipe pos', () => {
  it('evaluates UPOS on the GSD dev sets and the PUD sets', async () => {
    const run = path.join(dir, 'pos');
    const r = await cli('recipe', 'pos', '--languages', '["en","de"]', ...tiny, '--run-dir', run);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    const results = readJson(path.join(run, 'results.json'));
    expect(results.results['dev:shared'].rows.map((x: { lang: string }) => x.lang)).toEqual(['en', 'de']);
    expect(results.results['pud:xmod'].rows.length).toBe(2);
    expect(readFileSync(path.join(run, 'results.md'), 'utf8')).toMatch(/pos pud \(test\)/);
  }, 240_000);
});
