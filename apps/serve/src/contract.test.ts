import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenMatches } from './admin.js';
import { ServedModel } from './model.js';
import { createServer, type XltServer } from './server.js';
import { whitespaceTokenizer, writeTinyModel } from './testing.js';

const root = mkdtempSync(path.join(tmpdir(), 'xlt-serve-contract-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let s: XltServer;
const modulesDir = path.join(root, 'modules');
const secretFile = path.join(root, 'secret.txt');
beforeAll(async () => {
  const dir = path.join(root, 'model');
  await writeTinyModel(dir, 'sequence-classification');
  mkdirSync(modulesDir);
  // the first 8 bytes read as a little-endian u64 are 5927657758094544724 ("TOP-SECR")
  writeFileSync(secretFile, 'TOP-SECRET: the launch code is 0000\n'.repeat(4));
  writeFileSync(path.join(modulesDir, 'junk.safetensors'), 'TOP-SECRET: the launch code is 0000\n');
  symlinkSync(secretFile, path.join(modulesDir, 'linked.safetensors'));
  mkdirSync(path.join(modulesDir, 'dir.safetensors'));
  const model = await ServedModel.load(dir, { threads: 1 });
  s = await createServer({
    model,
    tokenizer: whitespaceTokenizer(),
    maxWaitMs: 2,
    adminToken: 'secret',
    modulesDir,
  });
});
afterAll(() => s.shutdown());

const post = (url: string, payload: string, headers: Record<string, string> = {}) =>
  s.app.inject({ method: 'POST', url, headers: { 'content-type': 'application/json', ...headers }, payload });

describe('the request contract', () => {
  // each malformed class once: [body, status, code, field]
  const cases: Array<[string, string, number, string, string | null]> = [
    ['unknown field', '{"text":"x","bogus":1}', 400, 'INVALID_REQUEST', 'bogus'],
    ['text as a number', '{"text":1}', 400, 'INVALID_REQUEST', 'text'],
    ['text as an array', '{"text":["a"]}', 400, 'INVALID_REQUEST', 'text'],
    ['text as null', '{"text":null}', 400, 'INVALID_REQUEST', 'text'],
    ['texts as a string', '{"texts":"a b"}', 400, 'INVALID_REQUEST', 'texts'],
    ['texts holding a number', '{"texts":["a",2]}', 400, 'INVALID_REQUEST', 'texts[1]'],
    ['lang as a number', '{"text":"a","lang":7}', 400, 'INVALID_REQUEST', 'lang'],
    ['lang with a path in it', '{"text":"a","lang":"../x"}', 400, 'INVALID_REQUEST', 'lang'],
    ['topK as a string', '{"text":"a","topK":"3"}', 400, 'INVALID_REQUEST', 'topK'],
    ['a JSON array', '["a"]', 400, 'INVALID_REQUEST', null],
    ['a JSON string', '"a"', 400, 'INVALID_REQUEST', null],
    ['JSON null', 'null', 400, 'INVALID_REQUEST', null],
    ['not JSON', '{"text": ', 400, 'INVALID_JSON', null],
    ['empty body', '', 400, 'INVALID_JSON', null],
    ['neither text nor texts', '{}', 400, 'INVALID_REQUEST', 'text'],
    ['both text and texts', '{"text":"a","texts":["b"]}', 400, 'INVALID_REQUEST', 'texts'],
    ['empty text', '{"text":""}', 400, 'INVALID_REQUEST', 'text'],
    ['empty texts', '{"texts":[]}', 400, 'INVALID_REQUEST', 'text'],
    ['unknown language', '{"text":"a","lang":"xx_YY"}', 400, 'UNKNOWN_LANGUAGE', 'lang'],
  ];
  for (const [what, body, status, code, field] of cases) {
    it(`answers ${what} with ${status} ${code}`, async () => {
      const r = await post('/v1/classify', body);
      expect(r.statusCode).toBe(status);
      const e = r.json().error;
      expect(Object.keys(e).sort()).toEqual(['code', 'field', 'message']);
      expect(e.code).toBe(code);
      expect(e.field).toBe(field);
      expect(e.message.length).toBeGreaterThan(5);
    });
  }

  it('answers a non-JSON content type with 415 and an unknown route with 404, in the same shape', async () => {
    const r = await post('/v1/classify', 'text=a', { 'content-type': 'application/x-www-form-urlencoded' });
    expect(r.statusCode).toBe(415);
    expect(r.json().error).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', field: null });
    const nf = await s.app.inject({ url: '/v1/nothing' });
    expect(nf.statusCode).toBe(404);
    expect(nf.json().error).toEqual({ code: 'NOT_FOUND', message: 'no route GET /v1/nothing', field: null });
  });

  it('answers the wrong task route with WRONG_TASK', async () => {
    const r = await post('/v1/tag', '{"text":"a"}');
    expect(r.statusCode).toBe(400);
    expect(r.json().error.code).toBe('WRONG_TASK');
  });

  it('still answers a well-formed request', async () => {
    const r = await post('/v1/classify', '{"texts":["a b","c"],"lang":"de_DE"}');
    expect(r.statusCode).toBe(200);
    expect(r.json().results).toHaveLength(2);
  });
});

describe('the admin routes', () => {
  it('authenticates before reading the body: junk without a token is 401, with a wrong one 403', async () => {
    const none = await post('/admin/languages', '{junk');
    expect(none.statusCode).toBe(401);
    expect(none.json().error).toMatchObject({ code: 'UNAUTHORIZED', field: 'authorization' });
    const wrong = await post('/admin/languages', '{junk', { authorization: 'Bearer secreT' });
    expect(wrong.statusCode).toBe(403);
    expect(wrong.json().error.code).toBe('FORBIDDEN');
    const notBearer = await post('/admin/languages', '{"code":"x"}', { authorization: 'Basic secret' });
    expect(notBearer.statusCode).toBe(401);
    // a body over the limit is refused without a token as 401, not 413: nothing is read first
    const big = await post('/admin/languages', `{"code":"${'a'.repeat(2 * 2 ** 20)}"}`);
    expect(big.statusCode).toBe(401);
    const ok = await post('/admin/languages', '{junk', { authorization: 'Bearer secret' });
    expect(ok.statusCode).toBe(400);
    expect(ok.json().error.code).toBe('INVALID_JSON');
  });

  it('compares tokens in full: same prefix, other length and empty tokens all fail', () => {
    expect(tokenMatches('secret', 'secret')).toBe(true);
    for (const t of ['secre', 'secret!', '', 'SECRET', 'secreu'])
      expect(tokenMatches(t, 'secret')).toBe(false);
  });

  it('refuses a path instead of a code, and any code that leaves the modules directory', async () => {
    const auth = { authorization: 'Bearer secret' };
    const withPath = await post('/admin/languages', JSON.stringify({ code: 'sw', path: secretFile }), auth);
    expect(withPath.statusCode).toBe(400);
    expect(withPath.json().error).toMatchObject({ code: 'INVALID_REQUEST', field: 'path' });
    for (const code of ['../secret', '/etc/passwd', 'a/b', '..', '']) {
      const r = await post('/admin/languages', JSON.stringify({ code }), auth);
      expect(r.statusCode, code).toBe(400);
      expect(r.json().error).toMatchObject({ code: 'INVALID_REQUEST', field: 'code' });
    }
    // a link out of the directory and a directory are both "no such module"
    for (const code of ['linked', 'dir', 'absent']) {
      const r = await post('/admin/languages', JSON.stringify({ code }), auth);
      expect(r.statusCode, code).toBe(404);
      expect(r.json().error).toEqual({
        code: 'NOT_FOUND',
        message: `no language module '${code}' in the modules directory`,
        field: 'code',
      });
    }
  });

  it('never echoes bytes or numbers read from a bad module file', async () => {
    const r = await post('/admin/languages', '{"code":"junk"}', { authorization: 'Bearer secret' });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.code).toBe('INVALID_MODULE');
    expect(r.body).not.toMatch(/TOP|SECR|\d{4,}/);
    expect(r.body).not.toContain(modulesDir);
  });
});
