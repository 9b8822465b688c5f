import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';

const skip = sharedSkipReason('data', 'panx');
if (skip !== undefined) console.warn(`experiment xmod-posthoc test ${skip}`);
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-posthoc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// a tiny grid: base en + de, es and ko added post hoc, one seed, a few steps of everything
const tiny = [
  '--base',
  '["en","de"]',
  '--added',
  '["es","ko"]',
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
  '--add-language-steps',
  '2',
  '--finetune-epochs',
  '1',
  '--max-train-examples',
  '32',
  '--max-dev-examples',
  '20',
  '--max-eval-examples',
  '40',
  '--identity-blocks',
  '2',
  '--seeds',
  '1',
  '--resamples',
  '50',
  '--threads',
  '1',
];

const readJson = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

/** Copies the steps a `--new-embeddings` variant reuses from a module-only run. */
function copyReused(from: string, to: string): void {
  for (const d of [
    'corpus',
    'tokenizer',
    'pretrain-start-seed0',
    'finetune-start-seed0',
    'eval-start-seed0',
    'pretrain-base-seed0',
  ])
    cpSync(path.join(from, d), path.join(to, d), { recursive: true });
}

describe.skipIf(skip !== undefined)('xlt experiment xmod-posthoc', () => {
  const run = path.join(dir, 'posthoc');
  it('adds es and ko post hoc, compares with from-start pre-training and proves en and de unchanged', async () => {
    const r = await cli('experiment', 'xmod-posthoc', ...tiny, '--run-dir', run);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    const res = readJson(path.join(run, 'results.json'));
    expect(res.split).toBe('dev');
    expect(res.cells.map((c: { setting: string }) => c.setting)).toEqual(['from-start', 'post-hoc']);
    for (const c of res.cells) {
      expect(c.seed).toBe(0);
      for (const l of ['en', 'de', 'es', 'ko']) expect(c.heldOut[l]).toBeGreaterThan(0);
      expect(Object.keys(c.nerF1).sort()).toEqual(['en', 'es', 'ko']);
      for (const v of Object.values(c.nerF1)) expect(v).toBeGreaterThanOrEqual(0);
      for (const v of Object.values(c.seconds)) expect(v).toBeGreaterThan(0);
    }
    // the post-hoc model has modules en de es ko; es and ko were added post hoc, from en
    const cfg = readJson(path.join(run, 'add-ko-seed0', 'model', 'config.json'));
    expect(cfg.languages).toEqual(['en', 'de', 'es', 'ko']);
    expect(readJson(path.join(run, 'pretrain-base-seed0', 'model', 'config.json')).languages).toEqual([
      'en',
      'de',
    ]);
    // the check really ran: tensors and outputs compared, all identical
    const [check] = res.bitIdentity;
    expect(check.identical).toBe(true);
    expect(check.weights.compared).toBeGreaterThan(10);
    expect(check.weights.identical).toBe(check.weights.compared);
    expect(check.weights.added.length).toBeGreaterThan(0);
    for (const l of ['en', 'de']) {
      expect(check.languages[l].identical).toBe(true);
      expect(check.languages[l].values).toBeGreaterThan(1000);
      expect(check.languages[l].sha256[0]).toBe(check.languages[l].sha256[1]);
    }
    // the base languages' held-out loss: the post-hoc model scores as the base model did
    const base = readJson(path.join(run, 'pretrain-base-seed0', 'results.json')).heldOut;
    const post = res.cells[1].heldOut;
    expect(post.en).toBe(base.en.loss);
    expect(post.de).toBe(base.de.loss);
    const md = readFileSync(path.join(run, 'report.md'), 'utf8');
    expect(md).toMatch(/^\| ko \(added\) \| \d+\.\d{3} \| \d+\.\d{3} \| [+-]\d+\.\d{3} \| – \(1 seed\) \|$/m);
    // NER: the paired bootstrap over dev sentences gives a CI per seed
    expect(md).toMatch(/PAN-X dev \(first 40 sentences per language\)/);
    expect(md).toMatch(
      /^\| es \(added\) \| [\d.]+ \| [\d.]+ \| [+-][\d.]+ \| – \(1 seed\) \| s0: [+-][\d.]+ \([+-][\d.]+ to [+-][\d.]+\) \|$/m,
    );
    // the per-seed difference is the two cells' F1 difference on the same sentences (same scale)
    const es = res.summary.ner.es.diff.perSeed[0];
    expect(es.diff).toBeCloseTo(res.cells[1].nerF1.es - res.cells[0].nerF1.es, 6);
    expect(md).toMatch(/Every base language's outputs are bit-identical before and after adding es and ko/);
    const svg = readFileSync(path.join(run, 'chart.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    // loss: es, ko; NER: en, es, ko; two settings each
    expect((svg.match(/<rect data-series=/g) ?? []).length).toBe(10);
  }, 600_000);

  it('a re-run skips every finished step and writes the same cells', async () => {
    const before = readJson(path.join(run, 'results.json'));
    const r = await cli('experiment', 'xmod-posthoc', ...tiny, '--run-dir', run);
    expect(r.code).toBe(EXIT.ok);
    // corpus, tokenizer, 2 pre-trainings, 2 added modules, 2 fine-tunings, 2 evaluations, held-out, identity
    expect(r.out.match(/done before, skipped/g)?.length).toBe(12);
    expect(r.out).not.toMatch(/step \d+\/\d+ loss/);
    const after = readJson(path.join(run, 'results.json'));
    expect(after.cells).toEqual(before.cells);
    expect(after.bitIdentity).toEqual(before.bitIdentity);
  }, 120_000);

  it('--new-embeddings trains the word embeddings with the modules, reusing the pre-trainings, and reports the base changed', async () => {
    const ablation = path.join(dir, 'new-embeddings');
    copyReused(run, ablation);
    const r = await cli('experiment', 'xmod-posthoc', ...tiny, '--new-embeddings', '--run-dir', ablation);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out.match(/done before, skipped/g)?.length).toBe(6);
    expect(readJson(path.join(ablation, 'add-ko-seed0', 'config.json')).newEmbeddings).toBe(true);
    const trained: string[] = readJson(path.join(ablation, 'add-ko-seed0', 'results.json')).trainable;
    expect(trained.some((n) => n.endsWith('embeddings.word_embeddings.weight'))).toBe(true);
    const res = readJson(path.join(ablation, 'results.json'));
    expect(res.settings.newEmbeddings).toBe(true);
    // the same from-start cell; the base model's word embeddings changed, so en and de outputs differ
    expect(res.cells[0]).toEqual(readJson(path.join(run, 'results.json')).cells[0]);
    const [check] = res.bitIdentity;
    expect(check.identical).toBe(false);
    expect(check.weights.identical).toBeLessThan(check.weights.compared);
    for (const l of ['en', 'de']) expect(check.languages[l].identical).toBe(false);
    const md = readFileSync(path.join(ablation, 'report.md'), 'utf8');
    expect(md).toMatch(/module \+ word-embedding steps per added language/);
    expect(md).toMatch(/The base languages changed, as expected/);
    expect(md).toMatch(/## How far the other languages changed/);
    expect(md).not.toMatch(/The check failed/);
  }, 600_000);

  it('--unseen-rows trains only the rows no earlier language uses: the base hidden states stay identical, the logits do not', async () => {
    const rows = path.join(dir, 'unseen-rows');
    copyReused(run, rows);
    const args = ['experiment', 'xmod-posthoc', ...tiny, '--new-embeddings', '--unseen-rows'];
    const r = await cli(...args, '--run-dir', rows);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    // es keeps the rows of en and de; ko those of en, de and es
    const esCfg = readJson(path.join(rows, 'add-es-seed0', 'config.json'));
    expect(esCfg.keepRowsOf.map((f: string) => path.basename(f))).toEqual([
      'en.txt',
      'en.heldout.txt',
      'de.txt',
      'de.heldout.txt',
    ]);
    expect(readJson(path.join(rows, 'add-ko-seed0', 'config.json')).keepRowsOf).toHaveLength(6);
    const esRows = readJson(path.join(rows, 'add-es-seed0', 'results.json')).trainableEmbeddingRows;
    const koRows = readJson(path.join(rows, 'add-ko-seed0', 'results.json')).trainableEmbeddingRows;
    expect(esRows).toBeGreaterThan(koRows);
    expect(koRows).toBeGreaterThan(0);
    const res = readJson(path.join(rows, 'results.json'));
    expect(res.settings.unseenRows).toBe(true);
    const [check] = res.bitIdentity;
    expect(check.weights.differing).toEqual(['roberta.embeddings.word_embeddings.weight']);
    for (const l of ['en', 'de']) expect(check.languages[l].differing).toEqual(['logits']);
    const md = readFileSync(path.join(rows, 'report.md'), 'utf8');
    expect(md).toMatch(/module \+ unseen-row steps per added language/);
    expect(md).toMatch(/^\| 0 \| \d+ \/ \d+ \| \d+ \| en \| \d+ \| \*\*no\*\* \| [\d.e-]+ \| logits \| /m);
    expect(md).toMatch(
      /Every base language's hidden states .* are bit-identical before and after; only the MLM logits differ/,
    );
    // the option needs --new-embeddings
    const bad = await cli('experiment', 'xmod-posthoc', ...tiny, '--unseen-rows', '--run-dir', `${rows}-x`);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.err).toMatch(/--unseen-rows .* needs --new-embeddings/);
  }, 600_000);

  it('names a bad language list as a usage error before anything runs', async () => {
    const bad = path.join(dir, 'bad');
    let r = await cli('experiment', 'xmod-posthoc', '--base', '["de","ru"]', '--run-dir', bad);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/base: English \(en\) is the fine-tuning source/);
    r = await cli('experiment', 'xmod-posthoc', '--added', '["de","ko"]', '--run-dir', bad);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/de given more than once/);
    r = await cli('experiment', 'xmod-posthoc', '--added', '["xx"]', '--run-dir', bad);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/no PAN-X dev file for 'xx'/);
    expect(existsSync(path.join(bad, 'corpus'))).toBe(false);
  });
});
