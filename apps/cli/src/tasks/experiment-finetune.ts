/**
 * The grids of `xlt experiment salt` and `xlt experiment mt4crossie`: their settings (the first of
 * each is the baseline) and their quick and full variants.
 */
import type { GridExperiment, GridSetting, GridVariant } from './finetune-grid.js';
import { RECIPES } from './recipes.js';

const FULL = RECIPES.ner.full;

/**
 * `full`: the NER recipe's model and pre-training (h256 L4, vocabulary 16,000, 5,000 steps of
 * 16 x 128 tokens) on the NER and POS languages, its fine-tuning (6 epochs of all the English
 * training data, source dev every epoch, patience 2), NER and POS, 3 seeds.
 */
const FULL_GRID: GridVariant = {
  vocabSize: FULL.vocabSize,
  hiddenSize: FULL.hiddenSize,
  layers: FULL.layers,
  pretrain: FULL.pretrain,
  finetune: FULL.finetune,
  tasks: ['ner', 'pos'],
  languages: { ner: RECIPES.ner.languages, pos: RECIPES.pos.languages },
  seeds: 3,
};

/**
 * `quick` (NER only, 1 seed): h128 L2, vocabulary 8,000, 300 steps of 16 x 128 tokens on en de ru
 * zh hi (6,000 sentences each); 2 epochs of 2,000 English sentences, 500 dev examples per language.
 * On 2 cores: corpus and tokenizer about 2 min, pre-training about 4, a cell 1–3 min (SALT's
 * batches are twice as long).
 */
const QUICK_GRID: GridVariant = {
  vocabSize: 8000,
  hiddenSize: 128,
  layers: 2,
  pretrain: { ...FULL.pretrain, steps: 300 },
  finetune: { ...FULL.finetune, epochs: 2, evalsPerEpoch: 1, maxDevExamples: 500 },
  tasks: ['ner'],
  languages: { ner: ['en', 'de', 'ru', 'zh', 'hi'], pos: ['en', 'de', 'ru', 'zh', 'ja'] },
  seeds: 1,
  maxSentencesPerLanguage: 6000,
  maxTrainExamples: 2000,
  maxEvalExamples: 500,
};

/** Share of tokens the SALT copies re-sample / mix (the examples' 0.15). */
const SALT_RATIO = 0.15;

const self = (seed: number, o: { switch: boolean; mixup: number }) => ({
  preset: 'salt',
  salt: { source: 'self', ratio: SALT_RATIO, topK: 10, seed, switch: o.switch, mixup: o.mixup },
});

/** Plain fine-tuning vs SALT self-augmentation (3 variants) vs dictionary code-switching. */
export const SALT_SETTINGS: GridSetting[] = [
  { name: 'plain', label: 'plain fine-tuning (preset full)', finetune: () => ({ preset: 'full' }) },
  {
    name: 'salt-switch',
    label: `SALT code-switching only: a copy of each example with ${100 * SALT_RATIO}% of its tokens re-sampled by the pre-trained masked LM (top 10); loss task + task(copy) + KL`,
    finetune: ({ seed }) => self(seed, { switch: true, mixup: 0 }),
  },
  {
    name: 'salt-mixup',
    label: `SALT embedding mixup only: the copy keeps its tokens; at ${100 * SALT_RATIO}% of positions the embedding is mixed half and half with the masked LM's top-10 expected embedding; same loss`,
    finetune: ({ seed }) => self(seed, { switch: false, mixup: 0.5 }),
  },
  {
    name: 'salt-both',
    label: 'SALT code-switching and embedding mixup at the re-sampled positions; same loss',
    finetune: ({ seed }) => self(seed, { switch: true, mixup: 0.5 }),
  },
  {
    name: 'dict-switch',
    label:
      "dictionary code-switching (CoSDA-ML style): the originals plus one copy with half of the translatable words switched through MUSE en→target dictionaries (data/dict); the copies are examples of their own, so twice the steps of plain (SALT copies share their originals' batches)",
    finetune: ({ targets, seed }) => ({
      preset: 'salt',
      salt: {
        source: 'dictionary',
        ratio: 0.5,
        copies: 1,
        seed,
        dictionaries: Object.fromEntries(targets.map((l) => [l, `dict/muse-en-${l}.tsv`])),
      },
    }),
  },
];

/** LoRA rank of each language expert in the three-stage settings. */
export const EXPERT_RANK = 8;

/**
 * MT4CrossIE's three stages, the second as long as one-stage fine-tuning: 1. word embeddings +
 * head (a quarter of the steps), 2. all but the word embeddings (all the steps), 3. the LoRA
 * mixture + head + routers over the frozen model (half the steps).
 */
const threeStage =
  (mode: 'router' | 'topk' | 'language' | 'static', single = false): GridSetting['finetune'] =>
  ({ source, targets, steps }) => {
    const experts = [source, ...targets];
    return {
      preset: 'mt4crossie',
      stages: [
        { steps: Math.max(1, Math.ceil(steps / 4)) },
        { steps },
        { steps: Math.max(1, Math.ceil(steps / 2)) },
      ],
      lora: {
        r: single ? EXPERT_RANK * experts.length : EXPERT_RANK,
        alpha: 2 * (single ? EXPERT_RANK * experts.length : EXPERT_RANK),
        targetModules: ['query', 'value'],
        mode,
        languages: single ? [source] : experts,
        ...(mode === 'topk' ? { k: 2 } : {}),
      },
    };
  };

/** One-stage vs three-stage fine-tuning; the mixture's routing modes vs one LoRA of the same total rank. */
export const MT4CROSSIE_SETTINGS: GridSetting[] = [
  { name: 'one-stage', label: 'one-stage fine-tuning (preset full)', finetune: () => ({ preset: 'full' }) },
  {
    name: 'router',
    label: `three-stage (preset mt4crossie), a mixture of rank-${EXPERT_RANK} LoRAs (one per language) with a learned router`,
    finetune: threeStage('router'),
  },
  {
    name: 'topk',
    label: 'three-stage, the mixture with a true top-2 router (the others get no weight)',
    finetune: threeStage('topk'),
  },
  {
    name: 'language',
    label:
      "three-stage, the mixture routed by language id (each language its own LoRA; the source's trained)",
    finetune: threeStage('language'),
  },
  {
    name: 'static',
    label: 'three-stage, the mixture as a static average of the LoRAs',
    finetune: threeStage('static'),
  },
  {
    name: 'single-lora',
    label: `three-stage with one LoRA of the mixture's total rank (${EXPERT_RANK} x the number of languages)`,
    finetune: threeStage('static', true),
  },
];

export const SALT_EXPERIMENT: GridExperiment = {
  name: 'salt',
  settings: SALT_SETTINGS,
  quick: QUICK_GRID,
  full: FULL_GRID,
};

export const MT4CROSSIE_EXPERIMENT: GridExperiment = {
  name: 'mt4crossie',
  settings: MT4CROSSIE_SETTINGS,
  quick: QUICK_GRID,
  full: FULL_GRID,
};
