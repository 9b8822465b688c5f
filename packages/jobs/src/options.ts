import { XltConfigError } from '@xlt/core';

/** Retries of a failing cell: `attempts` executions in all, waits of `backoffMs`, doubled each time. */
export interface RetryOptions {
  /** Executions in all before a cell goes to the dead-letter list (default 3). */
  attempts?: number;
  /** First wait before a retry in ms, doubled each retry (default 1000). */
  backoffMs?: number;
}

export const DEFAULT_ATTEMPTS = 3;
export const DEFAULT_BACKOFF_MS = 1000;

/** Progress over a grid's jobs. */
export interface GridProgress {
  total: number;
  done: number;
  failed: number;
  /** Cells found finished before this run started (skipped). */
  skipped: number;
}

/** Parses `redis://[user:pass@]host:port[/db]` (or `rediss://`); errors name the option. */
export function parseRedisUrl(url: string, field = 'queue'): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new XltConfigError(`${field}: '${url}' is not a URL; expected 'local' or redis://host:port`, {
      field,
    });
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new XltConfigError(`${field}: expected 'local' or redis://host:port, got '${url}'`, { field });
  return url;
}

/** A Redis URL for logs and errors: the password, if any, masked. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/** ioredis settings BullMQ workers need (commands wait for a reconnect instead of failing). */
export function connectionOf(url: string): { url: string; maxRetriesPerRequest: null } {
  return { url: parseRedisUrl(url), maxRetriesPerRequest: null };
}

/** One line of progress: `12/40 done, 1 failed, 3 skipped (finished earlier)`. */
export function progressLine(p: GridProgress): string {
  return `${p.done}/${p.total} done, ${p.failed} failed${p.skipped > 0 ? `, ${p.skipped} skipped (finished earlier)` : ''}`;
}
