import path from 'node:path';
import { annotate } from '@xlt/augment';
import { readXmodConfig, writeFileAtomic, XltError } from '@xlt/core';
import {
  checkpointWeights,
  exportToOnnx,
  quantizeDynamicInt8,
  withPeftAdapter,
  writeOnnxModel,
} from '@xlt/onnx';
import { trainUnigram } from '@xlt/tokenizer';
import { z } from 'zod';
import { addLanguageCommand } from '../commands/add-language.js';
import { augmentDictCommand, augmentSelfCommand } from '../commands/augment.js';
import { corpusBuildCommand } from '../commands/corpus.js';
import { evaluateCommand } from '../commands/evaluate.js';
import {
  experimentOieCommand,
  experimentXmodCurseCommand,
  experimentXmodPosthocCommand,
} from '../commands/experiment.js';
import {
  experimentModelsCommand,
  experimentMt4crossieCommand,
  experimentSaltCommand,
} from '../commands/experiment-finetune.js';
import { finetuneCommand } from '../commands/finetune.js';
import { oieCommand } from '../commands/oie.js';
import { pretrainCommand } from '../commands/pretrain.js';
import { recipeNerCommand, recipePosCommand } from '../commands/recipe.js';
import { serveCommand } from '../commands/serve.js';
import { readSourceExamples } from '../commands/source-examples.js';
import { demoReport } from '../demo/report.js';
import { runDemo } from '../demo/run.js';
import { gridChildCommand, gridRunCommand, workerCommand } from '../jobs/commands.js';
import type { Command } from './main.js';

const demoSchema = z.strictObject({
  seed: z.number().int().nonnegative().default(0),
  languages: z.number().int().min(2).max(8).default(4),
  hidden: z.number().int().positive().default(64),
  layers: z.number().int().positive().default(2),
  pretrainSteps: z.number().int().positive().default(3000),
  finetuneSteps: z.number().int().positive().default(600),
  batchSize: z.number().int().positive().default(32),
  threads: z.number().int().positive().default(2),
  /** Share of each artificial language's words equal to the source's (cognates, names aside). */
  cognateRatio: z.number().min(0).max(1).default(0.5),
  /** X-Mod fine-tuning: every parameter (default) or embeddings and language modules frozen. */
  xmodFinetune: z.enum(['full', 'freeze']).default('full'),
});

export const demoCommand: Command<typeof demoSchema> = {
  name: 'demo',
  summary: 'Run the whole idea on an embedded synthetic benchmark (no download, a few minutes)',
  help: `Builds artificial languages that share a grammar but not a vocabulary or word order, trains a
tokenizer, pre-trains a shared and an X-Mod model with masked LM, fine-tunes both on the source
language only, and evaluates zero-shot on the others. Writes report.md and results.json to the run
directory. The same seed gives the same numbers.

Options (or config keys): --seed 0 --languages 4 --hidden 64 --layers 2 --pretrain-steps 3000
  --finetune-steps 600 --batch-size 32 --threads 2 --cognate-ratio 0.5 --xmod-finetune full|freeze
The table gives each model's target average with a 95% bootstrap CI and the paired-bootstrap CI of
X-Mod − shared.

Example:
  xlt demo --seed 1 --pretrain-steps 2000`,
  schema: demoSchema,
  async run(cfg, ctx) {
    const r = await runDemo({
      seed: cfg.seed,
      numLanguages: cfg.languages,
      hidden: cfg.hidden,
      layers: cfg.layers,
      pretrainSteps: cfg.pretrainSteps,
      finetuneSteps: cfg.finetuneSteps,
      batchSize: cfg.batchSize,
      threads: cfg.threads,
      cognateRatio: cfg.cognateRatio,
      xmodFinetune: cfg.xmodFinetune,
      log: ctx.log,
    });
    const report = demoReport(r);
    writeFileAtomic(path.join(ctx.runDir, 'report.md'), report);
    await r.tokenizer.save(path.join(ctx.runDir, 'tokenizer.json'));
    writeFileAtomic(
      path.join(ctx.runDir, 'results.json'),
      `${JSON.stringify({ seconds: r.seconds, source: r.benchmark.source, results: r.results.map(({ model, accuracy }) => ({ model, accuracy })) }, null, 2)}\n`,
    );
    ctx.log('');
    ctx.log(report);
    ctx.log(`(${r.seconds.toFixed(1)} s; written to ${ctx.runDir})`);
  },
};

const exportSchema = z.strictObject({
  model: z.string().describe('Hugging Face / xlt model folder'),
  out: z.string().optional(),
  head: z
    .enum(['base', 'masked-lm', 'sequence-classification', 'token-classification', 'question-answering'])
    .optional(),
  lora: z.string().optional(),
  quantize: z.enum(['int8']).optional().describe('int8: dynamic int8 quantization of the weight MatMuls'),
});

export const exportCommand: Command<typeof exportSchema> = {
  name: 'export',
  summary:
    'Export a model folder (config.json + model.safetensors or pytorch_model.bin) to ONNX for onnxruntime',
  help: `Options:
  --model DIR     a Hugging Face or xlt model folder (X-Mod or XLM-R, any head)
  --out FILE      default: <run dir>/model.onnx
  --head NAME     override the head given by config.architectures
  --lora DIR      merge a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors)
  --quantize int8 weight MatMuls in int8 (per-channel weights, activations quantized per call):
                  about 1/4 of their size, faster on CPU, logits slightly changed

Example:
  xlt export --model ~/models/xmod-base --out xmod.onnx
  xlt export --model runs/ner/model --out ner-int8.onnx --quantize int8`,
  schema: exportSchema,
  async run(cfg, ctx) {
    const config = readXmodConfig(cfg.model);
    const base = checkpointWeights(cfg.model);
    try {
      const weights = cfg.lora !== undefined ? withPeftAdapter(base, cfg.lora) : base;
      const out = cfg.out ?? path.join(ctx.runDir, 'model.onnx');
      const fp32 = exportToOnnx({ config, weights, ...(cfg.head !== undefined ? { head: cfg.head } : {}) });
      const quantized = cfg.quantize === 'int8' ? quantizeDynamicInt8(fp32.model) : undefined;
      const res = quantized !== undefined ? { ...fp32, model: quantized.model } : fp32;
      writeOnnxModel(out, res);
      const what = quantized !== undefined ? ` (int8: ${quantized.quantizedNodes.length} MatMuls)` : '';
      ctx.log(
        `exported ${res.head} model${what} (${(res.model.byteLength / 2 ** 20).toFixed(1)} MiB) to ${out}`,
      );
    } finally {
      base.close();
    }
  },
};

const llmSchema = z.strictObject({
  input: z.string().describe('JSONL of {id, sentence, spans: [{label, text}]}'),
  out: z.string().optional(),
  endpoint: z.strictObject({
    baseUrl: z.string(),
    model: z.string(),
    apiKeyEnv: z.string().default('OPENAI_API_KEY'),
    temperature: z.number().min(0).max(2).default(0),
    timeoutMs: z.number().int().positive().default(60_000),
    maxRetries: z.number().int().nonnegative().default(4),
    pricePer1kPrompt: z.number().nonnegative().optional(),
    pricePer1kCompletion: z.number().nonnegative().optional(),
  }),
  languages: z.array(z.strictObject({ code: z.string(), name: z.string() })).min(1),
  concurrency: z.number().int().positive().default(4),
  templates: z
    .strictObject({
      system: z.string().optional(),
      translate: z.string().optional(),
      align: z.string().optional(),
    })
    .default({}),
});

export const augmentLlmCommand: Command<typeof llmSchema> = {
  name: 'augment llm',
  summary: 'Translate labelled source examples with an LLM and re-locate their spans (MT4CrossIE)',
  help: `Config keys (YAML):
  input: train-en.jsonl           # one {"id", "sentence", "spans": [{"label", "text"}]} per line
  out: annotated.jsonl            # default: <run dir>/annotated.jsonl; resumable
  endpoint: { baseUrl: http://127.0.0.1:8000/v1, model: my-model, apiKeyEnv: OPENAI_API_KEY }
  languages: [{ code: de, name: German }, { code: es, name: Spanish }]
  concurrency: 4
  templates: { translate: "...{{sentence}}...", align: "...{{translation}}...{{spans}}..." }

Example:
  xlt augment llm --config llm.yaml`,
  schema: llmSchema,
  async run(cfg, ctx) {
    const examples = readSourceExamples(cfg.input);
    const key = process.env[cfg.endpoint.apiKeyEnv];
    const { apiKeyEnv: _unused, ...endpoint } = cfg.endpoint;
    const report = await annotate(examples, {
      endpoint: { ...endpoint, ...(key ? { apiKey: key } : {}) },
      languages: cfg.languages,
      outFile: cfg.out ?? path.join(ctx.runDir, 'annotated.jsonl'),
      concurrency: cfg.concurrency,
      templates: cfg.templates,
      onProgress: (p) => {
        if (p.done % 50 === 0 || p.done === p.total) ctx.log(`${p.done}/${p.total} done, ${p.kept} kept`);
      },
    });
    writeFileAtomic(path.join(ctx.runDir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
    ctx.log(
      `kept ${report.kept} (yield ${(100 * report.yieldRate).toFixed(1)}%), resumed ${report.resumed}; rejected ${JSON.stringify(report.rejected)}; cost $${report.counters.costUsd.toFixed(4)}`,
    );
    // a run in which no request got through did nothing: say so with a failing exit status
    const attempted = report.total - report.resumed;
    if (attempted > 0 && report.rejected.request_failed === attempted)
      throw new XltError(
        'IO',
        `every one of the ${attempted} requests to ${cfg.endpoint.baseUrl} failed (see ${path.join(ctx.runDir, 'report.json')}); nothing was kept, and a rerun resumes`,
      );
  },
};

const tokenizerSchema = z.strictObject({
  /** Text files (one sentence a line) by language, e.g. { en: corpus/en.txt, de: [a.txt, b.txt] }. */
  files: z.record(z.string(), z.union([z.string(), z.array(z.string())])),
  vocabSize: z.number().int().min(10).default(8000),
  alpha: z.number().positive().max(1).default(0.3),
  characterCoverage: z.number().positive().max(1).default(0.9995),
  maxSentencesPerLanguage: z.number().int().positive().optional(),
  seed: z.number().int().nonnegative().default(0),
  out: z.string().optional(),
});

export const tokenizerTrainCommand: Command<typeof tokenizerSchema> = {
  name: 'tokenizer train',
  summary: 'Train a multilingual Unigram vocabulary (XLM-R layout) and write tokenizer.json',
  help: `Config keys (YAML):
  files: { en: data/en.txt, de: data/de.txt, sw: [data/sw1.txt, data/sw2.txt] }   # one sentence a line
  vocabSize: 8000            # including <s> <pad> </s> <unk> <mask>
  alpha: 0.3                 # language sampling exponent, as XLM-R
  characterCoverage: 0.9995
  out: tokenizer.json        # default: <run dir>/tokenizer.json

Example:
  xlt tokenizer train --config tok.yaml --vocab-size 16000`,
  schema: tokenizerSchema,
  async run(cfg, ctx) {
    const out = cfg.out ?? path.join(ctx.runDir, 'tokenizer.json');
    const r = await trainUnigram({
      files: cfg.files,
      vocabSize: cfg.vocabSize,
      alpha: cfg.alpha,
      characterCoverage: cfg.characterCoverage,
      seed: cfg.seed,
      ...(cfg.maxSentencesPerLanguage !== undefined
        ? { maxSentencesPerLanguage: cfg.maxSentencesPerLanguage }
        : {}),
      onProgress: (p) => ctx.log(`[tokenizer] ${JSON.stringify(p)}`),
      output: out,
    });
    for (const l of r.languages)
      ctx.log(`${l.lang}: ${l.sentences} sentences, sampling share ${(100 * l.share).toFixed(1)}%`);
    ctx.log(
      `vocabulary of ${r.tokenizer.vocabSize} (alphabet ${r.alphabetSize}) in ${(r.elapsedMs / 1000).toFixed(1)} s, written to ${out}`,
    );
  },
};

export const COMMANDS: Command[] = [
  demoCommand,
  recipeNerCommand,
  recipePosCommand,
  experimentXmodCurseCommand,
  experimentXmodPosthocCommand,
  experimentSaltCommand,
  experimentMt4crossieCommand,
  experimentModelsCommand,
  experimentOieCommand,
  corpusBuildCommand,
  tokenizerTrainCommand,
  pretrainCommand,
  addLanguageCommand,
  finetuneCommand,
  evaluateCommand,
  exportCommand,
  serveCommand,
  augmentDictCommand,
  augmentSelfCommand,
  augmentLlmCommand,
  oieCommand,
  gridRunCommand,
  gridChildCommand,
  workerCommand,
] as Command[];
