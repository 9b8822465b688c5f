import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCorpus, discoverSources } from './corpus.js';
import { loadTokenizer } from './model.js';
import { batchSlots, batchTokens, loadPackedMlmCorpus, mlmBatches, mlmOptions } from './train.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-corpus-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(rel: string, text: string) {
  const f = path.join(dir, 'data', rel);
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileSync(f, text);
}

// a small data root laid out as ../shared/data
const tagged = (sents: string[][]) =>
  `${sents.map((s) => s.map((w) => `${w}\tO`).join('\n')).join('\n\n')}\n`;
const trainSents = Array.from({ length: 60 }, (_, i) => ['sentence', 'number', String(i)]);
write('panx/train-en.tsv', tagged([...trainSents, ['sentence', 'number', '3']]));
write('panx/dev-en.tsv', tagged([['a', 'dev', 'sentence']]));
write('text/flores200-eng_Latn.devtest', 'A FLORES line.\nsentence   number 5\n');
write('ud/en_ewt-ud-train.conllu', '# text = UD train sentence.\n1\tUD\t_\tX\t_\t_\t0\troot\t_\t_\n\n');
write('ud/en_ewt-ud-dev.conllu', '# text = UD dev sentence.\n1\tUD\t_\tX\t_\t_\t0\troot\t_\t_\n\n');
write('xnli/dev-en.tsv', 'premise\thypothesis\tneutral\n');
write(
  'qa/xquad.en.json',
  JSON.stringify({
    data: [
      {
        title: 't',
        paragraphs: [
          {
            context: 'A QA context.',
            qas: [{ id: 'q', question: 'What?', answers: [{ text: 'A', answer_start: 0 }] }],
          },
        ],
      },
    ],
  }),
);

describe('buildCorpus', () => {
  it('collects every raw text of a language except the files reports evaluate on', () => {
    const { sources, excluded } = discoverSources(path.join(dir, 'data'), 'en');
    expect(sources.map((s) => s.file).sort()).toEqual([
      'panx/train-en.tsv',
      'qa/xquad.en.json',
      'text/flores200-eng_Latn.devtest',
      'ud/en_ewt-ud-train.conllu',
    ]);
    expect(excluded.sort()).toEqual(['panx/dev-en.tsv', 'ud/en_ewt-ud-dev.conllu', 'xnli/dev-en.tsv']);
  });

  it('de-duplicates, holds a disjoint slice out and records every source in the manifest', async () => {
    const out = path.join(dir, 'corpus');
    const m = await buildCorpus({
      dataRoot: path.join(dir, 'data'),
      languages: ['en'],
      out,
      heldOutFraction: 0.1,
    });
    const train = readFileSync(path.join(out, 'en.txt'), 'utf8').trim().split('\n');
    const held = readFileSync(path.join(out, 'en.heldout.txt'), 'utf8').trim().split('\n');
    const all = [...train, ...held];
    // 60 PAN-X sentences (one repeated, one equal to a FLORES line after whitespace folding), FLORES 1 new, UD 1, QA 1
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(63);
    expect(m.languages.en?.duplicates).toBe(2);
    expect(held.length).toBe(6);
    expect(held.some((h) => train.includes(h))).toBe(false);
    expect(all).not.toContain('a dev sentence');
    expect(all).toContain('UD train sentence.');
    expect(all).toContain('A QA context.');
    const onDisk = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8'));
    expect(onDisk.languages.en.sources).toContainEqual({ file: 'panx/train-en.tsv', units: 60 });
  });

  it('names a language without any text', async () => {
    await expect(
      buildCorpus({ dataRoot: path.join(dir, 'data'), languages: ['en', 'sw'], out: path.join(dir, 'c2') }),
    ).rejects.toThrow(/no raw text for language 'sw'/);
  });
});

const skip = sharedSkipReason('fixtures', 'tokenizer');
describe.skipIf(skip !== undefined)('packed masked-LM blocks', () => {
  it('cut the sentence stream into full blocks: <s> … </s>, </s> after each sentence, no padding in batches', async () => {
    const tok = await loadTokenizer(sharedPath('fixtures', 'tokenizer', 'tokenizer.json'), undefined);
    const file = path.join(dir, 'pack-en.txt');
    const sentences = Array.from({ length: 40 }, (_, i) => `This is sentence number ${i} of a small text.`);
    writeFileSync(file, `${sentences.join('\n')}\n`);
    const blocks = await loadPackedMlmCorpus(
      tok,
      { en: file },
      { maxSentences: 1000, blockSize: 16, log: () => {} },
    );
    const en = blocks.get('en') as number[][];
    const bos = tok.tokenToId('<s>');
    const eos = tok.tokenToId('</s>');
    expect(en.length).toBeGreaterThan(10);
    for (const b of en) {
      expect(b.length).toBe(16);
      expect(b[0]).toBe(bos);
      expect(b[15]).toBe(eos);
    }
    // the stream is the sentences in order, each followed by </s>
    const stream = en.flatMap((b) => b.slice(1, -1));
    const first = (await tok.encode(sentences[0] as string, { addSpecialTokens: false })).ids;
    expect(stream.slice(0, first.length + 1)).toEqual([...first, eos]);
    const { data } = mlmBatches(blocks, {
      alpha: 0.3,
      seed: 0,
      batchSize: 4,
      langIndex: () => undefined,
      mask: mlmOptions(tok, tok.vocabSize, 0.15),
    });
    const { Rng } = await import('@xlt/core');
    const batch = data({ index: 0, rng: new Rng(1) });
    expect(batchTokens(batch)).toBe(batchSlots(batch));
  });
});
