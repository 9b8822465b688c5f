import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic, XltConfigError } from '@xlt/core';
import {
  annotateHandler,
  type GridCell,
  type JobHandler,
  type JobHandlers,
  type JobKind,
  type Json,
} from '@xlt/jobs';
import { validateConfig } from '../cli/config.js';
import type { Command } from '../cli/main.js';
import { addLanguageCommand } from '../commands/add-language.js';
import { augmentDictCommand, augmentSelfCommand } from '../commands/augment.js';
import { evaluateCommand } from '../commands/evaluate.js';
import { finetuneCommand } from '../commands/finetune.js';
import { oieCommand } from '../commands/oie.js';
import { pretrainCommand } from '../commands/pretrain.js';

/** The xlt commands a cell of each kind may run (annotate cells run @xlt/jobs' annotate handler). */
export const KIND_COMMANDS: Record<Exclude<JobKind, 'annotate'>, readonly Command[]> = {
  train: [finetuneCommand, pretrainCommand, addLanguageCommand, oieCommand] as Command[],
  evaluate: [evaluateCommand] as Command[],
  augment: [augmentDictCommand, augmentSelfCommand] as Command[],
};

/** Commands whose config has a top-level `seed` (the cell's seed goes there). */
const SEEDED = new Set(['finetune', 'pretrain', 'add-language', 'evaluate', 'augment dict', 'augment self']);

/** The command of a cell and the config it runs with (the cell's seed set); validated like the CLI's. */
export function commandOfCell(cell: GridCell, where: string): { command: Command; config: unknown } {
  if (cell.kind === 'annotate') throw new XltConfigError(`${where}: annotate cells do not run a command`);
  const { command: name, ...raw } = cell.config;
  const command = KIND_COMMANDS[cell.kind].find((c) => c.name === name);
  if (command === undefined)
    throw new XltConfigError(
      `${where}: command must be one of ${KIND_COMMANDS[cell.kind].map((c) => `'${c.name}'`).join(', ')} for ${cell.kind} cells, got ${JSON.stringify(name)}`,
      { field: `${where}.command` },
    );
  if (!SEEDED.has(command.name) && cell.seed !== 0)
    throw new XltConfigError(`${where}: '${command.name}' has no seed; give seeds: [0]`, {
      field: `${where}.seeds`,
    });
  const config = validateConfig(
    command.schema,
    SEEDED.has(command.name) ? { ...raw, seed: cell.seed } : raw,
    where,
  );
  return { command, config };
}

/**
 * The cell that runs `command` with its validated `config` (the inverse of {@link commandOfCell}:
 * the config's seed becomes the cell's), or undefined when no queue runs that command.
 */
export function cellOfCommand(command: Command, config: Record<string, unknown>): GridCell | undefined {
  const kind = (Object.keys(KIND_COMMANDS) as Array<keyof typeof KIND_COMMANDS>).find((k) =>
    KIND_COMMANDS[k].some((c) => c.name === command.name),
  );
  if (kind === undefined) return undefined;
  const { seed, ...rest } = JSON.parse(JSON.stringify(config)) as Record<string, Json>;
  const seeded = SEEDED.has(command.name);
  return {
    kind,
    seed: seeded && typeof seed === 'number' ? seed : 0,
    config: { command: command.name, ...rest, ...(!seeded && seed !== undefined ? { seed } : {}) },
  };
}

/** Drops timings and writes paths inside `dir` relative to it, so that equal runs give equal results. */
function portable(value: unknown, dir: string): Json {
  if (typeof value === 'string') return value.startsWith(dir) ? `.${value.slice(dir.length)}` : value;
  if (Array.isArray(value)) return value.map((v) => portable(v, dir));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value))
      if (k !== 'seconds' && k !== 'elapsedMs' && v !== undefined) out[k] = portable(v, dir);
    return out;
  }
  return (value ?? null) as Json;
}

const commandHandler: JobHandler = async (cell, ctx) => {
  const { command, config } = commandOfCell(cell, 'cell');
  writeFileAtomic(path.join(ctx.workDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  await command.run(config, { runDir: ctx.workDir, log: ctx.log });
  for (const f of ['results.json', 'report.json']) {
    const file = path.join(ctx.workDir, f);
    if (existsSync(file)) return portable(JSON.parse(readFileSync(file, 'utf8')), ctx.workDir);
  }
  return null;
};

/** Handlers of every kind: train / evaluate / augment cells run xlt commands; annotate cells run slices. */
export function cliJobHandlers(): JobHandlers {
  return {
    train: commandHandler,
    evaluate: commandHandler,
    augment: commandHandler,
    annotate: annotateHandler,
  };
}
