import { existsSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '@xlt/core';
import { z } from 'zod';
import type { Command, CommandContext } from '../cli/main.js';
import { checkCellInputs, inputDigests, recordCellInputs } from '../tasks/cell-inputs.js';
import { defaultDataRoot } from '../tasks/common.js';
import {
  ARCHITECTURES,
  type Architecture,
  type CurseCell,
  curseChart,
  curseMarkdown,
  summariseCurse,
} from '../tasks/curse-report.js';
import { CURSE_COUNTS, CURSE_LANGUAGES, curseLanguageSets, XMOD_CURSE } from '../tasks/experiments.js';
import type { HeldOutMlmLoss } from '../tasks/mlm-eval.js';
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
import { pretrainCommand } from './pretrain.js';

export { experimentOieCommand } from './experiment-oie.js';
export { experimentXmodPosthocCommand } from './experiment-posthoc.js';

const curseSchema = z.strictObject({
  quick: z.boolean().default(false),
  /** The languages in the order the nested sets add them (English always first). */
  languages: z.array(z.string()).min(1).optional(),
  /** Numbers of languages of the grid (default 1, 2, 4, 8 and all). */
  counts: z.array(z.number().int()).min(1).optional(),
  /** Seeds per cell (default: 3 full, 1 quick); the seeds are seed, seed + 1, ... */
  seeds: z.number().int().positive().optional(),
  ...pipelineFields,
  ...queueFields,
  ...pretrainOverrideFields,
  maxSentencesPerLanguage: z.number().int().positive().optional(),
  resamples: z.number().int().min(10).default(1000),
});

type CurseConfig = z.infer<typeof curseSchema>;

/** The name of a cell's step (and folder): `pretrain-<architecture>-<count>lang-seed<seed>`. */
const cellName = (a: Architecture, count: number, seed: number) =>
  `pretrain-${a}-${String(count).padStart(2, '0')}lang-seed${seed}`;

async function runCurse(cfg: CurseConfig, ctx: CommandContext): Promise<void> {
  const sets = curseLanguageSets(cfg.languages ?? CURSE_LANGUAGES, cfg.counts);
  const base = cfg.quick ? XMOD_CURSE.quick : XMOD_CURSE.full;
  const s = withPretrainOverrides(base, cfg);
  const maxSentences = cfg.maxSentencesPerLanguage ?? s.maxSentencesPerLanguage;
  const seeds = Array.from({ length: cfg.seeds ?? s.seeds }, (_, i) => cfg.seed + i);
  const all = (sets[sets.length - 1] as (typeof sets)[number]).languages;
  const dataRoot = path.resolve(cfg.dataRoot ?? defaultDataRoot());
  const cells = seeds.flatMap((seed) =>
    sets.flatMap((set) => ARCHITECTURES.map((architecture) => ({ architecture, seed, ...set }))),
  );
  const index = { i: 0, n: 2 + cells.length + 1 };
  const t0 = performance.now();
  const settings = `model h${s.hiddenSize} L${s.layers}, vocabulary ${s.vocabSize}; ${s.pretrain.steps} steps of ${s.pretrain.batchSize} x ${s.pretrain.maxLength} tokens, lr ${s.pretrain.lr}, ${100 * s.pretrain.maskProbability}% masked in training${maxSentences !== undefined ? `; at most ${maxSentences} sentences per language` : ''}`;
  ctx.log(
    `experiment xmod-curse${cfg.quick ? ' (quick)' : ''}: ${sets.map((x) => x.count).join(', ')} of ${all.join(' ')}; ${settings}; seeds ${seeds.join(', ')}; ${cells.length} models`,
  );
  const files = await corpusAndTokenizerSteps(ctx, index, {
    dataRoot,
    languages: all,
    seed: cfg.seed,
    vocabSize: s.vocabSize,
    ...(maxSentences !== undefined ? { maxSentencesPerLanguage: maxSentences } : {}),
  });
  const { lanes, run, threads } = stepPlan(ctx, cfg, { jobs: cells.length, what: 'model' });
  const pick = (m: Record<string, string>, ls: readonly string[]) =>
    Object.fromEntries(ls.map((l) => [l, m[l] as string]));
  // what every cell is measured on: the tokenizer and the held-out text (a cell carried from
  // another run directory is refused if they differ)
  const digests = inputDigests({
    tokenizer: files.tokenizer,
    ...Object.fromEntries(all.map((l) => [`heldOut.${l}`, files.heldOut[l] as string])),
  });
  const cellInputs = (languages: readonly string[]) =>
    Object.fromEntries(
      Object.entries(digests).filter(
        ([k]) => k === 'tokenizer' || languages.includes(k.slice('heldOut.'.length)),
      ),
    );
  // the cells finished before (here or carried from another run directory) are checked before any
  // pre-training starts, so that a grid is never continued on other inputs
  const unrecorded = cells
    .map((c) => ({ c, name: cellName(c.architecture, c.count, c.seed) }))
    .filter(({ name }) => existsSync(path.join(ctx.runDir, name, 'done.json')))
    .filter(
      ({ c, name }) => checkCellInputs(path.join(ctx.runDir, name), cellInputs(c.languages)) === 'unrecorded',
    )
    .map(({ name }) => name);
  if (unrecorded.length > 0)
    ctx.log(
      `note: ${unrecorded.length} cell(s) finished before inputs were recorded (${unrecorded.join(', ')}): not checked against this run's tokenizer and held-out text`,
    );
  await inLanes(
    cells.map(
      (c) => () =>
        step(ctx, cellName(c.architecture, c.count, c.seed), index, async (dir, log) => {
          await run(
            pretrainCommand,
            pretrainStepConfig(
              s,
              {
                architecture: c.architecture,
                tokenizer: files.tokenizer,
                text: pick(files.text, c.languages),
                heldOut: pick(files.heldOut, c.languages),
                ...(maxSentences !== undefined ? { maxSentencesPerLanguage: maxSentences } : {}),
              },
              {
                seed: c.seed,
                engine: cfg.engine,
                dataRoot,
                ...(threads !== undefined ? { threads } : {}),
              },
            ),
            dir,
            log,
          );
          recordCellInputs(dir, cellInputs(c.languages));
        }),
    ),
    lanes,
  );
  index.i++;
  ctx.log(`== ${index.i}/${index.n} results`);
  const results: CurseCell[] = cells.map((c) => {
    const name = cellName(c.architecture, c.count, c.seed);
    const r = readJson<{ heldOut: HeldOutMlmLoss; steps: number; finalLoss: number }>(
      path.join(ctx.runDir, name, 'results.json'),
    );
    return {
      architecture: c.architecture,
      count: c.count,
      languages: c.languages,
      seed: c.seed,
      heldOut: Object.fromEntries(c.languages.map((l) => [l, r.heldOut[l]?.loss ?? Number.NaN])),
      maskedTokens: Object.fromEntries(c.languages.map((l) => [l, r.heldOut[l]?.maskedTokens ?? 0])),
      steps: r.steps,
      finalTrainingLoss: r.finalLoss,
      seconds: stepSeconds(ctx.runDir, name),
    };
  });
  const summary = summariseCurse(results, { resamples: cfg.resamples, seed: cfg.seed });
  const md = curseMarkdown(summary, results, {
    order: all,
    seeds,
    resamples: cfg.resamples,
    settings,
    seconds: (performance.now() - t0) / 1000,
  });
  writeFileAtomic(
    path.join(ctx.runDir, 'results.json'),
    `${JSON.stringify({ experiment: 'xmod-curse', quick: cfg.quick, settings: { ...s, maxSentencesPerLanguage: maxSentences ?? null }, languages: all, counts: sets.map((x) => x.count), seeds, resamples: cfg.resamples, cells: results, summary }, null, 2)}\n`,
  );
  writeFileAtomic(path.join(ctx.runDir, 'report.md'), md);
  writeFileAtomic(path.join(ctx.runDir, 'chart.svg'), curseChart(summary));
  for (const l of md.trimEnd().split('\n')) ctx.log(l);
  ctx.log(
    `written: ${['results.json', 'report.md', 'chart.svg'].map((f) => path.join(ctx.runDir, f)).join(', ')}`,
  );
}

const q = XMOD_CURSE.quick;
const f = XMOD_CURSE.full;

export const experimentXmodCurseCommand: Command<typeof curseSchema> = {
  name: 'experiment xmod-curse',
  summary:
    'The curse of multilinguality: shared vs X-Mod pre-training on 1, 2, 4, 8 and 12 languages, held-out masked-LM loss per language',
  help: `Pre-trains a shared (XLM-R layout) and an X-Mod model of the same size and steps on nested sets of
languages (English in every one) and scores each language's held-out masked-LM loss (15% masked,
the same tokens in every model). Order of the languages: ${CURSE_LANGUAGES.join(' ')}; sets of
${CURSE_COUNTS.join(', ')}: 2 adds a second script (ru), 4 Han and Arabic script. One corpus and one
tokenizer (over all the languages, so losses compare across cells) are built once. Every model is
a resumable step (<run dir>/pretrain-<architecture>-<n>lang-seed<s>/); a rerun skips finished ones.
A grid can be assembled over several machines or sessions: a finished cell is its folder's
done.json, results.json, config.json and inputs.json (not the model); copied into another run
directory, the rerun rebuilds corpus and tokenizer, skips the cell, and refuses it if the SHA-256 of
the tokenizer or held-out text it recorded (inputs.json) differs from this run's.
  corpus/, tokenizer/   as in xlt recipe
  results.json          every cell: architecture, languages, seed, held-out loss per language,
                        steps, wall time; the summary per language count
  report.md             per language count: English's loss and the mean over the model's languages
                        for each architecture, and X-Mod − shared paired by seed (95% bootstrap CIs
                        over seeds when there are 2 or more); the curse on English: its loss rise
                        from the 1-language model per architecture, X-Mod's rise − the shared
                        model's (paired by seed) and the share X-Mod removes; every language's loss
  chart.svg             English's and the mean loss against the number of languages, both architectures

Variants: full h${f.hiddenSize} L${f.layers}, vocabulary ${f.vocabSize}, ${f.pretrain.steps} steps of ${f.pretrain.batchSize} x ${f.pretrain.maxLength}, ${f.seeds} seeds
(30 models; about 2 s a step on 2 cores); --quick h${q.hiddenSize} L${q.layers}, vocabulary ${q.vocabSize}, ${q.pretrain.steps} steps, ${q.seeds} seed,
${q.maxSentencesPerLanguage} sentences per language (about 25–30 minutes on 2 idle cores).

Options:
  --languages '["en","ru","zh"]'  the languages in the order the sets add them (English always first)
  --counts '[1,2,3]'    numbers of languages (default ${CURSE_COUNTS.join(', ')} up to the number given, and all)
  --seeds N --seed 0    N seeds per cell: seed, seed + 1, ... (default ${f.seeds}; --quick ${q.seeds})
  --lanes N             models pre-trained at once, each in its own xlt process (default: the cores)
${queueHelp('each model')}
  --data-root DIR --threads N --engine auto|tfjs|onnxruntime --resamples 1000
  Overrides: --vocab-size --hidden-size --layers --pretrain-steps --pretrain-batch-size --block-size
  --pretrain-lr --pretrain-dropout --mask-probability --max-sentences-per-language

Examples:
  xlt experiment xmod-curse --quick --run-dir runs/curse-quick
  xlt experiment xmod-curse --seeds 3 --run-dir runs/curse
  xlt experiment xmod-curse --languages '["en","ru","zh","ar"]' --pretrain-steps 1000 --run-dir runs/curse4
  xlt experiment xmod-curse --quick --queue redis://10.0.0.2:6379 --run-dir /shared/runs/curse-quick`,
  schema: curseSchema,
  run: runCurse,
};
