import { cpSync, existsSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { writeFileAtomic, XltConfigError } from '@xlt/core';
import { pairedBootstrap } from '@xlt/evaluator';
import { z } from 'zod';
import type { Command, CommandContext } from '../cli/main.js';
import { dataPath, defaultDataRoot, setupBackend } from '../tasks/common.js';
import { loadTokenizer } from '../tasks/model.js';
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
} from '../tasks/pipeline.js';
import { queueFields, queueHelp, stepPlan } from '../tasks/queue-runner.js';
import { RECIPES, type Recipe, type RecipeSettings } from '../tasks/recipes.js';
import { readExamples, statsScore, type TaskName } from '../tasks/tasks.js';
import { evaluateCommand } from './evaluate.js';
import { finetuneCommand } from './finetune.js';
import { newMaskedLm, pretrainCommand } from './pretrain.js';

const recipeSchema = z.strictObject({
  quick: z.boolean().default(false),
  /** A subset of the recipe's languages (the source is always kept). */
  languages: z.array(z.string()).min(1).optional(),
  ...pipelineFields,
  ...queueFields,
  // overrides of the variant's settings (tests use tiny ones)
  ...pretrainOverrideFields,
  finetuneEpochs: z.number().positive().optional(),
  finetuneLr: z.number().positive().optional(),
  finetuneBatchSize: z.number().int().positive().optional(),
  xmodPreset: z.enum(['full', 'xmod-finetune']).optional(),
  maxTrainExamples: z.number().int().positive().optional(),
  maxSentencesPerLanguage: z.number().int().positive().optional(),
  maxEvalExamples: z.number().int().positive().optional(),
  maxDevExamples: z.number().int().positive().optional(),
  baseline: z.boolean().optional(),
  /** Which pre-trained models to build (default both): `["shared"]` halves the run. */
  architectures: z
    .array(z.enum(['shared', 'xmod']))
    .min(1)
    .default(['shared', 'xmod'])
    .transform((a) => [...new Set(a)]),
  /** Mix dictionary code-switched copies into the pre-training corpus at this ratio (off by default). */
  codeSwitchRatio: z.number().gt(0).max(1).optional(),
  resamples: z.number().int().min(10).default(1000),
});

type RecipeConfig = z.infer<typeof recipeSchema>;

/** The variant's settings with the command line's overrides applied. */
export function recipeSettings(recipe: Recipe, cfg: RecipeConfig): RecipeSettings {
  const base = cfg.quick ? recipe.quick : recipe.full;
  return {
    ...withPretrainOverrides(base, cfg),
    finetune: {
      ...base.finetune,
      epochs: cfg.finetuneEpochs ?? base.finetune.epochs,
      lr: cfg.finetuneLr ?? base.finetune.lr,
      batchSize: cfg.finetuneBatchSize ?? base.finetune.batchSize,
      xmodPreset: cfg.xmodPreset ?? base.finetune.xmodPreset,
      maxDevExamples: cfg.maxDevExamples ?? base.finetune.maxDevExamples,
    },
    baseline: cfg.baseline ?? base.baseline,
    ...(cfg.maxEvalExamples !== undefined ? { maxEvalExamples: cfg.maxEvalExamples } : {}),
  };
}

type Stats = Record<string, Array<[number, number, number]>>;

/** Runs one task's recipe (see the command's help). */
async function runRecipe(all: Recipe, cfg: RecipeConfig, ctx: CommandContext): Promise<void> {
  const recipe = cfg.languages === undefined ? all : subset(all, cfg.languages);
  const s = recipeSettings(recipe, cfg);
  const dataRoot = path.resolve(cfg.dataRoot ?? defaultDataRoot());
  const common = {
    seed: cfg.seed,
    engine: cfg.engine,
    dataRoot,
    ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
  };
  const archs = cfg.architectures;
  const models: string[] = [...archs, ...(s.baseline ? ['random'] : [])];
  const index = {
    i: 0,
    n: 2 + archs.length + (s.baseline ? 1 : 0) + models.length * (1 + recipe.evals.length) + 1,
  };
  const t0 = performance.now();
  ctx.log(
    `recipe ${recipe.task}${cfg.quick ? ' (quick)' : ''}: ${recipe.languages.join(' ')}; source ${recipe.source}; model h${s.hiddenSize} L${s.layers}, vocabulary ${s.vocabSize}; pre-training ${s.pretrain.steps} steps of ${s.pretrain.batchSize} x ${s.pretrain.maxLength} tokens; fine-tuning ${s.finetune.epochs} epochs of batch ${s.finetune.batchSize} (X-Mod: ${s.finetune.xmodPreset}); seed ${cfg.seed}`,
  );
  const {
    text,
    heldOut,
    tokenizer: tokFile,
  } = await corpusAndTokenizerSteps(ctx, index, {
    dataRoot,
    languages: recipe.languages,
    seed: cfg.seed,
    vocabSize: s.vocabSize,
    ...(cfg.codeSwitchRatio !== undefined
      ? { codeSwitch: { source: recipe.source, ratio: cfg.codeSwitchRatio } }
      : {}),
    ...(cfg.maxSentencesPerLanguage !== undefined
      ? { maxSentencesPerLanguage: cfg.maxSentencesPerLanguage }
      : {}),
  });
  // each model's chain (pre-training, fine-tuning, evaluation) runs in its own lane: a child
  // process per lane when the CLI runs as a program (onnxruntime runs on the calling JS thread),
  // or each step a job on Redis workers
  const { lanes, run, threads: laneThreads } = stepPlan(ctx, cfg, { jobs: models.length, what: 'model' });
  const laneCommon = { ...common, ...(laneThreads !== undefined ? { threads: laneThreads } : {}) };
  const pretrain = (arch: 'shared' | 'xmod') =>
    step(ctx, `pretrain-${arch}`, index, (dir, log) =>
      run(
        pretrainCommand,
        pretrainStepConfig(
          s,
          {
            architecture: arch,
            tokenizer: tokFile,
            text,
            heldOut,
            ...(cfg.maxSentencesPerLanguage !== undefined
              ? { maxSentencesPerLanguage: cfg.maxSentencesPerLanguage }
              : {}),
          },
          laneCommon,
        ),
        dir,
        log,
      ),
    );
  if (s.baseline) {
    await step(ctx, 'init-random', index, async (dir, log) => {
      await setupBackend('auto', log);
      const tok = await loadTokenizer(tokFile, undefined);
      const m = newMaskedLm(tok, {
        init: 'small',
        architecture: 'shared',
        languages: recipe.languages,
        maxLength: s.pretrain.maxLength,
        dropout: 0.1,
        seed: cfg.seed,
        hiddenSize: s.hiddenSize,
        layers: s.layers,
      });
      await m.savePretrained(path.join(dir, 'model'));
      await tok.save(path.join(dir, 'model', 'tokenizer.json'));
      m.dispose();
    });
  }
  const from: Record<string, string> = {
    shared: path.join(ctx.runDir, 'pretrain-shared', 'model'),
    xmod: path.join(ctx.runDir, 'pretrain-xmod', 'model'),
    random: path.join(ctx.runDir, 'init-random', 'model'),
  };
  const trainFile = dataPath(dataRoot, recipe.train);
  const sentences = cfg.maxTrainExamples ?? (await countExamples(recipe.task, trainFile));
  const stepsPerEpoch = Math.ceil(sentences / s.finetune.batchSize);
  const chain = async (m: string) => {
    if (m === 'shared' || m === 'xmod') await pretrain(m);
    await step(ctx, `finetune-${m}`, index, (dir, log) =>
      run(
        finetuneCommand,
        {
          task: recipe.task,
          model: from[m],
          train: recipe.train,
          dev: recipe.dev,
          maxDevExamples: s.finetune.maxDevExamples,
          language: recipe.source,
          preset: m === 'xmod' ? s.finetune.xmodPreset : 'full',
          epochs: s.finetune.epochs,
          batchSize: s.finetune.batchSize,
          maxLength: s.finetune.maxLength,
          lr: s.finetune.lr,
          warmupRatio: s.finetune.warmupRatio,
          dropout: s.finetune.dropout,
          evalEvery: Math.max(1, Math.floor(stepsPerEpoch / s.finetune.evalsPerEpoch)),
          earlyStoppingPatience: s.finetune.earlyStoppingPatience,
          ...(cfg.maxTrainExamples !== undefined ? { maxTrainExamples: cfg.maxTrainExamples } : {}),
          ...laneCommon,
        },
        dir,
        log,
      ),
    );
    for (const ev of recipe.evals) {
      await step(ctx, `eval-${ev.name}-${m}`, index, (dir, log) =>
        run(
          evaluateCommand,
          {
            model: path.join(ctx.runDir, `finetune-${m}`, 'model'),
            task: recipe.task,
            eval: ev.files,
            source: recipe.source,
            batchSize: 64,
            resamples: cfg.resamples,
            ...(s.maxEvalExamples !== undefined ? { maxExamplesPerLanguage: s.maxEvalExamples } : {}),
            ...laneCommon,
          },
          dir,
          log,
        ),
      );
    }
  };
  const order = chainOrder(models);
  await inLanes(
    order.map((m) => () => chain(m)),
    lanes,
  );
  index.i++;
  ctx.log(`== ${index.i}/${index.n} results`);
  const summary = summarise(recipe, ctx.runDir, models, cfg, s, (performance.now() - t0) / 1000);
  for (const l of summary.split('\n')) ctx.log(l);
}

/**
 * The order the recipe's model chains start in: the longest first (X-Mod pre-trains ~17% slower than
 * the shared model, the no-pre-training baseline not at all), so that with fewer lanes than chains
 * the baseline fills the lane that frees first and the lanes end together: on 2 lanes the full
 * recipe ends with the X-Mod chain, not with the baseline's chain followed by X-Mod's.
 */
export function chainOrder(models: readonly string[]): string[] {
  const length = (m: string) => ['random', 'shared', 'xmod'].indexOf(m);
  return [...models].sort((a, b) => length(b) - length(a));
}

/** The recipe restricted to some of its languages (the source always stays). */
function subset(r: Recipe, languages: readonly string[]): Recipe {
  const unknown = languages.filter((l) => !r.languages.includes(l));
  if (unknown.length > 0)
    throw new XltConfigError(
      `languages: ${unknown.join(', ')} not in the ${r.task} recipe (${r.languages.join(' ')})`,
      {
        field: 'languages',
      },
    );
  const keep = (l: string) => l === r.source || languages.includes(l);
  return {
    ...r,
    languages: r.languages.filter(keep),
    evals: r.evals.map((e) => ({
      ...e,
      files: Object.fromEntries(Object.entries(e.files).filter(([l]) => keep(l))),
    })),
  };
}

async function countExamples(task: TaskName, file: string): Promise<number> {
  return (await readExamples(task, file)).length;
}

/** Copies the selected models to DIR/model/<name> with their reports, writes results.json and results.md. */
function summarise(
  recipe: Recipe,
  runDir: string,
  models: string[],
  cfg: RecipeConfig,
  s: RecipeSettings,
  seconds: number,
): string {
  const outDir = path.join(runDir, 'model');
  const lines: string[] = [];
  const results: Record<string, unknown> = {};
  const minutes = (name: string) => stepSeconds(runDir, name) / 60;
  const archs = cfg.architectures;
  for (const m of archs) {
    const dst = path.join(outDir, m);
    rmSync(dst, { recursive: true, force: true });
    cpSync(path.join(runDir, `finetune-${m}`, 'model'), dst, { recursive: true });
  }
  for (const ev of recipe.evals) {
    const score = (items: readonly [number, number, number][]) => statsScore(recipe.task, items);
    const langs = Object.keys(ev.files);
    const targets = langs.filter((l) => l !== recipe.source);
    lines.push(
      `### ${recipe.task} ${ev.name} (${ev.split}), ${recipe.task === 'ner' ? 'entity F1' : 'UPOS accuracy'}, 95% bootstrap CIs`,
      '',
      `| model | ${langs.map((l) => (l === recipe.source ? `${l} (src)` : l)).join(' | ')} | target avg |`,
      `|---|${langs.map(() => '---:').join('|')}|---:|`,
    );
    const stats: Record<string, Stats> = {};
    for (const m of models) {
      const dir = path.join(runDir, `eval-${ev.name}-${m}`);
      const res = readJson<{ targetAverage: number }>(path.join(dir, 'results.json'));
      // the step's own copy (results.json names the folder the report was written in: on a
      // worker, its attempt folder)
      const rep = readJson<{ rows: Array<{ lang: string; score: number; ciLow: number; ciHigh: number }> }>(
        path.join(dir, 'report.json'),
      );
      stats[m] = readJson<{ languages: Stats }>(path.join(dir, 'stats.json')).languages;
      const cell = (l: string) => {
        const r = rep.rows.find((x) => x.lang === l);
        return r === undefined ? '–' : `${r.score.toFixed(1)} (${r.ciLow.toFixed(1)}–${r.ciHigh.toFixed(1)})`;
      };
      lines.push(`| ${m} | ${langs.map(cell).join(' | ')} | ${res.targetAverage.toFixed(1)} |`);
      results[`${ev.name}:${m}`] = { targetAverage: res.targetAverage, rows: rep.rows };
      if (m !== 'random') {
        for (const ext of ['md', 'json', 'svg', 'csv']) {
          const src = path.join(dir, `report.${ext}`);
          if (existsSync(src)) cpSync(src, path.join(outDir, `${m}.${ev.name}.report.${ext}`));
        }
      }
    }
    const pairs: Array<[string, string]> = archs.length === 2 ? [['shared', 'xmod']] : [];
    if (models.includes('random')) for (const m of archs) pairs.push(['random', m]);
    lines.push('', `Paired bootstrap (${cfg.resamples} resamples) of the target average, B − A:`, '');
    for (const [a, b] of pairs) {
      const p = pairedBootstrap(stats[a] as Stats, stats[b] as Stats, {
        source: recipe.source,
        score,
        resamples: cfg.resamples,
        seed: cfg.seed,
      });
      results[`${ev.name}:${b}-minus-${a}`] = p;
      lines.push(
        `- ${b} − ${a}: ${p.targetAverage.diff.toFixed(2)} (95% CI ${p.targetAverage.ciLow.toFixed(2)} to ${p.targetAverage.ciHigh.toFixed(2)}) over ${targets.length} targets; source ${(p.languages[recipe.source]?.diff ?? Number.NaN).toFixed(2)}`,
      );
    }
    lines.push('');
  }
  const wall = [
    'corpus',
    'tokenizer',
    ...archs.map((m) => `pretrain-${m}`),
    ...(models.includes('random') ? ['init-random'] : []),
  ]
    .concat(models.flatMap((m) => [`finetune-${m}`, ...recipe.evals.map((e) => `eval-${e.name}-${m}`)]))
    .map((n) => `${n} ${minutes(n).toFixed(1)}`)
    .join(', ');
  lines.push(
    `Settings: ${JSON.stringify(s)}; seed ${cfg.seed}.`,
    `Wall time of this invocation ${(seconds / 60).toFixed(1)} min; per step (min, first run): ${wall}.`,
  );
  const md = lines.join('\n');
  writeFileAtomic(path.join(runDir, 'results.md'), `${md}\n`);
  writeFileAtomic(
    path.join(runDir, 'results.json'),
    `${JSON.stringify({ task: recipe.task, quick: cfg.quick, seed: cfg.seed, settings: s, results }, null, 2)}\n`,
  );
  return md;
}

function recipeCommand(task: 'ner' | 'pos'): Command<typeof recipeSchema> {
  const r = RECIPES[task];
  return {
    name: `recipe ${task}`,
    summary: `The whole ${task.toUpperCase()} pipeline: corpus, tokenizer, shared + X-Mod pre-training, fine-tuning, evaluation`,
    help: `Runs every step into the run directory, each in its own folder; a step that finished is skipped
when the command runs again (pre-training resumes from its newest checkpoint):
  corpus/            raw text of ${r.languages.join(' ')} from the data root (never the files reports evaluate on)
  tokenizer/         Unigram vocabulary trained on the corpus
  pretrain-shared/   masked LM, XLM-R layout; pretrain-xmod/: X-Mod with a module per language
                     (packed full blocks, no padding; held-out masked-LM loss per language in results.json)
  init-random/       (full recipe) the same model without pre-training, fine-tuned identically as a baseline
  finetune-*/        ${r.source} ${r.train}; the source dev set ${r.dev} is scored during training and the
                     best weights are kept (model selection on source-language dev only); the X-Mod
                     model trains with its ${r.source} module, every parameter (--xmod-preset full, default)
                     or X-Mod's way with embeddings and modules frozen (--xmod-preset xmod-finetune)
  eval-*/            per-language reports: ${r.evals.map((e) => `${e.name} (${e.split})`).join(', ')}
  model/shared, model/xmod   the selected models of --architectures (Hugging Face folders with tokenizer.json), reports beside them
  results.md, results.json   the table with 95% bootstrap CIs and paired-bootstrap differences

Options:
  --languages '["en","de"]'  a subset of the recipe's languages (the source always stays)
  --quick              the quick variant (smaller budget; at most 45 minutes on 2 cores)
  --architectures '["shared"]'  only these pre-trained models (shared, xmod; default both)
  --seed 0 --data-root DIR --threads N --engine auto|tfjs|onnxruntime --resamples 1000
  --lanes N            models trained at once, each chain (pre-training, fine-tuning, evaluation) in its
                       own xlt process with cores/N threads (default: the cores, here ${availableParallelism()})
${queueHelp('each pre-training, fine-tuning and evaluation')}
  Overrides: --vocab-size --hidden-size --layers --pretrain-steps --pretrain-batch-size --block-size
  --pretrain-lr --pretrain-dropout --mask-probability
  --finetune-epochs --finetune-lr --finetune-batch-size --xmod-preset full|xmod-finetune --max-train-examples --max-sentences-per-language --max-eval-examples
  --max-dev-examples --baseline true|false
  --code-switch-ratio R  mix dictionary code-switched copies into the pre-training corpus (see
                       xlt corpus build; MUSE dictionaries of the data root; off by default)

Examples:
  xlt recipe ${task} --quick --run-dir runs/${task}-quick
  xlt recipe ${task} --run-dir runs/${task}
  xlt recipe ${task} --quick --queue redis://10.0.0.2:6379 --run-dir /shared/runs/${task}-quick`,
    schema: recipeSchema,
    run: (cfg, ctx) => runRecipe(r, cfg, ctx),
  };
}

export const recipeNerCommand = recipeCommand('ner');
export const recipePosCommand = recipeCommand('pos');
