import { XltConfigError } from '@xlt/core';
import { redactUrl } from '@xlt/jobs';
import {
  createServer,
  DEFAULT_LIMITS,
  DEFAULT_MAX_MODULE_BYTES,
  DEFAULT_TIMEOUTS,
  loadTokenizer,
  type ModuleSync,
  ServedModel,
  type ServeOptions,
  startModuleSync,
} from '@xlt/serve';
import { z } from 'zod';
import type { Command } from '../cli/main.js';

const positive = (d: number) => z.number().int().positive().default(d);

const serveSchema = z.strictObject({
  model: z.string(),
  tokenizer: z.string().optional(),
  modules: z.string().optional(),
  /** The fleet's Redis: language modules added on any replica reach this one (needs modules). */
  sync: z
    .string()
    .regex(/^rediss?:\/\/.+/, 'expected redis://host:port')
    .optional(),
  syncIntervalMs: z.number().int().min(100).default(5000),
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8080),
  threads: z.number().int().positive().optional(),
  quantize: z.enum(['int8']).optional(),
  cacheDir: z.string().optional(),
  cacheEntries: z.number().int().positive().default(4),
  maxBatch: positive(16),
  maxWaitMs: z.number().int().nonnegative().default(5),
  maxText: positive(DEFAULT_LIMITS.textChars),
  maxBody: positive(DEFAULT_LIMITS.bodyBytes),
  maxItems: positive(DEFAULT_LIMITS.batchItems),
  maxQueue: positive(DEFAULT_LIMITS.queueItems),
  maxModuleBytes: positive(DEFAULT_MAX_MODULE_BYTES),
  timeoutMs: positive(DEFAULT_TIMEOUTS.modelWaitMs),
  headersTimeoutMs: positive(DEFAULT_TIMEOUTS.headersMs),
  requestTimeoutMs: positive(DEFAULT_TIMEOUTS.requestMs),
  keepAliveTimeoutMs: positive(DEFAULT_TIMEOUTS.keepAliveMs),
  connectionTimeoutMs: positive(DEFAULT_TIMEOUTS.connectionMs),
  shutdownTimeoutMs: positive(DEFAULT_TIMEOUTS.shutdownMs),
  adminTokenEnv: z.string().default('XLT_ADMIN_TOKEN'),
});

/** The server options `xlt serve` passes for a validated config (the same limits as `xlt-serve`'s flags). */
export function serveOptionsOf(
  cfg: z.infer<typeof serveSchema>,
  env: NodeJS.ProcessEnv = process.env,
): Omit<ServeOptions, 'model' | 'tokenizer'> {
  const token = env[cfg.adminTokenEnv];
  return {
    maxBatchSize: cfg.maxBatch,
    maxWaitMs: cfg.maxWaitMs,
    limits: {
      textChars: cfg.maxText,
      bodyBytes: cfg.maxBody,
      batchItems: cfg.maxItems,
      queueItems: cfg.maxQueue,
    },
    timeouts: {
      modelWaitMs: cfg.timeoutMs,
      headersMs: cfg.headersTimeoutMs,
      requestMs: cfg.requestTimeoutMs,
      keepAliveMs: cfg.keepAliveTimeoutMs,
      connectionMs: cfg.connectionTimeoutMs,
      shutdownMs: cfg.shutdownTimeoutMs,
    },
    maxModuleBytes: cfg.maxModuleBytes,
    ...(cfg.modules !== undefined ? { modulesDir: cfg.modules } : {}),
    ...(token ? { adminToken: token } : {}),
  };
}

export const serveCommand: Command<typeof serveSchema> = {
  name: 'serve',
  summary: 'Serve a model folder over HTTP on onnxruntime (classify / tag / QA / fill-mask)',
  help: `Options:
  --model DIR        config.json + model.safetensors or pytorch_model.bin (any head); exported to ONNX at start
  --tokenizer PATH   tokenizer.json or its folder (default: the model folder)
  --modules DIR      language modules to add at start: DIR/<lang>.safetensors; POST /admin/languages {"code"}
                     adds DIR/<code>.safetensors later (only from this folder)
  --sync redis://HOST:PORT  keep the modules the same on every replica started with this Redis: one
                     added on any replica is loaded here from DIR by its code once the file has the
                     same SHA-256 (usually within a second; at most --sync-interval-ms 5000 after the
                     file is there, plus the graph rebuild). Needs --modules
  --host 127.0.0.1 --port 8080 --threads N --max-batch 16 --max-wait-ms 5
  --quantize int8    run the weight MatMuls in int8 (quantized at load; default float32)
  --cache-dir DIR    keep the optimised graph (with a copy of the weights) in DIR: a restart with the same
                     model, modules and settings loads it without export or optimisation (base size: ~1 s
                     instead of ~20); --cache-entries 4 graphs kept, least recently used deleted first
  Limits: --max-text ${DEFAULT_LIMITS.textChars} (characters) --max-body ${DEFAULT_LIMITS.bodyBytes} (bytes) --max-items ${DEFAULT_LIMITS.batchItems}
    --max-queue ${DEFAULT_LIMITS.queueItems} (examples admitted at once; beyond: 503 + Retry-After) --max-module-bytes ${DEFAULT_MAX_MODULE_BYTES}
  Timeouts (ms): --timeout-ms ${DEFAULT_TIMEOUTS.modelWaitMs} (waiting for the model) --headers-timeout-ms ${DEFAULT_TIMEOUTS.headersMs}
    --request-timeout-ms ${DEFAULT_TIMEOUTS.requestMs} --keep-alive-timeout-ms ${DEFAULT_TIMEOUTS.keepAliveMs} --connection-timeout-ms ${DEFAULT_TIMEOUTS.connectionMs}
    --shutdown-timeout-ms ${DEFAULT_TIMEOUTS.shutdownMs} (SIGTERM drains this long, then closes every connection)
  The admin token (POST /admin/languages) is read from $XLT_ADMIN_TOKEN.

Example:
  xlt serve --model runs/finetune/model --port 8080 --max-queue 256
  xlt serve --model /shared/model --modules /shared/modules --sync redis://10.0.0.2:6379`,
  schema: serveSchema,
  runDir: false,
  async run(cfg, ctx) {
    const options = serveOptionsOf(cfg);
    if (cfg.sync !== undefined && cfg.modules === undefined)
      throw new XltConfigError('sync: needs modules (replicas load published modules from there)', {
        field: 'modules',
      });
    const model = await ServedModel.load(cfg.model, {
      ...(cfg.modules !== undefined ? { modulesDir: cfg.modules } : {}),
      ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
      ...(cfg.quantize !== undefined ? { quantize: cfg.quantize } : {}),
      ...(cfg.cacheDir !== undefined ? { cacheDir: cfg.cacheDir, cacheEntries: cfg.cacheEntries } : {}),
    });
    if (model.sessionFromCache !== undefined)
      ctx.log(model.sessionFromCache ? 'graph loaded from the cache' : 'graph built and cached');
    let sync: ModuleSync | undefined;
    if (cfg.sync !== undefined) {
      sync = await startModuleSync({
        url: cfg.sync,
        model,
        modulesDir: cfg.modules as string,
        maxModuleBytes: cfg.maxModuleBytes,
        intervalMs: cfg.syncIntervalMs,
        log: (_level, message) => ctx.log(message),
      });
      ctx.log(`fleet: language modules kept in sync through ${redactUrl(cfg.sync)}`);
    }
    const server = await createServer({
      model,
      tokenizer: await loadTokenizer(cfg.tokenizer ?? cfg.model),
      ...options,
      ...(sync !== undefined ? { fleet: sync } : {}),
    });
    const address = await server.app.listen({ host: cfg.host, port: cfg.port, backlog: 4096 });
    ctx.log(
      `serving a ${model.head} model (languages: ${model.languages.join(', ') || 'none'}) on ${address}`,
    );
    await new Promise<void>((resolve) => {
      const stop = () => {
        ctx.log(`shutting down: finishing in-flight requests (at most ${cfg.shutdownTimeoutMs} ms)`);
        void sync?.close().catch(() => undefined);
        void server.shutdown().then(({ forced }) => {
          if (forced) ctx.log('deadline reached: closed the connections left');
          resolve();
        }, resolve);
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    });
  },
};
