// Test helper (not exported): an OpenAI-compatible chat server that translates a fixed set of
// sentences into German and can answer 429 / 500 and add latency. Same shape as the fake in
// @xlt/augment's annotate test.
import { createServer, type Server } from 'node:http';

export interface FakeLlm {
  url: string;
  requests: number;
  /** Probability of answering 429 or 500 (half each) instead of a reply. */
  errorRate: number;
  /** Milliseconds before each answer. */
  latencyMs: number;
  close(): Promise<void>;
}

/** `de` translations: sentence i is `Satz nummer i ist gut.`; spans are its first and last words. */
export const sentenceOf = (i: number): string => `Sentence number ${i} is good.`;
const translate = (s: string) => s.replace(/^Sentence number (\d+) is good\.$/, 'Satz nummer $1 ist gut.');

export async function startFakeLlm(
  opts: { errorRate?: number; latencyMs?: number; seed?: number } = {},
): Promise<FakeLlm> {
  let state = (opts.seed ?? 1) >>> 0;
  const random = () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
  const fake: FakeLlm = {
    url: '',
    requests: 0,
    errorRate: opts.errorRate ?? 0,
    latencyMs: opts.latencyMs ?? 0,
    close: async () => {},
  };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      fake.requests++;
      const answer = () => {
        const r = random();
        if (r < fake.errorRate / 2) return res.writeHead(429, { 'retry-after': '0' }).end('slow down');
        if (r < fake.errorRate) return res.writeHead(500).end('internal error');
        const msg = JSON.parse(body).messages.at(-1).content as string;
        const sentence = /Sentence number \d+ is good\./.exec(msg)?.[0] ?? '';
        const de = translate(sentence);
        const content = msg.startsWith('Translate')
          ? de
          : JSON.stringify({
              spans: [
                { label: 'arg0', text: 'Satz' },
                { label: 'rel', text: 'ist' },
              ],
            });
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            choices: [{ message: { role: 'assistant', content } }],
            usage: { prompt_tokens: 10, completion_tokens: 5 },
          }),
        );
      };
      if (fake.latencyMs > 0) setTimeout(answer, fake.latencyMs);
      else answer();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  fake.url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1`;
  fake.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return fake;
}
