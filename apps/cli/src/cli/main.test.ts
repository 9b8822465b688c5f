import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { OnnxModel } from '@xlt/onnx';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../test-cli.js';
import { EXIT, parseArgv } from './main.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('xlt command line', () => {
  it('parses multi-word commands, options and overrides', () => {
    const p = parseArgv(
      ['augment', 'llm', '--config', 'a.yaml', '--set', 'x.y=1', '--pretrain-steps', '5', '--flag', '--k=v'],
      ['augment llm', 'demo'],
    );
    expect(p).toEqual({
      command: 'augment llm',
      config: 'a.yaml',
      overrides: ['x.y=1', 'pretrainSteps=5', 'flag=true', 'k=v'],
      help: false,
    });
  });

  it('prints help with exit 0 and rejects unknown commands and options with exit 2', async () => {
    const h = await cli('--help');
    expect(h.code).toBe(EXIT.ok);
    expect(h.out).toMatch(/augment llm/);
    expect((await cli('export', '--help')).out).toMatch(/Example:\n\s+xlt export/);
    const u = await cli('frobnicate');
    expect(u.code).toBe(EXIT.usage);
    expect(u.err).toMatch(/unknown command 'frobnicate'/);
  });

  it("lists a command group's subcommands: 'xlt augment --help' (exit 0), 'xlt augment' and a wrong subcommand (exit 2)", async () => {
    const h = await cli('augment', '--help');
    expect(h.code).toBe(EXIT.ok);
    expect(h.out).toMatch(/^Usage: xlt augment <dict\|self\|llm> \[options\]/);
    expect(h.out).toMatch(/augment llm +Translate labelled source examples/);
    const bare = await cli('augment');
    expect(bare.code).toBe(EXIT.usage);
    expect(bare.err).toMatch(/'augment' needs a subcommand/);
    expect(bare.err).toMatch(/augment dict/);
    const wrong = await cli('augment', 'dictt');
    expect(wrong.code).toBe(EXIT.usage);
    expect(wrong.err).toMatch(/unknown command 'augment dictt'; 'augment' has: dict, self, llm/);
    const k = await cli('demo', '--pretrain-stepz', '3', '--run-dir', path.join(dir, 'r0'));
    expect(k.code).toBe(EXIT.usage);
    expect(k.err).toMatch(/pretrainStepz: unknown key/);
  });

  it('runs the demo with a small budget, writing the table and the resolved config', async () => {
    const runDir = path.join(dir, 'demo');
    const r = await cli(
      'demo',
      '--pretrain-steps',
      '20',
      '--finetune-steps',
      '10',
      '--hidden',
      '16',
      '--run-dir',
      runDir,
    );
    expect(r.code).toBe(EXIT.ok);
    expect(r.out).toMatch(/\| shared \|/);
    expect(r.out).toMatch(/\| xmod \|/);
    expect(JSON.parse(readFileSync(path.join(runDir, 'config.json'), 'utf8')).pretrainSteps).toBe(20);
    const res = JSON.parse(readFileSync(path.join(runDir, 'results.json'), 'utf8'));
    expect(Object.keys(res.results[0].accuracy)).toEqual(['en', 'xa', 'xb', 'xc']);
    expect(readFileSync(path.join(runDir, 'report.md'), 'utf8')).toMatch(/transfer gap/);
  });

  it('fails with exit 2 and the file name when the model folder is missing', async () => {
    const r = await cli('export', '--model', path.join(dir, 'nope'), '--run-dir', path.join(dir, 'r1'));
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/nope\/config\.json/);
  });

  it.skipIf(sharedSkipReason('fixtures') !== undefined)(
    'exports a model folder to an ONNX file that runs',
    async () => {
      const out = path.join(dir, 'tokcls.onnx');
      const r = await cli(
        'export',
        '--model',
        sharedPath('fixtures', 'xmod-postnorm', 'tokcls'),
        '--out',
        out,
        '--run-dir',
        path.join(dir, 'r2'),
      );
      expect(r.code).toBe(EXIT.ok);
      expect(existsSync(out)).toBe(true);
      const m = await OnnxModel.load(out);
      expect(m.head).toBe('token-classification');
      const y = await m.run({ inputIds: [[0, 5, 6, 2]], langIds: ['de_DE'] });
      expect(y.logits?.dims).toEqual([1, 4, 7]);
    },
  );

  it.skipIf(sharedSkipReason('fixtures') !== undefined)(
    'export --quantize int8 writes a smaller model with int8 MatMuls whose logits stay close',
    async () => {
      const fp32 = path.join(dir, 'tokcls-fp32.onnx');
      const int8 = path.join(dir, 'tokcls-int8.onnx');
      const model = sharedPath('fixtures', 'xmod-postnorm', 'tokcls');
      for (const [out, extra] of [
        [fp32, []],
        [int8, ['--quantize', 'int8']],
      ] as const) {
        const r = await cli(
          'export',
          '--model',
          model,
          '--out',
          out,
          '--run-dir',
          path.join(dir, 'r3'),
          ...extra,
        );
        expect(r.code, r.err).toBe(EXIT.ok);
      }
      expect(readFileSync(int8).byteLength).toBeLessThan(readFileSync(fp32).byteLength);
      expect(readFileSync(int8).includes('DynamicQuantizeMatMul')).toBe(true);
      expect(readFileSync(fp32).includes('DynamicQuantizeMatMul')).toBe(false);
      const input = { inputIds: [[0, 5, 6, 7, 2]], langIds: ['de_DE'] };
      const [ma, mb] = [await OnnxModel.load(fp32), await OnnxModel.load(int8)];
      const a = (await ma.run(input)).logits!;
      const b = (await mb.run(input)).logits!;
      await ma.release();
      await mb.release();
      expect(b.dims).toEqual(a.dims);
      const diff = Math.max(...Array.from(a.data, (v, i) => Math.abs(v - (b.data[i] as number))));
      expect(diff).toBeGreaterThan(0);
      expect(diff).toBeLessThan(0.2);
      const bad = await cli(
        'export',
        '--model',
        model,
        '--quantize',
        'int4',
        '--run-dir',
        path.join(dir, 'r4'),
      );
      expect(bad.code).toBe(EXIT.usage);
      expect(bad.err).toMatch(/quantize/);
    },
  );
});

describe('xlt tokenizer train and serve', () => {
  it('trains a tokenizer from text files and writes tokenizer.json', async () => {
    const { writeFileSync } = await import('node:fs');
    const en = path.join(dir, 'en.txt');
    const de = path.join(dir, 'de.txt');
    writeFileSync(
      en,
      Array.from({ length: 200 }, (_, i) => `the cat ${i % 7} sat on the mat near the door`).join('\n'),
    );
    writeFileSync(
      de,
      Array.from({ length: 200 }, (_, i) => `die katze ${i % 5} sass auf der matte an der tuer`).join('\n'),
    );
    const cfg = path.join(dir, 'tok.yaml');
    writeFileSync(cfg, `files:\n  en: ${en}\n  de: ${de}\nvocabSize: 60\n`);
    const r = await cli('tokenizer', 'train', '--config', cfg, '--run-dir', path.join(dir, 'tok'));
    expect(r.code).toBe(EXIT.ok);
    const { XltTokenizer } = await import('@xlt/tokenizer');
    const tok = await XltTokenizer.fromFile(path.join(dir, 'tok', 'tokenizer.json'));
    expect(tok.idToToken(0)).toBe('<s>');
    expect((await tok.encode('the cat sat')).ids.length).toBeGreaterThan(2);
  });

  it('tokenizer train refuses a language whose file is blank with exit 2, naming it, writing nothing', async () => {
    const { existsSync, writeFileSync } = await import('node:fs');
    const en = path.join(dir, 'en-ok.txt');
    const sw = path.join(dir, 'sw-blank.txt');
    writeFileSync(en, Array.from({ length: 50 }, (_, i) => `the cat ${i % 7} sat`).join('\n'));
    writeFileSync(sw, '\n  \n');
    const cfg = path.join(dir, 'tok-blank.yaml');
    writeFileSync(cfg, `files:\n  en: ${en}\n  sw: ${sw}\nvocabSize: 40\n`);
    const runDir = path.join(dir, 'tok-blank');
    const r = await cli('tokenizer', 'train', '--config', cfg, '--run-dir', runDir);
    expect(r.code).toBe(EXIT.usage);
    expect(r.err).toMatch(/the training file of language 'sw' is empty or blank/);
    expect(r.err).toContain(sw);
    expect(existsSync(path.join(runDir, 'tokenizer.json'))).toBe(false);
  });

  it('serve refuses a missing model folder with exit 2', async () => {
    const r = await cli('serve', '--model', path.join(dir, 'none'));
    expect(r.code).toBe(EXIT.usage);
  });
});
