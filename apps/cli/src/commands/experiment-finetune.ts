import { z } from 'zod';
import type { Command } from '../cli/main.js';
import { MT4CROSSIE_EXPERIMENT, SALT_EXPERIMENT } from '../tasks/experiment-finetune.js';
import {
  type GridExperiment,
  type GridVariant,
  gridFields,
  runFinetuneGrid,
} from '../tasks/finetune-grid.js';
import { modelsExperiment } from '../tasks/given-models.js';
import { queueHelp } from '../tasks/queue-runner.js';

const schema = z.strictObject(gridFields);

const variant = (v: GridVariant) =>
  `h${v.hiddenSize} L${v.layers}, vocabulary ${v.vocabSize}, ${v.pretrain.steps} pre-training steps; ${v.tasks.join(' + ').toUpperCase()} on ${v.tasks.map((t) => v.languages[t].join(' ')).join(' / ')}; ${v.finetune.epochs} epochs${v.maxTrainExamples !== undefined ? ` of ${v.maxTrainExamples} sentences` : ''}; ${v.seeds} seed(s)`;

function help(e: GridExperiment, what: string, example: string): string {
  return `${what}
One corpus, one tokenizer and one shared (XLM-R layout) model pre-trained once; then every cell
(task x setting x seed) fine-tunes it on English (PAN-X en for NER, UD en_ewt for POS; model
selection on the English dev set only) and scores every language's dev set (PAN-X dev; GSD dev for
POS). Each cell is a resumable step <run dir>/<task>-<setting>-seed<s>/ (finetune/, eval/); a rerun
skips finished cells, so a grid can grow by seeds.
  corpus/, tokenizer/, pretrain-shared/   as in xlt recipe
  results.json   every cell: task, setting, seed, per-language dev score, target average, steps,
                 wall time; the summary per task and setting
  report.md      per setting the mean over seeds (per language and target average); the differences
                 to the baseline (${e.settings[0]?.name}) with paired bootstrap 95% CIs over dev examples (the same
                 examples and seeds) and over seeds (2 or more)
  chart.svg      per task the target-average difference to the baseline of each setting, with its CI

Settings (--settings '["${e.settings[1]?.name}"]' for a subset; the baseline always runs):
${e.settings.map((s) => `  ${s.name.padEnd(12)} ${s.label}`).join('\n')}

Variants: full ${variant(e.full)};
--quick ${variant(e.quick)}.

Options:
  --tasks '["ner"]'      ner, pos (default: the variant's)
  --languages '["en","de"]'  a subset of the tasks' languages (the source always stays)
  --seeds N --seed 0     N fine-tuning seeds per cell: seed, seed + 1, ...
  --pretrained DIR       fine-tune this model folder (config.json, weights, tokenizer.json; e.g. a
                         recipe's pretrain-shared/model) instead of building a corpus, a tokenizer
                         and a model: no pre-training steps, and the report names the folder
  --lanes N              cells run at once, each in its own xlt process (default: the cores)
${queueHelp('each pre-training, fine-tuning and evaluation')}
  --data-root DIR --threads N --engine auto|tfjs|onnxruntime --resamples 1000
  Overrides: --vocab-size --hidden-size --layers --pretrain-steps --pretrain-batch-size --block-size
  --pretrain-lr --pretrain-dropout --mask-probability --max-sentences-per-language --finetune-epochs
  --finetune-lr --finetune-batch-size --max-train-examples --max-dev-examples --max-eval-examples

Examples:
  xlt experiment ${e.name} --quick --run-dir runs/${e.name}-quick
  xlt experiment ${e.name} --seeds 3 --run-dir runs/${e.name}
  xlt experiment ${e.name} --quick --queue redis://10.0.0.2:6379 --run-dir /shared/runs/${e.name}-quick
  xlt experiment ${e.name} --pretrained runs/ner/pretrain-shared/model --tasks '["ner"]' --seeds 3 --run-dir runs/${e.name}-ner
  ${example}`;
}

export const experimentSaltCommand: Command<typeof schema> = {
  name: 'experiment salt',
  summary:
    'SALT: plain fine-tuning vs self-augmented code-switching, embedding mixup, both, and dictionary code-switching; zero-shot dev scores with paired CIs',
  help: help(
    SALT_EXPERIMENT,
    "Does self-augmentation (SALT: code-switching and embedding mixup with the pre-trained model's own\nmasked-LM predictions, no dictionary) improve zero-shot transfer over plain fine-tuning, and how\ndoes it compare with dictionary code-switching (CoSDA-ML), which needs external dictionaries?",
    `xlt experiment salt --tasks '["pos"]' --settings '["salt-both","dict-switch"]' --run-dir runs/salt-pos`,
  ),
  schema,
  run: (cfg, ctx) => runFinetuneGrid(SALT_EXPERIMENT, cfg, ctx),
};

export const experimentMt4crossieCommand: Command<typeof schema> = {
  name: 'experiment mt4crossie',
  summary:
    'MT4CrossIE: one-stage vs three-stage fine-tuning, and a LoRA mixture routed by router / top-k / language / static vs one LoRA of the same rank',
  help: help(
    MT4CROSSIE_EXPERIMENT,
    "Does multi-stage tuning (embeddings, then the rest, then a mixture of language LoRAs over the\nfrozen model) transfer better than one-stage fine-tuning, and does aggregating several language\nmodules beat one? Every three-stage setting runs stages of a quarter, all and half of the\none-stage steps (the second stage is as long as one-stage fine-tuning), each with the source\ndev set's best weights kept; the mixtures have one rank-8 expert per language of the task.",
    `xlt experiment mt4crossie --settings '["router","single-lora"]' --seeds 3 --run-dir runs/mt4-lora`,
  ),
  schema,
  run: (cfg, ctx) => runFinetuneGrid(MT4CROSSIE_EXPERIMENT, cfg, ctx),
};

const modelsSchema = z.strictObject({
  ...gridFields,
  /** Setting name → model folder (config.json, weights, tokenizer.json); the first is the baseline. */
  models: z.record(z.string(), z.string().min(1)),
});

export const experimentModelsCommand: Command<typeof modelsSchema> = {
  name: 'experiment models',
  summary:
    'fine-tune several model folders alike (e.g. pre-trained vs not, 9,000 vs 18,000 steps) and compare their zero-shot dev scores with paired CIs over examples and seeds',
  help: `Is one model a better starting point than another? Every model folder (--models, name → folder;
the first is the baseline) is fine-tuned alike (preset full) on English (PAN-X en for NER, UD en_ewt
for POS; model selection on the English dev set only) with the same seeds, and scored on every
language's dev set; the report gives each model's difference to the baseline with paired bootstrap
95% CIs over dev examples and over seeds. Nothing is pre-trained. Each cell is a resumable step
<run dir>/<task>-<name>-seed<s>/ (finetune/, eval/); a rerun skips finished cells.
  results.json, report.md, chart.svg   as in xlt experiment salt; results.json records the folders

Budgets as xlt experiment salt: full ${variant(SALT_EXPERIMENT.full)};
--quick ${variant(SALT_EXPERIMENT.quick)} (the pre-training sizes do not apply).

Options:
  --models '{"none":"runs/ner/init-random/model","shared":"runs/ner/pretrain-shared/model"}'
                         2 or more; names of letters, digits, '.', '_', '-'
  --tasks --languages --seeds N --seed 0 --lanes N --data-root DIR --threads N --engine --resamples
${queueHelp('each fine-tuning and evaluation')}
  Overrides: --finetune-epochs --finetune-lr --finetune-batch-size --max-train-examples
  --max-dev-examples --max-eval-examples

Example:
  xlt experiment models --models '{"none":"runs/ner/init-random/model","shared":"runs/ner/pretrain-shared/model"}' --tasks '["ner"]' --seeds 3 --run-dir runs/pretraining-ner`,
  schema: modelsSchema,
  run: ({ models, ...cfg }, ctx) => runFinetuneGrid(modelsExperiment(models, SALT_EXPERIMENT), cfg, ctx),
};
