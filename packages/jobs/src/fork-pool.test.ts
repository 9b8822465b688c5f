import { fork } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { GridCell } from './cell.js';
import { runGrid } from './grid.js';

const dir = mkdtempSync(path.join(tmpdir(), 'xlt-jobs-fork-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/index.js');

describe('in-process grid with a child process per lane', () => {
  it('runs cells in separate processes and retries a cell whose process died', async () => {
    if (!existsSync(dist)) throw new Error(`${dist} is missing: build @xlt/jobs first (pnpm build)`);
    const child = path.join(dir, 'child.mjs');
    const marker = path.join(dir, 'crashed-once');
    writeFileSync(
      child,
      `import { existsSync, writeFileSync } from 'node:fs';
import { serveForkedCells } from ${JSON.stringify(dist)};
await serveForkedCells({
  train: async (cell) => {
    if (cell.config.crash && !existsSync(${JSON.stringify(marker)})) {
      writeFileSync(${JSON.stringify(marker)}, '');
      process.exit(9);
    }
    await new Promise((r) => setTimeout(r, 200));
    return { pid: process.pid, value: cell.seed * 10 };
  },
});
`,
    );
    const cells: GridCell[] = [0, 1, 2, 3].map((seed) => ({
      kind: 'train',
      seed,
      config: { crash: seed === 2 },
    }));
    const lines: string[] = [];
    const r = await runGrid(cells, {
      runDir: path.join(dir, 'run'),
      concurrency: 2,
      backoffMs: 10,
      fork: () => fork(child, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }),
      log: (l) => lines.push(l),
    });
    expect(r.failed).toEqual([]);
    const results = [...r.records.values()].map((x) => x.result as { pid: number; value: number });
    expect(results.map((x) => x.value).sort((a, b) => a - b)).toEqual([0, 10, 20, 30]);
    expect(new Set(results.map((x) => x.pid)).size).toBeGreaterThanOrEqual(2);
    expect(results.every((x) => x.pid !== process.pid)).toBe(true);
    expect(
      lines.some((l) => /attempt 1 failed \(cell process \d+ exited \(code 9\) mid-cell\); retrying/.test(l)),
    ).toBe(true);
  });
});
