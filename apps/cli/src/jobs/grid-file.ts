import { readFileSync } from 'node:fs';
import type { SourceExample } from '@xlt/augment';
import { XltConfigError } from '@xlt/core';
import { type AnnotateSliceSettings, annotationCells, type GridCell, JOB_KINDS, type Json } from '@xlt/jobs';
import { z } from 'zod';
import { commandOfCell } from './handlers.js';

const entrySchema = z.strictObject({
  kind: z.enum(JOB_KINDS),
  /** The xlt command of a train / evaluate / augment entry (e.g. `finetune`). */
  command: z.string().optional(),
  config: z.record(z.string(), z.unknown()).default({}),
  seeds: z.array(z.number().int().nonnegative()).min(1).default([0]),
  /** One cell per combination of these config values (`{ lr: [1e-4, 3e-5] }`). */
  vary: z.record(z.string(), z.array(z.unknown()).min(1)).default({}),
  /** annotate entries: a JSONL of `{id, sentence, spans}` split into slices of `sliceSize`. */
  input: z.string().optional(),
  sliceSize: z.number().int().positive().default(100),
});

/** The grid part of `xlt grid run`'s config. */
export const gridFields = {
  cells: z.array(entrySchema).min(1),
  attempts: z.number().int().positive().default(3),
  backoffMs: z.number().int().nonnegative().default(1000),
};

type Entry = z.infer<typeof entrySchema>;

function combinations(vary: Record<string, unknown[]>): Array<Record<string, unknown>> {
  let out: Array<Record<string, unknown>> = [{}];
  for (const [k, values] of Object.entries(vary))
    out = out.flatMap((o) => values.map((v) => ({ ...o, [k]: v })));
  return out;
}

function readExamples(file: string, where: string): SourceExample[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new XltConfigError(`${where}.input: cannot read ${file}`, { file, cause });
  }
  return text
    .split('\n')
    .map((l, i) => [l, i + 1] as const)
    .filter(([l]) => l.trim() !== '')
    .map(([l, line]) => {
      try {
        return JSON.parse(l) as SourceExample;
      } catch {
        throw new XltConfigError(`${where}.input: line is not JSON`, { file, line });
      }
    });
}

/** Expands the grid's entries into cells (seeds x combinations of `vary`), validating each config. */
export function expandGrid(entries: readonly Entry[]): GridCell[] {
  const cells: GridCell[] = [];
  entries.forEach((e, i) => {
    const where = `cells[${i}]`;
    if (e.kind === 'annotate') {
      if (e.input === undefined)
        throw new XltConfigError(`${where}: annotate entries need input (a JSONL file)`);
      cells.push(
        ...annotationCells(
          readExamples(e.input, where),
          e.config as unknown as AnnotateSliceSettings,
          e.sliceSize,
        ),
      );
      return;
    }
    for (const combo of combinations(e.vary))
      for (const seed of e.seeds) {
        const cell: GridCell = {
          kind: e.kind,
          seed,
          config: {
            command: e.command ?? null,
            ...(e.config as Record<string, Json>),
            ...(combo as Record<string, Json>),
          },
        };
        const label = Object.entries(combo)
          .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
          .join(', ');
        commandOfCell(cell, `${where} (seed ${seed}${label ? `, ${label}` : ''})`);
        cells.push(cell);
      }
  });
  return cells;
}
