import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer, loadTest, ServedModel, whitespaceTokenizer, writeTinyModel } from '@xlt/serve';

/**
 * Requests/s and p50/p99 latency of the server on loopback for a small X-Mod (hidden 256, 4 layers)
 * classifier, in `rounds` rounds of `total` requests, with resident memory after each round.
 */
export async function serveLoad(total = 3000, concurrency = 32, rounds = 3): Promise<string[]> {
  const dir = mkdtempSync(path.join(tmpdir(), 'xlt-bench-serve-'));
  const lines: string[] = [];
  try {
    await writeTinyModel(dir, 'sequence-classification', ['en_XX', 'de_DE', 'fr_XX', 'zh_CN'], 0, {
      hidden_size: 256,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      intermediate_size: 1024,
      vocab_size: 64,
    });
    const server = await createServer({
      model: await ServedModel.load(dir),
      tokenizer: whitespaceTokenizer(),
      maxBatchSize: 32,
      maxWaitMs: 2,
    });
    await server.app.listen({ port: 0, host: '127.0.0.1' });
    const words = 'the quick brown fox jumps over the lazy dog near a quiet river bank'.split(' ');
    for (let r = 0; r < rounds; r++) {
      const res = await loadTest(
        server,
        (i) => ({
          text: Array.from({ length: 8 + (i % 24) }, (_, k) => words[(i + k) % words.length]).join(' '),
          lang: ['en_XX', 'de_DE', 'fr_XX', 'zh_CN'][i % 4],
        }),
        '/v1/classify',
        { total, concurrency, maxSeconds: 120 },
      );
      lines.push(
        `serve small-xmod classify round ${r + 1}: ${res.requestsPerSecond.toFixed(0)} req/s, p50 ${res.p50Ms.toFixed(1)} ms, p99 ${res.p99Ms.toFixed(1)} ms, ${res.errors} errors of ${res.requests}, RSS ${res.rssAfterMiB.toFixed(0)} MiB`,
      );
    }
    await server.shutdown();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return lines;
}
