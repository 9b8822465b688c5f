import { isXltError, XltError } from '@xlt/core';
import type { FastifyBaseLogger, FastifyError, FastifyReply } from 'fastify';

/**
 * The class of an error answer, as `error.code` carries it. Each names what went wrong, so a client
 * can act on it without parsing the message.
 */
export type ServeErrorCode =
  /** The body is not JSON (400). */
  | 'INVALID_JSON'
  /** The body is JSON of the wrong shape: an unknown field, a wrong type, a missing or empty value (400). */
  | 'INVALID_REQUEST'
  /** The body is not `application/json` (415). */
  | 'UNSUPPORTED_MEDIA_TYPE'
  /** `lang` names a language the model has no module for (400). */
  | 'UNKNOWN_LANGUAGE'
  /** The route does not serve this model's head, e.g. `/v1/tag` on a classifier (400). */
  | 'WRONG_TASK'
  /** The body exceeds `--max-body` (413). */
  | 'BODY_TOO_LARGE'
  /** A text exceeds `--max-text` or a request holds more than `--max-items` texts (413). */
  | 'LIMIT_EXCEEDED'
  /** No `Authorization: Bearer` header on an admin route (401). */
  | 'UNAUTHORIZED'
  /** A wrong admin token (403). */
  | 'FORBIDDEN'
  /** No such route, admin is off, or no such language module in the modules directory (404). */
  | 'NOT_FOUND'
  /** The modules directory holds a file for the language, but it is not a valid module (400). */
  | 'INVALID_MODULE'
  /** The queue is full; retry after `Retry-After` seconds (503). */
  | 'OVERLOADED'
  /** The request waited longer than `--timeout-ms` for the model, or its body arrived too slowly (503/408). */
  | 'TIMEOUT'
  /** A module was added on this replica but Redis did not take it to the fleet; retry (503). */
  | 'FLEET_UNAVAILABLE'
  /** The server is draining after SIGTERM (503). */
  | 'SHUTTING_DOWN'
  /** Anything else; the details are in the server log, never in the answer (500). */
  | 'INTERNAL';

/** The one shape of every error answer. */
export interface ErrorBody {
  error: { code: ServeErrorCode; message: string; field: string | null };
}

/** An HTTP error: status, class code, a message that says what was wrong, and the field at fault. */
export class HttpError extends XltError {
  readonly status: number;
  readonly errorCode: ServeErrorCode;
  /** Seconds for a `Retry-After` header (503 answers). */
  readonly retryAfterS: number | undefined;
  constructor(
    status: number,
    errorCode: ServeErrorCode,
    message: string,
    options: { field?: string; retryAfterS?: number } = {},
  ) {
    super('CONFIG', message, options.field !== undefined ? { field: options.field } : {});
    this.status = status;
    this.errorCode = errorCode;
    this.retryAfterS = options.retryAfterS;
  }
}

/** The error body for `code`, `message` and `field`. */
export function errorBody(code: ServeErrorCode, message: string, field?: string | null): ErrorBody {
  return { error: { code, message, field: field ?? null } };
}

interface AjvIssue {
  keyword: string;
  instancePath: string;
  params: Record<string, unknown>;
  message?: string;
}

/** `/texts/1` → `texts[1]`; `/text` → `text`. */
function fieldOfPath(p: string): string {
  return p
    .split('/')
    .filter((s) => s.length > 0)
    .reduce((acc, s) => (/^\d+$/.test(s) ? `${acc}[${s}]` : acc === '' ? s : `${acc}.${s}`), '');
}

/** A schema failure as the field it concerns and a sentence about it. */
function describeValidation(issues: AjvIssue[]): { field: string | null; message: string } {
  const v = issues[0];
  if (v === undefined) return { field: null, message: 'the request body does not match the schema' };
  const at = fieldOfPath(v.instancePath);
  if (v.keyword === 'additionalProperties') {
    const extra = String(v.params.additionalProperty);
    const field = at === '' ? extra : `${at}.${extra}`;
    return { field, message: `unknown field '${field}'` };
  }
  if (v.keyword === 'required') {
    const missing = String(v.params.missingProperty);
    const field = at === '' ? missing : `${at}.${missing}`;
    return { field, message: `missing field '${field}'` };
  }
  if (at === '') return { field: null, message: `the request body ${v.message ?? 'is invalid'}` };
  return { field: at, message: `'${at}' ${v.message ?? 'is invalid'}` };
}

/** Maps any error a route throws to its status and body; unknown errors are logged, not echoed. */
export function sendError(
  err: FastifyError & { validation?: AjvIssue[] },
  reply: FastifyReply,
  log: FastifyBaseLogger,
  bodyLimit: number,
): void {
  let status = 500;
  let code: ServeErrorCode = 'INTERNAL';
  let message = 'internal error (see the server log)';
  let field: string | null = null;
  if (err instanceof HttpError) {
    status = err.status;
    code = err.errorCode;
    message = err.detail;
    field = err.field ?? null;
    if (err.retryAfterS !== undefined) void reply.header('retry-after', String(err.retryAfterS));
  } else if (err.validation !== undefined) {
    status = 400;
    code = 'INVALID_REQUEST';
    ({ field, message } = describeValidation(err.validation));
  } else if (isXltError(err) && ['NOT_FOUND', 'CONFIG', 'SHAPE'].includes(err.code)) {
    // raised by the task code about the request's own data (e.g. a context truncated away)
    status = 400;
    code = 'INVALID_REQUEST';
    message = err.detail;
    field = err.field ?? null;
  } else if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    status = 413;
    code = 'BODY_TOO_LARGE';
    message = `request body exceeds the limit of ${bodyLimit} bytes`;
  } else if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    status = 415;
    code = 'UNSUPPORTED_MEDIA_TYPE';
    message = 'send the body as content-type: application/json';
  } else if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    status = 400;
    code = 'INVALID_JSON';
    message = 'request body is empty; expected a JSON object';
  } else if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err instanceof SyntaxError) {
    status = 400;
    code = 'INVALID_JSON';
    message = 'request body is not valid JSON';
  } else if (err.code === 'FST_ERR_CTP_REQUEST_TIMEOUT' || err.code === 'FST_ERR_REQUEST_TIMEOUT') {
    status = 408;
    code = 'TIMEOUT';
    message = 'the request body arrived too slowly';
  } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    status = err.statusCode;
    code = 'INVALID_REQUEST';
    message = 'the request is not valid HTTP for this route';
  } else {
    log.error({ err }, 'request failed');
  }
  void reply.status(status).send(errorBody(code, message, field));
}
