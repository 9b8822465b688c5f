import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { afterAll, describe, expect, it } from 'vitest';
import { ServedModel } from './model.js';
import { createServer } from './server.js';
import { whitespaceTokenizer, writeTinyModel } from './testing.js';

const CHROMIUM = process.env.XLT_CHROMIUM ?? '/usr/bin/chromium';
const root = mkdtempSync(path.join(tmpdir(), 'xlt-page-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(!existsSync(CHROMIUM))(
  `the page at / in headless Chromium (${CHROMIUM}; skipped when absent: apt-get install chromium)`,
  () => {
    it('loads, submits a text in a chosen language and shows the result', async () => {
      const dir = path.join(root, 'model');
      await writeTinyModel(dir, 'sequence-classification');
      const server = await createServer({
        model: await ServedModel.load(dir, { threads: 1 }),
        tokenizer: whitespaceTokenizer(),
      });
      await server.app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = server.app.server.address() as { port: number };
      const browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
        ],
      });
      try {
        const page = await browser.newPage();
        await page.goto(`http://127.0.0.1:${port}/`);
        await page.waitForFunction(() => document.querySelectorAll('#lang option').length > 1);
        expect(await page.textContent('#info')).toContain('sequence-classification');
        await page.fill('#text', 'the dog sees a cat');
        await page.selectOption('#lang', 'de_DE');
        await page.click('#submit');
        await page.waitForFunction(() =>
          (document.querySelector('#result')?.textContent ?? '').includes('"label"'),
        );
        const shown = JSON.parse((await page.textContent('#result')) ?? '{}');
        expect(['neg', 'pos']).toContain(shown.label);
        expect(shown.lang).toBe('de_DE');
        // the page shows the server's error message for bad input
        await page.fill('#text', 'x'.repeat(25_000));
        await page.click('#submit');
        await page.waitForSelector('#result.err');
        expect(await page.textContent('#result')).toMatch(/limit is 20000/);
      } finally {
        await browser.close();
        await server.shutdown();
      }
    });
  },
);
