import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { errorBody } from './errors.js';
import type { ServeTimeouts } from './options.js';

/** Decides, from the method and URL alone, whether a request is shed before Fastify sees it. */
export type ShedCheck = (req: IncomingMessage) => { retryAfterS: number; message: string } | undefined;

/**
 * The HTTP server under Fastify, with every client wait bounded (headers, whole request, keep-alive,
 * idle socket; Node checks them every quarter of the headers timeout, at most every second, instead
 * of its default 30 s) and a cheap shedding path: when `shed` says so, the request is answered 503
 * at once, without routing, body reading or parsing, so an overloaded server spends little per
 * request it refuses.
 */
export function boundedHttpServer(
  timeouts: ServeTimeouts,
  shed: ShedCheck,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Server {
  const server = createServer(
    {
      headersTimeout: Math.min(timeouts.headersMs, timeouts.requestMs),
      requestTimeout: timeouts.requestMs,
      keepAliveTimeout: timeouts.keepAliveMs,
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(timeouts.headersMs / 4))),
    },
    (req, res) => {
      const refuse = shed(req);
      if (refuse === undefined) {
        handler(req, res);
        return;
      }
      const body = JSON.stringify(errorBody('OVERLOADED', refuse.message));
      res.writeHead(503, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        'retry-after': String(refuse.retryAfterS),
        // the body is not read: the connection cannot carry another request
        connection: 'close',
      });
      res.end(body);
    },
  );
  server.setTimeout(timeouts.connectionMs);
  return server;
}
