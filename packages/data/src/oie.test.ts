import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedPath, sharedSkipReason, XltFormatError } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { readBenchie, readCarb, readLines, readReOie } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'xlt-oie-'));
let k = 0;
function tmp(content: string): string {
  k += 1;
  const p = join(dir, `f${k}.txt`);
  writeFileSync(p, content);
  return p;
}
async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
async function errorOf(p: Promise<unknown>): Promise<XltFormatError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof XltFormatError) return e;
    throw e;
  }
  throw new Error('expected an XltFormatError');
}

describe('Open IE readers on small files', () => {
  it('groups CaRB tuples per sentence', async () => {
    const f = tmp('S1\tis\tA\tB\nS1\thas\tA\tC\tD\nS2\truns\tX\n');
    expect(await all(readCarb(f))).toEqual([
      {
        sentence: 'S1',
        tuples: [
          { relation: 'is', args: ['A', 'B'], line: 1 },
          { relation: 'has', args: ['A', 'C', 'D'], line: 2 },
        ],
      },
      { sentence: 'S2', tuples: [{ relation: 'runs', args: ['X'], line: 3 }] },
    ]);
  });
  it('parses BenchIE clusters with optional tokens and header variants', async () => {
    const f = tmp(
      'sent_id:7\tHe served as PM .\n7--> Cluster 1:\nHe --> served as --> [the] PM [of X]\n7 :\nHe-->served-->as PM\n',
    );
    const [s] = await all(readBenchie(f));
    expect(s?.sentId).toBe(7);
    expect(s?.clusters.map((c) => [c.index, c.triples.length])).toEqual([
      [1, 1],
      [2, 1],
    ]);
    expect(s?.clusters[0]?.triples[0]?.[2]).toEqual({
      raw: '[the] PM [of X]',
      full: 'the PM of X',
      required: 'PM',
    });
  });
  it('CaRB line without argument names file and line', async () => {
    const f = tmp('S\tis\tA\nS\tis\n');
    const e = await errorOf(all(readCarb(f)));
    expect([e.file, e.line]).toEqual([f, 2]);
  });
  it('BenchIE triple with two parts names file and line', async () => {
    const f = tmp('sent_id:1\tS\n1--> Cluster 1:\nA --> B\n');
    const e = await errorOf(all(readBenchie(f)));
    expect([e.file, e.line]).toEqual([f, 3]);
  });
  it('Re-OIE bad JSON and missing pred', async () => {
    const f = tmp('{"s": [');
    expect((await errorOf(all(readReOie(f)))).file).toBe(f);
    const g = tmp(JSON.stringify({ 'A b .': [{ arg0: 'A' }] }));
    const e = await errorOf(all(readReOie(g)));
    expect([e.file, e.field]).toEqual([g, 'A b .']);
  });
});

// Counts [sentences, tuples] / [sentences, clusters, triples] counted once with these readers and
// cross-checked: CaRB sentences with `cut -f1 | uniq | wc -l` (641 dev; test has 634 sentences with
// gold tuples out of the 641 in carb-data_test.txt, README: "641 sentences each"); BenchIE 300
// sentences each (README) and triples = `grep -c -- '-->'` minus cluster headers.
const OIE: Record<string, number[]> = {
  'carb-data_gold_dev.tsv': [641, 2548],
  'carb-data_gold_test.tsv': [634, 2715],
  'benchie-carb_explicit.txt': [291, 783],
  'm2oie-Re-OIE2016-Binary.json': [595, 1508],
  'm2oie-Re-OIE2016-Portuguese-Binary.json': [594, 1503],
  'm2oie-Re-OIE2016-Portuguese.json': [594, 1503],
  'm2oie-Re-OIE2016-Spanish-Binary.json': [595, 1496],
  'm2oie-Re-OIE2016-Spanish.json': [595, 1496],
  'm2oie-Re-OIE2016.json': [595, 1508],
  'benchie-benchie_gold_annotations_de.txt': [300, 1086, 2446],
  'benchie-benchie_gold_annotations_en.txt': [300, 1350, 8150],
  'benchie-benchie_gold_annotations_zh.txt': [300, 995, 1368],
  'benchie-sample300_de.txt': [300],
  'benchie-sample300_en.txt': [300],
  'benchie-sample300_zh.txt': [300],
  'carb-data_dev.txt': [641],
  'carb-data_test.txt': [641],
};

async function countsOf(name: string): Promise<number[]> {
  const p = sharedPath('data', 'oie', name);
  if (name.startsWith('carb-data_gold') || name === 'benchie-carb_explicit.txt') {
    const s = await all(readCarb(p));
    return [s.length, s.reduce((a, x) => a + x.tuples.length, 0)];
  }
  if (name.startsWith('m2oie')) {
    const s = await all(readReOie(p));
    return [s.length, s.reduce((a, x) => a + x.tuples.length, 0)];
  }
  if (name.startsWith('benchie-benchie_gold')) {
    const s = await all(readBenchie(p));
    const cl = s.flatMap((x) => x.clusters);
    return [s.length, cl.length, cl.reduce((a, c) => a + c.triples.length, 0)];
  }
  return [(await all(readLines(p))).length];
}

describe.skipIf(sharedSkipReason('data', 'oie') !== undefined)('every Open IE file parses', () => {
  it.each(Object.keys(OIE))('%s', async (name) => {
    expect(await countsOf(name)).toEqual(OIE[name]);
  });
  it('Re-OIE first sentence has the n-ary tuple of the file', async () => {
    const it0 = readReOie(sharedPath('data', 'oie', 'm2oie-Re-OIE2016.json'));
    const first = (await it0.next()).value;
    expect(first?.tuples[0]).toEqual({
      pred: 'have raised',
      predIndex: [6, 7],
      args: ['Few people in the advertising business', 'as many hackles', 'as Alvin A. Achenbaum'],
      argIndices: [
        [0, 5],
        [8, 10],
        [11, 14],
      ],
    });
  });
});
