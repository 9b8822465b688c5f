import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedPath, sharedSkipReason, XltFormatError } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { readConllu, readMuseDictionary, readNer, readPawsx, readSquad, readXnli } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'xlt-data-'));
let k = 0;
function tmp(content: string, ext = 'txt'): string {
  k += 1;
  const p = join(dir, `f${k}.${ext}`);
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

describe('small well-formed files', () => {
  it('parses CoNLL-U words, multiword tokens, empty nodes and comments as UD specifies', async () => {
    const f = tmp(
      [
        '# sent_id = s1',
        '# text = Je vais du bon',
        '1\tJe\til\tPRON\t_\t_\t2\tnsubj\t_\t_',
        '2\tvais\taller\tVERB\t_\t_\t0\troot\t_\t_',
        '3-4\tdu\t_\t_\t_\t_\t_\t_\t_\t_',
        '3\tde\tde\tADP\t_\t_\t5\tcase\t_\t_',
        '4\tle\tle\tDET\t_\t_\t5\tdet\t_\t_',
        '4.1\tx\tx\tNOUN\t_\t_\t_\t_\t_\t_',
        '5\tbon\tbon\tNOUN\t_\t_\t2\tobl\t_\t_',
        '',
      ].join('\n'),
    );
    const [s] = await all(readConllu(f));
    expect(s?.sentId).toBe('s1');
    expect(s?.text).toBe('Je vais du bon');
    expect(s?.forms).toEqual(['Je', 'vais', 'de', 'le', 'bon']);
    expect(s?.upos).toEqual(['PRON', 'VERB', 'ADP', 'DET', 'NOUN']);
    expect(s?.heads).toEqual([2, 0, 5, 5, 2]);
    expect(s?.multiwords).toEqual([{ start: 3, end: 4, form: 'du' }]);
    expect(s?.emptyNodes).toBe(1);
  });

  it('reads CoNLL-2003 space columns, skips -DOCSTART- and strips PAN-X language prefixes', async () => {
    const c = tmp('-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n');
    expect(await all(readNer(c))).toEqual([{ tokens: ['EU', 'rejects'], tags: ['B-ORG', 'O'], line: 3 }]);
    const p = tmp('en:Paris\tB-LOC\nen:is\tO\n');
    expect(await all(readNer(p))).toEqual([
      { tokens: ['Paris', 'is'], tags: ['B-LOC', 'O'], lang: 'en', line: 1 },
    ]);
  });

  it('groups MUSE pairs per source word, tab or space separated', async () => {
    const d = await readMuseDictionary(tmp('the\tdie\nthe der\nhouse\tHaus\nthe\tdie\n'));
    expect([...d.entries()]).toEqual([
      ['the', ['die', 'der']],
      ['house', ['Haus']],
    ]);
  });
});

describe('malformed input names file and line', () => {
  it('XNLI wrong column count', async () => {
    const f = tmp('a\tb\tneutral\na\tb\n');
    const e = await errorOf(all(readXnli(f)));
    expect([e.file, e.line]).toEqual([f, 2]);
  });
  it('XNLI unknown label', async () => {
    const f = tmp('a\tb\tmaybe\n');
    const e = await errorOf(all(readXnli(f)));
    expect([e.file, e.line, e.field]).toEqual([f, 1, 'label']);
  });
  it('PAWS-X label other than 0/1', async () => {
    const f = tmp('a\tb\t1\na\tb\t2\n');
    const e = await errorOf(all(readPawsx(f)));
    expect([e.file, e.line]).toEqual([f, 2]);
  });
  it('NER line without tag, and bad tag', async () => {
    const f = tmp('Paris\tB-LOC\nis\n');
    expect((await errorOf(all(readNer(f)))).line).toBe(2);
    const g = tmp('Paris\tLOC\n');
    const e = await errorOf(all(readNer(g)));
    expect([e.file, e.line, e.field]).toEqual([g, 1, 'tag']);
  });
  it('CoNLL-U wrong column count and out-of-order id', async () => {
    const f = tmp('# text = a\n1\ta\ta\tX\t_\t_\t0\troot\t_\n');
    const e = await errorOf(all(readConllu(f)));
    expect([e.file, e.line]).toEqual([f, 2]);
    const g = tmp('1\ta\ta\tX\t_\t_\t0\troot\t_\t_\n3\tb\tb\tX\t_\t_\t1\tdep\t_\t_\n');
    expect((await errorOf(all(readConllu(g)))).line).toBe(2);
  });
  it('SQuAD bad JSON and missing fields', async () => {
    const f = tmp('{"data": [', 'json');
    expect((await errorOf(all(readSquad(f)))).file).toBe(f);
    const g = tmp(
      JSON.stringify({ data: [{ title: 't', paragraphs: [{ context: 'c', qas: [{ id: 'q' }] }] }] }),
      'json',
    );
    const e = await errorOf(all(readSquad(g)));
    expect([e.file, e.field]).toEqual([g, 'data[0].paragraphs[0].qas[0]']);
  });
  it('MUSE line with three columns', async () => {
    const f = tmp('a\tb\nc\td\te\n');
    const e = await errorOf(readMuseDictionary(f));
    expect([e.file, e.line]).toEqual([f, 2]);
  });
  it("onError: 'collect' skips bad records and keeps the good ones", async () => {
    const f = tmp('a\tb\tneutral\nx\ty\tmaybe\nc\td\n e\tf\tentailment\n');
    const errors: XltFormatError[] = [];
    const recs = await all(readXnli(f, { onError: 'collect', errors }));
    expect(recs.map((r) => r.line)).toEqual([1, 4]);
    expect(errors.map((e) => e.line)).toEqual([2, 3]);
    const n = tmp('a\tO\nb\tBAD\n\nc\tO\n');
    const nerErrors: XltFormatError[] = [];
    const sents = await all(readNer(n, { onError: 'collect', errors: nerErrors }));
    expect(sents.map((s) => s.tokens)).toEqual([['c']]);
    expect(nerErrors.map((e) => e.line)).toEqual([2]);
  });
});

describe.skipIf(sharedSkipReason('data') !== undefined)('content of real files', () => {
  it('XNLI en first pair matches the file', async () => {
    const it0 = readXnli(sharedPath('data', 'xnli', 'dev-en.tsv'));
    const first = (await it0.next()).value;
    await it0.return(undefined);
    expect(first).toEqual({
      premise: "And he said, Mama, I'm home.",
      hypothesis: 'He called his mom as soon as the school bus dropped him off.',
      label: 'neutral',
      line: 1,
    });
  });
  it('XQuAD en answers are substrings of the context at answer_start', async () => {
    let n = 0;
    for await (const r of readSquad(sharedPath('data', 'qa', 'xquad.en.json'))) {
      for (const a of r.answers) {
        expect(r.context.slice(a.answerStart, a.answerStart + a.text.length)).toBe(a.text);
        n++;
      }
    }
    expect(n).toBeGreaterThan(1190 - 1);
  });
  it('UD fr_gsd has multiword tokens whose ranges cover existing words', async () => {
    let mw = 0;
    for await (const s of readConllu(sharedPath('data', 'ud', 'fr_gsd-ud-dev.conllu'))) {
      expect(s.forms.length).toBe(s.upos.length);
      for (const m of s.multiwords) {
        expect(m.end).toBeLessThanOrEqual(s.forms.length);
        mw++;
      }
    }
    expect(mw).toBeGreaterThan(0);
  });
});
