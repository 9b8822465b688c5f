import { detectLanguage } from '@xlt/core';
import type { OnnxOutput } from '@xlt/onnx';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import { LANGUAGE_CODE_PATTERN, registerAdmin } from './admin.js';
import { Admission } from './admission.js';
import { DynamicBatcher } from './batcher.js';
import { encodeBounded } from './bounded-encode.js';
import { errorBody, HttpError, sendError } from './errors.js';
import { boundedHttpServer } from './http-server.js';
import { ServeMetrics } from './metrics.js';
import type { ServedModel } from './model.js';
import {
  DEFAULT_LIMITS,
  DEFAULT_MAX_MODULE_BYTES,
  DEFAULT_TIMEOUTS,
  type ServeLimits,
  type ServeOptions,
  type ServeTimeouts,
} from './options.js';
import { PAGE_HTML } from './page.js';
import { classifyRow, type Encoded, fillRow, padBatch, qaRow, tagRow } from './tasks.js';

interface Item {
  enc: Encoded;
  lang: number | undefined;
}
interface RowOut {
  out: Record<string, OnnxOutput>;
  row: number;
}

const INFERENCE_ROUTES = new Set(['/v1/classify', '/v1/tag', '/v1/qa', '/v1/fill']);

const TASK_ROUTE = {
  'sequence-classification': '/v1/classify',
  'token-classification': '/v1/tag',
  'question-answering': '/v1/qa',
  'masked-lm': '/v1/fill',
  base: '(none)',
  'open-ie': '(none: run extraction through @xlt/oie)',
} as const;

const langSchema = { type: 'string', pattern: LANGUAGE_CODE_PATTERN } as const;
const textSchema = {
  type: 'object',
  properties: {
    text: { type: 'string' },
    texts: { type: 'array', items: { type: 'string' } },
    lang: langSchema,
    topK: { type: 'integer', minimum: 1, maximum: 50 },
  },
  additionalProperties: false,
} as const;
const qaSchema = {
  type: 'object',
  required: ['question', 'context'],
  properties: { question: { type: 'string' }, context: { type: 'string' }, lang: langSchema },
  additionalProperties: false,
} as const;

/** A running server: the Fastify app plus a graceful `shutdown()`. */
export interface XltServer {
  app: FastifyInstance;
  metrics: ServeMetrics;
  /** Examples waiting for a batch. */
  queueLength(): number;
  /** Examples admitted and not yet answered (bounded by `limits.queueItems`). */
  admittedExamples(): number;
  /**
   * Stops accepting requests and answers every accepted one, within `timeouts.shutdownMs`; then
   * closes whatever connections are left and releases the model. Resolves `forced: true` when the
   * deadline was reached.
   */
  shutdown(): Promise<{ forced: boolean }>;
}

/**
 * Builds the inference server: `POST /v1/classify | /v1/tag | /v1/qa | /v1/fill` (whichever the
 * model's head serves), `GET /v1/info`, `/healthz`, `/readyz`, `/metrics`, the page at `/`, and
 * `POST /admin/languages` (bearer token) to add a language module at run time.
 */
export async function createServer(options: ServeOptions): Promise<XltServer> {
  const { model, tokenizer } = options;
  const limits: ServeLimits = { ...DEFAULT_LIMITS, ...options.limits };
  const timeouts: ServeTimeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
  const timeoutMs = timeouts.modelWaitMs;
  const admission = new Admission(limits.queueItems);
  let ready = false;
  let shuttingDown = false;
  let shutdownDone: Promise<{ forced: boolean }> | undefined;

  const batcher = new DynamicBatcher<Item, RowOut>(
    async (items) => {
      const { inputIds, attentionMask } = padBatch(
        items.map((i) => i.enc),
        tokenizer.padTokenId,
      );
      const langs = items.map((i) => i.lang ?? 0);
      const out = await model.run({
        inputIds,
        attentionMask,
        ...(model.languages.length > 0 ? { langIds: langs } : {}),
      });
      return items.map((_, row) => ({ out, row }));
    },
    {
      maxBatchSize: options.maxBatchSize ?? 16,
      maxWaitMs: options.maxWaitMs ?? 5,
      onBatch: (n, s) => {
        metrics.batchSize.observe(n);
        metrics.batchDuration.observe(s);
      },
    },
  );
  const metrics = new ServeMetrics(() => batcher.queueLength, admission);

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: limits.bodyBytes,
    forceCloseConnections: 'idle',
    // every wait a client can make the server do is bounded; a full queue sheds before routing
    serverFactory: (handler) =>
      boundedHttpServer(
        timeouts,
        (req) => {
          if (shuttingDown || req.method !== 'POST' || !admission.full) return undefined;
          const route = (req.url ?? '').split('?')[0] as string;
          if (!INFERENCE_ROUTES.has(route)) return undefined;
          const e = admission.overloaded();
          metrics.requests.inc({ route, status: '503' });
          return { retryAfterS: admission.retryAfterS, message: e.detail };
        },
        handler,
      ),
    // the schemas are the contract: no coercion ("1" stays a string, a string is not an array), unknown
    // fields are errors rather than silently dropped, no defaults filled in
    ajv: {
      customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false },
    },
  });

  app.setErrorHandler((err: FastifyError, req, reply) => sendError(err, reply, req.log, limits.bodyBytes));
  app.setNotFoundHandler((req, reply) =>
    reply.status(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`)),
  );

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    const status = String(reply.statusCode);
    metrics.requests.inc({ route, status });
    metrics.requestDuration.observe({ route, status }, reply.elapsedTime / 1000);
  });

  app.addHook('onRequest', async (_req, reply) => {
    if (shuttingDown) {
      reply.header('connection', 'close');
      await reply.status(503).send(errorBody('SHUTTING_DOWN', 'the server is shutting down'));
    }
  });

  const checkText = (t: string, field: string) => {
    if (t.length === 0) throw new HttpError(400, 'INVALID_REQUEST', `'${field}' is empty`, { field });
    if (t.length > limits.textChars)
      throw new HttpError(
        413,
        'LIMIT_EXCEEDED',
        `'${field}' has ${t.length} characters; the limit is ${limits.textChars}`,
        { field },
      );
  };

  const resolveLang = async (lang: string | undefined, text: string): Promise<number | undefined> => {
    if (model.languages.length === 0) {
      if (lang !== undefined)
        throw new HttpError(400, 'UNKNOWN_LANGUAGE', `this model has no language modules; omit 'lang'`, {
          field: 'lang',
        });
      return undefined;
    }
    const code = lang ?? (await detectLanguage(text, model.languages)) ?? model.defaultLanguage;
    const idx = code !== undefined ? model.languages.indexOf(code) : -1;
    if (idx < 0)
      throw new HttpError(
        400,
        'UNKNOWN_LANGUAGE',
        `unknown language '${lang}'; this model has ${model.languages.join(', ')}`,
        { field: 'lang' },
      );
    return idx;
  };

  const submit = async (item: Item): Promise<RowOut> => {
    let timer: NodeJS.Timeout | undefined;
    const result = batcher.submit(item);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // the example still runs: it keeps its place in the queue bound until it has
        admission.holdUntil(result);
        reject(
          new HttpError(503, 'TIMEOUT', `timed out after ${timeoutMs} ms waiting for the model`, {
            retryAfterS: 1,
          }),
        );
      }, timeoutMs);
    });
    try {
      return await Promise.race([result, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  const requireHead = (head: keyof typeof TASK_ROUTE) => {
    if (model.head !== head) {
      throw new HttpError(
        400,
        'WRONG_TASK',
        `this model is a ${model.head} model: use ${TASK_ROUTE[model.head]}`,
      );
    }
  };

  type TextBody = { text?: string; texts?: string[]; lang?: string; topK?: number };
  const textsOf = (body: TextBody): string[] => {
    const texts = body.texts ?? (body.text !== undefined ? [body.text] : []);
    if (body.text !== undefined && body.texts !== undefined)
      throw new HttpError(400, 'INVALID_REQUEST', "give either 'text' or 'texts', not both", {
        field: 'texts',
      });
    if (texts.length === 0)
      throw new HttpError(400, 'INVALID_REQUEST', "give 'text' or a non-empty 'texts'", { field: 'text' });
    if (texts.length > limits.batchItems)
      throw new HttpError(
        413,
        'LIMIT_EXCEEDED',
        `'texts' has ${texts.length} items; the limit is ${limits.batchItems}`,
        { field: 'texts' },
      );
    for (const [i, t] of texts.entries()) checkText(t, body.texts ? `texts[${i}]` : 'text');
    return texts;
  };

  const encodeAll = async (texts: string[], lang: string | undefined) =>
    Promise.all(
      texts.map(async (t) => {
        // only as much of the text is tokenized as the model can take
        const { enc, truncated } = await encodeBounded(tokenizer, t, model.maxLength);
        return { text: t, enc, truncated, lang: await resolveLang(lang, t) };
      }),
    );

  app.post(
    '/v1/classify',
    { schema: { body: textSchema } },
    async (req: FastifyRequest<{ Body: TextBody }>) => {
      requireHead('sequence-classification');
      const texts = textsOf(req.body);
      return admission.run(texts.length, async () => {
        const items = await encodeAll(texts, req.body.lang);
        const outs = await Promise.all(items.map((i) => submit({ enc: i.enc, lang: i.lang })));
        const results = outs.map((o, k) => ({
          ...classifyRow(o.out.logits as OnnxOutput, o.row, model.id2label),
          truncated: items[k]?.truncated ?? false,
          lang: langCode(items[k]?.lang),
        }));
        return req.body.texts ? { results } : results[0];
      });
    },
  );

  app.post('/v1/tag', { schema: { body: textSchema } }, async (req: FastifyRequest<{ Body: TextBody }>) => {
    requireHead('token-classification');
    const texts = textsOf(req.body);
    return admission.run(texts.length, async () => {
      const items = await encodeAll(texts, req.body.lang);
      const outs = await Promise.all(items.map((i) => submit({ enc: i.enc, lang: i.lang })));
      const results = outs.map((o, k) => {
        const it = items[k] as (typeof items)[number];
        return {
          words: tagRow(o.out.logits as OnnxOutput, o.row, it.enc, it.text, model.id2label),
          truncated: it.truncated,
          lang: langCode(it.lang),
        };
      });
      return req.body.texts ? { results } : results[0];
    });
  });

  app.post(
    '/v1/qa',
    { schema: { body: qaSchema } },
    async (req: FastifyRequest<{ Body: { question: string; context: string; lang?: string } }>) => {
      requireHead('question-answering');
      const { question, context, lang } = req.body;
      checkText(question, 'question');
      checkText(context, 'context');
      return admission.run(1, async () => {
        const { enc } = await encodeBounded(tokenizer, context, model.maxLength, question);
        const l = await resolveLang(lang, context);
        const o = await submit({ enc, lang: l });
        return {
          ...qaRow(o.out.start_logits as OnnxOutput, o.out.end_logits as OnnxOutput, o.row, enc, context),
          lang: langCode(l),
        };
      });
    },
  );

  app.post('/v1/fill', { schema: { body: textSchema } }, async (req: FastifyRequest<{ Body: TextBody }>) => {
    requireHead('masked-lm');
    const texts = textsOf(req.body);
    return admission.run(texts.length, async () => {
      const items = await encodeAll(texts, req.body.lang);
      items.forEach((it, i) => {
        if (!it.enc.ids.includes(tokenizer.maskTokenId)) {
          throw new HttpError(
            400,
            'INVALID_REQUEST',
            `text ${i} has no ${tokenizer.idToToken(tokenizer.maskTokenId)} token to fill`,
            { field: req.body.texts ? `texts[${i}]` : 'text' },
          );
        }
      });
      const outs = await Promise.all(items.map((i) => submit({ enc: i.enc, lang: i.lang })));
      const results = outs.map((o, k) => {
        const it = items[k] as (typeof items)[number];
        return {
          masks: fillRow(
            o.out.logits as OnnxOutput,
            o.row,
            it.enc,
            tokenizer.maskTokenId,
            req.body.topK ?? 5,
            tokenizer,
          ),
          lang: langCode(it.lang),
        };
      });
      return req.body.texts ? { results } : results[0];
    });
  });

  const langCode = (i: number | undefined) => (i === undefined ? null : (model.languages[i] ?? null));

  app.get('/v1/info', async () => ({
    head: model.head,
    languages: model.languages,
    defaultLanguage: model.defaultLanguage ?? null,
    labels: model.id2label,
    maskToken: tokenizer.idToToken(tokenizer.maskTokenId) ?? '<mask>',
    route: TASK_ROUTE[model.head],
    limits,
    timeouts,
  }));

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply: FastifyReply) => {
    if (!ready || shuttingDown)
      return reply.status(503).send({ status: shuttingDown ? 'shutting down' : 'starting' });
    return { status: 'ready', queue: batcher.queueLength };
  });
  app.get('/metrics', async (_req, reply) => {
    void reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').send(PAGE_HTML));

  registerAdmin(app, model, {
    adminToken: options.adminToken,
    modulesDir: options.modulesDir,
    maxModuleBytes: options.maxModuleBytes ?? DEFAULT_MAX_MODULE_BYTES,
    fleet: options.fleet,
  });

  await app.ready();
  ready = true;

  return {
    app,
    metrics,
    queueLength: () => batcher.queueLength,
    admittedExamples: () => admission.load,
    shutdown() {
      if (shutdownDone === undefined) {
        shuttingDown = true;
        shutdownDone = drainWithin(app, batcher, model, timeouts.shutdownMs);
      }
      return shutdownDone;
    },
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

/**
 * Stops listening, runs what is queued at once and answers every accepted request; past `deadlineMs`
 * closes every connection still open (slow or stuck clients) and gives the model run 1 s more. Then
 * releases the model. Never waits longer than `deadlineMs` + about 2 s.
 */
async function drainWithin(
  app: FastifyInstance,
  batcher: DynamicBatcher<Item, RowOut>,
  model: ServedModel,
  deadlineMs: number,
): Promise<{ forced: boolean }> {
  const graceful = Promise.all([app.close(), batcher.drain()]).then(() => true);
  let forced = !(await Promise.race([graceful, sleep(deadlineMs).then(() => false)]));
  if (forced) {
    app.server.closeAllConnections();
    await Promise.race([graceful, sleep(1000)]);
  }
  await Promise.race([model.close(), sleep(1000).then(() => (forced = true))]);
  return { forced };
}
