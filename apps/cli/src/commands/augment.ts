import { appendFileSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { dictionaryCodeSwitch, onnxMaskedLm, selfAugment, type TokenExample } from '@xlt/augment';
import { Rng, readXmodConfig, XltConfigError } from '@xlt/core';
import { readMuseDictionary } from '@xlt/data';
import { checkpointWeights, exportToOnnx, OnnxModel } from '@xlt/onnx';
import { z } from 'zod';
import type { Command } from '../cli/main.js';
import { dataPath, defaultDataRoot, moduleFor, requireFile } from '../tasks/common.js';
import { loadTokenizer, maskedLmTokens } from '../tasks/model.js';
import { readExamples } from '../tasks/tasks.js';
import { readText } from '../tasks/train.js';

/** Writes word/label sentences as `word\tlabel` lines with a blank line between sentences, atomically. */
function writeTagged(file: string, sentences: ReadonlyArray<{ words: string[]; labels: string[] }>): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, '');
  for (const s of sentences)
    appendFileSync(tmp, `${s.words.map((w, i) => `${w}\t${s.labels[i] ?? 'O'}`).join('\n')}\n\n`);
  renameSync(tmp, file);
}

const dictSchema = z.strictObject({
  task: z.enum(['ner', 'pos']).default('ner'),
  input: z.string().describe('PAN-X/CoNLL .tsv (ner) or CoNLL-U (pos), relative to dataRoot'),
  dataRoot: z.string().default(defaultDataRoot()),
  dictionaries: z.record(z.string(), z.string()),
  ratio: z.number().min(0).max(1).default(0.5),
  copies: z.number().int().positive().default(1),
  keepOriginals: z.boolean().default(true),
  skipLabels: z.array(z.string()).default([]),
  maxExamples: z.number().int().positive().optional(),
  seed: z.number().int().nonnegative().default(0),
  out: z.string().optional(),
});

export const augmentDictCommand: Command<typeof dictSchema> = {
  name: 'augment dict',
  summary: 'Dictionary code-switching (CoSDA-ML) of labelled token data, labels kept aligned',
  help: `Replaces a ratio of the words that have a translation by a translation into a random target
language (MUSE dictionaries); labels follow the words (a multi-word translation of B-X continues
with I-X). Writes word<TAB>label lines, a blank line between sentences, to <run dir>/augmented.tsv.

Options (or config keys):
  --task ner|pos            input format: PAN-X/CoNLL .tsv (ner) or CoNLL-U (pos)
  --input FILE              relative to --data-root (default ../shared/data beside the repo)
  --dictionaries LANG=FILE  repeatable via the config: dictionaries: { de: dict/muse-en-de.tsv }
  --ratio 0.5 --copies 1 --keep-originals true --skip-labels '["O"]' --max-examples N --seed 0
  --out FILE                default <run dir>/augmented.tsv

Example:
  xlt augment dict --input panx/train-en.tsv --set dictionaries.de=dict/muse-en-de.tsv \\
      --set dictionaries.es=dict/muse-en-es.tsv --ratio 0.3 --max-examples 1000`,
  schema: dictSchema,
  async run(cfg, ctx) {
    const dictionaries = new Map<string, Map<string, string[]>>();
    for (const [lang, f] of Object.entries(cfg.dictionaries))
      dictionaries.set(
        lang,
        await readMuseDictionary(requireFile(dataPath(cfg.dataRoot, f), `dictionaries.${lang}`)),
      );
    if (dictionaries.size === 0)
      throw new XltConfigError('give at least one dictionary (dictionaries: { de: dict/... })', {
        field: 'dictionaries',
      });
    const input = requireFile(dataPath(cfg.dataRoot, cfg.input), 'input');
    const examples = await readExamples(cfg.task, input, cfg.maxExamples ?? Infinity);
    const rng = new Rng(cfg.seed).fork('augment-dict');
    const out: Array<{ words: string[]; labels: string[] }> = [];
    let switched = 0;
    let candidates = 0;
    for (const e of examples) {
      const t = e as { words: string[]; labels: string[] };
      if (cfg.keepOriginals) out.push({ words: t.words, labels: t.labels });
      for (let c = 0; c < cfg.copies; c++) {
        const s = dictionaryCodeSwitch(
          { words: t.words, labels: t.labels },
          { dictionaries, ratio: cfg.ratio, skipLabels: cfg.skipLabels, rng },
        );
        out.push({ words: s.words, labels: s.labels ?? [] });
        switched += s.switched.length;
      }
      candidates += t.words.length * cfg.copies;
    }
    const file = cfg.out ?? path.join(ctx.runDir, 'augmented.tsv');
    writeTagged(file, out);
    ctx.log(
      `${examples.length} sentences -> ${out.length} written to ${file}; ${switched} of ${candidates} words switched (${((100 * switched) / Math.max(1, candidates)).toFixed(1)}%) into ${[...dictionaries.keys()].join(' ')}`,
    );
  },
};

const selfSchema = z.strictObject({
  model: z
    .string()
    .describe('model folder with a masked-LM head (config.json + model.safetensors or pytorch_model.bin)'),
  tokenizer: z.string().optional(),
  input: z.string().describe('text (one sentence a line) or PAN-X/CoNLL .tsv, relative to dataRoot'),
  dataRoot: z.string().default(defaultDataRoot()),
  language: z.string().optional(),
  ratio: z.number().gt(0).max(1).default(0.15),
  topK: z.number().int().positive().default(10),
  temperature: z.number().positive().default(1),
  unit: z.enum(['token', 'word']).default('word'),
  maxExamples: z.number().int().positive().default(1000),
  maxLength: z.number().int().positive().default(128),
  batchSize: z.number().int().positive().default(32),
  threads: z.number().int().positive().optional(),
  seed: z.number().int().nonnegative().default(0),
  out: z.string().optional(),
});

export const augmentSelfCommand: Command<typeof selfSchema> = {
  name: 'augment self',
  summary: "Self-augmentation (SALT-style): the model's own masked-LM proposes replacements",
  help: `Masks a ratio of the positions of each sentence and samples replacements from the model's own
masked-LM head (top-k, temperature) through onnxruntime, keeping proposals that differ from the
original; special tokens are never touched. --unit word replaces only single-token words, so word
alignment (and token labels) stay valid. Writes one JSON line per sentence to
<run dir>/augmented.jsonl: { text, augmented, ids, replaced: [{ position, from, to }] }.

Options (or config keys):
  --model DIR               masked-LM model folder (X-Mod or XLM-R)
  --tokenizer PATH          default: the model folder
  --input FILE              text or .tsv (first column), relative to --data-root
  --language CODE           X-Mod module to use (default: the model's default language)
  --ratio 0.15 --top-k 10 --temperature 1 --unit word|token --max-examples 1000 --max-length 128
  --batch-size 32 --threads N --seed 0 --out FILE

Example:
  xlt augment self --model runs/ner/pretrain-xmod/model --input panx/train-en.tsv --ratio 0.2`,
  schema: selfSchema,
  async run(cfg, ctx) {
    const tok = await loadTokenizer(cfg.tokenizer, cfg.model);
    const config = readXmodConfig(cfg.model);
    const weights = checkpointWeights(cfg.model);
    let onnx: OnnxModel;
    try {
      onnx = await OnnxModel.load(exportToOnnx({ config, weights, head: 'masked-lm' }).model, {
        ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
      });
    } finally {
      weights.close();
    }
    const langs = config.languages;
    let lang: number | undefined;
    if (langs.length > 0) {
      const want = cfg.language ?? config.default_language ?? langs[0];
      const m = want !== undefined && want !== null ? moduleFor(config, want) : undefined;
      if (m === undefined)
        throw new XltConfigError(`the model has no module for '${want}' (has ${langs.join(', ')})`, {
          field: 'language',
        });
      lang = langs.indexOf(m);
    }
    const input = requireFile(dataPath(cfg.dataRoot, cfg.input), 'input');
    const lines = await readText(input, cfg.language ?? 'xx', cfg.maxExamples);
    const enc = await tok.encodeBatch(lines, { maxLength: cfg.maxLength, truncation: true });
    const examples: TokenExample[] = enc.map((e) => ({
      ids: e.ids,
      wordIds: e.wordIds,
      ...(lang !== undefined ? { lang } : {}),
    }));
    const { special, maskId, padId } = maskedLmTokens(tok);
    const t0 = performance.now();
    const res = await selfAugment(examples, {
      model: onnxMaskedLm(onnx),
      maskTokenId: maskId,
      padTokenId: padId,
      specialIds: special,
      ratio: cfg.ratio,
      topK: cfg.topK,
      temperature: cfg.temperature,
      unit: cfg.unit,
      batchSize: cfg.batchSize,
      rng: new Rng(cfg.seed).fork('augment-self'),
      onProgress: (done, total) => {
        if (done % (cfg.batchSize * 10) === 0 || done === total) ctx.log(`${done}/${total} sentences`);
      },
    });
    await onnx.release();
    const file = cfg.out ?? path.join(ctx.runDir, 'augmented.jsonl');
    mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, '');
      let replaced = 0;
      let eligible = 0;
      for (const [i, r] of res.entries()) {
        replaced += r.replaced.length;
        eligible += (examples[i]?.ids ?? []).filter((id) => !special.has(id)).length;
        const augmented = await tok.decode(r.ids, { skipSpecialTokens: true });
        appendFileSync(
          tmp,
          `${JSON.stringify({ text: lines[i], augmented, ids: r.ids, replaced: r.replaced })}\n`,
        );
      }
      renameSync(tmp, file);
      ctx.log(
        `${res.length} sentences augmented in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${replaced} of ${eligible} tokens replaced (${((100 * replaced) / Math.max(1, eligible)).toFixed(1)}%); written to ${file}`,
      );
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  },
};
