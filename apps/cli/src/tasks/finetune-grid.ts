/**
 * The machinery of the fine-tuning experiments (`xlt experiment salt`, `xlt experiment mt4crossie`):
 * one corpus, one tokenizer and one pre-trained shared model, then a grid of fine-tuning cells
 * (task x setting x seed), each fine-tuned on the source language and scored zero-shot on every
 * language's dev set, each a resumable step. The report is in finetune-grid-report.ts.
 */
import path from 'node:path';
import { writeFileAtomic, XltConfigError } from '@xlt/core';
import { z } from 'zod';
import type { CommandContext } from '../cli/main.js';
import { evaluateCommand } from '../commands/evaluate.js';
import { finetuneCommand } from '../commands/finetune.js';
import { pretrainCommand } from '../commands/pretrain.js';
import { dataPath, defaultDataRoot } from './common.js';
import {
  type FinetuneCell,
  type GridStats,
  gridChart,
  gridMarkdown,
  summariseGrid,
} from './finetune-grid-report.js';
import { givenModels, pretrainedModel } from './given-models.js';
import {
  corpusAndTokenizerSteps,
  inLanes,
  pipelineFields,
  pretrainOverrideFields,
  pretrainStepConfig,
  readJson,
  step,
  stepSeconds,
  withPretrainOverrides,
} from './pipeline.js';
import { queueFields, stepPlan } from './queue-runner.js';
import { RECIPES, type RecipeSettings } from './recipes.js';
import { readExamples } from './tasks.js';

export type GridTaskName = 'ner' | 'pos';

/** A setting of the grid: a name (cells' folders), a label (the report) and its `xlt finetune` config. */
export interface GridSetting {
  name: string;
  label: string;
  /** Config keys of the fine-tuning step (preset, salt, lora, ...) for this task, targets and seed. */
  finetune: (o: {
    task: GridTaskName;
    source: string;
    targets: string[];
    seed: number;
    /** The one-stage fine-tuning's optimiser steps (epochs x batches per epoch). */
    steps: number;
  }) => Record<string, unknown>;
}

/** Sizes, budgets, tasks and seeds of one variant (quick or full) of a fine-tuning experiment. */
export interface GridVariant
  extends Pick<RecipeSettings, 'vocabSize' | 'hiddenSize' | 'layers' | 'pretrain'> {
  finetune: RecipeSettings['finetune'];
  tasks: GridTaskName[];
  /** Languages per task (the source first); each a subset of the task's recipe. */
  languages: Record<GridTaskName, string[]>;
  seeds: number;
  maxSentencesPerLanguage?: number;
  maxTrainExamples?: number;
  maxEvalExamples?: number;
}

/** Config fields of every fine-tuning experiment (tests use tiny overrides). */
export const gridFields = {
  quick: z.boolean().default(false),
  /** The tasks of the grid (default: the variant's). */
  tasks: z
    .array(z.enum(['ner', 'pos']))
    .min(1)
    .optional(),
  /** A subset of the tasks' languages (the source always stays). */
  languages: z.array(z.string()).min(1).optional(),
  /** A subset of the experiment's settings (the baseline always stays). */
  settings: z.array(z.string()).min(1).optional(),
  /** Seeds per cell (fine-tuning seeds; the pre-trained model is shared). */
  seeds: z.number().int().positive().optional(),
  ...pipelineFields,
  ...queueFields,
  ...pretrainOverrideFields,
  finetuneEpochs: z.number().positive().optional(),
  finetuneLr: z.number().positive().optional(),
  finetuneBatchSize: z.number().int().positive().optional(),
  maxTrainExamples: z.number().int().positive().optional(),
  maxSentencesPerLanguage: z.number().int().positive().optional(),
  maxEvalExamples: z.number().int().positive().optional(),
  maxDevExamples: z.number().int().positive().optional(),
  resamples: z.number().int().min(10).default(1000),
  /**
   * A pre-trained model folder (config.json, weights, tokenizer.json) to fine-tune instead of
   * building a corpus, a tokenizer and a model: the grid then has no pre-training steps.
   */
  pretrained: z.string().min(1).optional(),
};

const gridSchema = z.strictObject(gridFields);
export type GridConfig = z.infer<typeof gridSchema>;

/** An experiment: its name, settings (the first is the baseline) and variants. */
export interface GridExperiment {
  name: string;
  settings: GridSetting[];
  /**
   * Each setting's own model folder (setting name → folder; its `finetune` names it): the grid
   * pre-trains nothing (`xlt experiment models`).
   */
  models?: Record<string, string>;
  quick: GridVariant;
  full: GridVariant;
}

/** The variant with the config's overrides applied. */
export function gridVariant(e: GridExperiment, cfg: GridConfig): GridVariant {
  const base = cfg.quick ? e.quick : e.full;
  const tasks = cfg.tasks ?? base.tasks;
  const languages = { ...base.languages };
  for (const t of tasks) {
    const all = RECIPES[t].languages;
    const chosen = cfg.languages ?? base.languages[t];
    const unknown = (cfg.languages ?? []).filter((l) => !tasks.some((x) => RECIPES[x].languages.includes(l)));
    if (unknown.length > 0)
      throw new XltConfigError(
        `languages: ${unknown.join(', ')} not in the ${tasks.join('/')} recipes (${[...new Set(tasks.flatMap((x) => RECIPES[x].languages))].join(' ')})`,
        { field: 'languages' },
      );
    const source = RECIPES[t].source;
    languages[t] = all.filter((l) => l === source || chosen.includes(l));
    if (languages[t].length < 2)
      throw new XltConfigError(`languages: the ${t} grid needs a target language besides ${source}`, {
        field: 'languages',
      });
  }
  const v = withPretrainOverrides(base, cfg);
  return {
    ...v,
    tasks,
    languages,
    seeds: cfg.seeds ?? base.seeds,
    finetune: {
      ...base.finetune,
      epochs: cfg.finetuneEpochs ?? base.finetune.epochs,
      lr: cfg.finetuneLr ?? base.finetune.lr,
      batchSize: cfg.finetuneBatchSize ?? base.finetune.batchSize,
      maxDevExamples: cfg.maxDevExamples ?? base.finetune.maxDevExamples,
    },
    ...(cfg.maxSentencesPerLanguage !== undefined || base.maxSentencesPerLanguage !== undefined
      ? { maxSentencesPerLanguage: cfg.maxSentencesPerLanguage ?? base.maxSentencesPerLanguage }
      : {}),
    ...(cfg.maxTrainExamples !== undefined || base.maxTrainExamples !== undefined
      ? { maxTrainExamples: cfg.maxTrainExamples ?? base.maxTrainExamples }
      : {}),
    ...(cfg.maxEvalExamples !== undefined || base.maxEvalExamples !== undefined
      ? { maxEvalExamples: cfg.maxEvalExamples ?? base.maxEvalExamples }
      : {}),
  };
}

/** The settings the config selects (the baseline, the first, always kept), in the experiment's order. */
function chosenSettings(e: GridExperiment, wanted: readonly string[] | undefined): GridSetting[] {
  if (wanted === undefined) return e.settings;
  const names = e.settings.map((s) => s.name);
  const unknown = wanted.filter((n) => !names.includes(n));
  if (unknown.length > 0)
    throw new XltConfigError(`settings: ${unknown.join(', ')} not among ${names.join(', ')}`, {
      field: 'settings',
    });
  return e.settings.filter((s, i) => i === 0 || wanted.includes(s.name));
}

/** The name of a cell's step (and folder). */
export const cellName = (task: string, setting: string, seed: number) => `${task}-${setting}-seed${seed}`;

/** The dev file of `lang` for a task (PAN-X dev; UD en_ewt dev for English POS, GSD dev otherwise). */
export function devFile(task: GridTaskName, lang: string): string {
  const ev = RECIPES[task].evals.find((e) => e.name === 'dev');
  const f = ev?.files[lang];
  if (f === undefined) throw new XltConfigError(`no ${task} dev file for '${lang}'`, { field: 'languages' });
  return f;
}

/** Runs the experiment's grid (see the commands' help) and writes results.json, report.md, chart.svg. */
export async function runFinetuneGrid(
  e: GridExperiment,
  cfg: GridConfig,
  ctx: CommandContext,
): Promise<void> {
  const v = gridVariant(e, cfg);
  const settings = chosenSettings(e, cfg.settings);
  const dataRoot = path.resolve(cfg.dataRoot ?? defaultDataRoot());
  const seeds = Array.from({ length: v.seeds }, (_, i) => cfg.seed + i);
  const pretrainLanguages = [...new Set(v.tasks.flatMap((t) => v.languages[t]))];
  const cells = v.tasks.flatMap((task) =>
    seeds.flatMap((seed) => settings.map((setting) => ({ task, seed, setting }))),
  );
  const given =
    e.models !== undefined
      ? givenModels(e.models, cfg)
      : cfg.pretrained !== undefined
        ? pretrainedModel(cfg)
        : undefined;
  const index = { i: 0, n: (given !== undefined ? 0 : 3) + cells.length + 1 };
  const t0 = performance.now();
  const finetuning = `fine-tuning ${v.finetune.epochs} epochs, batch ${v.finetune.batchSize}, lr ${v.finetune.lr}${v.maxTrainExamples !== undefined ? `, ${v.maxTrainExamples} training examples` : ''}; model selection on the source dev set (${v.finetune.maxDevExamples} examples at most)${v.maxEvalExamples !== undefined ? `; ${v.maxEvalExamples} dev examples per language scored` : ''}`;
  const describe = `${given?.describe ?? `model h${v.hiddenSize} L${v.layers}, vocabulary ${v.vocabSize}; pre-training ${v.pretrain.steps} steps of ${v.pretrain.batchSize} x ${v.pretrain.maxLength} tokens on ${pretrainLanguages.join(' ')}`}; ${finetuning}`;
  ctx.log(
    `experiment ${e.name}${cfg.quick ? ' (quick)' : ''}: tasks ${v.tasks.join(', ')}; settings ${settings.map((s) => s.name).join(', ')}; seeds ${seeds.join(', ')}; ${cells.length} cells; ${describe}`,
  );
  const model =
    given?.dir ?? (await pretrainStep(ctx, cfg, v, index, { languages: pretrainLanguages, dataRoot }));
  const { lanes, run, threads } = stepPlan(ctx, cfg, {
    jobs: cells.length,
    what: 'cell (fine-tuning, evaluation)',
  });
  const laneCommon = { engine: cfg.engine, dataRoot, ...(threads !== undefined ? { threads } : {}) };
  const stepsPerEpoch: Partial<Record<GridTaskName, number>> = {};
  for (const t of v.tasks) {
    const n = (await readExamples(t, dataPath(dataRoot, RECIPES[t].train), v.maxTrainExamples)).length;
    stepsPerEpoch[t] = Math.ceil(n / v.finetune.batchSize);
  }
  await inLanes(
    cells.map(
      (c) => () =>
        step(ctx, cellName(c.task, c.setting.name, c.seed), index, async (dir, log) => {
          const r = RECIPES[c.task];
          const langs = v.languages[c.task];
          const ft = v.finetune;
          await run(
            finetuneCommand,
            {
              task: c.task,
              model,
              train: r.train,
              dev: r.dev,
              language: r.source,
              maxDevExamples: ft.maxDevExamples,
              epochs: ft.epochs,
              batchSize: ft.batchSize,
              maxLength: ft.maxLength,
              lr: ft.lr,
              warmupRatio: ft.warmupRatio,
              dropout: ft.dropout,
              evalEvery: Math.max(1, Math.floor((stepsPerEpoch[c.task] as number) / ft.evalsPerEpoch)),
              earlyStoppingPatience: ft.earlyStoppingPatience,
              ...(v.maxTrainExamples !== undefined ? { maxTrainExamples: v.maxTrainExamples } : {}),
              ...c.setting.finetune({
                task: c.task,
                source: r.source,
                targets: langs.filter((l) => l !== r.source),
                seed: c.seed,
                steps: Math.ceil(ft.epochs * (stepsPerEpoch[c.task] as number)),
              }),
              seed: c.seed,
              ...laneCommon,
            },
            path.join(dir, 'finetune'),
            log,
          );
          await run(
            evaluateCommand,
            {
              model: path.join(dir, 'finetune', 'model'),
              task: c.task,
              eval: Object.fromEntries(langs.map((l) => [l, devFile(c.task, l)])),
              source: r.source,
              batchSize: 64,
              resamples: cfg.resamples,
              seed: c.seed,
              ...(v.maxEvalExamples !== undefined ? { maxExamplesPerLanguage: v.maxEvalExamples } : {}),
              ...laneCommon,
            },
            path.join(dir, 'eval'),
            log,
          );
        }),
    ),
    lanes,
  );
  index.i++;
  ctx.log(`== ${index.i}/${index.n} results`);
  const stats: GridStats = {};
  const results: FinetuneCell[] = cells.map((c) => {
    const name = cellName(c.task, c.setting.name, c.seed);
    const evalDir = path.join(ctx.runDir, name, 'eval');
    const res = readJson<{ languages: Record<string, { score: number; n: number }>; targetAverage: number }>(
      path.join(evalDir, 'results.json'),
    );
    const ft = readJson<{ trainExamples: number; stages: Array<{ steps: number; bestDev?: number }> }>(
      path.join(ctx.runDir, name, 'finetune', 'results.json'),
    );
    stats[name] = readJson<{ languages: GridStats[string] }>(path.join(evalDir, 'stats.json')).languages;
    return {
      task: c.task,
      setting: c.setting.name,
      seed: c.seed,
      source: RECIPES[c.task].source,
      languages: Object.fromEntries(Object.entries(res.languages).map(([l, x]) => [l, x.score])),
      examples: Object.fromEntries(Object.entries(res.languages).map(([l, x]) => [l, x.n])),
      targetAverage: res.targetAverage,
      trainExamples: ft.trainExamples,
      steps: ft.stages.reduce((a, s) => a + s.steps, 0),
      seconds: stepSeconds(ctx.runDir, name),
    };
  });
  const labels = Object.fromEntries(settings.map((s) => [s.name, s.label]));
  const summary = summariseGrid(results, stats, {
    baseline: (settings[0] as GridSetting).name,
    resamples: cfg.resamples,
    seed: cfg.seed,
  });
  const md = gridMarkdown(summary, results, {
    experiment: e.name,
    labels,
    seeds,
    resamples: cfg.resamples,
    settings: describe,
    seconds: (performance.now() - t0) / 1000,
    ...(given === undefined ? { pretrainSeconds: stepSeconds(ctx.runDir, 'pretrain-shared') } : {}),
  });
  writeFileAtomic(
    path.join(ctx.runDir, 'results.json'),
    `${JSON.stringify({ experiment: e.name, quick: cfg.quick, split: 'dev', ...(given?.record ?? { settings: v }), finetune: v.finetune, seeds, resamples: cfg.resamples, baseline: (settings[0] as GridSetting).name, cells: results, summary }, null, 2)}\n`,
  );
  writeFileAtomic(path.join(ctx.runDir, 'report.md'), md);
  writeFileAtomic(path.join(ctx.runDir, 'chart.svg'), gridChart(summary, labels, e.name));
  for (const l of md.trimEnd().split('\n')) ctx.log(l);
  ctx.log(
    `written: ${['results.json', 'report.md', 'chart.svg'].map((f) => path.join(ctx.runDir, f)).join(', ')}`,
  );
}

/** The grid's own corpus, tokenizer and shared model (resumable steps); the model folder. */
async function pretrainStep(
  ctx: CommandContext,
  cfg: GridConfig,
  v: GridVariant,
  index: { i: number; n: number },
  { languages, dataRoot }: { languages: string[]; dataRoot: string },
): Promise<string> {
  const files = await corpusAndTokenizerSteps(ctx, index, {
    dataRoot,
    languages,
    seed: cfg.seed,
    vocabSize: v.vocabSize,
    ...(v.maxSentencesPerLanguage !== undefined
      ? { maxSentencesPerLanguage: v.maxSentencesPerLanguage }
      : {}),
  });
  // one model, alone: in this process with every thread (or one job on the workers)
  const pretrainPlan = stepPlan(ctx, cfg, { jobs: 1, what: 'pre-trained model' });
  await step(ctx, 'pretrain-shared', index, (dir, log) =>
    pretrainPlan.run(
      pretrainCommand,
      pretrainStepConfig(
        v,
        {
          architecture: 'shared',
          tokenizer: files.tokenizer,
          text: files.text,
          heldOut: files.heldOut,
          ...(v.maxSentencesPerLanguage !== undefined
            ? { maxSentencesPerLanguage: v.maxSentencesPerLanguage }
            : {}),
        },
        {
          engine: cfg.engine,
          dataRoot,
          seed: cfg.seed,
          ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
        },
      ),
      dir,
      log,
    ),
  );
  return path.join(ctx.runDir, 'pretrain-shared', 'model');
}
