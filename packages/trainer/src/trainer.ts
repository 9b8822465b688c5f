import * as tf from '@tensorflow/tfjs-core';
import { Rng, XltConfigError, XltError } from '@xlt/core';
import { ensureGradients } from './gradients.js';
import { AdamW, type AdamWOptions, clipGradNorm } from './optim.js';
import { type ParameterSource, trainableParameters } from './params.js';
import { LrScheduler, type ScheduleSpec } from './schedule.js';

/** What a loss function gets besides the batch. */
export interface LossContext {
  /** Optimiser steps done before this one. */
  step: number;
  /** Index of the micro-batch within the step (gradient accumulation). */
  micro: number;
  /** A generator forked per step and micro-batch from the trainer's seeded Rng (e.g. for dropout). */
  rng: Rng;
}

/** Computes a scalar loss for one batch, from the model's current variables. Called inside a gradient tape. */
export type LossFn<B> = (batch: B, ctx: LossContext) => tf.Scalar;

/** Trainer hyper-parameters. */
export interface TrainerOptions extends AdamWOptions {
  /** Base learning rate. */
  lr: number;
  /** Optimiser steps of the run (the schedule decays to 0 here). */
  totalSteps: number;
  /** LR schedule (default linear, no warm-up). */
  schedule?: ScheduleSpec;
  /** Global gradient-norm clipping (default 1.0, as transformers' Trainer; null disables). */
  maxGradNorm?: number | null;
  /** Seed of the trainer's Rng (default 0). */
  seed?: number;
  /** Extra losses added to the objective's loss (e.g. regularisers). */
  extraLosses?: Array<LossFn<unknown>>;
}

/** What one optimiser step did. */
export interface StepResult {
  /** 1-based number of this step. */
  step: number;
  /** Mean loss over the micro-batches. */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Learning rate used for this update. */
  lr: number;
}

/** Everything needed to continue a run exactly (moments go in a separate tensor file). */
export interface TrainerState {
  step: number;
  schedulerStep: number;
  rng: ReturnType<Rng['getState']>;
}

/**
 * One optimiser over a model's trainable parameters (those with `variable.trainable` when the
 * trainer is built), in PyTorch's order per step: loss and backward (summed over micro-batches,
 * each scaled by 1/n), clip_grad_norm_, AdamW step with the scheduler's lr, scheduler step.
 * A NaN/Inf loss or gradient stops with an XltError of code `NUMERIC` naming the step and parameter.
 */
export class Trainer<B> {
  readonly engine = 'tfjs' as const;
  readonly model: ParameterSource;
  readonly optimizer: AdamW;
  readonly scheduler: LrScheduler;
  readonly maxGradNorm: number | null;
  readonly rng: Rng;
  private readonly lossFn: LossFn<B>;
  private readonly extra: Array<LossFn<unknown>>;
  private readonly params: Array<[string, tf.Variable]>;
  private readonly nameOf = new Map<string, string>();
  /** Optimiser steps done. */
  step = 0;

  constructor(model: ParameterSource, lossFn: LossFn<B>, options: TrainerOptions) {
    ensureGradients();
    this.model = model;
    this.lossFn = lossFn;
    this.extra = options.extraLosses ?? [];
    this.params = trainableParameters(model);
    if (this.params.length === 0)
      throw new XltConfigError('the model has no trainable parameter', { field: 'trainable' });
    for (const [name, v] of this.params) this.nameOf.set(v.name, name);
    this.optimizer = new AdamW(this.params, options);
    this.scheduler = new LrScheduler(options.schedule ?? { kind: 'linear' }, options.lr, options.totalSteps);
    const clip = options.maxGradNorm === undefined ? 1.0 : options.maxGradNorm;
    if (clip !== null && !(clip > 0))
      throw new XltConfigError(`maxGradNorm must be > 0 or null, got ${clip}`, { field: 'maxGradNorm' });
    this.maxGradNorm = clip;
    this.rng = new Rng(options.seed ?? 0);
  }

  /** Names of the parameters this trainer updates. */
  parameterNames(): string[] {
    return this.params.map(([n]) => n);
  }

  /** One optimiser step over one batch, or over several micro-batches (gradient accumulation). */
  trainStep(batches: B | B[]): StepResult {
    const list = Array.isArray(batches) ? batches : [batches];
    if (list.length === 0)
      throw new XltConfigError('trainStep needs at least one batch', { field: 'batches' });
    const stepNo = this.step + 1;
    const scale = 1 / list.length;
    const vars = this.params.map(([, v]) => v);
    let acc: Map<string, tf.Tensor> | null = null;
    let lossSum = 0;
    try {
      for (let micro = 0; micro < list.length; micro++) {
        const batch = list[micro] as B;
        const ctx: LossContext = { step: this.step, micro, rng: this.rng.fork(`step${this.step}.${micro}`) };
        const { value, grads } = tf.variableGrads(() => {
          let loss: tf.Scalar = this.lossFn(batch, ctx);
          for (const f of this.extra) loss = tf.add(loss, f(batch, ctx));
          return list.length === 1 ? loss : tf.mul(loss, scale);
        }, vars);
        const lossValue = (value.dataSync()[0] as number) / (list.length === 1 ? 1 : scale);
        value.dispose();
        const named = new Map<string, tf.Tensor>();
        for (const [vn, g] of Object.entries(grads)) named.set(this.nameOf.get(vn) as string, g);
        if (!Number.isFinite(lossValue)) {
          tf.dispose([...named.values()]);
          throw new XltError('NUMERIC', `loss is ${lossValue} at step ${stepNo}`, { field: 'loss' });
        }
        lossSum += lossValue;
        if (acc === null) acc = named;
        else {
          for (const [n, g] of named) {
            const prev = acc.get(n);
            if (prev === undefined) acc.set(n, g);
            else {
              acc.set(n, tf.add(prev, g));
              prev.dispose();
              g.dispose();
            }
          }
        }
      }
      const grads = acc as Map<string, tf.Tensor>;
      const clipped = clipGradNorm(grads, this.maxGradNorm);
      if (!Number.isFinite(clipped.norm)) {
        const bad = clipped.paramNorms.find(([, n]) => !Number.isFinite(n));
        tf.dispose([...clipped.grads.values()]);
        throw new XltError('NUMERIC', `gradient norm is ${clipped.norm} at step ${stepNo}`, {
          tensor: bad?.[0] ?? 'unknown',
        });
      }
      const lr = this.scheduler.lr();
      this.optimizer.step(clipped.grads, lr);
      tf.dispose([...clipped.grads.values()]);
      this.scheduler.step();
      this.step = stepNo;
      return { step: stepNo, loss: lossSum / list.length, gradNorm: clipped.norm, lr };
    } finally {
      if (acc !== null) tf.dispose([...acc.values()]);
    }
  }

  /** Parameters are the model's variables already: nothing to copy (see `OnnxTrainer.syncModel`). */
  syncModel(): void {}

  /** Step counters and RNG state (see {@link TrainerState}). */
  getState(): TrainerState {
    return { step: this.step, schedulerStep: this.scheduler.current, rng: this.rng.getState() };
  }

  setState(state: TrainerState): void {
    this.step = state.step;
    this.scheduler.current = state.schedulerStep;
    this.rng.setState(state.rng);
  }

  /** Frees the optimiser's buffers (not the model). */
  dispose(): void {
    this.optimizer.dispose();
  }
}
