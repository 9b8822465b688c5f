import path from 'node:path';
import {
  annotate,
  ChatClient,
  type ChatMessage,
  type SourceExample,
  type TargetLanguage,
} from '@xlt/augment';
import { XltConfigError } from '@xlt/core';
import { type GridCell, type JobHandler, type Json, sha256 } from './cell.js';
import { localRateLimiter, type RateLimiter, redisRateLimiter } from './rate.js';

/** Settings of an annotation slice (the cell's config besides `examples`). */
export interface AnnotateSliceSettings {
  endpoint: { baseUrl: string; model: string; [key: string]: Json };
  /** Environment variable holding the API key on the worker (keys never travel through Redis). */
  apiKeyEnv?: string;
  languages: TargetLanguage[];
  /**
   * Requests started per second: over every worker on the same Redis (a shared counter), or in this
   * process when run in-process. Each request's own retries (429 / 5xx) come on top, with backoff.
   */
  requestsPerSecond?: number;
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
  const endpoint = { ...(c.endpoint as { baseUrl: string; model: string }), ...(key ? { apiKey: key } : {}) };
  const limiter =
    c.requestsPerSecond === undefined
      ? undefined
      : ctx.queue !== undefined
        ? redisRateLimiter(
            ctx.queue,
            `xlt:rate:${sha256(endpoint.baseUrl).slice(0, 16)}`,
            c.requestsPerSecond,
          )
        : localRateLimiter(c.requestsPerSecond);
  try {
    const report = await annotate(c.examples, {
      endpoint: limiter ? new RateLimitedClient(endpoint, limiter) : endpoint,
      languages: c.languages,
      outFile: path.join(ctx.workDir, 'annotated.jsonl'),
      concurrency: c.concurrency ?? 4,
      ...(c.templates ? { templates: c.templates } : {}),
    });
    return { total: report.total, kept: report.kept, rejected: report.rejected as unknown as Json };
  } finally {
    await limiter?.close();
  }
};

/** A chat client that takes a permit from a rate limiter before each call. */
class RateLimitedClient extends ChatClient {
  constructor(
    endpoint: ConstructorParameters<typeof ChatClient>[0],
    private readonly limiter: RateLimiter,
  ) {
    super(endpoint);
  }

  override async complete(messages: ChatMessage[]): Promise<string> {
    await this.limiter.acquire();
    return super.complete(messages);
  }
}
