import { join } from 'node:path';
import { XltConfigError } from '@xlt/core';
import { applyTrainable, type ParameterSource, type Selector, type TrainableSpec } from './params.js';
import { type BatchFn, type FitOptions, type FitSummary, fit } from './run.js';
import type { LossFn } from './trainer.js';

/**
 * One stage of a multi-stage schedule, as data: which parameters train, and its own hyper-parameters,
 * objective (loss) and data. Fields left out fall back to the `defaults` given to {@link runStages}.
 */
export interface Stage<B> extends Partial<Omit<FitOptions<B>, 'data' | 'runDir'>> {
  name: string;
  trainable: TrainableSpec;
  /** Optimiser steps; or give `epochs` and `stepsPerEpoch`. */
  steps?: number;
  epochs?: number;
  stepsPerEpoch?: number;
  loss?: LossFn<B>;
  data?: BatchFn<B>;
}

/** A stage of a preset: only the parameter selection and a suggested lr. */
export interface StagePlan {
  name: string;
  trainable: TrainableSpec;
  lr?: number;
}

/** Result of one stage. */
export interface StageResult extends FitSummary {
  name: string;
}

/** Options shared by all stages. */
export interface RunStagesOptions<B> extends Partial<Omit<FitOptions<B>, 'totalSteps' | 'runDir'>> {
  /** Each stage runs in `runDir/<index>-<name>`. */
  runDir?: string;
  loss?: LossFn<B>;
}

function stepsOf<B>(stage: Stage<B>): number {
  if (stage.steps !== undefined) return stage.steps;
  if (stage.totalSteps !== undefined) return stage.totalSteps;
  if (stage.epochs !== undefined && stage.stepsPerEpoch !== undefined)
    return Math.ceil(stage.epochs * stage.stepsPerEpoch);
  throw new XltConfigError('a stage needs steps, or epochs and stepsPerEpoch', {
    field: `stages.${stage.name}.steps`,
  });
}

/**
 * Runs stages in sequence on the same model (each stage hands the trained model on). Before each
 * stage exactly the parameters its `trainable` selects are made trainable; each stage has a fresh
 * optimiser and schedule. Returns one summary per stage.
 */
export async function runStages<B>(
  model: ParameterSource,
  stages: ReadonlyArray<Stage<B>>,
  defaults: RunStagesOptions<B> = {},
): Promise<StageResult[]> {
  const out: StageResult[] = [];
  for (let i = 0; i < stages.length; i++) {
    const stage = stages[i] as Stage<B>;
    const {
      loss: stageLoss,
      data: stageData,
      steps: _s,
      epochs: _e,
      stepsPerEpoch: _spe,
      trainable,
      name,
      ...rest
    } = stage;
    const loss = stageLoss ?? defaults.loss;
    const data = stageData ?? defaults.data;
    const lr = stage.lr ?? defaults.lr;
    if (loss === undefined || data === undefined || lr === undefined)
      throw new XltConfigError(`stage '${name}' needs a loss, data and lr (from the stage or the defaults)`, {
        field: `stages.${i}`,
      });
    applyTrainable(model, trainable);
    const { runDir, loss: _l, ...common } = defaults;
    const opts: FitOptions<B> = {
      ...common,
      ...rest,
      lr,
      data,
      totalSteps: stepsOf(stage),
      stage: name,
      config: {
        ...common.config,
        ...rest.config,
        stage: name,
        trainable: { include: trainable.include?.map(String), exclude: trainable.exclude?.map(String) },
      },
    };
    if (runDir !== undefined) opts.runDir = join(runDir, `${i + 1}-${name}`);
    const summary = await fit(model, loss, opts);
    out.push({ name, ...summary });
  }
  return out;
}

/** Task heads of Hugging Face models and the Open IE head `oie.` (also under PEFT's `base_model.model.` prefix). */
export const HEAD: Selector =
  /^(?:base_model\.model\.)?(?:classifier|qa_outputs|lm_head|score|pooler_head|oie)\./;
/** The word embedding matrix. */
export const WORD_EMBEDDINGS: Selector = '**.embeddings.word_embeddings';
/** X-Mod language modules (all languages). */
export const LANGUAGE_MODULES: Selector = '**.encoder.layer.*.output.adapter_modules';
/** LoRA parameters (names containing `lora_`). */
export const LORA: Selector = (name: string) => name.includes('lora_');

/** Names of the built-in presets. */
export type PresetName =
  | 'mt4crossie'
  | 'xmod-pretrain'
  | 'xmod-add-language'
  | 'xmod-finetune'
  | 'full-finetune';

/** Options of {@link preset}. */
export interface PresetOptions {
  /** For `xmod-add-language`: the new language's module key (e.g. `sw_KE`). */
  language?: string;
  /** For `xmod-add-language`: also train the word embeddings (new vocabulary). */
  newEmbeddings?: boolean;
}

/**
 * The stages of a named recipe (parameter selections; add lr/steps/loss/data to run them):
 * - `mt4crossie`: 1. word embeddings + task head; 2. everything except word embeddings;
 *   3. only LoRA parameters + task head.
 * - `xmod-pretrain`: everything (shared weights and all language modules).
 * - `xmod-add-language`: only the new language's modules (optionally the word embeddings).
 * - `xmod-finetune`: everything except embeddings and language modules (HF `freeze_embeddings_and_language_adapters`).
 * - `full-finetune`: everything.
 */
export function preset(name: PresetName, options: PresetOptions = {}): StagePlan[] {
  switch (name) {
    case 'mt4crossie':
      return [
        { name: 'embeddings-and-head', trainable: { include: [WORD_EMBEDDINGS, HEAD] } },
        { name: 'all-but-embeddings', trainable: { exclude: [WORD_EMBEDDINGS] } },
        { name: 'lora-and-head', trainable: { include: [LORA, HEAD] } },
      ];
    case 'xmod-pretrain':
      return [{ name: 'pretrain', trainable: {} }];
    case 'xmod-add-language': {
      const lang = options.language;
      if (lang === undefined || !/^[A-Za-z0-9_]+$/.test(lang))
        throw new XltConfigError(
          `xmod-add-language needs a language key like 'sw_KE', got ${JSON.stringify(lang)}`,
          {
            field: 'language',
          },
        );
      const include: Selector[] = [`**.encoder.layer.*.output.adapter_modules.${lang}`];
      if (options.newEmbeddings === true) include.push(WORD_EMBEDDINGS);
      return [{ name: `add-${lang}`, trainable: { include } }];
    }
    case 'xmod-finetune':
      return [
        {
          name: 'finetune',
          trainable: {
            exclude: ['**.embeddings', LANGUAGE_MODULES, '**.encoder.layer.*.output.adapter_layer_norm'],
          },
        },
      ];
    case 'full-finetune':
      return [{ name: 'finetune', trainable: {} }];
    default:
      throw new XltConfigError(`unknown preset '${String(name)}'`, { field: 'preset' });
  }
}
