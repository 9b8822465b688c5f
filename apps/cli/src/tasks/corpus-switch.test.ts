import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { XltConfigError } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';
import { buildCorpus } from './corpus.js';
import { museDictionaries, reverseDictionary } from './corpus-switch.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-corpus-switch-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const root = path.join(dir, 'data');

function write(rel: string, text: string) {
  const f = path.join(root, rel);
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileSync(f, text);
}
const tagged = (sents: string[][]) =>
  `${sents.map((s) => s.map((w) => `${w}\tO`).join('\n')).join('\n\n')}\n`;
write('panx/train-en.tsv', tagged(Array.from({ length: 40 }, (_, i) => ['the', 'city', 'of', `Name${i}`])));
write('panx/train-de.tsv', tagged(Array.from({ length: 40 }, (_, i) => ['die', 'Stadt', 'von', `Name${i}`])));
write('dict/muse-en-de.tsv', 'the\tdie\nthe\tder\ncity\tstadt\nof\tvon\n');

const lines = (out: string, f: string) => readFileSync(path.join(out, f), 'utf8').trim().split('\n');

describe('dictionary code-switched pre-training text', () => {
  it('finds the data root MUSE dictionaries of the other languages only', () => {
    expect(museDictionaries(root, 'en', ['en', 'de', 'fr'])).toEqual({ de: 'dict/muse-en-de.tsv' });
  });

  it('reverses a dictionary, lower-casing the translations', () => {
    const r = reverseDictionary(
      new Map([
        ['city', ['Stadt']],
        ['town', ['stadt']],
      ]),
    );
    expect(r.get('stadt')).toEqual(['city', 'town']);
  });

  it('mixes one switched copy per unit into the training text both ways, never into the held-out text', async () => {
    const out = path.join(dir, 'switched');
    const m = await buildCorpus({
      dataRoot: root,
      languages: ['en', 'de'],
      out,
      heldOutFraction: 0.1,
      codeSwitch: { source: 'en', ratio: 1, dictionaries: museDictionaries(root, 'en', ['en', 'de']) },
    });
    const en = lines(out, 'en.txt');
    const de = lines(out, 'de.txt');
    const trainUnits = m.languages.en?.trainUnits as number;
    // ratio 1: every translatable word switched, names kept
    expect(en.filter((l) => /^(die|der) stadt von Name\d+$/.test(l))).toHaveLength(trainUnits);
    expect(en.filter((l) => /^the city of Name\d+$/.test(l))).toHaveLength(trainUnits);
    expect(de.filter((l) => /^the city of Name\d+$/.test(l))).toHaveLength(
      m.languages.de?.trainUnits as number,
    );
    expect(m.languages.en?.switchedCopies).toBe(trainUnits);
    expect(m.codeSwitch?.added.de).toEqual({ copies: m.languages.de?.trainUnits, switchedWords: 3 * 36 });
    // the held-out slices stay the original text
    for (const l of [...lines(out, 'en.heldout.txt'), ...lines(out, 'de.heldout.txt')])
      expect(l).toMatch(/^(the city of|die Stadt von) Name\d+$/);
    const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(manifest.codeSwitch.dictionaries).toEqual({ de: 'dict/muse-en-de.tsv' });
  });

  it('switches a share of the words at a lower ratio, the same copies for the same seed', async () => {
    const build = (out: string) =>
      buildCorpus({
        dataRoot: root,
        languages: ['en', 'de'],
        out: path.join(dir, out),
        seed: 3,
        codeSwitch: { source: 'en', ratio: 0.34, dictionaries: { de: 'dict/muse-en-de.tsv' } },
      });
    const a = await build('a');
    await build('b');
    expect(lines(path.join(dir, 'a'), 'en.txt')).toEqual(lines(path.join(dir, 'b'), 'en.txt'));
    // one of three translatable words per copy
    expect(a.codeSwitch?.added.en?.switchedWords).toBe(a.codeSwitch?.added.en?.copies);
  });

  it('names a missing dictionary file and refuses a ratio outside (0, 1]', async () => {
    const bad = (ratio: number, file: string) =>
      buildCorpus({
        dataRoot: root,
        languages: ['en', 'de'],
        out: path.join(dir, 'bad'),
        codeSwitch: { source: 'en', ratio, dictionaries: { de: file } },
      });
    await expect(bad(0.3, 'dict/muse-en-xx.tsv')).rejects.toThrow(/muse-en-xx\.tsv.*'de'/);
    await expect(bad(0, 'dict/muse-en-de.tsv')).rejects.toBeInstanceOf(XltConfigError);
  });

  it('xlt corpus build --code-switch-ratio writes the switched copies and their record', async () => {
    const out = path.join(dir, 'cli');
    const r = await cli(
      'corpus',
      'build',
      '--languages',
      '["en","de"]',
      '--data-root',
      root,
      '--code-switch-ratio',
      '1',
      '--run-dir',
      out,
    );
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toMatch(/en: \d+ dictionary code-switched copies \(\d+ words switched, ratio 1\)/);
    const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(manifest.codeSwitch).toMatchObject({ source: 'en', ratio: 1 });
    expect(manifest.languages.de.switchedCopies).toBe(manifest.languages.de.trainUnits);
    expect(lines(out, 'en.txt').some((l) => /^(die|der) stadt von Name\d+$/.test(l))).toBe(true);
  });
});
