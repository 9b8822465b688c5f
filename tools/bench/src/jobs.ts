import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { startLocalRedis } from '@xlt/jobs';

const cliBin = path.join(
  path.dirname(createRequire(import.meta.url).resolve('@xlt/cli/package.json')),
  'dist',
  'bin.js',
);

/** An OpenAI-compatible server that answers every request after `latencyMs` (an I/O-bound endpoint). */
async function slowLlm(latencyMs: number): Promise<{ url: string; close(): void }> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () =>
      setTimeout(() => {
        const msg = JSON.parse(body).messages.at(-1).content as string;
        const n = /number (\d+)/.exec(msg)?.[1] ?? '0';
        const content = msg.startsWith('Translate')
          ? `Satz nummer ${n} ist gut.`
          : JSON.stringify({ spans: [{ label: 'arg0', text: 'Satz' }] });
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ choices: [{ message: { content } }] }));
      }, latencyMs),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1`,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

function run(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliBin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`xlt ${args[0]} exited ${code}: ${err.slice(-500)}`)),
    );
  });
}

async function timedGrid(grid: object, workers: number, url: string, dir: string): Promise<number> {
  const file = path.join(dir, `grid-${workers}.json`);
  writeFileSync(file, JSON.stringify(grid));
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < workers; i++) {
      const c = spawn(process.execPath, [cliBin, 'worker', '--queue', url], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(c);
      await new Promise<void>((r) => c.stdout?.once('data', () => r()));
      c.stdout?.resume();
    }
    const t0 = performance.now();
    await run([
      'grid',
      'run',
      '--config',
      file,
      '--run-dir',
      path.join(dir, `run-${workers}`),
      '--queue',
      url,
    ]);
    return (performance.now() - t0) / 1000;
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(
      children.map((c) => new Promise((r) => (c.exitCode !== null ? r(0) : c.once('exit', r)))),
    );
  }
}

/**
 * Wall time of the same grid over Redis with 1 and with 2 `xlt worker` processes: a CPU-bound grid
 * (8 fine-tuning cells of the fixture X-Mod, tfjs cpu) and an I/O-bound one (100 examples of LLM
 * annotation in 10 slices against a server that answers after 200 ms). One line each.
 */
export async function jobsSpeedup(): Promise<string[]> {
  const redis = await startLocalRedis();
  const dir = mkdtempSync(path.join(tmpdir(), 'xlt-bench-jobs-'));
  const llm = await slowLlm(200);
  const lines: string[] = [];
  try {
    const grids: Array<[string, object]> = [];
    if (sharedSkipReason('fixtures') === undefined) {
      const data = path.join(dir, 'train-en.tsv');
      const s =
        'Angela\tB-PER\nMerkel\tI-PER\nvisited\tO\nParis\tB-LOC\n.\tO\n\nThe\tO\ncat\tO\nsat\tO\n.\tO\n\n';
      writeFileSync(data, s.repeat(8));
      const config = {
        task: 'ner',
        model: sharedPath('fixtures', 'xmod-postnorm', 'mlm'),
        tokenizer: sharedPath('fixtures', 'tokenizer', 'tokenizer.json'),
        train: data,
        steps: 20,
        batchSize: 8,
        lr: 0.01,
        engine: 'tfjs',
        backend: 'cpu',
      };
      grids.push([
        'cpu-bound: 8 fine-tuning cells (fixture X-Mod, 20 steps, tfjs cpu)',
        { cells: [{ kind: 'train', command: 'finetune', config, seeds: [0, 1, 2, 3, 4, 5, 6, 7] }] },
      ]);
    } else lines.push('jobs cpu-bound grid: skipped (../shared fixtures not found)');
    const input = path.join(dir, 'input.jsonl');
    writeFileSync(
      input,
      Array.from({ length: 100 }, (_, i) =>
        JSON.stringify({
          id: `s${i}`,
          sentence: `Sentence number ${i} is good.`,
          spans: [{ label: 'arg0', text: 'Sentence' }],
        }),
      ).join('\n'),
    );
    const endpoint = { baseUrl: llm.url, model: 'fake' };
    grids.push([
      'I/O-bound: LLM annotation of 100 examples in 10 slices (200 ms per request, 2 in flight per slice)',
      {
        cells: [
          {
            kind: 'annotate',
            input,
            sliceSize: 10,
            config: { endpoint, languages: [{ code: 'de', name: 'German' }], concurrency: 2 },
          },
        ],
      },
    ]);
    for (const [i, [label, grid]] of grids.entries()) {
      const one = await timedGrid(grid, 1, `${redis.url}/${2 * i}`, dir);
      const two = await timedGrid(grid, 2, `${redis.url}/${2 * i + 1}`, dir);
      lines.push(
        `jobs ${label}: 1 worker ${one.toFixed(1)} s, 2 workers ${two.toFixed(1)} s, speed-up ${(one / two).toFixed(2)}x`,
      );
    }
    return lines;
  } finally {
    llm.close();
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
