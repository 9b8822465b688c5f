import { existsSync } from 'node:fs';
import path from 'node:path';
import { XltNotFoundError } from '@xlt/core';
import type { OieExtraction } from '@xlt/evaluator';
import { CARB_SCORED_SETS, type CarbScoredGold, carbScoredGold, type OieSetExtractions } from '@xlt/oie';
import { z } from 'zod';
import type { Command, CommandContext } from '../cli/main.js';
import { defaultDataRoot } from '../tasks/common.js';
import {
  modelVsHeuristic,
  OIE_EXPERIMENT,
  OIE_LANGUAGES,
  type OieCell,
  oieChart,
  oieMarkdown,
  scoreSet,
  summariseOie,
} from '../tasks/experiment-oie.js';
import { writeExperimentOutputs } from '../tasks/experiment-output.js';
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
import { oieCommand } from './oie.js';
import { pretrainCommand } from './pretrain.js';

const oieExperimentSchema = z.strictObject({
  quick: z.boolean().default(false),
  seeds: z.number().int().positive().optional(),
  ...pipelineFields,
  ...queueFields,
  ...pretrainOverrideFields,
  maxSentencesPerLanguage: z.number().int().positive().optional(),
  /** The CaRB-scored test sets (default all four). */
  sets: z.array(z.enum(CARB_SCORED_SETS)).min(1).optional(),
  oieEpochs: z.number().positive().optional(),
  oieLr: z.number().positive().optional(),
  /** Use only the first N CaRB dev training sentences. */
  trainLimit: z.number().int().positive().optional(),
  /** Score only the first N sentences of each test set. */
  evalLimit: z.number().int().positive().optional(),
  resamples: z.number().int().min(10).default(1000),
});

type OieExperimentConfig = z.infer<typeof oieExperimentSchema>;

const setName = (g: Pick<CarbScoredGold, 'benchmark' | 'lang'>) => `${g.benchmark} ${g.lang}`;

async function runOieExperiment(cfg: OieExperimentConfig, ctx: CommandContext): Promise<void> {
  const dataRoot = path.resolve(cfg.dataRoot ?? defaultDataRoot());
  const oieDir = path.join(dataRoot, 'oie');
  if (!existsSync(oieDir))
    throw new XltNotFoundError('no oie/ folder (CaRB, Re-OIE2016) under the data root', {
      file: oieDir,
      field: 'dataRoot',
    });
  const v = cfg.quick ? OIE_EXPERIMENT.quick : OIE_EXPERIMENT.full;
  const s = withPretrainOverrides(v, cfg);
  const maxSentences = cfg.maxSentencesPerLanguage ?? s.maxSentencesPerLanguage;
  const oie = { ...s.oie, epochs: cfg.oieEpochs ?? s.oie.epochs, lr: cfg.oieLr ?? s.oie.lr };
  const sets = cfg.sets ?? [...CARB_SCORED_SETS];
  const seeds = Array.from({ length: cfg.seeds ?? s.seeds }, (_, i) => cfg.seed + i);
  const index = { i: 0, n: 2 + 2 * seeds.length + 1 };
  const t0 = performance.now();
  const settings = `Encoder: shared (XLM-R layout) h${s.hiddenSize} L${s.layers}, vocabulary ${s.vocabSize}, masked-LM pre-training on ${OIE_LANGUAGES.join(' ')} (${s.pretrain.steps} steps of ${s.pretrain.batchSize} x ${s.pretrain.maxLength} tokens, lr ${s.pretrain.lr}${maxSentences !== undefined ? `, at most ${maxSentences} sentences per language` : ''}), as the recipes pre-train; Open IE (Multi2OIE two-step head, one argument layer) trained on CaRB dev${cfg.trainLimit !== undefined ? ` (first ${cfg.trainLimit} sentences)` : ''}, ${oie.epochs} epochs of ${oie.batchSize}, lr ${oie.lr}${cfg.evalLimit !== undefined ? `; first ${cfg.evalLimit} sentences of each test set` : ''}`;
  ctx.log(`experiment oie${cfg.quick ? ' (quick)' : ''}: sets ${sets.join(' ')}; seeds ${seeds.join(', ')}`);
  const files = await corpusAndTokenizerSteps(ctx, index, {
    dataRoot,
    languages: OIE_LANGUAGES,
    seed: cfg.seed,
    vocabSize: s.vocabSize,
    ...(maxSentences !== undefined ? { maxSentencesPerLanguage: maxSentences } : {}),
  });
  const { lanes, run, threads } = stepPlan(ctx, cfg, {
    jobs: seeds.length,
    what: 'seed (pre-training, Open IE)',
  });
  const laneThreads = threads !== undefined ? { threads } : {};
  await inLanes(
    seeds.map((seed) => async () => {
      await step(ctx, `pretrain-seed${seed}`, index, (dir, log) =>
        run(
          pretrainCommand,
          pretrainStepConfig(
            s,
            {
              architecture: 'shared',
              tokenizer: files.tokenizer,
              text: files.text,
              heldOut: files.heldOut,
              ...(maxSentences !== undefined ? { maxSentencesPerLanguage: maxSentences } : {}),
            },
            { seed, engine: cfg.engine, dataRoot, ...laneThreads },
          ),
          dir,
          log,
        ),
      );
      await step(ctx, `oie-seed${seed}`, index, (dir, log) =>
        run(
          oieCommand,
          {
            dataRoot,
            tokenizer: files.tokenizer,
            train: 'carb-dev',
            sets,
            ...(cfg.trainLimit !== undefined ? { trainLimit: cfg.trainLimit } : {}),
            ...(cfg.evalLimit !== undefined ? { evalLimit: cfg.evalLimit } : {}),
            savePredictions: true,
            training: {
              encoder: path.join(ctx.runDir, `pretrain-seed${seed}`, 'model'),
              size: { maxLength: oie.maxLength, oie: { pos_emb_dim: 32, n_arg_layers: 1, n_arg_heads: 4 } },
              epochs: oie.epochs,
              batchSize: oie.batchSize,
              lr: oie.lr,
              seed,
              ...laneThreads,
            },
            extract: { predicateThreshold: 0.1, minArgs: 2 },
          },
          dir,
          log,
        ),
      );
    }),
    lanes,
  );
  index.i++;
  ctx.log(`== ${index.i}/${index.n} results`);
  const gold = Object.fromEntries(
    await Promise.all(
      sets.map(async (set) => {
        const g = await carbScoredGold(oieDir, set, cfg.evalLimit);
        return [setName(g), g.gold] as const;
      }),
    ),
  );
  const runs: Record<string, Array<Record<string, OieExtraction[]>>> = {};
  const cells: OieCell[] = [];
  for (const seed of seeds) {
    const dir = path.join(ctx.runDir, `oie-seed${seed}`);
    const preds = readJson<{ sets: OieSetExtractions[] }>(path.join(dir, 'predictions.json')).sets;
    const seconds = {
      [`pretrain-seed${seed}`]: stepSeconds(ctx.runDir, `pretrain-seed${seed}`),
      [`oie-seed${seed}`]: stepSeconds(ctx.runDir, `oie-seed${seed}`),
      oieTraining: readJson<{ trainSeconds: number }>(path.join(dir, 'results.json')).trainSeconds,
    };
    for (const set of Object.keys(gold)) {
      const systems = Object.fromEntries(
        preds.filter((p) => setName(p) === set).map((p) => [p.system, p.extractions]),
      );
      runs[set] = [...(runs[set] ?? []), systems];
      cells.push({ seed, set, scores: scoreSet(gold[set] as CarbScoredGold['gold'], systems), seconds });
    }
  }
  ctx.log(`paired bootstrap over test sentences (${cfg.resamples} resamples per set)`);
  const overSentences = modelVsHeuristic(gold, runs, { resamples: cfg.resamples, seed: cfg.seed });
  const sentences = Object.fromEntries(Object.entries(gold).map(([k, g]) => [k, g.size]));
  const summary = summariseOie(cells, overSentences, sentences, { resamples: cfg.resamples, seed: cfg.seed });
  const md = oieMarkdown(summary, {
    seeds,
    resamples: cfg.resamples,
    settings,
    seconds: (performance.now() - t0) / 1000,
  });
  writeExperimentOutputs(ctx, {
    results: {
      experiment: 'oie',
      quick: cfg.quick,
      split: 'test',
      settings: {
        ...s,
        oie,
        maxSentencesPerLanguage: maxSentences ?? null,
        trainLimit: cfg.trainLimit ?? null,
        evalLimit: cfg.evalLimit ?? null,
      },
      sets: Object.keys(gold),
      seeds,
      resamples: cfg.resamples,
      cells,
      summary,
    },
    report: md,
    chart: oieChart(summary),
  });
}

const q = OIE_EXPERIMENT.quick;
const f = OIE_EXPERIMENT.full;

export const experimentOieCommand: Command<typeof oieExperimentSchema> = {
  name: 'experiment oie',
  summary:
    'Open IE: the trained two-step model (recipe-style pre-trained encoder) vs the verb heuristic on CaRB and Re-OIE2016 en/es/pt, over seeds',
  help: `Per seed, pre-trains a shared (XLM-R layout) encoder with masked LM on ${OIE_LANGUAGES.join(' ')} as the recipes
do (one corpus and tokenizer for all seeds), then trains the Multi2OIE two-step head with that encoder
on CaRB dev (xlt oie) and scores it next to the verb-like heuristic and the second-word baseline with
the CaRB scorer on CaRB test (en) and Re-OIE2016 binary (en, es, pt; es and pt zero-shot). The
difference model − heuristic gets a 95% CI over seeds and a paired bootstrap over test sentences
(the model's F1 averaged over the seeds' models). Every step is resumable:
  corpus/, tokenizer/   pretrain-seed<s>/   oie-seed<s>/ (results.md, results.json, predictions.json)
  results.json   every cell (seed, set, P/R/F1/AUC of the model and both baselines, step times), the summary
  report.md      per set: model F1 over seeds, heuristic, differences with CIs, whether the model beats
                 the heuristic and, where not, why (precision and recall side by side)
  chart.svg      F1 per set: model (CI over seeds), verb heuristic, second word

Variants: full h${f.hiddenSize} L${f.layers}, ${f.pretrain.steps} steps, Open IE ${f.oie.epochs} epochs, ${f.seeds} seeds; --quick h${q.hiddenSize} L${q.layers}, vocabulary ${q.vocabSize},
${q.pretrain.steps} steps, ${q.maxSentencesPerLanguage} sentences per language, ${q.oie.epochs} epochs, ${q.seeds} seeds (estimated at
about 15 minutes on 2 idle cores).

Options:
  --sets '["carb","reoie-es"]'   a subset of carb, reoie-en, reoie-es, reoie-pt
  --seeds N --seed 0 --lanes N --data-root DIR --threads N --engine auto|tfjs|onnxruntime
${queueHelp('each pre-training and Open IE training')}
  --resamples 1000      paired-bootstrap resamples (each rescores every set with the CaRB scorer)
  Overrides: --vocab-size --hidden-size --layers --pretrain-steps --pretrain-batch-size --block-size
  --pretrain-lr --pretrain-dropout --mask-probability --max-sentences-per-language
  --oie-epochs --oie-lr --train-limit N --eval-limit N

Examples:
  xlt experiment oie --quick --run-dir runs/oie-quick
  xlt experiment oie --seeds 3 --run-dir runs/oie-exp
  xlt experiment oie --quick --queue redis://10.0.0.2:6379 --run-dir /shared/runs/oie-quick`,
  schema: oieExperimentSchema,
  run: runOieExperiment,
};
