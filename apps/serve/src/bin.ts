#!/usr/bin/env node
import { parseArgs } from 'node:util';
import type { ModuleSync } from './fleet.js';
import { ServedModel } from './model.js';
import { DEFAULT_LIMITS, DEFAULT_MAX_MODULE_BYTES, DEFAULT_TIMEOUTS } from './options.js';
import { createServer } from './server.js';
import { loadTokenizer } from './tokenizer.js';

const HELP = `xlt-serve: serve an xlt / Hugging Face model folder over HTTP (onnxruntime-node)

Usage: xlt-serve --model DIR [--tokenizer PATH] [options]

  --model DIR          folder with config.json + model.safetensors or pytorch_model.bin (sharded or
                       not; any xlt/HF X-Mod or XLM-R head)
  --tokenizer PATH     tokenizer.json or a folder holding one (default: the model folder)
  --modules DIR        language modules to add at start: DIR/<lang>.safetensors; POST /admin/languages
                       {"code"} adds DIR/<code>.safetensors later (only from this folder)
  --sync redis://HOST:PORT  keep the language modules the same on every replica started with this Redis:
                       a module added here is published; one added on another replica is loaded from
                       this replica's --modules DIR by its code once the file there has the same
                       SHA-256 (usually within a second; at most --sync-interval-ms after the file is
                       there, plus the time to rebuild the graph). Needs --modules
  --sync-interval-ms N how often the fleet's module set is read again (default 5000)
  --host HOST          default 127.0.0.1
  --port N             default 8080
  --threads N          onnxruntime intra-op threads (default: all cores)
  --quantize int8      run the weight MatMuls in int8 (quantized at load; default float32)
  --cache-dir DIR      keep the optimised graph (with a copy of the weights) in DIR: a restart with the
                       same model, modules and settings loads it without export or optimisation (base
                       size: ~1 s instead of ~20). Default: no cache. Also XLT_SERVE_CACHE_DIR
  --cache-entries N    graphs kept in --cache-dir, least recently used deleted first (default 4)
  --max-batch N        most examples per model call (default 16)
  --max-wait-ms N      batching window (default 5)
Limits (a request over one gets 413, or 503 OVERLOADED for the queue):
  --max-text N         longest text in characters (default ${DEFAULT_LIMITS.textChars})
  --max-body N         largest body in bytes (default ${DEFAULT_LIMITS.bodyBytes})
  --max-items N        most texts per request (default ${DEFAULT_LIMITS.batchItems})
  --max-queue N        most examples admitted at once, over all requests (default ${DEFAULT_LIMITS.queueItems})
  --max-module-bytes N largest module file the admin route loads (default ${DEFAULT_MAX_MODULE_BYTES})
Timeouts (ms):
  --timeout-ms N       a request waiting longer for the model gets 503 TIMEOUT (default ${DEFAULT_TIMEOUTS.modelWaitMs})
  --headers-timeout-ms N   request headers must arrive within this (default ${DEFAULT_TIMEOUTS.headersMs})
  --request-timeout-ms N   the whole request must arrive within this (default ${DEFAULT_TIMEOUTS.requestMs})
  --keep-alive-timeout-ms N  idle keep-alive connections close after this (default ${DEFAULT_TIMEOUTS.keepAliveMs})
  --connection-timeout-ms N  silent sockets close after this (default ${DEFAULT_TIMEOUTS.connectionMs})
  --shutdown-timeout-ms N    SIGTERM drains in-flight requests this long, then closes all (default ${DEFAULT_TIMEOUTS.shutdownMs})
  The admin token for POST /admin/languages is read from XLT_ADMIN_TOKEN (admin is off without it).
  Exit status: 0 after a shutdown, 2 on a usage error, 1 on any other failure.

Example:
  XLT_ADMIN_TOKEN=s3cret xlt-serve --model runs/ner/model --port 8080
  curl -s localhost:8080/v1/tag -H 'content-type: application/json' -d '{"text":"Anna lebt in Berlin","lang":"de_DE"}'
`;

/** A usage error: the message and the hint to run --help, exit status 2 (as `xlt` does). */
function usage(message: string): never {
  process.stderr.write(`xlt-serve: ${message}\nRun xlt-serve --help for the options.\n`);
  process.exit(2);
}

const OPTIONS = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  modules: { type: 'string' },
  sync: { type: 'string' },
  'sync-interval-ms': { type: 'string', default: '5000' },
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8080' },
  threads: { type: 'string' },
  quantize: { type: 'string' },
  'cache-dir': { type: 'string' },
  'cache-entries': { type: 'string', default: '4' },
  'max-batch': { type: 'string', default: '16' },
  'max-wait-ms': { type: 'string', default: '5' },
  'max-text': { type: 'string', default: String(DEFAULT_LIMITS.textChars) },
  'max-body': { type: 'string', default: String(DEFAULT_LIMITS.bodyBytes) },
  'max-items': { type: 'string', default: String(DEFAULT_LIMITS.batchItems) },
  'max-queue': { type: 'string', default: String(DEFAULT_LIMITS.queueItems) },
  'max-module-bytes': { type: 'string', default: String(DEFAULT_MAX_MODULE_BYTES) },
  'timeout-ms': { type: 'string', default: String(DEFAULT_TIMEOUTS.modelWaitMs) },
  'headers-timeout-ms': { type: 'string', default: String(DEFAULT_TIMEOUTS.headersMs) },
  'request-timeout-ms': { type: 'string', default: String(DEFAULT_TIMEOUTS.requestMs) },
  'keep-alive-timeout-ms': { type: 'string', default: String(DEFAULT_TIMEOUTS.keepAliveMs) },
  'connection-timeout-ms': { type: 'string', default: String(DEFAULT_TIMEOUTS.connectionMs) },
  'shutdown-timeout-ms': { type: 'string', default: String(DEFAULT_TIMEOUTS.shutdownMs) },
  help: { type: 'boolean', short: 'h' },
} as const;

function parseCli() {
  try {
    return parseArgs({ options: OPTIONS, allowPositionals: false }).values;
  } catch (e) {
    return usage((e as Error).message);
  }
}

async function main(): Promise<void> {
  const values = parseCli();
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const modelDir = values.model ?? usage('--model DIR is required');
  // every number is checked before the (slow) model load
  const int = (name: keyof typeof OPTIONS, min = 0): number => {
    const v = values[name];
    const n = Number(v);
    if (typeof v !== 'string' || v.trim() === '' || !Number.isInteger(n) || n < min)
      usage(`--${name} must be an integer of at least ${min}, got '${String(v)}'`);
    return n;
  };
  const port = int('port');
  const threads = values.threads !== undefined ? int('threads', 1) : undefined;
  if (values.quantize !== undefined && values.quantize !== 'int8')
    usage(`--quantize must be int8, got '${values.quantize}'`);
  const quantize = values.quantize === 'int8' ? ('int8' as const) : undefined;
  const cacheDir = values['cache-dir'] ?? (process.env.XLT_SERVE_CACHE_DIR || undefined);
  const cacheEntries = int('cache-entries', 1);
  const syncIntervalMs = int('sync-interval-ms', 100);
  if (values.sync !== undefined && !/^rediss?:\/\/.+/.test(values.sync))
    usage('--sync must be a redis:// or rediss:// URL (redis://host:port)');
  if (values.sync !== undefined && values.modules === undefined)
    usage('--sync needs --modules DIR (replicas load published modules from there)');
  const serveOptions = {
    maxBatchSize: int('max-batch', 1),
    maxWaitMs: int('max-wait-ms'),
    limits: {
      textChars: int('max-text', 1),
      bodyBytes: int('max-body', 1),
      batchItems: int('max-items', 1),
      queueItems: int('max-queue', 1),
    },
    timeouts: {
      modelWaitMs: int('timeout-ms', 1),
      headersMs: int('headers-timeout-ms', 1),
      requestMs: int('request-timeout-ms', 1),
      keepAliveMs: int('keep-alive-timeout-ms', 1),
      connectionMs: int('connection-timeout-ms', 1),
      shutdownMs: int('shutdown-timeout-ms', 1),
    },
    maxModuleBytes: int('max-module-bytes', 1),
    ...(values.modules !== undefined ? { modulesDir: values.modules } : {}),
    ...(process.env.XLT_ADMIN_TOKEN ? { adminToken: process.env.XLT_ADMIN_TOKEN } : {}),
  };
  const model = await ServedModel.load(modelDir, {
    ...(values.modules !== undefined ? { modulesDir: values.modules } : {}),
    ...(threads !== undefined ? { threads } : {}),
    ...(quantize !== undefined ? { quantize } : {}),
    ...(cacheDir !== undefined ? { cacheDir, cacheEntries } : {}),
  });
  const tokenizer = await loadTokenizer(values.tokenizer ?? modelDir);
  let sync: ModuleSync | undefined;
  if (values.sync !== undefined) {
    // loaded only here: Redis clients cost a serve without --sync nothing at start
    const { redactUrl } = await import('@xlt/jobs');
    const { startModuleSync } = await import('./fleet.js');
    sync = await startModuleSync({
      url: values.sync,
      model,
      modulesDir: values.modules as string,
      maxModuleBytes: serveOptions.maxModuleBytes,
      intervalMs: syncIntervalMs,
      log: (_level, message) => process.stderr.write(`[xlt-serve] ${message}\n`),
    });
    process.stderr.write(
      `[xlt-serve] fleet: language modules kept in sync through ${redactUrl(values.sync)} (every ${syncIntervalMs} ms at most)\n`,
    );
  }
  const server = await createServer({
    model,
    tokenizer,
    ...serveOptions,
    ...(sync !== undefined ? { fleet: sync } : {}),
  });
  const address = await server.app.listen({ host: values.host, port, backlog: 4096 });
  process.stderr.write(
    `[xlt-serve] ${model.head} model${quantize ? ' (int8)' : ''}${model.sessionFromCache === undefined ? '' : model.sessionFromCache ? ' (graph from the cache)' : ' (graph built and cached)'}, ready in ${process.uptime().toFixed(1)} s, languages: ${model.languages.join(', ') || '(none)'}; listening on ${address}\n`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const deadline = serveOptions.timeouts.shutdownMs;
    process.stderr.write(`[xlt-serve] ${signal}: finishing in-flight requests (at most ${deadline} ms)\n`);
    // the backstop: whatever hangs, the process ends
    setTimeout(() => {
      process.stderr.write('[xlt-serve] shutdown did not finish: exiting\n');
      process.exit(1);
    }, deadline + 5000).unref();
    void sync?.close().catch(() => undefined);
    server.shutdown().then(
      ({ forced }) => {
        if (forced) process.stderr.write('[xlt-serve] deadline reached: closed the connections left\n');
        process.exit(0);
      },
      (e: unknown) => {
        process.stderr.write(`[xlt-serve] shutdown failed: ${String(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e: unknown) => {
  process.stderr.write(`xlt-serve: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
