#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { ServedModel } from './model.js';
import { createServer } from './server.js';
import { loadTokenizer } from './tokenizer.js';

const HELP = `xlt-serve: serve an xlt / Hugging Face model folder over HTTP (onnxruntime-node)

Usage: xlt-serve --model DIR [--tokenizer PATH] [options]

  --model DIR          folder with config.json + model.safetensors or pytorch_model.bin (sharded or
                       not; any xlt/HF X-Mod or XLM-R head)
  --tokenizer PATH     tokenizer.json or a folder holding one (default: the model folder)
  --modules DIR        language modules to add at start: DIR/<lang>.safetensors; POST /admin/languages
                       {"code"} adds DIR/<code>.safetensors later (only from this folder)
  --max-module-bytes N largest module file the admin route loads (default 268435456)
  --host HOST          default 127.0.0.1
  --port N             default 8080
  --threads N          onnxruntime intra-op threads (default: all cores)
  --max-batch N        most examples per model call (default 16)
  --max-wait-ms N      batching window (default 5)
  --timeout-ms N       per-request limit while waiting for the model (default 30000)
  --max-text N         longest text in characters (default 20000)
  --max-body N         largest body in bytes (default 1048576)
  --max-items N        most texts per request (default 64)
  The admin token for POST /admin/languages is read from XLT_ADMIN_TOKEN (admin is off without it).

Example:
  XLT_ADMIN_TOKEN=s3cret xlt-serve --model runs/ner/model --port 8080
  curl -s localhost:8080/v1/tag -H 'content-type: application/json' -d '{"text":"Anna lebt in Berlin","lang":"de_DE"}'
`;

/** A usage error: the message and the hint to run --help, exit status 2 (as `xlt` does). */
function usage(message: string): never {
  process.stderr.write(`xlt-serve: ${message}\nRun xlt-serve --help for the options.\n`);
  process.exit(2);
}

function parseCli() {
  try {
    return parseArgs({ options: OPTIONS, allowPositionals: false });
  } catch (e) {
    return usage((e as Error).message);
  }
}

const OPTIONS = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  modules: { type: 'string' },
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '8080' },
  threads: { type: 'string' },
  'max-batch': { type: 'string', default: '16' },
  'max-wait-ms': { type: 'string', default: '5' },
  'timeout-ms': { type: 'string', default: '30000' },
  'max-text': { type: 'string', default: '20000' },
  'max-body': { type: 'string', default: '1048576' },
  'max-items': { type: 'string', default: '64' },
  'max-module-bytes': { type: 'string', default: String(256 * 2 ** 20) },
  help: { type: 'boolean', short: 'h' },
} as const;

async function main(): Promise<void> {
  const { values } = parseCli();
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (values.model === undefined) usage('--model DIR is required');
  const int = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || v.trim() === '' || !Number.isInteger(n) || n < 0)
      usage(`--${name} must be a non-negative integer, got '${v}'`);
    return n;
  };
  const model = await ServedModel.load(values.model, {
    ...(values.modules !== undefined ? { modulesDir: values.modules } : {}),
    ...(values.threads !== undefined ? { threads: int('threads', values.threads) } : {}),
  });
  const tokenizer = await loadTokenizer(values.tokenizer ?? values.model);
  const server = await createServer({
    model,
    tokenizer,
    maxBatchSize: int('max-batch', values['max-batch']),
    maxWaitMs: int('max-wait-ms', values['max-wait-ms']),
    requestTimeoutMs: int('timeout-ms', values['timeout-ms']),
    limits: {
      textChars: int('max-text', values['max-text']),
      bodyBytes: int('max-body', values['max-body']),
      batchItems: int('max-items', values['max-items']),
    },
    ...(values.modules !== undefined ? { modulesDir: values.modules } : {}),
    maxModuleBytes: int('max-module-bytes', values['max-module-bytes']),
    ...(process.env.XLT_ADMIN_TOKEN ? { adminToken: process.env.XLT_ADMIN_TOKEN } : {}),
  });
  const address = await server.app.listen({ host: values.host, port: int('port', values.port) });
  process.stderr.write(
    `[xlt-serve] ${model.head} model, languages: ${model.languages.join(', ') || '(none)'}; listening on ${address}\n`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`[xlt-serve] ${signal}: finishing in-flight requests\n`);
    server.shutdown().then(
      () => process.exit(0),
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
