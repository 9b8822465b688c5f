import { createHash, timingSafeEqual } from 'node:crypto';
import { statSync } from 'node:fs';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { HttpError } from './errors.js';
import type { ModuleFleet } from './fleet.js';
import type { ServedModel } from './model.js';
import { moduleFile } from './module-file.js';

/** Language codes a client may name: letters, digits, `_` and `-`, as module file names use them. */
export const LANGUAGE_CODE_PATTERN = '^[A-Za-z0-9_-]{1,32}$';

/** Compares a presented token with the configured one in time independent of where they differ (and of length). */
export function tokenMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * Checks `Authorization: Bearer <token>` before anything of the request is read: 404 when admin is
 * off, 401 without the header, 403 with a wrong token.
 */
export function checkAdminAuth(req: FastifyRequest, adminToken: string | undefined): void {
  if (adminToken === undefined)
    throw new HttpError(404, 'NOT_FOUND', 'admin endpoints are disabled (no admin token configured)');
  const auth = req.headers.authorization;
  if (auth === undefined || !auth.startsWith('Bearer '))
    throw new HttpError(401, 'UNAUTHORIZED', 'missing Authorization: Bearer <token>', {
      field: 'authorization',
    });
  if (!tokenMatches(auth.slice('Bearer '.length), adminToken))
    throw new HttpError(403, 'FORBIDDEN', 'invalid admin token', { field: 'authorization' });
}

/** Options of the admin routes. */
export interface AdminOptions {
  adminToken: string | undefined;
  /** Folder of `<code>.safetensors` modules; `POST /admin/languages` loads only from here. */
  modulesDir: string | undefined;
  /** Largest module file accepted (bytes). */
  maxModuleBytes: number;
  /** The fleet a module added here is published to (`--sync`); none: this replica only. */
  fleet?: ModuleFleet | undefined;
}

/**
 * `POST /admin/languages {code}`: adds the module `<modulesDir>/<code>.safetensors` at run time and,
 * with a fleet, publishes it to every replica.
 */
export function registerAdmin(app: FastifyInstance, model: ServedModel, options: AdminOptions): void {
  app.post<{ Body: { code: string } }>(
    '/admin/languages',
    {
      // authentication runs at onRequest: before the body is read or parsed
      onRequest: async (req) => checkAdminAuth(req, options.adminToken),
      schema: {
        body: {
          type: 'object',
          required: ['code'],
          properties: { code: { type: 'string', pattern: LANGUAGE_CODE_PATTERN } },
          additionalProperties: false,
        },
      },
    },
    async (req, reply) => {
      const { code } = req.body;
      if (options.modulesDir === undefined)
        throw new HttpError(
          404,
          'NOT_FOUND',
          'no modules directory is configured (start the server with --modules DIR)',
          { field: 'code' },
        );
      const file = moduleFile(options.modulesDir, code);
      if (statSync(file).size > options.maxModuleBytes)
        throw new HttpError(
          400,
          'INVALID_MODULE',
          `language module '${code}' is larger than the limit of ${options.maxModuleBytes} bytes`,
          { field: 'code' },
        );
      try {
        await model.addLanguage(code, file);
      } catch (e) {
        // the reader's message may quote numbers read from the file: log it, answer without it
        req.log.warn({ err: e, code }, 'language module rejected');
        throw new HttpError(
          400,
          'INVALID_MODULE',
          `language module '${code}' is not a valid module for this model (details in the server log)`,
          { field: 'code' },
        );
      }
      if (options.fleet === undefined) return reply.status(201).send({ languages: model.languages });
      let replicas: number;
      try {
        ({ replicas } = await options.fleet.added(code, file));
      } catch (e) {
        req.log.warn({ err: e, code }, 'language module not published to the fleet');
        throw new HttpError(
          503,
          'FLEET_UNAVAILABLE',
          `language module '${code}' was added on this replica but could not be published to the other replicas (Redis did not answer); retry`,
          { field: 'code', retryAfterS: 1 },
        );
      }
      return reply.status(201).send({ languages: model.languages, fleet: { replicas } });
    },
  );
}
