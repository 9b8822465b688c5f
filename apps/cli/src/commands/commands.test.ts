import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSafetensors, sharedPath, sharedSkipReason, toFloat32 } from '@xlt/core';
import { XltTokenizer } from '@xlt/tokenizer';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { EXIT, parseArgv } from '../cli/main.js';
import { expandEvalFiles, langFiles, langOfFile } from '../tasks/common.js';
import { cli } from '../test-cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('language-to-file options', () => {
  it('collects a repeated --text option into lang=path items that become a mapping', () => {
    const p = parseArgv(
      ['pretrain', '--text', 'en=a.txt', '--text', 'de=b.txt', '--steps', '3'],
      ['pretrain'],
    );
    expect(p.overrides).toEqual(['text=["en=a.txt","de=b.txt"]', 'steps=3']);
    const schema = z.object({ text: langFiles });
    expect(schema.parse({ text: ['en=a.txt', 'de=b.txt', 'de=c.txt'] }).text).toEqual({
      en: 'a.txt',
      de: ['b.txt', 'c.txt'],
    });
    expect(schema.parse({ text: 'sw=s.txt' }).text).toEqual({ sw: 's.txt' });
    expect(schema.parse({ text: { en: 'x' } }).text).toEqual({ en: 'x' });
    expect(schema.safeParse({ text: ['no-equals-sign'] }).success).toBe(false);
  });

  it('expands a glob (the * is the language), a folder, and a language filter', () => {
    const d = path.join(dir, 'evalfiles');
    mkdirSync(d, { recursive: true });
    for (const f of ['dev-en.tsv', 'dev-de.tsv', 'dev-zh.tsv', 'de_gsd-ud-dev.conllu', 'train-en.tsv'])
      writeFileSync(path.join(d, f), 'x\tO\n');
    expect(expandEvalFiles('dev-*.tsv', d)).toEqual({
      de: path.join(d, 'dev-de.tsv'),
      en: path.join(d, 'dev-en.tsv'),
      zh: path.join(d, 'dev-zh.tsv'),
    });
    expect(Object.keys(expandEvalFiles('dev-*.tsv', d, ['zh', 'en']))).toEqual(['zh', 'en']);
    expect(() => expandEvalFiles('dev-*.tsv', d, ['fr'])).toThrow(/no file for fr/);
    expect(langOfFile('de_gsd-ud-dev.conllu')).toBe('de');
    expect(langOfFile('dev-zh.tsv')).toBe('zh');
    expect(() => expandEvalFiles({ en: 'missing.tsv' }, d)).toThrow(/missing\.tsv/);
  });
});

describe('pretrain, add-language, finetune, evaluate: usage', () => {
  it('prints help with examples for every new command', async () => {
    for (const name of ['pretrain', 'add-language', 'finetune', 'evaluate']) {
      const h = await cli(name, '--help');
      expect(h.code).toBe(EXIT.ok);
      expect(h.out).toMatch(new RegExp(`Examples?:\\n\\s+xlt ${name}`));
    }
    expect((await cli('finetune', '--help')).out).toMatch(/salt .*code-switched/s);
  });

  it('rejects a pretrain without a model or a size, a salt preset without dictionaries, adam-beta2 1 (exit 2)', async () => {
    const a = await cli('pretrain', '--text', 'en=x.txt', '--run-dir', path.join(dir, 'u1'));
    expect(a.code).toBe(EXIT.usage);
    expect(a.err).toMatch(/exactly one of model .* or init/);
    const b = await cli(
      'finetune',
      '--task',
      'ner',
      '--model',
      'm',
      '--train',
      't',
      '--preset',
      'salt',
      '--run-dir',
      path.join(dir, 'u2'),
    );
    expect(b.code).toBe(EXIT.usage);
    expect(b.err).toMatch(/salt: preset salt needs salt\.dictionaries/);
    const betaOne = 'pretrain --init tiny --text en=x.txt --adam-beta2 1'.split(' ');
    const c = await cli(...betaOne, '--run-dir', path.join(dir, 'u3'));
    expect(c.code).toBe(EXIT.usage);
    expect(c.err).toMatch(/adamBeta2: .*<1/);
  });
});

const fixtures = sharedSkipReason('fixtures');

describe.skipIf(fixtures !== undefined)('on the fixture X-Mod model (h32, 2 layers)', () => {
  const tokenizer = sharedPath('fixtures', 'tokenizer', 'tokenizer.json');
  const mlm = sharedPath('fixtures', 'xmod-postnorm', 'mlm');
  const data = path.join(dir, 'ner');
  mkdirSync(data, { recursive: true });
  const sents: Record<string, string[][]> = {
    en: [
      ['Angela', 'Merkel', 'visited', 'Paris', '.'],
      ['The', 'cat', 'sat', '.'],
    ],
    de: [
      ['Angela', 'Merkel', 'besuchte', 'Paris', '.'],
      ['Die', 'Katze', 'sass', '.'],
    ],
    sw: [['Angela', 'Merkel', 'alitembelea', 'Paris', '.']],
  };
  const tags = (w: string[]) =>
    w.map((x) => (x === 'Angela' ? 'B-PER' : x === 'Merkel' ? 'I-PER' : x === 'Paris' ? 'B-LOC' : 'O'));
  for (const [lang, ss] of Object.entries(sents)) {
    const text = Array.from({ length: 6 }, () =>
      ss.map((s) => s.map((w, i) => `${w}\t${tags(s)[i]}`).join('\n')).join('\n\n'),
    ).join('\n\n');
    writeFileSync(path.join(data, `dev-${lang}.tsv`), `${text}\n`);
  }
  writeFileSync(path.join(data, 'es.txt'), 'el gato se sentó\nla casa es grande\nhola mundo\n');
  // add-language of es, copied from en_XX, on the fixture model
  const addEs = [
    'add-language',
    '--model',
    mlm,
    '--tokenizer',
    tokenizer,
    '--language',
    'es',
    '--init-from',
    'en_XX',
    '--text',
    path.join(data, 'es.txt'),
  ];

  it('adds a language module copied from English and trains only it', async () => {
    const run = path.join(dir, 'addlang');
    const r = await cli(
      ...addEs,
      '--steps',
      '2',
      '--batch-size',
      '2',
      '--lr',
      '0.01',
      '--engine',
      'tfjs',
      '--backend',
      'cpu',
      '--run-dir',
      run,
    );
    expect(r.err).toBe('');
    expect(r.code).toBe(EXIT.ok);
    const cfg = JSON.parse(readFileSync(path.join(run, 'model', 'config.json'), 'utf8'));
    expect(cfg.languages).toEqual(['en_XX', 'de_DE', 'fr_XX', 'zh_CN', 'sw_KE', 'ar_AR', 'es']);
    const before = await readSafetensors(path.join(mlm, 'model.safetensors'));
    const after = await readSafetensors(path.join(run, 'model', 'model.safetensors'));
    const t = (f: typeof before, n: string) => toFloat32(f.tensors.get(n) as never);
    const emb = 'roberta.embeddings.word_embeddings.weight';
    expect(t(after, emb)).toEqual(t(before, emb));
    const en = 'roberta.encoder.layer.0.output.adapter_modules.en_XX.dense1.weight';
    const es = 'roberta.encoder.layer.0.output.adapter_modules.es.dense1.weight';
    expect(t(after, en)).toEqual(t(before, en));
    expect(t(after, es)).not.toEqual(t(before, en));
    const results = JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8'));
    expect(results.trainable.every((n: string) => n.includes('adapter_modules.es.'))).toBe(true);
  });

  it('--keep-rows-of trains only the embedding rows of pieces the kept text never uses', async () => {
    writeFileSync(path.join(data, 'base.txt'), 'the cat sat\nla casa\n');
    const run = path.join(dir, 'addlang-rows');
    const args = [
      ...addEs,
      '--new-embeddings',
      '--keep-rows-of',
      path.join(data, 'base.txt'),
      '--steps',
      '3',
      '--batch-size',
      '2',
      '--lr',
      '0.01',
      '--threads',
      '1',
    ];
    const r = await cli(...args, '--run-dir', run);
    expect(r.code).toBe(EXIT.ok);
    const tok = await XltTokenizer.fromFile(tokenizer);
    const ids = async (s: string[]) => new Set((await tok.encodeBatch(s)).flatMap((e) => e.ids));
    const kept = await ids(['the cat sat', 'la casa']);
    const esIds = [...(await ids(['el gato se sentó', 'la casa es grande', 'hola mundo']))];
    const emb = 'roberta.embeddings.word_embeddings.weight';
    const read = async (dir: string) =>
      toFloat32((await readSafetensors(path.join(dir, 'model.safetensors'))).tensors.get(emb) as never);
    const before = await read(mlm);
    const after = await read(path.join(run, 'model'));
    const H = 32;
    const same = (row: number) =>
      after.subarray(row * H, (row + 1) * H).every((x, j) => Object.is(x, before[row * H + j]));
    // every row of the kept text (and the specials) stays; the new language's other pieces move
    for (const id of kept) expect(same(id), `row ${id}`).toBe(true);
    const moved = esIds.filter((id) => !kept.has(id));
    expect(moved.length).toBeGreaterThan(3);
    for (const id of moved) expect(same(id), `row ${id}`).toBe(false);
    const results = JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8'));
    for (const t of ['<s>', '</s>', '<pad>', '<unk>', '<mask>']) kept.add(tok.tokenToId(t) as number);
    expect(results.trainableEmbeddingRows).toBe(before.length / H - kept.size);
    // 'la casa' is kept: some of the es tokens read kept rows, most do not
    expect(results.keptTokenShare).toBeGreaterThan(0);
    expect(results.keptTokenShare).toBeLessThan(0.6);
    expect(r.out).toMatch(/word embeddings: \d+ of \d+ rows train/);
    // the rows need --new-embeddings, and the onnxruntime engine
    const bad = await cli(...args.filter((a) => a !== '--new-embeddings'), '--run-dir', `${run}-x`);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.err).toMatch(/--keep-rows-of .* needs --new-embeddings/);
    const tfjs = await cli(...args, '--engine', 'tfjs', '--backend', 'cpu', '--run-dir', `${run}-y`);
    expect(tfjs.code).toBe(EXIT.usage);
    expect(tfjs.err).toMatch(/trainableRows .* onnxruntime engine only/);
  });

  it('fine-tunes NER with xmod-finetune and evaluates de/sw with their modules (en source)', async () => {
    const ft = path.join(dir, 'ft');
    const r = await cli(
      'finetune',
      '--task',
      'ner',
      '--model',
      mlm,
      '--tokenizer',
      tokenizer,
      '--train',
      'dev-en.tsv',
      '--data-root',
      data,
      '--preset',
      'xmod-finetune',
      '--steps',
      '3',
      '--batch-size',
      '4',
      '--lr',
      '0.01',
      '--engine',
      'tfjs',
      '--backend',
      'cpu',
      '--run-dir',
      ft,
    );
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toMatch(/new token classification head/);
    const cfg = JSON.parse(readFileSync(path.join(ft, 'model', 'config.json'), 'utf8'));
    expect(cfg.id2label['1']).toBe('B-PER');
    expect(cfg.xlt).toMatchObject({
      task: 'ner',
      source_language: 'en',
      max_length: 26,
      preset: 'xmod-finetune',
    });
    const ev = path.join(dir, 'ev');
    const e = await cli(
      'evaluate',
      '--model',
      path.join(ft, 'model'),
      '--eval',
      'dev-*.tsv',
      '--data-root',
      data,
      '--resamples',
      '20',
      '--backend',
      'cpu',
      '--run-dir',
      ev,
    );
    expect(e.code).toBe(EXIT.ok);
    const rep = JSON.parse(readFileSync(path.join(ev, 'report.json'), 'utf8'));
    expect(rep.rows.map((x: { lang: string }) => x.lang)).toEqual(['en', 'de', 'sw']);
    expect(rep.rows[0].isSource).toBe(true);
    expect(rep.rows.every((x: { score: number }) => Number.isFinite(x.score))).toBe(true);
    expect(e.out).not.toMatch(/has no module/);
    const miss = await cli(
      'evaluate',
      '--model',
      path.join(ft, 'model'),
      '--eval',
      `de=${path.join(data, 'dev-de.tsv')}`,
      '--run-dir',
      path.join(dir, 'ev2'),
    );
    expect(miss.code).toBe(EXIT.usage);
    expect(miss.err).toMatch(/source language 'en' has no evaluation file/);
  });

  it('evaluates the int8-quantized model with --quantize int8, close to float32, and refuses it on tfjs', async () => {
    const model = path.join(dir, 'ft', 'model');
    const args = [
      '--model',
      model,
      '--eval',
      'dev-*.tsv',
      '--data-root',
      data,
      '--resamples',
      '20',
      '--backend',
      'cpu',
    ];
    const q = await cli('evaluate', ...args, '--quantize', 'int8', '--run-dir', path.join(dir, 'ev-int8'));
    expect(q.code).toBe(EXIT.ok);
    expect(q.out).toMatch(/inference on onnxruntime \(int8\)/);
    const fp32 = JSON.parse(readFileSync(path.join(dir, 'ev', 'report.json'), 'utf8'));
    const int8 = JSON.parse(readFileSync(path.join(dir, 'ev-int8', 'report.json'), 'utf8'));
    expect(int8.rows.map((x: { lang: string }) => x.lang)).toEqual(['en', 'de', 'sw']);
    int8.rows.forEach((row: { score: number }, i: number) => {
      expect(Math.abs(row.score - fp32.rows[i].score)).toBeLessThan(5);
    });
    const bad = await cli(
      'evaluate',
      ...args,
      '--engine',
      'tfjs',
      '--quantize',
      'int8',
      '--run-dir',
      path.join(dir, 'ev-bad'),
    );
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.err).toMatch(/quantize int8 runs on onnxruntime/);
  });
});
