import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { cli } from '../test-cli.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-augment-llm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const good = (id: string) =>
  JSON.stringify({ id, sentence: `Anna lives in Berlin ${id}.`, spans: [{ label: 'PER', text: 'Anna' }] });

/** A config for `input` against `baseUrl`, written to a file; returns its path. */
function config(name: string, input: string, baseUrl: string): string {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    [
      `input: ${input}`,
      `out: ${path.join(dir, `${name}.jsonl`)}`,
      `endpoint: { baseUrl: "${baseUrl}", model: m, timeoutMs: 2000, maxRetries: 0 }`,
      'languages: [{ code: de, name: German }]',
      'concurrency: 1',
    ].join('\n'),
  );
  return file;
}

/** A port on 127.0.0.1 that nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

describe('xlt augment llm input and failures', () => {
  const cases: Array<[string, string[], number, RegExp]> = [
    ['a line that is not JSON', [good('1'), '', '{"id": '], 3, /line is not JSON: expected \{"id": string/],
    [
      'a line without spans',
      [good('1'), '', '', good('2'), '{"id":"3","sentence":"x"}'],
      5,
      /'spans' must be an array/,
    ],
    ['a line that is an array', ['', '[1, 2]'], 2, /expected an object .*, got an array/],
    [
      'a span without text',
      [good('1'), '{"id":"2","sentence":"x","spans":[{"label":"PER"}]}'],
      2,
      /'spans\[0\]' must be/,
    ],
    [
      'an empty sentence',
      ['{"id":"1","sentence":" ","spans":[]}'],
      1,
      /'sentence' must be a non-empty string/,
    ],
  ];
  for (const [what, lines, line, message] of cases) {
    it(`refuses ${what} with its line number (counting blank lines) and exit 2`, async () => {
      const input = path.join(dir, `${what.replace(/\W+/g, '-')}.jsonl`);
      writeFileSync(input, `${lines.join('\n')}\n`);
      const r = await cli(
        'augment',
        'llm',
        '--config',
        config('bad', input, 'http://127.0.0.1:9/v1'),
        '--run-dir',
        path.join(dir, 'run-bad'),
      );
      expect(r.code).toBe(EXIT.usage);
      expect(r.err).toContain(`${input}:${line}`);
      expect(r.err).toMatch(message);
    });
  }

  it('exits 1 when every request fails, saying so, with the report written', async () => {
    const input = path.join(dir, 'two.jsonl');
    writeFileSync(input, `${good('1')}\n${good('2')}\n`);
    const port = await closedPort();
    const runDir = path.join(dir, 'run-down');
    const r = await cli(
      'augment',
      'llm',
      '--config',
      config('down', input, `http://127.0.0.1:${port}/v1`),
      '--run-dir',
      runDir,
    );
    expect(r.code).toBe(EXIT.failure);
    expect(r.err).toMatch(new RegExp(`every one of the 2 requests to http://127.0.0.1:${port}/v1 failed`));
    const report = JSON.parse(readFileSync(path.join(runDir, 'report.json'), 'utf8'));
    expect(report.rejected.request_failed).toBe(2);
    expect(existsSync(input)).toBe(true);
  });
});
