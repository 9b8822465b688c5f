import type { ChildProcess } from 'node:child_process';
import { XltError } from '@xlt/core';
import { checkCell, type GridCell, type JobHandlers } from './cell.js';
import { executeCell } from './execute.js';
import { DirectoryStore } from './store.js';

/** Runs cells somewhere (another process); resolves when the cell's result is committed. */
export interface CellRunner {
  run(cell: GridCell): Promise<void>;
  close(): Promise<void>;
}

type ChildMessage = { type: 'log'; line: string } | { type: 'done' } | { type: 'error'; message: string };

/**
 * Runs each cell in a child process from `fork` (a Node process with an IPC channel that calls
 * {@link serveForkedCells}); at most as many children as cells run at once, reused between cells.
 * A child that dies mid-cell fails that attempt and is replaced.
 */
export function forkedCellRunner(
  fork: () => ChildProcess,
  runDir: string,
  log: (line: string) => void = () => {},
): CellRunner {
  const idle: ChildProcess[] = [];
  const all = new Set<ChildProcess>();
  return {
    run(cell) {
      let child = idle.pop();
      while (child !== undefined && !child.connected) child = idle.pop();
      if (child === undefined) {
        child = fork();
        all.add(child);
        const c = child;
        child.once('exit', () => all.delete(c));
        child.on('error', (e) => log(`cell process ${c.pid}: ${e.message}`));
      }
      const c = child;
      return new Promise<void>((resolve, reject) => {
        const onMessage = (m: ChildMessage) => {
          if (m.type === 'log') return log(m.line);
          cleanup();
          idle.push(c);
          if (m.type === 'done') resolve();
          else reject(new XltError('IO', m.message));
        };
        const onExit = (code: number | null, signal: string | null) => {
          cleanup();
          reject(new XltError('IO', `cell process ${c.pid} exited (${signal ?? `code ${code}`}) mid-cell`));
        };
        const cleanup = () => {
          c.off('message', onMessage);
          c.off('exit', onExit);
        };
        c.on('message', onMessage);
        c.once('exit', onExit);
        c.send({ cell, runDir });
      });
    },
    async close() {
      await Promise.all(
        [...all].map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once('exit', () => resolve());
              c.disconnect();
            }),
        ),
      );
    },
  };
}

/**
 * The child side of {@link forkedCellRunner}: runs the cells the parent sends with `handlers`,
 * one at a time; resolves when the parent disconnects.
 */
export function serveForkedCells(handlers: JobHandlers): Promise<void> {
  const send = (m: ChildMessage) => process.send?.(m);
  if (process.send === undefined)
    return Promise.reject(
      new XltError('CONFIG', 'serveForkedCells needs an IPC channel (start it with fork)'),
    );
  return new Promise<void>((resolve) => {
    process.on('message', (m: { cell: unknown; runDir: string }) => {
      void (async () => {
        try {
          const cell = checkCell(m.cell, 'cell');
          await executeCell(cell, new DirectoryStore(m.runDir), handlers, (line) =>
            send({ type: 'log', line }),
          );
          send({ type: 'done' });
        } catch (e) {
          send({ type: 'error', message: e instanceof Error ? e.message : String(e) });
        }
      })();
    });
    process.once('disconnect', () => resolve());
  });
}
