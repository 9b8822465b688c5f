import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-augment-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const skip = sharedSkipReason('data') ?? sharedSkipReason('fixtures');

describe.skipIf(skip !== undefined)(`xlt augment dict / self (${skip ?? 'shared data found'})`, () => {
  it('augment dict: originals plus code-switched copies, labels aligned and valid BIO', async () => {
    const out = path.join(dir, 'dict.tsv');
    const r = await cli(
      'augment',
      'dict',
      '--input',
      'panx/train-en.tsv',
      '--data-root',
      sharedPath('data'),
      '--set',
      'dictionaries.de=dict/muse-en-de.tsv',
      '--set',
      'dictionaries.es=dict/muse-en-es.tsv',
      '--ratio',
      '0.5',
      '--max-examples',
      '40',
      '--out',
      out,
      '--run-dir',
      path.join(dir, 'run-dict'),
    );
    expect(r.code, r.err).toBe(EXIT.ok);
    const sentences = readFileSync(out, 'utf8')
      .trim()
      .split(/\n\n/)
      .map((b) => b.split('\n').map((l) => l.split('\t')));
    expect(sentences.length).toBe(80);
    let changed = 0;
    for (let i = 0; i < 80; i += 2) {
      const orig = sentences[i] as string[][];
      const copy = sentences[i + 1] as string[][];
      for (const s of [orig, copy]) {
        for (const [k, cols] of s.entries()) {
          expect(cols.length).toBe(2);
          const tag = cols[1] as string;
          if (tag.startsWith('I-'))
            expect((s[k - 1]?.[1] ?? 'O').slice(2), 'I- continues an entity').toBe(tag.slice(2));
        }
      }
      // the copy keeps the entity sequence (types in order) of the original
      const types = (s: string[][]) => s.filter((c) => c[1]?.startsWith('B-')).map((c) => c[1]);
      expect(types(copy)).toEqual(types(orig));
      if (copy.map((c) => c[0]).join(' ') !== orig.map((c) => c[0]).join(' ')) changed++;
    }
    expect(changed).toBeGreaterThan(20);
    expect(r.out).toMatch(/words switched \(\d+\.\d%\) into de es/);
  });

  it('augment self: the fixture masked-LM replaces tokens at the configured ratio, reproducibly', async () => {
    const run = async (name: string, seed: string) => {
      const out = path.join(dir, `${name}.jsonl`);
      const r = await cli(
        'augment',
        'self',
        '--model',
        sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
        '--tokenizer',
        sharedPath('fixtures', 'tokenizer', 'tokenizer.json'),
        '--input',
        'panx/dev-de.tsv',
        '--data-root',
        sharedPath('data'),
        '--language',
        'de_DE',
        '--unit',
        'token',
        '--ratio',
        '0.3',
        '--max-examples',
        '30',
        '--max-length',
        '24',
        '--seed',
        seed,
        '--out',
        out,
        '--run-dir',
        path.join(dir, `run-${name}`),
      );
      expect(r.code, r.err).toBe(EXIT.ok);
      return readFileSync(out, 'utf8')
        .trim()
        .split('\n')
        .map(
          (l) =>
            JSON.parse(l) as {
              ids: number[];
              replaced: Array<{ position: number; from: number; to: number }>;
            },
        );
    };
    const a = await run('a', '1');
    const b = await run('b', '1');
    const c = await run('c', '2');
    expect(a.length).toBe(30);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    let replaced = 0;
    let eligible = 0;
    for (const e of a) {
      expect(e.ids[0]).toBe(0); // <s> untouched
      for (const r of e.replaced) {
        expect(r.to).not.toBe(r.from);
        expect(e.ids[r.position]).toBe(r.to);
        expect([0, 1, 2, 3].includes(r.to)).toBe(false); // never proposes specials
      }
      replaced += e.replaced.length;
      eligible += e.ids.length - 2;
    }
    // 30% of the positions are chosen; a few keep their token when no allowed proposal differs
    expect(replaced / eligible).toBeGreaterThan(0.2);
    expect(replaced / eligible).toBeLessThan(0.36);
  });
});
