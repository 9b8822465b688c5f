import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';

const skip = sharedSkipReason('data', 'panx');
if (skip !== undefined) console.warn(`experiment xmod-curse test ${skip}`);
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-experiment-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// a tiny grid: 3 languages (1, 2 and 3 of them), both architectures, one seed, 4 steps each
const tiny = [
  '--languages',
  '["en","ru","zh"]',
  '--vocab-size',
  '2000',
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
  '--seeds',
  '1',
  '--threads',
  '1',
];

const readJson = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

/** Checks that `svg` is well-formed XML with an `<svg>` root: every tag closed, in order. */
function parseSvg(svg: string): string[] {
  const open: string[] = [];
  const seen: string[] = [];
  const tag = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0;
  for (const m of svg.matchAll(tag)) {
    const between = svg.slice(last, m.index);
    if (between.includes('<') || between.includes('>'))
      throw new Error(`stray markup at ${last}: ${between}`);
    last = (m.index as number) + m[0].length;
    const [, close, name] = m as unknown as [string, string, string];
    if (close === '/') {
      if (open.pop() !== name) throw new Error(`</${name}> closes nothing open at ${m.index}`);
    } else if (m[4] !== '/') open.push(name);
    seen.push(name);
  }
  if (svg.slice(last).trim() !== '') throw new Error('text after the root');
  if (open.length > 0) throw new Error(`unclosed: ${open.join(', ')}`);
  if (seen[0] !== 'svg') throw new Error(`root is ${seen[0]}`);
  return seen;
}

describe.skipIf(skip !== undefined)('xlt experiment xmod-curse', () => {
  const run = path.join(dir, 'curse');
  it('pre-trains shared and X-Mod on each nested language set and writes results.json, report.md and chart.svg', async () => {
    const r = await cli('experiment', 'xmod-curse', ...tiny, '--run-dir', run);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    const res = readJson(path.join(run, 'results.json'));
    expect(res.languages).toEqual(['en', 'ru', 'zh']);
    expect(res.counts).toEqual([1, 2, 3]);
    expect(res.cells).toHaveLength(6);
    for (const a of ['shared', 'xmod'])
      for (const [count, langs] of [
        [1, ['en']],
        [2, ['en', 'ru']],
        [3, ['en', 'ru', 'zh']],
      ] as const) {
        const cell = res.cells.find(
          (c: { architecture: string; count: number }) => c.architecture === a && c.count === count,
        );
        expect(cell.languages).toEqual(langs);
        expect(Object.keys(cell.heldOut).sort()).toEqual([...langs].sort());
        for (const l of langs) {
          expect(Number.isFinite(cell.heldOut[l])).toBe(true);
          expect(cell.heldOut[l]).toBeGreaterThan(0);
          expect(cell.maskedTokens[l]).toBeGreaterThan(0);
        }
        expect(cell.steps).toBe(4);
        expect(cell.seconds).toBeGreaterThan(0);
      }
    // the X-Mod cells are X-Mod models with one module per language of the cell
    const cfg = readJson(path.join(run, 'pretrain-xmod-03lang-seed0', 'model', 'config.json'));
    expect(cfg.model_type).toBe('xmod');
    expect(cfg.languages).toEqual(['en', 'ru', 'zh']);
    // one tokenizer for every cell
    expect(readJson(path.join(run, 'pretrain-shared-01lang-seed0', 'config.json')).tokenizer).toBe(
      path.join(run, 'tokenizer', 'tokenizer.json'),
    );
    expect(res.summary.map((x: { count: number }) => x.count)).toEqual([1, 2, 3]);
    const md = readFileSync(path.join(run, 'report.md'), 'utf8');
    expect(md).toMatch(/\| languages \| shared: en \| shared: mean \| X-Mod: en/);
    expect(md).toMatch(
      /^\| 3 \| \d+\.\d{3} \| \d+\.\d{3} \| \d+\.\d{3} \| \d+\.\d{3} \| [+-]?\d+\.\d{3} \|/m,
    );
    expect(md).toMatch(/^\| X-Mod \| 1 \| \d+\.\d{3} \| – \| – \|$/m);
    const svg = readFileSync(path.join(run, 'chart.svg'), 'utf8');
    const tags = parseSvg(svg);
    expect(tags.filter((t) => t === 'polyline')).toHaveLength(4);
    for (const s of [
      'shared: English',
      'X-Mod: English',
      'shared: mean over its languages',
      'X-Mod: mean over its languages',
    ])
      expect(svg).toContain(`<g data-series="${s}">`);
    expect((svg.match(/<circle /g) ?? []).length).toBe(12);
  }, 180_000);

  it('a re-run skips every finished cell and writes the same results', async () => {
    const before = readFileSync(path.join(run, 'results.json'), 'utf8');
    const r = await cli('experiment', 'xmod-curse', ...tiny, '--run-dir', run);
    expect(r.code).toBe(EXIT.ok);
    // corpus, tokenizer and the 6 models
    expect(r.out.match(/done before, skipped/g)?.length).toBe(8);
    expect(r.out).not.toMatch(/\[pretrain\] step/);
    expect(readFileSync(path.join(run, 'results.json'), 'utf8')).toBe(before);
  }, 60_000);

  it("carried to a new run directory (each cell's small files, not its model), the cells are skipped after the corpus and tokenizer are rebuilt, and a cell measured on other inputs is refused", async () => {
    const moved = path.join(dir, 'moved');
    const cells = readdirSync(run).filter((n) => n.startsWith('pretrain-'));
    expect(cells).toHaveLength(6);
    for (const c of cells) {
      mkdirSync(path.join(moved, c), { recursive: true });
      for (const f of ['done.json', 'results.json', 'config.json', 'inputs.json'])
        copyFileSync(path.join(run, c, f), path.join(moved, c, f));
    }
    // the tokenizer and the held-out text of the cell's languages, by digest
    const inputs = readJson(path.join(moved, 'pretrain-xmod-02lang-seed0', 'inputs.json'));
    expect(Object.keys(inputs).sort()).toEqual(['heldOut.en', 'heldOut.ru', 'tokenizer']);
    expect(inputs.tokenizer).toMatch(/^[0-9a-f]{64}$/);
    let r = await cli('experiment', 'xmod-curse', ...tiny, '--run-dir', moved);
    if (r.code !== EXIT.ok) console.error(r.out, r.err);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out.match(/done before, skipped/g)?.length).toBe(6);
    expect(r.out).not.toMatch(/\[pretrain\] step/);
    expect(r.out).not.toMatch(/finished before inputs were recorded/);
    const cellsOf = (d: string) => readJson(path.join(d, 'results.json')).cells;
    expect(cellsOf(moved)).toEqual(cellsOf(run));
    // a cell whose recorded tokenizer differs (another vocabulary): named, with what to do, before
    // the cell still to run (removed here) starts
    rmSync(path.join(moved, 'pretrain-xmod-03lang-seed0'), { recursive: true });
    const bad = path.join(moved, 'pretrain-shared-03lang-seed0', 'inputs.json');
    writeFileSync(bad, JSON.stringify({ ...readJson(bad), tokenizer: '0'.repeat(64) }));
    r = await cli('experiment', 'xmod-curse', ...tiny, '--run-dir', moved);
    expect(r.code).not.toBe(EXIT.ok);
    expect(r.out).not.toMatch(/pretrain-xmod-03lang-seed0/);
    expect(existsSync(path.join(moved, 'pretrain-xmod-03lang-seed0'))).toBe(false);
    expect(r.err).toMatch(/the cell was measured on a different tokenizer/);
    expect(r.err).toContain(bad);
    expect(r.err).toContain(`delete ${path.join(moved, 'pretrain-shared-03lang-seed0')}`);
  }, 120_000);

  it('names a bad --languages or --counts value as a usage error and writes no cell', async () => {
    const bad = path.join(dir, 'bad');
    let r = await cli('experiment', 'xmod-curse', '--languages', '["en","xx"]', '--run-dir', bad);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/languages: xx not among the languages with PAN-X training text/);
    r = await cli('experiment', 'xmod-curse', '--languages', '["ru","zh"]', '--run-dir', bad);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/English \(en\) is in every model/);
    r = await cli(
      'experiment',
      'xmod-curse',
      '--languages',
      '["en","ru"]',
      '--counts',
      '[1,5]',
      '--run-dir',
      bad,
    );
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/counts: 5 not between 1 and the 2 languages/);
    expect(existsSync(path.join(bad, 'corpus'))).toBe(false);
  });
});

describe('xlt experiment xmod-curse --help', () => {
  it('names the grid, the outputs and runnable examples', async () => {
    const h = await cli('experiment', 'xmod-curse', '--help');
    expect(h.code).toBe(EXIT.ok);
    expect(h.out).toMatch(/Order of the languages: en ru zh ar hi de ja sw ko es fr tr/);
    expect(h.out).toMatch(/results\.json .*report\.md .*chart\.svg/s);
    expect(h.out).toMatch(/Examples:\n\s+xlt experiment xmod-curse --quick --run-dir/);
  });
});
