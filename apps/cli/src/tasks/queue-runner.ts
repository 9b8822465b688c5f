/**
 * Multi-step commands (`xlt experiment ...`, `xlt recipe ...`) on Redis workers: each step whose command is a queue job
 * (a `train`, `evaluate` or `augment` command, see KIND_COMMANDS) becomes an @xlt/jobs cell that an
 * `xlt worker` runs; its artifacts are linked into the step's folder, so the command reads them as
 * if it had run the step itself.
 */
import { copyFileSync, linkSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { XltError } from '@xlt/core';
import { cellKey, DirectoryStore, jobIdOf, redactUrl, runRedisGrid } from '@xlt/jobs';
import { z } from 'zod';
import { validateConfig } from '../cli/config.js';
import type { CommandContext } from '../cli/main.js';
import { cellOfCommand } from '../jobs/handlers.js';
import { type LanePlan, lanePlan, runCommand, type StepRunner } from './pipeline.js';

/** `local` or `redis://host:port` (as `xlt grid run --queue` takes it). */
export const queueOption = z
  .string()
  .regex(/^(local|rediss?:\/\/.+)$/, "expected 'local' or redis://host:port")
  .default('local');

/** The config field of commands whose steps can run on Redis workers. */
export const queueFields = { queue: queueOption };

/** Hard-links every file under `from` into `to` (a copy where links are refused), replacing what is there. */
function linkTree(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    const src = path.join(from, name);
    const dst = path.join(to, name);
    if (statSync(src).isDirectory()) {
      linkTree(src, dst);
      continue;
    }
    try {
      unlinkSync(dst);
    } catch {
      // nothing there yet
    }
    try {
      linkSync(src, dst);
    } catch {
      copyFileSync(src, dst);
    }
  }
}

/**
 * A {@link StepRunner} that enqueues each step as a cell on `queue` and waits for a worker to commit
 * its result in `<run dir>/results/` (resumable: a committed cell is not run again), then links the
 * cell's artifacts into the step's folder. Steps whose command is no queue job run here.
 */
export function queueStepRunner(ctx: CommandContext, queue: string): StepRunner {
  const store = new DirectoryStore(ctx.runDir);
  const counts = { queued: 0, done: 0 };
  let hinted = false;
  return async (cmd, config, dir, log) => {
    const cfg = validateConfig(cmd.schema, config, `step ${cmd.name}`) as Record<string, unknown>;
    const cell = cellOfCommand(cmd, cfg);
    if (cell === undefined) {
      log(`'${cmd.name}' is not a queue job: it runs here`);
      return runCommand(cmd, config, dir, log);
    }
    const key = cellKey(cell);
    counts.queued++;
    log(`job ${jobIdOf(key, ctx.runDir)} queued on ${redactUrl(queue)}`);
    if (!hinted) {
      hinted = true;
      ctx.log(
        `waiting for workers: start 'xlt worker --queue ${redactUrl(queue)}' where ${ctx.runDir} is at the same path`,
      );
    }
    await runRedisGrid([cell], { url: queue, runDir: ctx.runDir, store });
    const record = store.read(key);
    if (record === undefined) {
      const failed = store.failed().find((f) => f.key === key);
      throw new XltError(
        'STATE',
        failed !== undefined
          ? `step ${cmd.name} in ${dir} failed on the workers after ${failed.attempts} attempts: ${failed.error}`
          : `step ${cmd.name} in ${dir} did not finish`,
      );
    }
    linkTree(path.join(ctx.runDir, record.artifactsDir), dir);
    store.prune(key);
    counts.done++;
    const width = 20;
    const filled = Math.round((width * counts.done) / counts.queued);
    ctx.log(
      `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${counts.done}/${counts.queued} queued steps done`,
    );
  };
}

/** The config fields that say where a multi-step command's steps run. */
export interface StepPlanFields {
  /** `local` (default) or `redis://host:port`. */
  queue?: string;
  /** Chains at once in this machine (local only; default: the cores). */
  lanes?: number;
  /** Threads per step (default: the engine's, or the cores shared among the lanes). */
  threads?: number;
}

/** `what`, plural when `n` is not 1: the first word takes the `s` (`chain (pre-training, ...)`). */
const counted = (n: number, what: string) => `${n} ${n === 1 ? what : what.replace(/^(\S+)/, '$1s')}`;

/**
 * How a command's independent steps run, from its config's {@link StepPlanFields}: {@link lanePlan}
 * in this machine (`queue` local), or every step at once through {@link queueStepRunner} on Redis
 * workers (`jobs` chains of steps, each a `what`).
 */
export function stepPlan(
  ctx: CommandContext,
  cfg: StepPlanFields,
  o: { jobs: number; what: string },
): LanePlan {
  if (cfg.queue === undefined || cfg.queue === 'local')
    return lanePlan(ctx, { lanes: cfg.lanes, threads: cfg.threads, ...o });
  ctx.log(`${counted(o.jobs, o.what)} as jobs on ${redactUrl(cfg.queue)} ('xlt worker' processes run them)`);
  return { lanes: Math.max(1, o.jobs), run: queueStepRunner(ctx, cfg.queue), threads: cfg.threads };
}

/** The `--queue` lines of a multi-step command's help (`what`: what becomes a job, e.g. `each model`). */
export const queueHelp = (what: string): string =>
  `  --queue redis://host:port  ${what} a job for 'xlt worker' processes
                        (on any machine that sees the run dir and data root at the same paths); the
                        results of an in-process run with the same --threads; a rerun skips finished steps`;
