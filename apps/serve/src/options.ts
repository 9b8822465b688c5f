import type { ModuleFleet } from './fleet.js';
import type { ServedModel } from './model.js';
import type { ServeTokenizer } from './tasks.js';

/** Limits on what a request may ask for; each breach is a 4xx that says which limit. */
export interface ServeLimits {
  /** Largest request body in bytes (413 above). Default 1 MiB. */
  bodyBytes: number;
  /** Longest text (or context) in UTF-16 code units (413 above). Default 20,000. */
  textChars: number;
  /** Most texts in one request (413 above). Default 64. */
  batchItems: number;
  /**
   * Most examples admitted and not yet answered, over all requests (the queue bound). A request
   * that would go beyond it gets 503 `OVERLOADED` with `Retry-After`. Default 512.
   */
  queueItems: number;
}

/** How long a client may take; each bounds what one slow or idle client can hold. */
export interface ServeTimeouts {
  /** From connecting to the end of the request headers (Node's `headersTimeout`; 408). Default 10,000 ms. */
  headersMs: number;
  /** From connecting to the end of the request body (Node's `requestTimeout`; 408). Default 30,000 ms. */
  requestMs: number;
  /** An idle keep-alive connection is closed after this. Default 5,000 ms. */
  keepAliveMs: number;
  /** A socket with no traffic at all is closed after this. Default 60,000 ms. */
  connectionMs: number;
  /** A request still waiting for the model after this gets 503 `TIMEOUT`. Default 30,000 ms. */
  modelWaitMs: number;
  /** On shutdown, in-flight requests get this long; then every connection is closed. Default 10,000 ms. */
  shutdownMs: number;
}

/** The defaults of {@link ServeLimits}. */
export const DEFAULT_LIMITS: Readonly<ServeLimits> = {
  bodyBytes: 1 << 20,
  textChars: 20_000,
  batchItems: 64,
  queueItems: 512,
};

/** The defaults of {@link ServeTimeouts}. */
export const DEFAULT_TIMEOUTS: Readonly<ServeTimeouts> = {
  headersMs: 10_000,
  requestMs: 30_000,
  keepAliveMs: 5_000,
  connectionMs: 60_000,
  modelWaitMs: 30_000,
  shutdownMs: 10_000,
};

/** Largest language module file the admin route loads, by default (bytes). */
export const DEFAULT_MAX_MODULE_BYTES = 256 * 2 ** 20;

export interface ServeOptions {
  model: ServedModel;
  tokenizer: ServeTokenizer;
  /** Most examples per model call. Default 16. */
  maxBatchSize?: number;
  /** How long a request waits for others to batch with (ms). Default 5. */
  maxWaitMs?: number;
  limits?: Partial<ServeLimits>;
  timeouts?: Partial<ServeTimeouts>;
  /** Bearer token for `/admin/*`; admin endpoints are off without one. */
  adminToken?: string;
  /** Folder of `<code>.safetensors` language modules that `POST /admin/languages` may load (by code). */
  modulesDir?: string;
  /** Largest language module file the admin route loads (bytes). Default 256 MiB. */
  maxModuleBytes?: number;
  /** The served fleet a module added through the admin route is published to (see `startModuleSync`). */
  fleet?: ModuleFleet;
  /** Fastify's logger (default off). */
  logger?: boolean;
}
