import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { XltError } from '@xlt/core';
import {
  type LanguageModuleEvent,
  type ModuleSubscription,
  redactUrl,
  subscribeLanguageModules,
} from '@xlt/jobs';
import type { ServedModel } from './model.js';
import { moduleFile } from './module-file.js';

/** What the admin route tells the fleet after adding a module on this replica. */
export interface ModuleFleet {
  /**
   * Records that `code` was added here from `file` and publishes it to every replica; resolves the
   * number of replicas reached (this one included). Rejects when Redis does not answer in time.
   */
  added(code: string, file: string): Promise<{ replicas: number }>;
}

/** Options of {@link startModuleSync}. */
export interface ModuleSyncOptions {
  /** The fleet's Redis: `redis://host:port[/db]`. */
  url: string;
  model: ServedModel;
  /** This replica's modules directory: modules published by others are loaded by code from here only. */
  modulesDir: string;
  /** Largest module file loaded (bytes). */
  maxModuleBytes: number;
  /**
   * How often the recorded set is read again (ms; default 5000): picks up a message lost while
   * disconnected and a module whose file reached this replica's directory after it was published.
   */
  intervalMs?: number;
  /** Starting fails when Redis has not answered within this (ms; default 10,000). */
  startTimeoutMs?: number;
  /** Redis channel (and hash) of the fleet (default `xlt:language-modules`). */
  channel?: string;
  /** Who this replica is, in the events it publishes (default `<host name>:<pid>`). */
  origin?: string;
  log?: (level: 'info' | 'warn', message: string) => void;
}

/** A running module sync: a {@link ModuleFleet} that also loads what other replicas publish. */
export interface ModuleSync extends ModuleFleet {
  /** Languages loaded here through the fleet (or found at start) with the SHA-256 of their file. */
  readonly loaded: ReadonlyMap<string, string>;
  /** Reads the recorded set now and loads what is missing (what the timer does every `intervalMs`). */
  refresh(): Promise<void>;
  close(): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Keeps this replica's language modules the same as the fleet's, through Redis: a module added here
 * ({@link ModuleFleet.added}) is published with its SHA-256; a module published by any replica is
 * loaded from this replica's own modules directory, by its code (`<modulesDir>/<code>.safetensors`,
 * never a path from the message), once the file there has the published checksum. At start the
 * set recorded so far is loaded too, so a replica that starts later gets the current set.
 */
export async function startModuleSync(o: ModuleSyncOptions): Promise<ModuleSync> {
  const log = o.log ?? (() => {});
  const origin = o.origin ?? `${hostname()}:${process.pid}`;
  const loaded = new Map<string, string>();
  const hashes = new Map<string, { stamp: string; sha: string }>();
  /** The last reason each language was not loaded, so that a reconcile tick does not log it again. */
  const waiting = new Map<string, string>();

  const checksum = async (file: string): Promise<string> => {
    const st = statSync(file);
    const stamp = `${st.size}:${st.mtimeMs}`;
    const cached = hashes.get(file);
    if (cached?.stamp === stamp) return cached.sha;
    const sha = await sha256File(file);
    hashes.set(file, { stamp, sha });
    return sha;
  };

  // the modules loaded at start (every file of the directory) count as loaded with their checksum
  for (const f of readdirSync(o.modulesDir).filter((x) => x.endsWith('.safetensors'))) {
    const code = f.slice(0, -'.safetensors'.length);
    if (!o.model.languages.includes(code)) continue;
    try {
      loaded.set(code, await checksum(moduleFile(o.modulesDir, code)));
    } catch {
      // not a module file inside the directory (moduleFile refuses it): the fleet may load it later
    }
  }

  const notYet = (e: LanguageModuleEvent, reason: string) => {
    const key = `${e.sha256}:${reason}`;
    if (waiting.get(e.language) === key) return;
    waiting.set(e.language, key);
    log(
      'warn',
      `fleet: module '${e.language}' (published by ${e.origin ?? 'another replica'}) not loaded yet: ${reason}; looking again every ${o.intervalMs ?? 5000} ms`,
    );
  };

  const apply = async (e: LanguageModuleEvent): Promise<void> => {
    if (loaded.get(e.language) === e.sha256) {
      waiting.delete(e.language);
      return;
    }
    let file: string;
    try {
      file = moduleFile(o.modulesDir, e.language);
    } catch {
      return notYet(e, `no ${e.language}.safetensors in this replica's modules directory`);
    }
    if (statSync(file).size > o.maxModuleBytes)
      return notYet(e, `its file is larger than the limit of ${o.maxModuleBytes} bytes`);
    if ((await checksum(file)) !== e.sha256)
      return notYet(e, "the file in this replica's modules directory has another checksum");
    try {
      await o.model.addLanguage(e.language, file);
    } catch {
      // the reader's message may quote numbers read from the file: not logged
      return notYet(e, 'the file is not a valid module for this model');
    }
    loaded.set(e.language, e.sha256);
    waiting.delete(e.language);
    log(
      'info',
      `fleet: added module '${e.language}' published by ${e.origin ?? 'another replica'} ${Date.now() - e.publishedAt} ms ago`,
    );
  };

  // one event at a time: each builds on the graph of the last, and a repeat finds it loaded
  let chain: Promise<void> = Promise.resolve();
  const onModule = (e: LanguageModuleEvent): Promise<void> => {
    const next = chain.then(() => apply(e));
    chain = next.catch(() => undefined);
    return next;
  };

  const startTimeoutMs = o.startTimeoutMs ?? 10_000;
  const subscribing = subscribeLanguageModules(o.url, onModule, {
    ...(o.channel !== undefined ? { channel: o.channel } : {}),
    commandTimeoutMs: 5000,
    onError: (e) => log('warn', `fleet: ${e.message}`),
  });
  let sub: ModuleSubscription;
  try {
    sub = await withTimeout(subscribing, startTimeoutMs, 'subscribing');
  } catch (e) {
    // a subscription that arrives after the deadline is closed at once
    void subscribing.then((s) => s.close()).catch(() => undefined);
    throw new XltError('IO', `language module sync: Redis at ${redactUrl(o.url)}: ${(e as Error).message}`);
  }
  await chain;

  const timer = setInterval(() => {
    sub.refresh().catch((e: Error) => log('warn', `fleet: reading the module set failed: ${e.message}`));
  }, o.intervalMs ?? 5000);
  timer.unref();

  return {
    loaded,
    async added(code, file) {
      const sha = await checksum(file);
      loaded.set(code, sha);
      waiting.delete(code);
      const replicas = await withTimeout(
        sub.publish({ language: code, location: `${code}.safetensors`, sha256: sha, origin }),
        5000,
        `publishing module '${code}' to Redis`,
      );
      return { replicas };
    },
    async refresh() {
      await sub.refresh();
      await chain;
    },
    async close() {
      clearInterval(timer);
      await sub.close();
    },
  };
}
