import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { Rng, sharedPath, sharedSkipReason } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { type BilingualDictionary, dictionaryCodeSwitch } from './dictionary.js';

const de: BilingualDictionary = new Map([
  ['the', ['der', 'die', 'das']],
  ['city', ['stadt']],
  ['new', ['neu']],
  ['york', ['york']],
  ['visited', ['besuchte']],
  ['united', ['vereinigte']],
]);
const fr: BilingualDictionary = new Map([
  ['city', ['ville']],
  ['new', ['nouveau', 'nouvelle']],
  ['united', ['unis']],
  ['kingdom', ['royaume uni']],
]);

describe('dictionary code-switching', () => {
  const ex = {
    words: ['Anna', 'visited', 'the', 'city', 'of', 'New', 'York'],
    labels: ['B-PER', 'O', 'O', 'O', 'O', 'B-LOC', 'I-LOC'],
  };

  it('switches the configured ratio of translatable words, keeping labels aligned', () => {
    const r = dictionaryCodeSwitch(ex, {
      dictionaries: new Map([
        ['de', de],
        ['fr', fr],
      ]),
      ratio: 0.6,
      rng: new Rng(1),
    });
    // translatable: visited, the, city, New, York = 5; round(0.6 * 5) = 3
    expect(r.switched).toHaveLength(3);
    expect(r.words).toHaveLength(r.labels!.length);
    for (const s of r.switched) {
      expect(s.to).toBe(r.words[r.sourceIndex.indexOf(s.index)]);
      expect(r.labels![r.sourceIndex.indexOf(s.index)]).toBe(ex.labels[s.index]);
    }
    // words not switched are untouched, in order
    expect(r.words[0]).toBe('Anna');
    expect(r.words[4]).toBe('of');
  });

  it('ratio 0 changes nothing and ratio 1 switches every translatable word', () => {
    const d = new Map([['de', de]]);
    expect(dictionaryCodeSwitch(ex, { dictionaries: d, ratio: 0, rng: new Rng(2) }).words).toEqual(ex.words);
    const all = dictionaryCodeSwitch(ex, { dictionaries: d, ratio: 1, rng: new Rng(2) });
    expect(all.switched.map((s) => s.index)).toEqual([1, 2, 3, 5, 6]);
  });

  it('continues a B- label with I- over a multi-word translation', () => {
    const r = dictionaryCodeSwitch(
      { words: ['Kingdom'], labels: ['B-LOC'] },
      { dictionaries: new Map([['fr', fr]]), ratio: 1, rng: new Rng(3) },
    );
    expect(r.words).toEqual(['royaume', 'uni']);
    expect(r.labels).toEqual(['B-LOC', 'I-LOC']);
    expect(r.sourceIndex).toEqual([0, 0]);
  });

  it('is reproducible with a seed and can leave O words alone', () => {
    const d = new Map([
      ['de', de],
      ['fr', fr],
    ]);
    const a = dictionaryCodeSwitch(ex, { dictionaries: d, ratio: 0.5, rng: new Rng(7) });
    const b = dictionaryCodeSwitch(ex, { dictionaries: d, ratio: 0.5, rng: new Rng(7) });
    expect(a).toEqual(b);
    const ents = dictionaryCodeSwitch(ex, { dictionaries: d, ratio: 1, skipLabels: ['O'], rng: new Rng(7) });
    expect(ents.switched.every((s) => ex.labels[s.index] !== 'O')).toBe(true);
  });

  it('rejects mismatched labels and a bad ratio', () => {
    expect(() =>
      dictionaryCodeSwitch(
        { words: ['a', 'b'], labels: ['O'] },
        { dictionaries: new Map([['de', de]]), rng: new Rng(0) },
      ),
    ).toThrow(/2 words but 1 labels/);
    expect(() =>
      dictionaryCodeSwitch(ex, { dictionaries: new Map([['de', de]]), ratio: 2, rng: new Rng(0) }),
    ).toThrow(/ratio/);
  });
});

async function readMuse(file: string): Promise<Map<string, string[]>> {
  const m = new Map<string, string[]>();
  for await (const line of createInterface({ input: createReadStream(file) })) {
    const [a, b] = line.split(/[\t ]/);
    if (!a || !b) continue;
    const l = m.get(a) ?? [];
    l.push(b);
    m.set(a, l);
  }
  return m;
}

async function readPanx(file: string, limit: number): Promise<Array<{ words: string[]; labels: string[] }>> {
  const out: Array<{ words: string[]; labels: string[] }> = [];
  let cur = { words: [] as string[], labels: [] as string[] };
  for await (const line of createInterface({ input: createReadStream(file) })) {
    if (line.trim() === '') {
      if (cur.words.length) out.push(cur);
      cur = { words: [], labels: [] };
      if (out.length >= limit) break;
      continue;
    }
    const [tok, tag] = line.split('\t');
    cur.words.push((tok as string).replace(/^[a-z]{2,3}:/, ''));
    cur.labels.push(tag as string);
  }
  return out;
}

describe.skipIf(sharedSkipReason('data') !== undefined)('on PAN-X English with the MUSE dictionaries', () => {
  it('keeps tokens and tags aligned and switches the configured ratio', async () => {
    const dicts = new Map<string, BilingualDictionary>();
    for (const l of ['de', 'es', 'fr'])
      dicts.set(l, await readMuse(sharedPath('data', 'dict', `muse-en-${l}.tsv`)));
    const sents = await readPanx(sharedPath('data', 'panx', 'train-en.tsv'), 500);
    const rng = new Rng(42);
    let candidates = 0;
    let switched = 0;
    for (const s of sents) {
      const r = dictionaryCodeSwitch(s, { dictionaries: dicts, ratio: 0.3, rng });
      expect(r.words.length).toBe(r.labels!.length);
      // every output label is the label of its source word, or its I- continuation
      r.labels!.forEach((l, k) => {
        const src = s.labels[r.sourceIndex[k] as number] as string;
        expect(l === src || l === src.replace(/^B-/, 'I-')).toBe(true);
      });
      const translatable = s.words.filter((w) =>
        [...dicts.values()].some((d) => d.has(w.toLowerCase())),
      ).length;
      candidates += translatable;
      switched += r.switched.length;
      expect(r.switched.length).toBe(Math.round(0.3 * translatable));
    }
    // per-sentence rounding of ratio x candidates makes the aggregate differ slightly from 0.3
    expect(switched / candidates).toBeGreaterThan(0.27);
    expect(switched / candidates).toBeLessThan(0.33);
  });
});
