/**
 * Fine-tuning grids on models pre-trained elsewhere: `--pretrained DIR` (one model for every
 * setting) and `xlt experiment models` (one setting per model folder, all fine-tuned alike).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { XltConfigError } from '@xlt/core';
import type { GridConfig, GridExperiment } from './finetune-grid.js';
import { pretrainOverrideFields, readJson } from './pipeline.js';

/** Fields that only shape a grid's own pre-training. */
const PRETRAINING_FIELDS = [
  ...(Object.keys(pretrainOverrideFields) as (keyof typeof pretrainOverrideFields)[]),
  'maxSentencesPerLanguage',
] as const;

/** Refuses the pre-training fields the config sets: there is no pre-training to shape. */
function refusePretrainingFields(cfg: GridConfig, why: string): void {
  const set = PRETRAINING_FIELDS.filter((k) => cfg[k] !== undefined);
  if (set.length > 0)
    throw new XltConfigError(
      `${set.join(', ')}: shape the grid's own pre-training, which does not run ${why}`,
      {
        field: set[0] as string,
      },
    );
}

/**
 * A model folder described from its config.json (`xlm-roberta, h256 L4, vocabulary 16000`);
 * refuses a folder without config.json or tokenizer.json, naming `field`.
 */
export function describeModelFolder(dir: string, field: string): string {
  for (const f of ['config.json', 'tokenizer.json'])
    if (!existsSync(path.join(dir, f)))
      throw new XltConfigError(
        `${field}: ${path.join(dir, f)} not found (a model folder as xlt pretrain writes it)`,
        {
          field,
        },
      );
  const c = readJson<{
    hidden_size?: number;
    num_hidden_layers?: number;
    vocab_size?: number;
    model_type?: string;
  }>(path.join(dir, 'config.json'));
  return `${c.model_type ?? 'unknown type'}, h${c.hidden_size ?? '?'} L${c.num_hidden_layers ?? '?'}, vocabulary ${c.vocab_size ?? '?'}`;
}

/** A grid's given model folder(s): the folder fine-tuned, its description, its results.json field. */
export interface GivenModels {
  dir: string;
  describe: string;
  record: { pretrained: string } | { models: Record<string, string> };
}

/** The model folder `pretrained` names and its description; pre-training overrides refused. */
export function pretrainedModel(cfg: GridConfig): GivenModels {
  const dir = path.resolve(cfg.pretrained as string);
  refusePretrainingFields(cfg, `with pretrained (${dir})`);
  return {
    dir,
    describe: `pre-trained model ${dir} (${describeModelFolder(dir, 'pretrained')}; not pre-trained by this grid)`,
    record: { pretrained: dir },
  };
}

/** The models of `xlt experiment models`, checked and described (the first is the baseline's). */
export function givenModels(models: Record<string, string>, cfg: GridConfig): GivenModels {
  refusePretrainingFields(cfg, 'in xlt experiment models');
  if (cfg.pretrained !== undefined)
    throw new XltConfigError('pretrained: xlt experiment models takes its folders from models', {
      field: 'pretrained',
    });
  const parts = Object.entries(models).map(
    ([name, dir]) => `${name} = ${dir} (${describeModelFolder(dir, `models.${name}`)})`,
  );
  return {
    dir: Object.values(models)[0] as string,
    describe: `models fine-tuned alike, none pre-trained by this grid: ${parts.join('; ')}`,
    record: { models },
  };
}

/**
 * `xlt experiment models`: one setting per model folder (the first the baseline), each plain
 * fine-tuning (preset `full`) of its folder, on `variant`'s tasks, languages and budgets.
 */
export function modelsExperiment(
  models: Record<string, string>,
  variants: Pick<GridExperiment, 'quick' | 'full'>,
): GridExperiment {
  const names = Object.keys(models);
  if (names.length < 2)
    throw new XltConfigError(`models: 2 or more model folders to compare, got ${names.length}`, {
      field: 'models',
    });
  const bad = names.filter((n) => !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(n));
  if (bad.length > 0)
    throw new XltConfigError(
      `models: names ${bad.join(', ')} must be letters, digits, '.', '_' or '-' (they name folders)`,
      {
        field: 'models',
      },
    );
  const dirs = Object.fromEntries(names.map((n) => [n, path.resolve(models[n] as string)]));
  return {
    name: 'models',
    settings: names.map((n) => ({
      name: n,
      label: `plain fine-tuning (preset full) of ${dirs[n]}`,
      finetune: () => ({ preset: 'full', model: dirs[n] }),
    })),
    models: dirs,
    quick: variants.quick,
    full: variants.full,
  };
}
