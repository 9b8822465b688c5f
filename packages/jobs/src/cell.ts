import { createHash } from 'node:crypto';
import { XltConfigError } from '@xlt/core';

/** The job queues: a training cell, an evaluation, a slice of LLM annotation, an augmentation. */
export const JOB_KINDS = ['train', 'evaluate', 'annotate', 'augment'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** A JSON value (what a job carries and returns). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** One unit of work: its queue, its (validated) config and its seed. */
export interface GridCell {
  kind: JobKind;
  config: { [key: string]: Json };
  seed: number;
}

/** What a handler gets besides the cell. */
export interface JobContext {
  /** An empty folder of this attempt; everything written here becomes the cell's artifacts. */
  workDir: string;
  log: (line: string) => void;
  /** The Redis the job came from (`redis://...`), for limits shared by all workers; absent in-process. */
  queue?: string;
}

/** Runs one cell; returns its result (JSON). The same code runs in-process and on a worker. */
export type JobHandler = (cell: GridCell, ctx: JobContext) => Promise<Json>;

/** A handler per kind (a worker serves the kinds it has handlers for). */
export type JobHandlers = Partial<Record<JobKind, JobHandler>>;

/** JSON with sorted object keys, so that equal configs give equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** Hex SHA-256 of a string or bytes. */
export function sha256(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The cell's key (24 hex digits of the SHA-256 of its kind, config and seed): where its result lives. */
export function cellKey(cell: GridCell): string {
  return sha256(canonicalJson({ kind: cell.kind, config: cell.config, seed: cell.seed })).slice(0, 24);
}

/** Checks the shape of a cell (from a grid file or a job payload); `where` names it in errors. */
export function checkCell(value: unknown, where: string): GridCell {
  const v = value as Partial<GridCell> | null;
  if (v === null || typeof v !== 'object') throw new XltConfigError(`${where}: a cell must be a mapping`);
  if (!JOB_KINDS.includes(v.kind as JobKind))
    throw new XltConfigError(
      `${where}.kind: expected one of ${JOB_KINDS.join(', ')}, got ${JSON.stringify(v.kind)}`,
      {
        field: `${where}.kind`,
      },
    );
  if (v.config === null || typeof v.config !== 'object' || Array.isArray(v.config))
    throw new XltConfigError(`${where}.config: expected a mapping`, { field: `${where}.config` });
  if (!Number.isInteger(v.seed) || (v.seed as number) < 0)
    throw new XltConfigError(
      `${where}.seed: expected a non-negative integer, got ${JSON.stringify(v.seed)}`,
      {
        field: `${where}.seed`,
      },
    );
  return { kind: v.kind as JobKind, config: v.config, seed: v.seed as number };
}
