import { XltConfigError, XltError } from '@xlt/core';

/** Where and how to reach an OpenAI-compatible chat-completions endpoint. */
export interface ChatEndpoint {
  /** e.g. `http://127.0.0.1:8000/v1` (the client appends `/chat/completions`). */
  baseUrl: string;
  model: string;
  apiKey?: string;
  temperature?: number;
  /** Per-attempt timeout in ms (default 60,000). */
  timeoutMs?: number;
  /** Retries after the first attempt for timeouts, network errors, 429, 5xx and unparsable replies (default 4). */
  maxRetries?: number;
  /** First backoff in ms, doubled each retry, with jitter (default 500). */
  backoffMs?: number;
  /** USD per 1,000 prompt and completion tokens, for the cost counter. */
  pricePer1kPrompt?: number;
  pricePer1kCompletion?: number;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** Counters a client keeps across calls. */
export interface ChatCounters {
  requests: number;
  retries: number;
  failures: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
}

/** A failed call after all retries (or a non-retryable HTTP status). */
export class ChatError extends XltError {
  readonly status?: number;
  constructor(message: string, status?: number, cause?: unknown) {
    super('IO', message, cause !== undefined ? { cause } : {});
    if (status !== undefined) this.status = status;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small OpenAI-compatible chat client with timeouts, retries with backoff and usage counters. */
export class ChatClient {
  readonly endpoint: Required<Pick<ChatEndpoint, 'timeoutMs' | 'maxRetries' | 'backoffMs'>> & ChatEndpoint;
  readonly counters: ChatCounters = {
    requests: 0,
    retries: 0,
    failures: 0,
    promptTokens: 0,
    completionTokens: 0,
    costUsd: 0,
  };
  private readonly random: () => number;

  constructor(endpoint: ChatEndpoint, random: () => number = Math.random) {
    if (!/^https?:\/\//.test(endpoint.baseUrl))
      throw new XltConfigError(`baseUrl must start with http:// or https://, got '${endpoint.baseUrl}'`, {
        field: 'baseUrl',
      });
    if (!endpoint.model) throw new XltConfigError('model is required', { field: 'model' });
    this.endpoint = { timeoutMs: 60_000, maxRetries: 4, backoffMs: 500, ...endpoint };
    this.random = random;
  }

  /** Sends one chat request and returns the assistant's text. */
  async complete(messages: ChatMessage[]): Promise<string> {
    const e = this.endpoint;
    const url = `${e.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    let lastError: unknown;
    for (let attempt = 0; attempt <= e.maxRetries; attempt++) {
      if (attempt > 0) {
        this.counters.retries++;
        await sleep(e.backoffMs * 2 ** (attempt - 1) * (0.5 + this.random()));
      }
      this.counters.requests++;
      const ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort(), e.timeoutMs);
      try {
        const res = await fetch(url, {
          method: 'POST',
          signal: ctrl.signal,
          headers: {
            'content-type': 'application/json',
            ...(e.apiKey ? { authorization: `Bearer ${e.apiKey}` } : {}),
          },
          body: JSON.stringify({ model: e.model, messages, temperature: e.temperature ?? 0 }),
        });
        const text = await res.text();
        if (res.status === 429 || res.status >= 500) {
          lastError = new ChatError(`HTTP ${res.status}: ${text.slice(0, 200)}`, res.status);
          continue;
        }
        if (!res.ok) {
          this.counters.failures++;
          throw new ChatError(`HTTP ${res.status} (not retried): ${text.slice(0, 200)}`, res.status);
        }
        let body: {
          choices?: Array<{ message?: { content?: unknown } }>;
          usage?: { prompt_tokens?: number; completion_tokens?: number };
        };
        try {
          body = JSON.parse(text);
        } catch (cause) {
          lastError = new ChatError(`reply is not JSON: ${text.slice(0, 100)}`, res.status, cause);
          continue;
        }
        const content = body.choices?.[0]?.message?.content;
        if (typeof content !== 'string') {
          lastError = new ChatError('reply has no choices[0].message.content string', res.status);
          continue;
        }
        const pt = body.usage?.prompt_tokens ?? 0;
        const ct = body.usage?.completion_tokens ?? 0;
        this.counters.promptTokens += pt;
        this.counters.completionTokens += ct;
        this.counters.costUsd +=
          (pt / 1000) * (e.pricePer1kPrompt ?? 0) + (ct / 1000) * (e.pricePer1kCompletion ?? 0);
        return content;
      } catch (err) {
        if (err instanceof ChatError) throw err;
        lastError = ctrl.signal.aborted
          ? new ChatError(`timed out after ${e.timeoutMs} ms`, undefined, err)
          : err;
      } finally {
        clearTimeout(timer);
      }
    }
    this.counters.failures++;
    throw lastError instanceof ChatError
      ? lastError
      : new ChatError(
          `request failed: ${String((lastError as Error)?.message ?? lastError)}`,
          undefined,
          lastError,
        );
  }
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  if (!(limit >= 1)) throw new XltConfigError('concurrency must be at least 1', { field: 'concurrency' });
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
