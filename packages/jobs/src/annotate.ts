import path from 'node:path';
import { annotate, type SourceExample, type TargetLanguage } from '@xlt/augment';
import { XltConfigError } from '@xlt/core';
import type { GridCell, JobHandler, Json } from './cell.js';

/** Settings of an annotation slice (the cell's config besides `examples`). */
export interface AnnotateSliceSettings {
  endpoint: { baseUrl: string; model: string; [key: string]: Json };
  /** Environment variable holding the API key on the worker (keys never travel through Redis). */
  apiKeyEnv?: string;
  languages: TargetLanguage[];
  /** Requests in flight within one slice (default 4). */
  concurrency?: number;
  templates?: { system?: string; translate?: string; align?: string };
}

/** Splits source examples into `annotate` cells of at most `sliceSize` examples. */
export function annotationCells(
  examples: readonly SourceExample[],
  settings: AnnotateSliceSettings,
  sliceSize: number,
): GridCell[] {
  if (!(Number.isInteger(sliceSize) && sliceSize >= 1))
    throw new XltConfigError(`sliceSize must be a positive integer, got ${sliceSize}`, {
      field: 'sliceSize',
    });
  const cells: GridCell[] = [];
  for (let i = 0; i < examples.length; i += sliceSize)
    cells.push({
      kind: 'annotate',
      seed: 0,
      config: {
        ...(settings as unknown as Record<string, Json>),
        examples: examples.slice(i, i + sliceSize) as unknown as Json,
      },
    });
  return cells;
}

/**
 * The `annotate` handler: MT4CrossIE two-stage annotation of the slice's examples with @xlt/augment
 * (retries with backoff on 429 / 5xx / timeouts). Writes `annotated.jsonl` and
 * `annotated.jsonl.rejects.jsonl` (every pair not kept, with its reason); returns the counts.
 */
export const annotateHandler: JobHandler = async (cell, ctx) => {
  const c = cell.config as unknown as AnnotateSliceSettings & { examples?: SourceExample[] };
  if (!Array.isArray(c.examples))
    throw new XltConfigError('annotate cell: config.examples must be a list', { field: 'examples' });
  const key = c.apiKeyEnv !== undefined ? process.env[c.apiKeyEnv] : undefined;
  const report = await annotate(c.examples, {
    endpoint: { ...(c.endpoint as { baseUrl: string; model: string }), ...(key ? { apiKey: key } : {}) },
    languages: c.languages,
    outFile: path.join(ctx.workDir, 'annotated.jsonl'),
    concurrency: c.concurrency ?? 4,
    ...(c.templates ? { templates: c.templates } : {}),
  });
  return {
    total: report.total,
    kept: report.kept,
    rejected: report.rejected as unknown as Json,
  };
};
