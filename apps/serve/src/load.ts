import type { XltServer } from './server.js';

export interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Resident memory before and after (MiB). */
  rssBeforeMiB: number;
  rssAfterMiB: number;
}

/**
 * A bounded load test on loopback: `total` requests from `concurrency` workers against a listening
 * server, stopping early after `maxSeconds`. Only ever targets 127.0.0.1.
 */
export async function loadTest(
  server: XltServer,
  body: (i: number) => unknown,
  route: string,
  options: { total: number; concurrency: number; maxSeconds: number },
): Promise<LoadResult> {
  const addr = server.app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server is not listening on a TCP port');
  const url = `http://127.0.0.1:${addr.port}${route}`;
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  const t0 = performance.now();
  const deadline = t0 + options.maxSeconds * 1000;
  const rssBefore = process.memoryUsage().rss / 2 ** 20;
  const worker = async () => {
    while (next < options.total && performance.now() < deadline) {
      const i = next++;
      const s = performance.now();
      try {
        const r = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body(i)),
        });
        await r.arrayBuffer();
        if (r.status !== 200) errors++;
      } catch {
        errors++;
      }
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? Number.NaN;
  return {
    requests: latencies.length,
    errors,
    seconds,
    requestsPerSecond: latencies.length / seconds,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    rssBeforeMiB: rssBefore,
    rssAfterMiB: process.memoryUsage().rss / 2 ** 20,
  };
}
