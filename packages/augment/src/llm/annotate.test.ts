import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { annotate, fillTemplate, parseJsonObject, type SourceExample } from './annotate.js';
import { ChatClient, mapLimit } from './client.js';

/** German translations and the German spans the fake model gives back. */
const DE: Record<string, { t: string; spans: string[] }> = {
  'The committee approved the new budget on Monday.': {
    t: 'Der Ausschuss hat am Montag den neuen Haushalt genehmigt.',
    spans: ['Der Ausschuss', 'genehmigt', 'den neuen Haushalt'],
  },
  'The old bridge over the river was closed for repairs.': {
    t: 'Die alte Brücke über den Fluss wurde für Reparaturen gesperrt.',
    spans: ['Die alte Brücke über den Fluss', 'gesperrt', 'für Reparaturen'],
  },
  'Scientists discovered a new species of frog in the forest.': {
    t: 'Wissenschaftler entdeckten im Wald eine neue Froschart.',
    spans: ['Wissenschaftler', 'entdeckten', 'eine neue Froschart'],
  },
  'The museum will open a large exhibition about ancient Egypt next year.': {
    t: 'Das Museum wird im nächsten Jahr eine große Ausstellung über das alte Ägypten eröffnen.',
    spans: ['Das Museum', 'eröffnen', 'eine große Ausstellung über das alte Ägypten'],
  },
  // the model answers in English: rejected as the wrong language
  'Farmers in the valley expect a good harvest this autumn.': {
    t: 'Farmers in the valley expect a good harvest this autumn.',
    spans: ['Farmers in the valley', 'expect', 'a good harvest'],
  },
  // the model invents a span that is not in its translation
  'The children built a small boat out of wood and paper.': {
    t: 'Die Kinder bauten aus Holz und Papier ein kleines Boot.',
    spans: ['Die Kinder', 'haben gebaut', 'ein kleines Boot'],
  },
  // two sentences with the same translation: the second is a duplicate
  'The weather was very cold yesterday in the mountains.': {
    t: 'Gestern war das Wetter in den Bergen sehr kalt.',
    spans: ['das Wetter', 'war', 'sehr kalt'],
  },
  'Yesterday the weather in the mountains was very cold.': {
    t: 'Gestern war das Wetter in den Bergen sehr kalt.',
    spans: ['das Wetter', 'war', 'sehr kalt'],
  },
};
const SPAN_LABELS = ['arg0', 'rel', 'arg1'];

interface Fake {
  server: Server;
  url: string;
  requests: number;
  maxInFlight: number;
  /** sentence -> remaining failures of a kind before it answers properly */
  faults: Map<string, { kind: '500' | 'garbage' | 'hang'; times: number }>;
}

async function startFake(): Promise<Fake> {
  const fake: Fake = {
    server: undefined as unknown as Server,
    url: '',
    requests: 0,
    maxInFlight: 0,
    faults: new Map(),
  };
  let inFlight = 0;
  fake.server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', async () => {
      fake.requests++;
      inFlight++;
      fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      const msg = JSON.parse(body).messages.at(-1).content as string;
      const sentence = Object.keys(DE).find((s) => msg.includes(s)) ?? '';
      const fault = fake.faults.get(sentence);
      const done = () => {
        inFlight--;
      };
      if (fault && fault.times > 0) {
        fault.times--;
        if (fault.kind === 'hang') {
          // never answer this attempt; the client times out (the socket closes when the server stops)
          done();
          return;
        }
        done();
        if (fault.kind === '500') {
          res.writeHead(500).end('internal error');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json');
        return;
      }
      const entry = DE[sentence];
      let content: string;
      if (!entry) content = '???';
      else if (msg.startsWith('Translate')) content = entry.t;
      else
        content = `Here you go:\n\`\`\`json\n${JSON.stringify({ spans: entry.spans.map((text, i) => ({ label: SPAN_LABELS[i], text })) })}\n\`\`\``;
      done();
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          choices: [{ message: { role: 'assistant', content } }],
          usage: { prompt_tokens: 100, completion_tokens: 20 },
        }),
      );
    });
  });
  await new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', () => r()));
  const { port } = fake.server.address() as { port: number };
  fake.url = `http://127.0.0.1:${port}/v1`;
  return fake;
}

const examples: SourceExample[] = Object.keys(DE).map((sentence, i) => ({
  id: `ex${i}`,
  sentence,
  spans: SPAN_LABELS.map((label) => ({ label, text: 'x' })),
}));

describe('LLM annotation against a local OpenAI-compatible server', () => {
  let fake: Fake;
  const dir = mkdtempSync(path.join(tmpdir(), 'xlt-llm-'));
  beforeAll(async () => {
    fake = await startFake();
  });
  afterAll(() => {
    fake.server.closeAllConnections();
    fake.server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps good pairs, filters wrong language, non-substring spans and duplicates, survives 500s, garbage and timeouts, and resumes', async () => {
    fake.faults.set('The committee approved the new budget on Monday.', { kind: '500', times: 2 });
    fake.faults.set('The old bridge over the river was closed for repairs.', { kind: 'garbage', times: 1 });
    fake.faults.set('Scientists discovered a new species of frog in the forest.', { kind: 'hang', times: 1 });
    const outFile = path.join(dir, 'de.jsonl');
    const client = new ChatClient({
      baseUrl: fake.url,
      model: 'fake',
      timeoutMs: 2500, // long enough that only the hung request times out, even on a loaded machine
      backoffMs: 5,
      maxRetries: 3,
      pricePer1kPrompt: 0.5,
      pricePer1kCompletion: 1.5,
    });
    const progress: number[] = [];
    const report = await annotate(examples, {
      endpoint: client,
      languages: [{ code: 'de', name: 'German' }],
      outFile,
      concurrency: 3,
      onProgress: (p) => progress.push(p.done),
    });
    expect(report.total).toBe(8);
    expect(report.kept).toBe(5);
    expect(report.rejected.wrong_language).toBe(1);
    expect(report.rejected.not_substring).toBe(1);
    expect(report.rejected.duplicate).toBe(1);
    expect(report.yieldRate).toBeCloseTo(5 / 8, 10);
    expect(client.counters.retries).toBe(4); // 2 x 500, 1 garbage, 1 timeout
    expect(fake.maxInFlight).toBeLessThanOrEqual(3);
    expect(progress.at(-1)).toBe(8);
    // cost = tokens x price (100 prompt + 20 completion tokens per successful reply)
    const ok = client.counters.promptTokens / 100;
    expect(client.counters.costUsd).toBeCloseTo(ok * (0.1 * 0.5 + 0.02 * 1.5), 10);
    const kept = readFileSync(outFile, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    for (const k of kept) {
      for (const s of k.spans) expect(k.translation.slice(s.start, s.end)).toBe(s.text);
    }
    const committee = kept.find((k) => k.id === 'ex0');
    expect(committee.spans.map((s: { label: string }) => s.label)).toEqual(SPAN_LABELS);
    expect(committee.spans[0].text).toBe('Der Ausschuss');

    // a second run asks nothing again
    const before = fake.requests;
    const again = await annotate(examples, {
      endpoint: { baseUrl: fake.url, model: 'fake' },
      languages: [{ code: 'de', name: 'German' }],
      outFile,
    });
    expect(again.resumed).toBe(8);
    expect(again.kept).toBe(0);
    expect(fake.requests).toBe(before);
  });

  it('repairs a result file cut short by a crash and re-asks only that pair', async () => {
    const outFile = path.join(dir, 'crash.jsonl');
    const first = await annotate(examples.slice(0, 2), {
      endpoint: { baseUrl: fake.url, model: 'fake', backoffMs: 1 },
      languages: [{ code: 'de', name: 'German' }],
      outFile,
    });
    expect(first.kept).toBe(2);
    const lines = readFileSync(outFile, 'utf8').trim().split('\n');
    writeFileSync(outFile, `${lines[0]}\n${(lines[1] as string).slice(0, 30)}`);
    const second = await annotate(examples.slice(0, 2), {
      endpoint: { baseUrl: fake.url, model: 'fake', backoffMs: 1 },
      languages: [{ code: 'de', name: 'German' }],
      outFile,
    });
    expect(second.resumed).toBe(1);
    expect(second.kept).toBe(1);
    expect(
      readFileSync(outFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).id)
        .sort(),
    ).toEqual(['ex0', 'ex1']);
  });

  it('gives up after the retries and records the failure', async () => {
    fake.faults.set('The museum will open a large exhibition about ancient Egypt next year.', {
      kind: '500',
      times: 10,
    });
    const outFile = path.join(dir, 'fail.jsonl');
    const r = await annotate([examples[3] as SourceExample], {
      endpoint: { baseUrl: fake.url, model: 'fake', backoffMs: 1, maxRetries: 2 },
      languages: [{ code: 'de', name: 'German' }],
      outFile,
    });
    expect(r.rejected.request_failed).toBe(1);
    expect(readFileSync(`${outFile}.rejects.jsonl`, 'utf8')).toMatch(/"reason":"request_failed".*HTTP 500/);
  });
});

describe('helpers', () => {
  it('fills templates and leaves unknown placeholders', () => {
    expect(fillTemplate('{{a}} and {{b}}', { a: 'x' })).toBe('x and {{b}}');
  });
  it('extracts JSON from a fenced reply', () => {
    expect(parseJsonObject('Sure!\n```json\n{"spans": []}\n```')).toEqual({ spans: [] });
    expect(parseJsonObject('no json here')).toBeUndefined();
  });
  it('maps with a concurrency limit, in order', async () => {
    let inFlight = 0;
    let max = 0;
    const out = await mapLimit([1, 2, 3, 4, 5, 6], 2, async (x) => {
      inFlight++;
      max = Math.max(max, inFlight);
      await new Promise((r) => setTimeout(r, 3));
      inFlight--;
      return x * 2;
    });
    expect(out).toEqual([2, 4, 6, 8, 10, 12]);
    expect(max).toBe(2);
  });
  it('rejects a bad endpoint', () => {
    expect(() => new ChatClient({ baseUrl: 'localhost:8000', model: 'm' })).toThrow(
      /baseUrl must start with http/,
    );
  });
});
