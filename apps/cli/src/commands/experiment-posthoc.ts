import { existsSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, XltConfigError } from '@xlt/core';
import { XmodForMaskedLM } from '@xlt/xmod';
import { z } from 'zod';
import type { Command, CommandContext } from '../cli/main.js';
import { type BitIdentityCheck, compareModels } from '../tasks/bit-identity.js';
import { defaultDataRoot, setupBackend } from '../tasks/common.js';
import { writeExperimentOutputs } from '../tasks/experiment-output.js';
import {
  type NerStats,
  POSTHOC_ADDED,
  POSTHOC_BASE,
  type PosthocCell,
  type PosthocSetting,
  posthocChart,
  posthocMarkdown,
  summarisePosthoc,
  XMOD_POSTHOC,
} from '../tasks/experiment-posthoc.js';
import { type HeldOutMlmLoss, heldOutMlmLoss } from '../tasks/mlm-eval.js';
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
import { readExamples } from '../tasks/tasks.js';
import { loadPackedMlmCorpus, mlmOptions } from '../tasks/train.js';
import { addLanguageCommand } from './add-language.js';
import { evaluateCommand } from './evaluate.js';
import { finetuneCommand } from './finetune.js';
import { pretrainCommand } from './pretrain.js';

const lang = z.string().regex(/^[a-z]{2,3}$/, 'a language code such as es');

const posthocSchema = z.strictObject({
  quick: z.boolean().default(false),
  /** Pre-training languages of the post-hoc model (English among them). */
  base: z.array(lang).min(1).optional(),
  /** The two languages added after pre-training (seen script, unseen script). */
  added: z.array(lang).min(1).max(4).optional(),
  seeds: z.number().int().positive().optional(),
  ...pipelineFields,
  ...queueFields,
  ...pretrainOverrideFields,
  maxSentencesPerLanguage: z.number().int().positive().optional(),
  addLanguageSteps: z.number().int().positive().optional(),
  /** Also train the word embeddings with each added module (the base languages then change). */
  newEmbeddings: z.boolean().default(false),
  /** With newEmbeddings: only the rows of pieces that no earlier language's text uses train. */
  unseenRows: z.boolean().default(false),
  finetuneEpochs: z.number().positive().optional(),
  maxTrainExamples: z.number().int().positive().optional(),
  maxDevExamples: z.number().int().positive().optional(),
  maxEvalExamples: z.number().int().positive().optional(),
  identityBlocks: z.number().int().positive().optional(),
  resamples: z.number().int().min(10).default(1000),
});

type PosthocConfig = z.infer<typeof posthocSchema>;

/** The languages, checked: English in the base, the added ones new, PAN-X dev files for the NER scores. */
function posthocLanguages(cfg: PosthocConfig, dataRoot: string) {
  const base = cfg.base ?? [...POSTHOC_BASE];
  const added = cfg.added ?? [...POSTHOC_ADDED];
  if (!base.includes('en'))
    throw new XltConfigError('base: English (en) is the fine-tuning source; add it', { field: 'base' });
  const all = [...base, ...added];
  const twice = all.filter((l, i) => all.indexOf(l) !== i);
  if (twice.length > 0)
    throw new XltConfigError(`base/added: ${[...new Set(twice)].join(', ')} given more than once`, {
      field: 'added',
    });
  for (const l of ['en', ...added]) {
    const f = path.join(dataRoot, 'panx', `dev-${l}.tsv`);
    if (!existsSync(f))
      throw new XltConfigError(`added: no PAN-X dev file for '${l}' (the NER scores need it)`, {
        file: f,
        field: 'added',
      });
  }
  return { base, added, all };
}

async function runPosthoc(cfg: PosthocConfig, ctx: CommandContext): Promise<void> {
  const dataRoot = path.resolve(cfg.dataRoot ?? defaultDataRoot());
  const { base, added, all } = posthocLanguages(cfg, dataRoot);
  if (cfg.unseenRows && !cfg.newEmbeddings)
    throw new XltConfigError('--unseen-rows chooses which embedding rows train: it needs --new-embeddings', {
      field: 'unseenRows',
    });
  // which embedding rows train with each added module: none, all, or those no earlier language uses
  const embeddings = !cfg.newEmbeddings ? undefined : cfg.unseenRows ? 'unseen-rows' : 'all';
  const v = cfg.quick ? XMOD_POSTHOC.quick : XMOD_POSTHOC.full;
  const s = withPretrainOverrides(v, cfg);
  const maxSentences = cfg.maxSentencesPerLanguage ?? s.maxSentencesPerLanguage;
  const ft = {
    ...s.finetune,
    epochs: cfg.finetuneEpochs ?? s.finetune.epochs,
    maxDevExamples: cfg.maxDevExamples ?? s.finetune.maxDevExamples,
  };
  const maxTrain = cfg.maxTrainExamples ?? s.finetune.maxTrainExamples;
  const maxEval = cfg.maxEvalExamples ?? s.maxEvalExamples;
  const addSteps = cfg.addLanguageSteps ?? s.addLanguage.steps;
  const identityBlocks = cfg.identityBlocks ?? s.identityBlocks;
  const seeds = Array.from({ length: cfg.seeds ?? s.seeds }, (_, i) => cfg.seed + i);
  const index = { i: 0, n: 2 + seeds.length * (3 + 3 + added.length + 2) + 1 };
  const t0 = performance.now();
  const settings = `Model h${s.hiddenSize} L${s.layers}, vocabulary ${s.vocabSize} (one tokenizer over all ${all.length} languages); pre-training ${s.pretrain.steps} steps of ${s.pretrain.batchSize} x ${s.pretrain.maxLength} tokens, lr ${s.pretrain.lr}${maxSentences !== undefined ? `, at most ${maxSentences} sentences per language` : ''}; ${addSteps} ${ADD_STEPS_KIND[embeddings ?? 'none']} steps per added language (lr ${s.addLanguage.lr}); NER ${ft.epochs} epochs${maxTrain !== undefined ? ` on ${maxTrain} English sentences` : ''}, lr ${ft.lr}`;
  ctx.log(
    `experiment xmod-posthoc${cfg.quick ? ' (quick)' : ''}: base ${base.join(' ')}, added ${added.join(' ')}; seeds ${seeds.join(', ')}`,
  );
  const files = await corpusAndTokenizerSteps(ctx, index, {
    dataRoot,
    languages: all,
    seed: cfg.seed,
    vocabSize: s.vocabSize,
    ...(maxSentences !== undefined ? { maxSentencesPerLanguage: maxSentences } : {}),
  });
  const { lanes, run, threads } = stepPlan(ctx, cfg, {
    jobs: 2 * seeds.length,
    what: 'chain (pre-training, fine-tuning, evaluation)',
  });
  const common = (seed: number) => ({
    seed,
    engine: cfg.engine,
    dataRoot,
    ...(threads !== undefined ? { threads } : {}),
  });
  const pick = (m: Record<string, string>, ls: readonly string[]) =>
    Object.fromEntries(ls.map((l) => [l, m[l] as string]));
  const modelOf = (name: string) => path.join(ctx.runDir, name, 'model');
  const pretrain = (name: string, langs: readonly string[], seed: number) =>
    step(ctx, name, index, (dir, log) =>
      run(
        pretrainCommand,
        pretrainStepConfig(
          s,
          {
            architecture: 'xmod',
            tokenizer: files.tokenizer,
            text: pick(files.text, langs),
            heldOut: pick(files.heldOut, langs),
            ...(maxSentences !== undefined ? { maxSentencesPerLanguage: maxSentences } : {}),
          },
          common(seed),
        ),
        dir,
        log,
      ),
    );
  const trainSentences = Math.min(
    maxTrain ?? Number.POSITIVE_INFINITY,
    (await readExamples('ner', path.join(dataRoot, 'panx', 'train-en.tsv'))).length,
  );
  const stepsPerEpoch = Math.ceil(trainSentences / ft.batchSize);
  const nerFiles = Object.fromEntries(['en', ...added].map((l) => [l, `panx/dev-${l}.tsv`]));
  const finetuneAndEval = async (setting: 'start' | 'posthoc', from: string, seed: number) => {
    await step(ctx, `finetune-${setting}-seed${seed}`, index, (dir, log) =>
      run(
        finetuneCommand,
        {
          task: 'ner',
          model: from,
          train: 'panx/train-en.tsv',
          dev: 'panx/dev-en.tsv',
          maxDevExamples: ft.maxDevExamples,
          language: 'en',
          preset: 'xmod-finetune',
          epochs: ft.epochs,
          batchSize: ft.batchSize,
          maxLength: ft.maxLength,
          lr: ft.lr,
          warmupRatio: ft.warmupRatio,
          dropout: ft.dropout,
          evalEvery: Math.max(1, Math.floor(stepsPerEpoch / ft.evalsPerEpoch)),
          earlyStoppingPatience: ft.earlyStoppingPatience,
          ...(maxTrain !== undefined ? { maxTrainExamples: maxTrain } : {}),
          ...common(seed),
        },
        dir,
        log,
      ),
    );
    await step(ctx, `eval-${setting}-seed${seed}`, index, (dir, log) =>
      run(
        evaluateCommand,
        {
          model: modelOf(`finetune-${setting}-seed${seed}`),
          task: 'ner',
          eval: nerFiles,
          source: 'en',
          batchSize: 64,
          resamples: cfg.resamples,
          ...(maxEval !== undefined ? { maxExamplesPerLanguage: maxEval } : {}),
          ...common(seed),
        },
        dir,
        log,
      ),
    );
  };
  const addedName = (l: string, seed: number) => `add-${l}-seed${seed}`;
  const lastAdded = (seed: number) => modelOf(addedName(added[added.length - 1] as string, seed));
  const chains = seeds.flatMap((seed) => [
    async () => {
      await pretrain(`pretrain-start-seed${seed}`, all, seed);
      await finetuneAndEval('start', modelOf(`pretrain-start-seed${seed}`), seed);
    },
    async () => {
      await pretrain(`pretrain-base-seed${seed}`, base, seed);
      let from = modelOf(`pretrain-base-seed${seed}`);
      for (const [i, l] of added.entries()) {
        // --unseen-rows: every piece of the earlier languages' corpus text keeps its row
        const keepRowsOf = [...base, ...added.slice(0, i)].flatMap((e) => [
          files.text[e] as string,
          files.heldOut[e] as string,
        ]);
        await step(ctx, addedName(l, seed), index, (dir, log) =>
          run(
            addLanguageCommand,
            {
              model: from,
              language: l,
              initFrom: 'en',
              text: files.text[l],
              ...(maxSentences !== undefined ? { maxSentences } : {}),
              steps: addSteps,
              newEmbeddings: cfg.newEmbeddings,
              ...(embeddings === 'unseen-rows' ? { keepRowsOf } : {}),
              lr: s.addLanguage.lr,
              batchSize: s.addLanguage.batchSize,
              maxLength: s.pretrain.maxLength,
              ...common(seed),
            },
            dir,
            log,
          ),
        );
        from = modelOf(addedName(l, seed));
      }
      await finetuneAndEval('posthoc', from, seed);
    },
  ]);
  await inLanes(chains, lanes);
  // held-out loss of the post-hoc model and the bit-identity check, in this process
  let tokenizer: Awaited<ReturnType<typeof loadTokenizer>> | undefined;
  const blocksOf = async (langs: readonly string[], blockSize: number) => {
    tokenizer ??= await loadTokenizer(files.tokenizer, undefined);
    return loadPackedMlmCorpus(tokenizer, pick(files.heldOut, langs), {
      dataRoot,
      maxSentences: maxSentences ?? 100_000,
      blockSize,
      log: () => {},
    });
  };
  for (const seed of seeds) {
    await step(ctx, `heldout-posthoc-seed${seed}`, index, async (dir, log) => {
      await setupBackend('auto', log);
      const model = await XmodForMaskedLM.fromPretrained(lastAdded(seed));
      const c = model.config;
      const blocks = await blocksOf(
        all,
        Math.min(s.pretrain.maxLength, c.max_position_embeddings - c.pad_token_id - 1),
      );
      const tok = tokenizer as NonNullable<typeof tokenizer>;
      const heldOut = await heldOutMlmLoss(model, blocks, {
        mask: mlmOptions(tok, c.vocab_size, 0.15),
        seed: 1234,
        // the lanes' threads, as the pre-training steps scored their held-out text
        ...(threads !== undefined ? { threads } : {}),
      });
      model.dispose();
      writeFileAtomic(path.join(dir, 'results.json'), `${JSON.stringify({ heldOut }, null, 2)}\n`);
      log(
        `held-out loss: ${Object.entries(heldOut)
          .map(([l, r]) => `${l} ${r.loss.toFixed(3)}`)
          .join(', ')}`,
      );
    });
    await step(ctx, `identity-seed${seed}`, index, async (dir, log) => {
      const cfgBase = readJson<{ max_position_embeddings: number; pad_token_id: number }>(
        path.join(modelOf(`pretrain-base-seed${seed}`), 'config.json'),
      );
      const blocks = await blocksOf(
        base,
        Math.min(s.pretrain.maxLength, cfgBase.max_position_embeddings - cfgBase.pad_token_id - 1),
      );
      const first = new Map([...blocks].map(([l, b]) => [l, b.slice(0, identityBlocks)]));
      const check = await compareModels(modelOf(`pretrain-base-seed${seed}`), lastAdded(seed), first, {
        ...(threads !== undefined ? { threads } : {}),
      });
      writeFileAtomic(path.join(dir, 'identity.json'), `${JSON.stringify(check, null, 2)}\n`);
      log(
        `bit identity: ${check.weights.identical}/${check.weights.compared} tensors identical, ${check.weights.added.length} new; outputs ${Object.entries(
          check.languages,
        )
          .map(([l, r]) => `${l} ${r.identical ? 'identical' : `DIFFER (max ${r.maxAbsDiff})`}`)
          .join(', ')}`,
      );
      return { identical: check.identical };
    });
  }
  index.i++;
  ctx.log(`== ${index.i}/${index.n} results`);
  const evalDir = (setting: PosthocSetting, seed: number) =>
    path.join(ctx.runDir, `eval-${setting === 'from-start' ? 'start' : 'posthoc'}-seed${seed}`);
  const nerF1 = (setting: PosthocSetting, seed: number) =>
    Object.fromEntries(
      Object.entries(
        readJson<{ languages: Record<string, { score: number }> }>(
          path.join(evalDir(setting, seed), 'results.json'),
        ).languages,
      ).map(([l, r]) => [l, r.score]),
    );
  const lossOf = (h: HeldOutMlmLoss) => Object.fromEntries(all.map((l) => [l, h[l]?.loss ?? Number.NaN]));
  const secs = (names: string[]) => Object.fromEntries(names.map((n) => [n, stepSeconds(ctx.runDir, n)]));
  const cells: PosthocCell[] = seeds.flatMap((seed) => [
    {
      setting: 'from-start' as const,
      seed,
      heldOut: lossOf(
        readJson<{ heldOut: HeldOutMlmLoss }>(
          path.join(ctx.runDir, `pretrain-start-seed${seed}`, 'results.json'),
        ).heldOut,
      ),
      nerF1: nerF1('from-start', seed),
      seconds: secs([`pretrain-start-seed${seed}`, `finetune-start-seed${seed}`, `eval-start-seed${seed}`]),
    },
    {
      setting: 'post-hoc' as const,
      seed,
      heldOut: lossOf(
        readJson<{ heldOut: HeldOutMlmLoss }>(
          path.join(ctx.runDir, `heldout-posthoc-seed${seed}`, 'results.json'),
        ).heldOut,
      ),
      nerF1: nerF1('post-hoc', seed),
      seconds: secs([
        `pretrain-base-seed${seed}`,
        ...added.map((l) => addedName(l, seed)),
        `finetune-posthoc-seed${seed}`,
        `eval-posthoc-seed${seed}`,
        `heldout-posthoc-seed${seed}`,
      ]),
    },
  ]);
  const stats = (setting: PosthocSetting, seed: number) =>
    readJson<{ languages: NerStats }>(path.join(evalDir(setting, seed), 'stats.json')).languages;
  const summary = summarisePosthoc(cells, stats, {
    languages: [...added, ...base],
    nerLanguages: ['en', ...added],
    resamples: cfg.resamples,
    seed: cfg.seed,
  });
  const checks = seeds.map((seed) => ({
    seed,
    check: readJson<BitIdentityCheck>(path.join(ctx.runDir, `identity-seed${seed}`, 'identity.json')),
  }));
  const md = posthocMarkdown(summary, checks, {
    base,
    added,
    seeds,
    resamples: cfg.resamples,
    settings,
    seconds: (performance.now() - t0) / 1000,
    devExamples: maxEval !== undefined ? `first ${maxEval} sentences per language` : 'all sentences',
    ...(embeddings !== undefined ? { embeddings } : {}),
  });
  writeExperimentOutputs(ctx, {
    results: {
      experiment: 'xmod-posthoc',
      quick: cfg.quick,
      split: 'dev',
      base,
      added,
      seeds,
      settings: {
        ...s,
        maxSentencesPerLanguage: maxSentences ?? null,
        addLanguageSteps: addSteps,
        newEmbeddings: cfg.newEmbeddings,
        unseenRows: cfg.unseenRows,
        finetune: ft,
        maxTrainExamples: maxTrain ?? null,
        maxEvalExamples: maxEval ?? null,
      },
      resamples: cfg.resamples,
      cells,
      bitIdentity: checks.map(({ seed, check }) => ({ seed, ...check })),
      summary,
    },
    report: md,
    chart: posthocChart(summary, added),
  });
}

/** How the report's settings line names the steps of each added language. */
const ADD_STEPS_KIND = {
  none: 'module-only',
  all: 'module + word-embedding',
  'unseen-rows': 'module + unseen-row',
};

const q = XMOD_POSTHOC.quick;
const f = XMOD_POSTHOC.full;

export const experimentXmodPosthocCommand: Command<typeof posthocSchema> = {
  name: 'experiment xmod-posthoc',
  summary:
    'Languages added to an X-Mod model after pre-training (module only) vs from the start: masked-LM loss, NER zero-shot, bit-identity of the others',
  help: `Pre-trains an X-Mod model on the base languages (default ${POSTHOC_BASE.join(' ')}), then adds each
of --added (default ${POSTHOC_ADDED.join(' ')}: Spanish in a script the base has seen, Korean in one it has
not) with xlt add-language (a new module per layer copied from en, trained alone with masked LM,
every shared weight and the embeddings frozen); and pre-trains the same model on all the languages
from the start. Compares, per seed: the held-out masked-LM loss of every language (15% masked, the
same tokens in both models), and NER zero-shot on PAN-X dev after fine-tuning both on English
(X-Mod fine-tuning, each language through its own module). Proves the base languages unchanged:
the base model and the model after adding are compared byte for byte, weights and outputs (logits
and every layer's hidden states on held-out blocks of each base language). Dutch has no PAN-X
training text here (FLORES only), hence Spanish for the seen script. Every step is resumable:
  corpus/, tokenizer/        over all the languages (one vocabulary, so losses compare)
  pretrain-start-seed<s>/    X-Mod on all the languages;  pretrain-base-seed<s>/: on the base only
  add-<lang>-seed<s>/        the module of one added language (xlt add-language)
  finetune-{start,posthoc}-seed<s>/, eval-{start,posthoc}-seed<s>/   NER on English, PAN-X dev
  heldout-posthoc-seed<s>/   held-out loss of the post-hoc model;  identity-seed<s>/identity.json
  results.json   every cell (setting, seed, held-out loss and NER F1 per language, step times),
                 the bit-identity checks and the summary
  report.md      means over seeds, post hoc − from start with 95% CIs (over seeds; NER also a paired
                 bootstrap over dev sentences per seed); the bit-identity table
  chart.svg      the added languages' loss and the NER F1, both settings

Variants: full h${f.hiddenSize} L${f.layers}, ${f.pretrain.steps} steps, ${f.addLanguage.steps} module steps, ${f.finetune.epochs} NER epochs, ${f.seeds} seeds; --quick h${q.hiddenSize} L${q.layers},
vocabulary ${q.vocabSize}, ${q.pretrain.steps} steps, ${q.addLanguage.steps} module steps, ${q.finetune.epochs} epochs on ${q.finetune.maxTrainExamples} sentences, ${q.maxEvalExamples} dev sentences per
language, ${q.seeds} seed (estimated at about 15 minutes on 2 idle cores; much more on a busy machine).

Options:
  --base '["en","de","ru"]' --added '["es","ko"]'   the languages (English in the base; PAN-X dev
                        files for en and the added ones)
  --seeds N --seed 0    N seeds: seed, seed + 1, ...
  --lanes N             chains at once, each in its own xlt process (default: the cores)
${queueHelp('each pre-training, module, fine-tuning and evaluation')}
                        (the held-out scoring and the bit-identity check run in this process)
  --data-root DIR --threads N --engine auto|tfjs|onnxruntime --resamples 1000
  Overrides: --vocab-size --hidden-size --layers --pretrain-steps --pretrain-batch-size --block-size
  --pretrain-lr --pretrain-dropout --mask-probability --max-sentences-per-language
  --add-language-steps --finetune-epochs --max-train-examples --max-dev-examples --max-eval-examples
  --identity-blocks
  --new-embeddings      also train the word embeddings with each added module (xlt add-language
                        --new-embeddings): an ablation of the frozen vocabulary; the base languages
                        are then expected to change, and the bit-identity table shows by how much.
                        A module-only run's corpus, tokenizer, pretrain-*, finetune-start-* and
                        eval-start-* steps, copied into the run dir, are reused
  --unseen-rows         with --new-embeddings: only the embedding rows of pieces that no earlier
                        language's corpus text (training and held-out) uses train (add-language
                        --keep-rows-of): the base languages' hidden states stay bit-identical and
                        their MLM logits change in those rows' columns only (the tied decoder)

Examples:
  xlt experiment xmod-posthoc --quick --run-dir runs/posthoc-quick
  xlt experiment xmod-posthoc --seeds 3 --run-dir runs/posthoc
  xlt experiment xmod-posthoc --quick --queue redis://10.0.0.2:6379 --run-dir /shared/runs/posthoc-quick`,
  schema: posthocSchema,
  run: runPosthoc,
};
