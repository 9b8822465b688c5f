import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { XltConfigError } from '@xlt/core';
import { cellKey, type GridCell, type JobHandlers } from './cell.js';
import { type CellRecord, checksumTree, type RunStore } from './store.js';

/** How one execution of a cell ended. */
export interface CellOutcome {
  record: CellRecord;
  /** True when the result was already committed (by an earlier run or another worker). */
  reused: boolean;
}

/**
 * Runs a cell once, idempotently: a committed result is returned as is; otherwise the handler runs
 * in a fresh attempt folder, its artifacts are checksummed and the record is committed (first
 * writer wins, so a duplicate execution after a crash or a stall never leaves two results).
 */
export async function executeCell(
  cell: GridCell,
  store: RunStore,
  handlers: JobHandlers,
  log: (line: string) => void = () => {},
  queue?: string,
): Promise<CellOutcome> {
  const key = cellKey(cell);
  const done = store.read(key);
  if (done !== undefined) return { record: done, reused: true };
  const handler = handlers[cell.kind];
  if (handler === undefined)
    throw new XltConfigError(`no handler for '${cell.kind}' jobs here`, { field: 'kind' });
  const attempt = `${Date.now().toString(36)}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const workDir = store.attemptDir(key, attempt);
  const t0 = performance.now();
  const result = await handler(cell, { workDir, log, ...(queue !== undefined ? { queue } : {}) });
  const record = store.commit({
    key,
    cell,
    result,
    artifactsDir: path.join('cells', key, attempt),
    artifacts: checksumTree(workDir),
    seconds: Math.round(performance.now() - t0) / 1000,
  });
  if (record.artifactsDir !== path.join('cells', key, attempt)) store.prune(key);
  return { record, reused: record.artifactsDir !== path.join('cells', key, attempt) };
}
