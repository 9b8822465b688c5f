import { XltConfigError } from '@xlt/core';

/** A learning-rate schedule, as data (so it can be written into a run's config). */
export interface ScheduleSpec {
  /** `linear`: transformers' `get_linear_schedule_with_warmup`; `cosine`: `get_cosine_schedule_with_warmup`; `constant`: `get_constant_schedule_with_warmup`. */
  kind: 'linear' | 'cosine' | 'constant';
  /** Warm-up steps (lr rises from 0 at step 0). Default 0. */
  warmupSteps?: number;
  /** Warm-up as a fraction of the total steps (used when `warmupSteps` is not given), rounded up as transformers does. */
  warmupRatio?: number;
  /** Cosine cycles (default 0.5: one half-cosine down to 0). */
  numCycles?: number;
}

/** Resolved warm-up step count of a schedule for `totalSteps` optimiser steps. */
export function warmupStepsOf(spec: ScheduleSpec, totalSteps: number): number {
  if (spec.warmupSteps !== undefined) return spec.warmupSteps;
  if (spec.warmupRatio !== undefined) return Math.ceil(totalSteps * spec.warmupRatio);
  return 0;
}

/**
 * The multiplier of the base learning rate at optimiser step `step` (0-based: the first update uses
 * step 0), exactly as transformers' LambdaLR schedules compute it.
 */
export function lrMultiplier(spec: ScheduleSpec, step: number, totalSteps: number): number {
  const warmup = warmupStepsOf(spec, totalSteps);
  if (!Number.isInteger(warmup) || warmup < 0)
    throw new XltConfigError(`warm-up steps must be a non-negative integer, got ${warmup}`, {
      field: 'warmupSteps',
    });
  if (step < warmup) return step / Math.max(1, warmup);
  switch (spec.kind) {
    case 'constant':
      return 1;
    case 'linear':
      return Math.max(0, (totalSteps - step) / Math.max(1, totalSteps - warmup));
    case 'cosine': {
      const cycles = spec.numCycles ?? 0.5;
      const progress = (step - warmup) / Math.max(1, totalSteps - warmup);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
    }
    default:
      throw new XltConfigError(`unknown schedule kind '${String((spec as { kind: unknown }).kind)}'`, {
        field: 'schedule.kind',
      });
  }
}

/** A schedule bound to a base lr and a step count; `step()` advances it as `scheduler.step()` does. */
export class LrScheduler {
  readonly spec: ScheduleSpec;
  readonly baseLr: number;
  readonly totalSteps: number;
  /** Number of `step()` calls so far (PyTorch's `last_epoch`). */
  current = 0;

  constructor(spec: ScheduleSpec, baseLr: number, totalSteps: number) {
    if (!(baseLr >= 0) || !Number.isFinite(baseLr))
      throw new XltConfigError(`lr must be a finite number >= 0, got ${baseLr}`, { field: 'lr' });
    if (!Number.isInteger(totalSteps) || totalSteps < 1)
      throw new XltConfigError(`total steps must be a positive integer, got ${totalSteps}`, {
        field: 'totalSteps',
      });
    this.spec = spec;
    this.baseLr = baseLr;
    this.totalSteps = totalSteps;
    lrMultiplier(spec, 0, totalSteps); // validates the spec
  }

  /** The lr the next optimiser step uses. */
  lr(): number {
    return this.baseLr * lrMultiplier(this.spec, this.current, this.totalSteps);
  }

  step(): void {
    this.current++;
  }
}
