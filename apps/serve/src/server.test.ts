import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ServedModel } from './model.js';
import { createServer, type XltServer } from './server.js';
import { whitespaceTokenizer, writeTinyModel, writeTinyModule } from './testing.js';

const root = mkdtempSync(path.join(tmpdir(), 'xlt-serve-'));
const modulesDir = path.join(root, 'modules');
mkdirSync(modulesDir);
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function start(
  head: Parameters<typeof writeTinyModel>[1],
  extra: Partial<Parameters<typeof createServer>[0]> = {},
) {
  const dir = path.join(root, `${head}-${Math.random().toString(36).slice(2)}`);
  await writeTinyModel(dir, head);
  const model = await ServedModel.load(dir, { threads: 1 });
  return createServer({ model, tokenizer: whitespaceTokenizer(), maxWaitMs: 2, ...extra });
}

describe('sequence classification server', () => {
  let s: XltServer;
  beforeAll(async () => {
    s = await start('sequence-classification', {
      adminToken: 'secret',
      modulesDir,
      limits: { textChars: 200, batchItems: 4, bodyBytes: 4096 },
    });
  });
  afterAll(() => s.shutdown());

  it('classifies a text with a label, scores summing to 1 and the language used', async () => {
    const r = await s.app.inject({
      method: 'POST',
      url: '/v1/classify',
      payload: { text: 'the dog sees a cat', lang: 'de_DE' },
    });
    expect(r.statusCode).toBe(200);
    const j = r.json();
    expect(['neg', 'pos']).toContain(j.label);
    expect(j.scores.neg + j.scores.pos).toBeCloseTo(1, 6);
    expect(j.lang).toBe('de_DE');
  });

  it('gives a batch the same answers as single requests (padding and batching change nothing)', async () => {
    const texts = ['a b c', 'a much longer text with many words in it', 'x'];
    const batch = (
      await s.app.inject({ method: 'POST', url: '/v1/classify', payload: { texts, lang: 'fr_XX' } })
    ).json();
    for (const [i, t] of texts.entries()) {
      const one = (
        await s.app.inject({ method: 'POST', url: '/v1/classify', payload: { text: t, lang: 'fr_XX' } })
      ).json();
      expect(batch.results[i].scores.pos).toBeCloseTo(one.scores.pos, 5);
    }
  });

  it('language modules matter: the same text differs across languages', async () => {
    const a = (
      await s.app.inject({
        method: 'POST',
        url: '/v1/classify',
        payload: { text: 'same words here', lang: 'en_XX' },
      })
    ).json();
    const b = (
      await s.app.inject({
        method: 'POST',
        url: '/v1/classify',
        payload: { text: 'same words here', lang: 'de_DE' },
      })
    ).json();
    expect(a.scores.pos).not.toBeCloseTo(b.scores.pos, 6);
  });

  it('answers malformed JSON with 400 INVALID_JSON', async () => {
    const r = await s.app.inject({
      method: 'POST',
      url: '/v1/classify',
      headers: { 'content-type': 'application/json' },
      payload: '{"text": ',
    });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.code).toBe('INVALID_JSON');
  });

  it('answers an unknown language with 400 naming the languages', async () => {
    const r = await s.app.inject({
      method: 'POST',
      url: '/v1/classify',
      payload: { text: 'hello', lang: 'xx_YY' },
    });
    expect(r.statusCode).toBe(400);
    expect(r.json().error.message).toMatch(/unknown language 'xx_YY'.*en_XX, de_DE, fr_XX/);
  });

  it('answers oversized text, too many texts and a too-large body with 413 saying which limit', async () => {
    const long = await s.app.inject({
      method: 'POST',
      url: '/v1/classify',
      payload: { text: 'a'.repeat(201) },
    });
    expect(long.statusCode).toBe(413);
    expect(long.json().error.message).toMatch(/'text' has 201 characters; the limit is 200/);
    const many = await s.app.inject({
      method: 'POST',
      url: '/v1/classify',
      payload: { texts: ['a', 'b', 'c', 'd', 'e'] },
    });
    expect(many.statusCode).toBe(413);
    expect(many.json().error.message).toMatch(/'texts' has 5 items; the limit is 4/);
    const body = await s.app.inject({
      method: 'POST',
      url: '/v1/classify',
      payload: { texts: ['a'.repeat(3000), 'b'.repeat(3000)] },
    });
    expect(body.statusCode).toBe(413);
    expect(body.json().error.message).toMatch(/exceeds the limit of 4096 bytes/);
  });

  it('rejects unknown fields and the wrong task route', async () => {
    const r = await s.app.inject({ method: 'POST', url: '/v1/classify', payload: { txt: 'a' } });
    expect(r.statusCode).toBe(400);
    const t = await s.app.inject({ method: 'POST', url: '/v1/tag', payload: { text: 'a b' } });
    expect(t.statusCode).toBe(400);
    expect(t.json().error.message).toMatch(/sequence-classification model: use \/v1\/classify/);
  });

  it('protects the admin endpoint and adds a language module at run time', async () => {
    const modFile = path.join(modulesDir, 'sw_KE.safetensors');
    await writeTinyModule(modFile, 'sw_KE');
    const none = await s.app.inject({
      method: 'POST',
      url: '/admin/languages',
      payload: { code: 'sw_KE' },
    });
    expect(none.statusCode).toBe(401);
    const bad = await s.app.inject({
      method: 'POST',
      url: '/admin/languages',
      headers: { authorization: 'Bearer nope' },
      payload: { code: 'sw_KE' },
    });
    expect(bad.statusCode).toBe(403);
    const before = (
      await s.app.inject({ method: 'POST', url: '/v1/classify', payload: { text: 'a b c', lang: 'en_XX' } })
    ).json();
    const ok = await s.app.inject({
      method: 'POST',
      url: '/admin/languages',
      headers: { authorization: 'Bearer secret' },
      payload: { code: 'sw_KE' },
    });
    expect(ok.statusCode).toBe(201);
    expect(ok.json().languages).toEqual(['en_XX', 'de_DE', 'fr_XX', 'sw_KE']);
    const sw = await s.app.inject({
      method: 'POST',
      url: '/v1/classify',
      payload: { text: 'a b c', lang: 'sw_KE' },
    });
    expect(sw.statusCode).toBe(200);
    expect(sw.json().lang).toBe('sw_KE');
    const after = (
      await s.app.inject({ method: 'POST', url: '/v1/classify', payload: { text: 'a b c', lang: 'en_XX' } })
    ).json();
    expect(after.scores.pos).toBeCloseTo(before.scores.pos, 6);
    const missing = await s.app.inject({
      method: 'POST',
      url: '/admin/languages',
      headers: { authorization: 'Bearer secret' },
      payload: { code: 'yo' },
    });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error).toEqual({
      code: 'NOT_FOUND',
      message: "no language module 'yo' in the modules directory",
      field: 'code',
    });
  });

  it('reports health, readiness and Prometheus metrics', async () => {
    expect((await s.app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await s.app.inject({ url: '/readyz' })).statusCode).toBe(200);
    const m = (await s.app.inject({ url: '/metrics' })).body;
    expect(m).toMatch(
      /xlt_request_duration_seconds_bucket\{le="0.005",route="\/v1\/classify",status="200"\}/,
    );
    expect(m).toMatch(/xlt_batch_size_count \d+/);
    expect(m).toMatch(/xlt_queue_length 0/);
  });

  it('serves the page', async () => {
    const r = await s.app.inject({ url: '/' });
    expect(r.headers['content-type']).toMatch(/text\/html/);
    expect(r.body).toContain('<form id="form">');
  });
});

describe('token tagging, QA and fill-mask servers', () => {
  it('tags every word once with its span', async () => {
    const s = await start('token-classification');
    const text = 'Anna lives  in Berlin';
    const j = (await s.app.inject({ method: 'POST', url: '/v1/tag', payload: { text } })).json();
    expect(j.words.map((w: { word: string }) => w.word)).toEqual(['Anna', 'lives', 'in', 'Berlin']);
    for (const w of j.words) {
      expect(text.slice(w.start, w.end)).toBe(w.word);
      expect(['O', 'B-PER', 'I-PER']).toContain(w.label);
    }
    await s.shutdown();
  });

  it('answers with a span of the context', async () => {
    const s = await start('question-answering');
    const context = 'the cat sat on the mat near the door';
    const j = (
      await s.app.inject({
        method: 'POST',
        url: '/v1/qa',
        payload: { question: 'where did the cat sit', context },
      })
    ).json();
    expect(context.slice(j.start, j.end)).toBe(j.answer);
    expect(j.answer.length).toBeGreaterThan(0);
    await s.shutdown();
  });

  it('fills masks with top-k tokens and refuses text without a mask', async () => {
    const s = await start('masked-lm');
    const j = (
      await s.app.inject({ method: 'POST', url: '/v1/fill', payload: { text: 'the <mask> sat', topK: 3 } })
    ).json();
    expect(j.masks).toHaveLength(1);
    expect(j.masks[0]).toHaveLength(3);
    expect(j.masks[0][0].score).toBeGreaterThanOrEqual(j.masks[0][1].score);
    const r = await s.app.inject({ method: 'POST', url: '/v1/fill', payload: { text: 'no mask' } });
    expect(r.statusCode).toBe(400);
    await s.shutdown();
  });
});

describe('graceful shutdown', () => {
  it('answers every accepted request before closing, then refuses new ones', async () => {
    const s = await start('sequence-classification', { maxWaitMs: 2000, maxBatchSize: 64 });
    await s.app.listen({ port: 0, host: '127.0.0.1' });
    const addr = s.app.server.address() as { port: number };
    const url = `http://127.0.0.1:${addr.port}/v1/classify`;
    const inflight = Array.from({ length: 20 }, (_, i) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: `text number ${i}` }),
      }),
    );
    // wait until all 20 are accepted and queued in the batcher (which waits up to 2 s for more)
    for (let i = 0; i < 200 && s.queueLength() < 20; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.queueLength()).toBe(20);
    const closing = s.shutdown();
    const res = await Promise.all(inflight);
    expect(res.map((r) => r.status)).toEqual(new Array(20).fill(200));
    await closing;
    await expect(fetch(url, { method: 'POST', body: '{}' })).rejects.toThrow();
  });
});

describe.skipIf(sharedSkipReason('fixtures') !== undefined)(
  'with the fixture X-Mod models and tokenizer',
  () => {
    it('tags words of real text and detects the language when none is given', async () => {
      const { loadTokenizer } = await import('./tokenizer.js');
      const model = await ServedModel.load(sharedPath('fixtures', 'xmod-postnorm', 'tokcls'), { threads: 1 });
      const s = await createServer({
        model,
        tokenizer: await loadTokenizer(sharedPath('fixtures', 'tokenizer')),
      });
      const text = 'Die Regierung hat ein Gesetz.';
      const j = (await s.app.inject({ method: 'POST', url: '/v1/tag', payload: { text } })).json();
      expect(j.lang).toBe('de_DE');
      expect(j.truncated).toBe(false);
      expect(j.words.map((w: { word: string }) => w.word)).toEqual(text.split(' '));
      for (const w of j.words) expect(text.slice(w.start, w.end)).toBe(w.word);
      // the fixture model takes 26 tokens: a longer text is cut, and the response says so
      const long = (
        await s.app.inject({
          method: 'POST',
          url: '/v1/tag',
          payload: { text: `${text} ${text} ${text}`, lang: 'de_DE' },
        })
      ).json();
      expect(long.truncated).toBe(true);
      expect(long.words.length).toBeLessThan(21);
      await s.shutdown();
    });

    it('answers questions with a span of the context (QA head, pair encoding)', async () => {
      const { loadTokenizer } = await import('./tokenizer.js');
      const model = await ServedModel.load(sharedPath('fixtures', 'xmod-postnorm', 'qa'), { threads: 1 });
      const s = await createServer({
        model,
        tokenizer: await loadTokenizer(sharedPath('fixtures', 'tokenizer')),
      });
      const context = 'The river flows through the old town and reaches the sea near the harbour.';
      const j = (
        await s.app.inject({
          method: 'POST',
          url: '/v1/qa',
          payload: { question: 'Where does the river reach the sea?', context, lang: 'en_XX' },
        })
      ).json();
      expect(context.slice(j.start, j.end)).toBe(j.answer);
      expect(j.answer.length).toBeGreaterThan(0);
      await s.shutdown();
    });
  },
);
