import { existsSync } from 'node:fs';
import path from 'node:path';
import { sharedPath, writeFileAtomic, XltNotFoundError } from '@xlt/core';
import { benchmarkMarkdown, runOieBenchmark } from '@xlt/oie';
import { z } from 'zod';
import type { Command } from '../cli/main.js';
import { backendSchema, defaultDataRoot, requireFile, setupBackend } from '../tasks/common.js';

const sizeSchema = z.strictObject({
  hiddenSize: z.number().int().positive().optional(),
  numLayers: z.number().int().positive().optional(),
  numHeads: z.number().int().positive().optional(),
  intermediateSize: z.number().int().positive().optional(),
  maxLength: z.number().int().positive().optional(),
  /** Head sizes: position embedding, argument layers, their heads and feed-forward size. */
  oie: z
    .strictObject({
      pos_emb_dim: z.number().int().positive().optional(),
      n_arg_layers: z.number().int().positive().optional(),
      n_arg_heads: z.number().int().positive().optional(),
      d_feedforward: z.number().int().positive().optional(),
    })
    .optional(),
});

const stageSchema = z.strictObject({
  name: z.string(),
  trainable: z.enum(['all', 'embeddings+head', 'all-but-embeddings', 'lora+head', 'xmod-finetune']),
  epochs: z.number().positive().optional(),
  steps: z.number().int().positive().optional(),
  lr: z.number().positive().optional(),
});

const oieSchema = z.strictObject({
  dataRoot: z.string().default(defaultDataRoot()),
  backend: backendSchema,
  tokenizer: z.string().default(sharedPath('fixtures', 'tokenizer', 'tokenizer.json')),
  train: z.enum(['carb-dev', 'reoie-en']).default('carb-dev'),
  trainLimit: z.number().int().positive().optional(),
  evalLimit: z.number().int().positive().optional(),
  sets: z
    .array(z.enum(['carb', 'reoie-en', 'reoie-es', 'reoie-pt', 'benchie-en', 'benchie-de', 'benchie-zh']))
    .optional(),
  training: z
    .strictObject({
      /** A pre-trained XLM-R-layout model folder (e.g. from `xlt pretrain`) whose encoder starts the model. */
      encoder: z.string().optional(),
      size: sizeSchema.optional(),
      epochs: z.number().positive().optional(),
      steps: z.number().int().positive().optional(),
      batchSize: z.number().int().positive().optional(),
      lr: z.number().positive().optional(),
      warmup: z.number().min(0).max(1).optional(),
      weightDecay: z.number().min(0).optional(),
      seed: z.number().int().nonnegative().optional(),
      threads: z.number().int().positive().optional(),
      /** `@xlt/trainer` engine of the runs (default auto: the compiled onnxruntime step). */
      engine: z.enum(['auto', 'tfjs', 'onnxruntime']).optional(),
      /** `mt4crossie`: 1. word embeddings + head, 2. all but word embeddings, 3. LoRA mixture + head. */
      stages: z.union([z.literal('mt4crossie'), z.array(stageSchema).min(1)]).optional(),
      lora: z
        .strictObject({
          r: z.number().int().positive().optional(),
          alpha: z.number().positive().optional(),
          languages: z.array(z.string()).min(1).optional(),
          mode: z.enum(['language', 'router', 'topk', 'static']).optional(),
          targets: z.array(z.string()).min(1).optional(),
        })
        .optional(),
    })
    .default({}),
  /** Also write every system's extractions per test set to predictions.json (for paired comparisons). */
  savePredictions: z.boolean().default(false),
  extract: z
    .strictObject({
      predicateThreshold: z.number().min(0).max(1).optional(),
      minArgs: z.number().int().nonnegative().optional(),
    })
    .default({}),
});

export const oieCommand: Command<typeof oieSchema> = {
  name: 'oie',
  summary: 'Cross-lingual Open IE: train the two-step head on CaRB dev, score CaRB / Re-OIE2016 / BenchIE',
  help: `Converts the training gold (CaRB dev, or the English Re-OIE2016 file) to predicate and argument
tags, trains an encoder with the Multi2OIE two-step head through @xlt/trainer's fit (one run, or
MT4CrossIE's stages: training.stages: mt4crossie; training.engine auto picks the compiled onnxruntime
step, and the log names the engine of each stage), then extracts with the model and two baselines
and scores CaRB test (en) and Re-OIE2016 binary (en, es, pt) with the CaRB scorer (P, R, F1, AUC)
and BenchIE (en, de, zh). Writes results.md and results.json to the run directory.

Options (or config keys):
  --data-root DIR        holds oie/ (default ../shared/data beside the repo)
  --tokenizer FILE       an XLM-R-style tokenizer.json (default: the shared fixture tokenizer); with
                         training.encoder, the tokenizer that encoder was pre-trained with
  --train carb-dev|reoie-en --train-limit N --eval-limit N --sets '["carb","benchie-de"]'
  --save-predictions     also write predictions.json: each system's extractions on each test set
  --backend auto|cpu|wasm|tensorflow   the tfjs backend (what does not run on onnxruntime)
  training: { encoder: runs/ner/pretrain-shared/model (a pre-trained encoder; default: random init),
              size: { hiddenSize: 64, numLayers: 2, oie: { pos_emb_dim: 32 } }, epochs: 8, batchSize: 16, lr: 5e-3, seed: 0,
              stages: mt4crossie, lora: { r: 8, alpha: 16, languages: [en], mode: router },
              engine: auto | tfjs | onnxruntime }
  extract: { predicateThreshold: 0.1, minArgs: 2 }

Examples:
  xlt oie --config examples/oie/mt4crossie.yaml --run-dir runs/oie-mt4crossie
  xlt oie --set training.epochs=2 --eval-limit 100`,
  schema: oieSchema,
  async run(cfg, ctx) {
    const dataDir = requireFile(path.join(cfg.dataRoot, 'oie'), 'dataRoot');
    // chosen on purpose, and reported: no third-party notice from the backend tfjs would pick itself
    await setupBackend(cfg.backend, ctx.log);
    const enc = cfg.training.encoder;
    if (enc !== undefined && !existsSync(path.join(enc, 'config.json')))
      throw new XltNotFoundError('training.encoder: no model folder (config.json) there', {
        file: enc,
        field: 'training.encoder',
      });
    const result = await runOieBenchmark({
      dataDir,
      tokenizerFile: requireFile(cfg.tokenizer, 'tokenizer'),
      train: cfg.train,
      ...(cfg.trainLimit !== undefined ? { trainLimit: cfg.trainLimit } : {}),
      ...(cfg.evalLimit !== undefined ? { evalLimit: cfg.evalLimit } : {}),
      ...(cfg.sets !== undefined ? { sets: cfg.sets } : {}),
      training: cfg.training,
      extract: cfg.extract,
      log: ctx.log,
    });
    const md = benchmarkMarkdown(result.rows);
    writeFileAtomic(path.join(ctx.runDir, 'results.md'), md);
    writeFileAtomic(
      path.join(ctx.runDir, 'results.json'),
      `${JSON.stringify({ config: cfg, trainSeconds: result.trainSeconds, trainRows: result.trainRows, losses: result.losses, rows: result.rows }, null, 2)}\n`,
    );
    if (cfg.savePredictions)
      writeFileAtomic(
        path.join(ctx.runDir, 'predictions.json'),
        `${JSON.stringify({ sets: result.extractions })}\n`,
      );
    ctx.log('');
    ctx.log(md);
    ctx.log(`(written to ${ctx.runDir})`);
  },
};
