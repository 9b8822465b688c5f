import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeBounded } from './bounded-encode.js';
import { ServedModel } from './model.js';
import { createServer } from './server.js';
import { type ServeTokenizer, truncate } from './tasks.js';
import { whitespaceTokenizer, writeTinyModel } from './testing.js';

const root = mkdtempSync(path.join(tmpdir(), 'xlt-serve-bounded-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A tokenizer that records how many characters each call was given. */
function counting(inner: ServeTokenizer): ServeTokenizer & { seen: number[] } {
  const seen: number[] = [];
  return {
    seen,
    maskTokenId: inner.maskTokenId,
    padTokenId: inner.padTokenId,
    idToToken: (id) => inner.idToToken(id),
    encode(text, pair) {
      seen.push(text.length + (pair?.length ?? 0));
      return inner.encode(text, pair);
    },
  };
}

/** Deterministic texts: words of 1-9 letters, some with emoji (surrogate pairs), odd spacing. */
function words(n: number, seed: number): string {
  let x = seed;
  const rnd = () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x / 2 ** 31;
  };
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const len = 1 + Math.floor(rnd() * 9);
    let w = '';
    for (let k = 0; k < len; k++) w += rnd() < 0.05 ? '😀' : String.fromCharCode(97 + Math.floor(rnd() * 26));
    out.push(w, rnd() < 0.1 ? '  ' : ' ');
  }
  return out.join('');
}

describe('encodeBounded', () => {
  it('equals encoding the whole text then truncating, for short, long, pair and no-space texts', async () => {
    const tok = whitespaceTokenizer();
    const texts = [
      'a b c',
      words(20, 1),
      words(63, 2),
      words(64, 3),
      words(65, 4),
      words(5000, 5),
      '😀'.repeat(3000),
      `${'x'.repeat(5000)} y z`,
    ];
    for (const [i, t] of texts.entries()) {
      for (const max of [8, 64]) {
        const full = await tok.encode(t);
        const got = await encodeBounded(tok, t, max);
        expect(got.enc, `text ${i}, max ${max}`).toEqual(truncate(full, max));
        expect(got.truncated).toBe(full.ids.length > max);
        const q = 'what is it';
        const pair = await encodeBounded(tok, t, max, q);
        expect(pair.enc, `pair ${i}, max ${max}`).toEqual(truncate(await tok.encode(q, t), max));
      }
    }
  });

  it('tokenizes a bounded prefix of an 18,000-character text, not the whole of it', async () => {
    const tok = counting(whitespaceTokenizer());
    const r = await encodeBounded(tok, words(3500, 7).slice(0, 18_000), 64);
    expect(r.truncated).toBe(true);
    expect(r.enc.ids).toHaveLength(64);
    expect(Math.max(...tok.seen)).toBeLessThanOrEqual(64 * 8 * 4);
  });

  it('serves a text far longer than the model takes after tokenizing only a prefix of it', async () => {
    const dir = path.join(root, 'tag');
    await writeTinyModel(dir, 'token-classification');
    const tok = counting(whitespaceTokenizer());
    const s = await createServer({ model: await ServedModel.load(dir, { threads: 1 }), tokenizer: tok });
    const text = words(3500, 9).slice(0, 18_000);
    const r = await s.app.inject({ method: 'POST', url: '/v1/tag', payload: { texts: [text, text] } });
    expect(r.statusCode).toBe(200);
    const [first] = r.json().results;
    expect(first.truncated).toBe(true);
    for (const w of first.words) expect(text.slice(w.start, w.end)).toBe(w.word);
    expect(Math.max(...tok.seen)).toBeLessThan(18_000 / 4);
    await s.shutdown();
  });
});

describe.skipIf(sharedSkipReason('fixtures') !== undefined)('with the fixture model and tokenizer', () => {
  it('equals the real tokenizer encoding the whole text and truncating (offsets included)', async () => {
    const { loadTokenizer } = await import('./tokenizer.js');
    const tok = await loadTokenizer(sharedPath('fixtures', 'tokenizer'));
    const texts = [
      words(3000, 11),
      'Die Regierung hat ein Gesetz. '.repeat(400),
      `${'Donaudampfschifffahrt'.repeat(300)} ende`,
      'naïve café — 東京は日本の首都です。'.repeat(200),
    ];
    for (const [i, t] of texts.entries()) {
      for (const max of [26, 512]) {
        const got = await encodeBounded(tok, t, max);
        expect(got.enc, `text ${i}, max ${max}`).toEqual(truncate(await tok.encode(t), max));
        expect(got.truncated).toBe(true);
      }
    }
  });

  it('a 1 MB in-limit request does not hold up small requests sent beside it (each under 1 s)', async () => {
    const { loadTokenizer } = await import('./tokenizer.js');
    const model = await ServedModel.load(sharedPath('fixtures', 'xmod-postnorm', 'tokcls'), { threads: 1 });
    const s = await createServer({
      model,
      tokenizer: await loadTokenizer(sharedPath('fixtures', 'tokenizer')),
    });
    await s.app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(s.app.server.address() as { port: number }).port}/v1/tag`;
    const sentence = 'Die Regierung hat am Montag in Berlin ein neues Gesetz beschlossen. ';
    const long = sentence.repeat(Math.ceil(18_000 / sentence.length)).slice(0, 18_000);
    const big = JSON.stringify({ texts: new Array(55).fill(long), lang: 'de_DE' });
    expect(big.length).toBeGreaterThan(990_000);
    expect(big.length).toBeLessThan(2 ** 20);
    const send = (body: string) =>
      fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const t0 = performance.now();
    const bigDone = send(big).then(async (r) => ({
      status: r.status,
      ms: performance.now() - t0,
      j: await r.json(),
    }));
    const small: number[] = [];
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      const r = await send(JSON.stringify({ text: `Anna lebt in Berlin ${i}`, lang: 'de_DE' }));
      expect(r.status).toBe(200);
      await r.arrayBuffer();
      small.push(performance.now() - t);
      await new Promise((res) => setTimeout(res, 25));
    }
    const b = await bigDone;
    const figures = {
      bigStatus: b.status,
      bigMs: Math.round(b.ms),
      smallMaxMs: Math.round(Math.max(...small)),
      smallMedianMs: Math.round([...small].sort((x, y) => x - y)[10] as number),
    };
    console.log(`[bounded] 55 x 18,000 characters beside 20 small requests: ${JSON.stringify(figures)}`);
    expect(b.status).toBe(200);
    expect(b.j.results).toHaveLength(55);
    expect(b.j.results[0].truncated).toBe(true);
    expect(figures.smallMaxMs).toBeLessThan(1000);
    await s.shutdown();
  });
});
