import { XltConfigError } from '@xlt/core';
import { Redis } from 'ioredis';
import { parseRedisUrl } from './options.js';

/** A language module made available to a served fleet. */
export interface LanguageModuleEvent {
  /** Language code the module serves (e.g. `sw`). */
  language: string;
  /**
   * Where the module is, for the record (a path on shared storage or a URL). `xlt-serve` never opens
   * it: a replica loads the language's file from its own modules directory, by the language code.
   */
  location: string;
  /** SHA-256 of the module file, so that replicas can check what they load. */
  sha256: string;
  /** Milliseconds since the epoch when it was published. */
  publishedAt: number;
  /** Who published it (e.g. a replica's host name). */
  origin?: string;
}

/** Redis channel and hash of the fleet's language modules. */
export const MODULES_CHANNEL = 'xlt:language-modules';

function checkEvent(e: Partial<LanguageModuleEvent>): LanguageModuleEvent {
  for (const f of ['language', 'location', 'sha256'] as const)
    if (typeof e[f] !== 'string' || e[f] === '')
      throw new XltConfigError(`language module event: ${f} must be a non-empty string`, { field: f });
  if (!/^[0-9a-f]{64}$/.test(e.sha256 as string))
    throw new XltConfigError('language module event: sha256 must be 64 hex digits', { field: 'sha256' });
  return e as LanguageModuleEvent;
}

/**
 * Publishes a language module to every subscribed replica and records it in a Redis hash (so that
 * a replica that starts or reconnects later gets it too). Returns the number of live subscribers.
 */
export async function publishLanguageModule(
  url: string,
  module: Omit<LanguageModuleEvent, 'publishedAt'> & { publishedAt?: number },
  channel = MODULES_CHANNEL,
): Promise<number> {
  const event = checkEvent({ ...module, publishedAt: module.publishedAt ?? Date.now() });
  const redis = new Redis(parseRedisUrl(url), { maxRetriesPerRequest: 3 });
  try {
    const text = JSON.stringify(event);
    await redis.hset(channel, event.language, text);
    return await redis.publish(channel, text);
  } finally {
    redis.disconnect();
  }
}

/** A live subscription. */
export interface ModuleSubscription {
  /**
   * Publishes a module over this subscription's connection (recorded in the hash, then sent to every
   * subscriber, this one included); returns the number of subscribers that got it. Fails within the
   * command timeout when Redis does not answer.
   */
  publish(module: Omit<LanguageModuleEvent, 'publishedAt'> & { publishedAt?: number }): Promise<number>;
  /** Delivers every recorded module again (a periodic reconcile: picks up what a lost message missed). */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

/** Options of {@link subscribeLanguageModules}. */
export interface SubscribeOptions {
  channel?: string;
  onError?: (e: Error) => void;
  /** A Redis command (reading the hash, publishing) fails after this long (default 5000 ms). */
  commandTimeoutMs?: number;
}

/**
 * Calls `onModule` for every language module already published (at start and after each reconnect)
 * and for each one published from now on, typically within milliseconds. `onModule` must be
 * idempotent: a module can be delivered more than once. Messages that are not valid events are
 * reported to `onError` and skipped.
 */
export async function subscribeLanguageModules(
  url: string,
  onModule: (m: LanguageModuleEvent) => void | Promise<void>,
  opts: SubscribeOptions = {},
): Promise<ModuleSubscription> {
  const channel = opts.channel ?? MODULES_CHANNEL;
  const onError = opts.onError ?? (() => {});
  const commandTimeout = opts.commandTimeoutMs ?? 5000;
  const sub = new Redis(parseRedisUrl(url), { commandTimeout });
  const reader = new Redis(parseRedisUrl(url), { commandTimeout });
  sub.on('error', onError);
  reader.on('error', onError);
  const deliver = async (text: string) => {
    let e: LanguageModuleEvent;
    try {
      e = checkEvent(JSON.parse(text) as Partial<LanguageModuleEvent>);
    } catch (err) {
      onError(err as Error);
      return;
    }
    try {
      await onModule(e);
    } catch (err) {
      onError(err as Error);
    }
  };
  const replay = async () => {
    const all = await reader.hgetall(channel);
    for (const text of Object.values(all)) await deliver(text);
  };
  sub.on('message', (ch: string, text: string) => {
    if (ch === channel) void deliver(text);
  });
  try {
    await sub.subscribe(channel);
    await replay();
  } catch (e) {
    sub.disconnect();
    reader.disconnect();
    throw e;
  }
  // after a reconnect, pick up what was published while disconnected
  let first = true;
  sub.on('ready', () => {
    if (first) {
      first = false;
      return;
    }
    replay().catch(onError);
  });
  return {
    async publish(module) {
      const event = checkEvent({ ...module, publishedAt: module.publishedAt ?? Date.now() });
      const text = JSON.stringify(event);
      await reader.hset(channel, event.language, text);
      return reader.publish(channel, text);
    },
    refresh: replay,
    async close() {
      sub.disconnect();
      reader.disconnect();
    },
  };
}
