import { XltConfigError } from '@xlt/core';
import { Redis } from 'ioredis';
import { parseRedisUrl } from './options.js';

/** Hands out permits at a bounded rate. */
export interface RateLimiter {
  /** Resolves when the caller may send one request. */
  acquire(): Promise<void>;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function checkRate(perSecond: number): void {
  if (!(Number.isFinite(perSecond) && perSecond > 0))
    throw new XltConfigError(`requestsPerSecond must be a positive number, got ${perSecond}`, {
      field: 'requestsPerSecond',
    });
}

/** At most `perSecond` permits a second in this process, evenly spaced. */
export function localRateLimiter(perSecond: number): RateLimiter {
  checkRate(perSecond);
  const gap = 1000 / perSecond;
  let next = 0;
  return {
    async acquire() {
      const now = Date.now();
      const at = Math.max(now, next);
      next = at + gap;
      if (at > now) await sleep(at - now);
    },
    async close() {},
  };
}

/**
 * At most `perSecond` permits in each wall-clock second over every process that uses the same
 * Redis and `key` (a counter per second, expiring after 2 s).
 */
export function redisRateLimiter(url: string, key: string, perSecond: number): RateLimiter {
  checkRate(perSecond);
  const max = Math.max(1, Math.floor(perSecond));
  const redis = new Redis(parseRedisUrl(url), { maxRetriesPerRequest: 3 });
  return {
    async acquire() {
      for (;;) {
        const now = Date.now();
        const window = `${key}:${Math.floor(now / 1000)}`;
        const [[, n]] = (await redis.multi().incr(window).expire(window, 2).exec()) as [[unknown, number]];
        if (n <= max) return;
        await sleep(1000 - (now % 1000) + Math.floor(Math.random() * 20));
      }
    },
    async close() {
      redis.disconnect();
    },
  };
}
