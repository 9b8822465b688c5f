import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { isXltError, sharedPath, sharedSkipReason, XltError } from '@xlt/core';
import { Tokenizer } from 'tokenizers';
import { describe, expect, it } from 'vitest';
import { XltTokenizer } from './index.js';

const FIXTURE = sharedPath('fixtures', 'tokenizer', 'tokenizer.json');
const ENCODINGS = sharedPath('fixtures', 'tokenizer', 'encodings.json');

interface FixtureEncoding {
  text: string;
  input_ids: number[];
  tokens: string[];
  offsets: [number, number][];
  word_ids: (number | null)[];
}

async function expectXltError(
  p: Promise<unknown> | (() => unknown),
  code: string,
  pattern: RegExp,
): Promise<XltError> {
  let err: unknown;
  try {
    if (typeof p === 'function') await p();
    else await p;
  } catch (e) {
    err = e;
  }
  expect(isXltError(err), `expected an XltError, got ${String(err)}`).toBe(true);
  const x = err as XltError;
  expect(x.code).toBe(code);
  expect(x.message).toMatch(pattern);
  return x;
}

describe.skipIf(sharedSkipReason('fixtures') !== undefined)('XltTokenizer on the fixture tokenizer', () => {
  it('reproduces input_ids, tokens, word_ids and offsets of all 180 transformers encodings', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const enc = JSON.parse(readFileSync(ENCODINGS, 'utf8')) as Record<string, FixtureEncoding[]>;
    let n = 0;
    for (const [lang, items] of Object.entries(enc)) {
      for (const ex of items) {
        const e = await tok.encode(ex.text);
        expect(e.ids, `${lang}: ${ex.text}`).toEqual(ex.input_ids);
        expect(e.tokens, `${lang}: ${ex.text}`).toEqual(ex.tokens);
        expect(e.wordIds, `${lang}: ${ex.text}`).toEqual(ex.word_ids);
        expect(e.offsets, `${lang}: ${ex.text}`).toEqual(ex.offsets);
        expect(e.attentionMask).toEqual(ex.input_ids.map(() => 1));
        n++;
      }
    }
    expect(n).toBe(180);
  });

  it('encodeBatch gives the same encodings as encode', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const enc = JSON.parse(readFileSync(ENCODINGS, 'utf8')) as Record<string, FixtureEncoding[]>;
    const texts = Object.values(enc).flatMap((xs) => xs.slice(0, 3).map((x) => x.text));
    const batch = await tok.encodeBatch(texts);
    for (let i = 0; i < texts.length; i++) expect(batch[i]).toEqual(await tok.encode(texts[i]));
  });

  it('loads a Hugging Face model folder holding tokenizer.json', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xlt-tok-'));
    writeFileSync(path.join(dir, 'tokenizer.json'), readFileSync(FIXTURE));
    const tok = await XltTokenizer.fromFile(dir);
    expect(tok.vocabSize).toBe(2002);
    expect(tok.tokenToId('<mask>')).toBe(2001);
    expect(tok.file).toBe(path.join(dir, 'tokenizer.json'));
  });

  it('saves atomically and reloads to the same encodings', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'xlt-save-'));
    const saved = await tok.save(dir);
    expect(saved).toBe(path.join(dir, 'tokenizer.json'));
    const again = await XltTokenizer.fromFile(saved);
    const s = 'Die Katze saß auf der Matte.';
    expect(await again.encode(s)).toEqual(await tok.encode(s));
    expect(XltTokenizer.fromString(tok.toJSONString()).vocabSize).toBe(2002);
  });

  it('encodes pairs as <s> A </s></s> B </s> like the native tokenizers library', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const native = Tokenizer.fromFile(FIXTURE);
    const a = 'The cat sat on the mat.';
    const b = 'Die Katze saß auf der Matte.';
    const ours = await tok.encode(a, { pair: b });
    const ref = await native.encode(a, b);
    expect(ours.ids).toEqual(ref.getIds());
    expect(ours.offsets).toEqual(ref.getOffsets());
    expect(ours.wordIds).toEqual(ref.getWordIds().map((w) => w ?? null));
    // layout: <s> A </s> </s> B </s>
    const specials = ours.ids.map((id, i) => (ours.specialTokensMask[i] ? id : -1)).filter((x) => x >= 0);
    expect(specials).toEqual([0, 2, 2, 2]);
    expect(ours.ids[0]).toBe(0);
    expect(ours.ids.at(-1)).toBe(2);
    const firstB = ours.sequenceIds.indexOf(1);
    expect(ours.ids.slice(firstB - 2, firstB)).toEqual([2, 2]);
  });

  it('truncates longest-first exactly as the native library does', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const cases: [string, string, number][] = [
      ['a b c d e f g h i j k l', 'x y', 12],
      ['short', 'a much longer second sentence with many words in it', 10],
      ['one two three four five six', 'uno dos tres cuatro cinco seis', 9],
      ['one two three four five six', 'uno dos tres cuatro cinco seis', 14],
    ];
    for (const [a, b, max] of cases) {
      const native = Tokenizer.fromFile(FIXTURE);
      native.setTruncation(max, { strategy: 'LongestFirst' as never });
      const ref = await native.encode(a, b);
      const ours = await tok.encode(a, { pair: b, maxLength: max });
      expect(ours.ids, `${a} | ${b} @${max}`).toEqual(ref.getIds());
      expect(ours.ids.length).toBeLessThanOrEqual(max);
    }
  });

  it('truncates a single sequence and only_second pairs, keeping the special tokens', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const full = await tok.encode('one two three four five six seven');
    const cut = await tok.encode('one two three four five six seven', { maxLength: 6 });
    expect(cut.ids).toEqual([...full.ids.slice(0, 5), 2]);
    const a = await tok.encode('one two', { addSpecialTokens: false });
    const max = a.ids.length + 4 + 3;
    const p = await tok.encode('one two', {
      pair: 'three four five six seven',
      maxLength: max,
      truncation: 'only_second',
    });
    expect(p.ids.slice(1, 1 + a.ids.length)).toEqual(a.ids);
    expect(p.ids.length).toBe(max);
    expect(p.sequenceIds.filter((s) => s === 1).length).toBe(3);
    await expectXltError(
      tok.encode('one two', { pair: 'three four five six seven', maxLength: 5, truncation: 'only_second' }),
      'CONFIG',
      /second sequence has only/,
    );
    await expectXltError(tok.encode('x', { maxLength: 1 }), 'CONFIG', /smaller than the 2 special tokens/);
  });

  it('pads a batch to its longest member or to maxLength, with mask 0 and <pad>=1', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const texts = ['hello', 'a somewhat longer sentence here'];
    const [short, long] = await tok.encodeBatch(texts, { padding: 'longest' });
    expect(short.ids.length).toBe(long.ids.length);
    const plain = await tok.encode('hello');
    const nPad = long.ids.length - plain.ids.length;
    expect(short.ids).toEqual([...plain.ids, ...new Array(nPad).fill(1)]);
    expect(short.attentionMask).toEqual([...plain.ids.map(() => 1), ...new Array(nPad).fill(0)]);
    expect(short.tokens.at(-1)).toBe('<pad>');
    expect(short.wordIds.at(-1)).toBeNull();
    const fixed = await tok.encodeBatch(texts, { padding: 'max_length', maxLength: 8 });
    expect(fixed.map((e) => e.ids.length)).toEqual([8, 8]);
    expect(fixed[1].ids.at(-1)).toBe(2);
    const mult = await tok.encodeBatch(['hello'], { padding: 'longest', padToMultipleOf: 8 });
    expect(mult[0].ids.length % 8).toBe(0);
    await expectXltError(tok.encodeBatch(texts, { padding: 'max_length' }), 'CONFIG', /needs maxLength/);
  });

  it('encodes without special tokens and decodes back', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const e = await tok.encode('the sound of the city', { addSpecialTokens: false });
    expect(e.ids[0]).not.toBe(0);
    expect(e.ids.at(-1)).not.toBe(2);
    expect(await tok.decode(e.ids)).toBe('the sound of the city');
    const withSpecials = await tok.encode('the sound');
    expect(await tok.decode(withSpecials.ids)).toBe('the sound');
    expect(await tok.decode(withSpecials.ids, { skipSpecialTokens: false })).toMatch(/^<s>.*<\/s>$/);
    await expectXltError(tok.decode([5, 99999]), 'CONFIG', /ids\[1\]/);
    await expectXltError(tok.decode([1.5]), 'CONFIG', /not in 0\.\.2001/);
  });

  it('gives offsets in UTF-16 code units for characters outside the BMP', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const text = 'a😀b 𝔘x c';
    const e = await tok.encode(text);
    for (let i = 0; i < e.ids.length; i++) {
      if (e.specialTokensMask[i]) continue;
      const [s, t] = e.offsets[i];
      expect(t).toBeGreaterThan(s);
      expect(t).toBeLessThanOrEqual(text.length);
    }
    // the last token "▁c" covers the 'c' at UTF-16 index text.length - 1
    expect(e.offsets.at(-2)).toEqual([text.length - 1, text.length]);
    // the emoji (2 code units) is covered by one token spanning [1, 3)
    expect(e.offsets.some(([s, t]) => s === 1 && t === 3)).toBe(true);
  });

  it('replaces lone surrogates by U+FFFD instead of failing, keeping offsets aligned', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const text = 'ab\uD800 cd \uDC00';
    const e = await tok.encode(text);
    const clean = await tok.encode('ab\uFFFD cd \uFFFD');
    expect(e.ids).toEqual(clean.ids);
    expect(e.offsets).toEqual(clean.offsets);
    expect(e.offsets.at(-2)).toEqual([text.length - 1, text.length]);
  });

  it('encodes a 1 MB single line (no spaces) without error', async () => {
    const tok = await XltTokenizer.fromFile(FIXTURE);
    const line = 'abcdefghij'.repeat(100_000);
    const e = await tok.encode(line);
    expect(e.ids.length).toBeGreaterThan(1000);
    expect(e.offsets.at(-2)?.[1]).toBe(line.length);
    const cut = await tok.encode(line, { maxLength: 512 });
    expect(cut.ids.length).toBe(512);
  });
});

describe('XltTokenizer bad input', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'xlt-tokbad-'));
  const write = (name: string, text: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('reports a missing file or a folder without tokenizer.json as XltNotFoundError', async () => {
    await expectXltError(XltTokenizer.fromFile(path.join(dir, 'nope.json')), 'NOT_FOUND', /nope\.json/);
    const empty = path.join(dir, 'emptydir');
    await mkdir(empty, { recursive: true });
    await expectXltError(XltTokenizer.fromFile(empty), 'NOT_FOUND', /emptydir.tokenizer\.json/);
  });

  it('reports malformed JSON with the file and line', async () => {
    const p = write('bad.json', '{\n  "model": {\n    "type": "Unigram",,\n  }\n}');
    const e = await expectXltError(XltTokenizer.fromFile(p), 'FORMAT', /malformed JSON/);
    expect(e.file).toBe(p);
    expect(e.line).toBe(3);
  });

  it('rejects a structurally wrong tokenizer.json, naming the field', async () => {
    const base = {
      added_tokens: [],
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
    };
    await expectXltError(XltTokenizer.fromFile(write('a.json', '[]')), 'FORMAT', /JSON object/);
    await expectXltError(
      XltTokenizer.fromFile(write('b.json', JSON.stringify(base))),
      'FORMAT',
      /field 'model'/,
    );
    const bpe = { ...base, model: { type: 'BPE', vocab: {}, merges: [] } };
    await expectXltError(
      XltTokenizer.fromFile(write('c.json', JSON.stringify(bpe))),
      'FORMAT',
      /model\.type/,
    );
    const emptyVocab = { ...base, model: { type: 'Unigram', unk_id: 0, vocab: [] } };
    await expectXltError(
      XltTokenizer.fromFile(write('d.json', JSON.stringify(emptyVocab))),
      'FORMAT',
      /model\.vocab/,
    );
    const badUnk = { ...base, model: { type: 'Unigram', unk_id: 7, vocab: [['a', -1]] } };
    await expectXltError(XltTokenizer.fromFile(write('e.json', JSON.stringify(badUnk))), 'FORMAT', /unk_id/);
    const badEntry = { ...base, model: { type: 'Unigram', unk_id: 0, vocab: [['a', 'x']] } };
    await expectXltError(
      XltTokenizer.fromFile(write('f.json', JSON.stringify(badEntry))),
      'FORMAT',
      /vocab\[0\]/,
    );
    const badTpl = {
      ...base,
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<cls>', type_id: 0 } }],
        pair: [],
      },
      model: {
        type: 'Unigram',
        unk_id: 0,
        vocab: [
          ['<unk>', 0],
          ['a', -1],
        ],
      },
    };
    const g = await expectXltError(
      XltTokenizer.fromFile(write('g.json', JSON.stringify(badTpl))),
      'FORMAT',
      /./,
    );
    expect(g.file).toMatch(/g\.json$/);
  });

  it('wraps an error of the native library as XltFormatError', async () => {
    const bad = {
      added_tokens: [],
      normalizer: { type: 'NoSuchNormalizer' },
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0]] },
    };
    const e = await expectXltError(
      XltTokenizer.fromFile(write('h.json', JSON.stringify(bad))),
      'FORMAT',
      /rejected/,
    );
    expect(e).toBeInstanceOf(XltError);
  });
});
