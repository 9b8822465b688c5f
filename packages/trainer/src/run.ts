import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { isXltError, Rng, XltConfigError, XltFormatError } from '@xlt/core';
import { checkpointName, listCheckpoints, loadCheckpoint, saveCheckpoint } from './checkpoint.js';
import {
  createTrainer,
  type EngineChoice,
  type EngineName,
  type OnnxEngineOptions,
  type TrainEngine,
} from './engine.js';
import type { ParameterSource } from './params.js';
import { type ProgressInfo, ProgressPrinter, type TextSink } from './progress.js';
import type { LossFn, StepResult, TrainerOptions } from './trainer.js';

/** Where a batch is drawn: the global micro-batch index and a generator derived from the seed and index only. */
export interface BatchContext {
  /** 0-based index over all micro-batches of the run (step * gradAccumulation + micro). */
  index: number;
  /** Seeded per index, so a resumed run draws the same batches. */
  rng: Rng;
}

/** Makes the batch for a micro-batch index. Tensors in the returned object are disposed after use. */
export type BatchFn<B> = (ctx: BatchContext) => B;

/** Metrics of one evaluation, by name. */
export type EvalMetrics = Record<string, number>;

/** Hooks called during {@link fit}. */
export interface TrainCallbacks {
  onStep?(result: StepResult & { tokens: number }): void;
  onEval?(step: number, metrics: EvalMetrics, improved: boolean): void;
  onCheckpoint?(dir: string, step: number): void;
  /** On resume, a damaged checkpoint that was passed over for an older intact one. */
  onCheckpointSkipped?(dir: string, reason: string): void;
}

/** Options of {@link fit}: the trainer's hyper-parameters plus data, evaluation and run-directory settings. */
export interface FitOptions<B> extends TrainerOptions {
  /**
   * Training engine (default `auto`: the compiled onnxruntime step when the model and loss allow it,
   * see `onnxSupport`; else tfjs). Both give the same losses within float32 rounding.
   */
  engine?: EngineChoice;
  /** onnxruntime settings when the compiled engine runs. */
  onnx?: OnnxEngineOptions;
  /** Batch for each micro-batch index. */
  data: BatchFn<B>;
  /** Micro-batches per optimiser step (default 1). */
  gradAccumulation?: number;
  /** Run directory: `config.json`, `metrics.jsonl`, `checkpoints/`, `best/`, `summary.json`. */
  runDir?: string;
  /** Written to `config.json` with the resolved hyper-parameters. */
  config?: Record<string, unknown>;
  /** Evaluate every N steps (and after the last step) with `evaluate`. */
  evalEvery?: number;
  evaluate?: (step: number) => EvalMetrics | Promise<EvalMetrics>;
  /** Metric deciding the best checkpoint and early stopping (default: the first metric returned). */
  bestMetric?: string;
  /** Whether a larger `bestMetric` is better (default false: a loss). */
  greaterIsBetter?: boolean;
  /** Stop after this many evaluations without improvement. */
  earlyStoppingPatience?: number;
  /** Save a checkpoint every N steps (needs `runDir`), and at the end. */
  checkpointEvery?: number;
  /** Keep only the newest N step checkpoints (default 2). */
  keepCheckpoints?: number;
  /** Continue from the newest checkpoint in `runDir/checkpoints` when there is one. */
  resume?: boolean;
  /** Number of tokens in a batch (for tokens/s). */
  tokens?: (batch: B) => number;
  /** Number of token slots in a batch, padding included: progress lines then show the padding share. */
  slots?: (batch: B) => number;
  /**
   * Progress display: a sink (on a TTY one updating line, else plain lines every 10 steps), `'auto'`
   * for process.stderr, or false / left out for none. Its first line names the engine and why
   * ({@link engineLine}: `[stage] engine onnxruntime: supported model and head loss`).
   */
  progress?: TextSink | 'auto' | false;
  /** Label shown in progress lines. */
  stage?: string;
  callbacks?: TrainCallbacks;
}

/** What {@link fit} returns (also written to `summary.json`). */
export interface FitSummary {
  steps: number;
  losses: number[];
  gradNorms: number[];
  finalLoss: number;
  /** Best evaluation, when evaluating. */
  best?: { step: number; metrics: EvalMetrics };
  stoppedEarly: boolean;
  resumedFrom?: number;
  /** Damaged checkpoints passed over on resume (newest first), with what was wrong with each. */
  skippedCheckpoints?: Array<{ dir: string; reason: string }>;
  trainableParameters: string[];
  seconds: number;
  /** The engine that ran the steps and why it was chosen. */
  engine: EngineName;
  engineReason: string;
}

type Switchable = { train(on?: boolean): unknown; eval(): unknown };

function setMode(model: ParameterSource, training: boolean): void {
  const m = model as Partial<Switchable>;
  if (training && typeof m.train === 'function') m.train(true);
  if (!training && typeof m.eval === 'function') m.eval();
}

function disposeTensors(batch: unknown): void {
  if (batch instanceof tf.Tensor) batch.dispose();
  else if (batch !== null && typeof batch === 'object') {
    for (const v of Object.values(batch)) if (v instanceof tf.Tensor) v.dispose();
  }
}

function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, path);
}

/** The log line naming the engine of a run and why it was chosen: `[stage] engine onnxruntime: <why>`. */
export function engineLine(decision: { engine: EngineName; reason: string }, stage?: string): string {
  return `${stage !== undefined ? `[${stage}] ` : ''}engine ${decision.engine}: ${decision.reason}`;
}

/** The closing line of a run: `[stage] 20 steps, 12 trainable tensors, loss 2.3026 -> 0.4120 (3.1 s)`. */
export function summaryLine(summary: FitSummary, stage?: string): string {
  return `${stage !== undefined ? `[${stage}] ` : ''}${summary.steps} steps, ${summary.trainableParameters.length} trainable tensors, loss ${summary.losses[0]?.toFixed(4) ?? '?'} -> ${summary.finalLoss.toFixed(4)} (${summary.seconds.toFixed(1)} s)`;
}

/**
 * Trains `model` for `totalSteps` optimiser steps on batches from `data`, with evaluation,
 * best-checkpoint keeping, early stopping, periodic checkpoints and resume. Only parameters with
 * `trainable` set train (see `applyTrainable`). A model with `train()`/`eval()` (an `@xlt/xmod`
 * `Module`) is put in training mode, and in eval mode while `evaluate` runs.
 */
export async function fit<B>(
  model: ParameterSource,
  loss: LossFn<B>,
  options: FitOptions<B>,
): Promise<FitSummary> {
  const accum = options.gradAccumulation ?? 1;
  if (!Number.isInteger(accum) || accum < 1)
    throw new XltConfigError(`gradAccumulation must be a positive integer, got ${accum}`, {
      field: 'gradAccumulation',
    });
  if ((options.checkpointEvery !== undefined || options.resume === true) && options.runDir === undefined)
    throw new XltConfigError('checkpoints and resume need a runDir', { field: 'runDir' });
  const { trainer, decision } = await createTrainer<B>(model, loss, options);
  const seed = options.seed ?? 0;
  const dataRoot = new Rng(seed).fork('data');
  const runDir = options.runDir;
  const ckDir = runDir !== undefined ? join(runDir, 'checkpoints') : undefined;
  const keep = options.keepCheckpoints ?? 2;
  const bestMetric = options.bestMetric;
  const greater = options.greaterIsBetter ?? false;
  const summary: FitSummary = {
    steps: 0,
    losses: [],
    gradNorms: [],
    finalLoss: Number.NaN,
    stoppedEarly: false,
    trainableParameters: trainer.parameterNames(),
    seconds: 0,
    engine: decision.engine,
    engineReason: decision.reason,
  };
  let bestValue: number | undefined;
  let sinceBest = 0;
  const printer =
    options.progress === false || options.progress === undefined
      ? null
      : new ProgressPrinter(options.progress === 'auto' ? process.stderr : options.progress);
  printer?.log(engineLine(decision, options.stage));
  try {
    if (runDir !== undefined) {
      mkdirSync(runDir, { recursive: true });
      const {
        data: _d,
        evaluate: _e,
        tokens: _t,
        slots: _s,
        progress: _p,
        callbacks: _c,
        extraLosses: _x,
        noDecay: _n,
        config: _cfg,
        onnx: _o,
        ...plain
      } = options;
      writeJsonAtomic(join(runDir, 'config.json'), {
        ...plain,
        gradAccumulation: accum,
        seed,
        ...options.config,
      });
      if (options.resume === true && ckDir !== undefined) {
        // passing over a damaged checkpoint is always said, with or without a progress display
        const warn = (line: string) => (printer ? printer.log(line) : process.stderr.write(`${line}\n`));
        const { loaded, skipped } = await loadNewestIntact(listCheckpoints(ckDir), trainer);
        for (const s of skipped) {
          warn(`resume: checkpoint ${s.dir} is damaged, passed over: ${s.reason}`);
          options.callbacks?.onCheckpointSkipped?.(s.dir, s.reason);
        }
        if (skipped.length > 0) summary.skippedCheckpoints = skipped;
        if (loaded !== undefined) {
          printer?.log(`resume: continuing from ${loaded} (step ${trainer.step})`);
          summary.resumedFrom = trainer.step;
          // drop metric lines of steps after the checkpoint (they will be redone)
          const mpath = join(runDir, 'metrics.jsonl');
          if (existsSync(mpath)) {
            const kept = readFileSync(mpath, 'utf8')
              .split('\n')
              .filter((l) => l.trim() !== '' && (JSON.parse(l) as { step: number }).step <= trainer.step);
            writeFileSync(`${mpath}.tmp`, kept.map((l) => `${l}\n`).join(''));
            renameSync(`${mpath}.tmp`, mpath);
          }
          const bestPath = join(runDir, 'best', 'manifest.json');
          if (existsSync(bestPath)) {
            const m = JSON.parse(readFileSync(bestPath, 'utf8')) as {
              step: number;
              meta: { metrics?: EvalMetrics };
            };
            if (m.meta.metrics !== undefined) {
              summary.best = { step: m.step, metrics: m.meta.metrics };
              const key = bestMetric ?? Object.keys(m.meta.metrics)[0];
              if (key !== undefined) bestValue = m.meta.metrics[key];
            }
          }
        }
      }
    }
    if (runDir !== undefined && summary.resumedFrom !== undefined && trainer.step >= options.totalSteps) {
      // the run had already finished: hand back its summary
      const path = join(runDir, 'summary.json');
      if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8')) as FitSummary;
    }
    setMode(model, true);
    const t0 = performance.now();
    const startStep = trainer.step;
    let tokens = 0;
    let slots = 0;
    while (trainer.step < options.totalSteps) {
      const batches: B[] = [];
      for (let micro = 0; micro < accum; micro++) {
        const index = trainer.step * accum + micro;
        batches.push(options.data({ index, rng: dataRoot.fork(`batch${index}`) }));
      }
      let stepTokens = 0;
      if (options.tokens !== undefined) for (const b of batches) stepTokens += options.tokens(b);
      if (options.slots !== undefined) for (const b of batches) slots += options.slots(b);
      let result: StepResult;
      try {
        result = await trainer.trainStep(batches);
      } finally {
        for (const b of batches) disposeTensors(b);
      }
      // a tfjs step is synchronous: give timers, signals and messages a turn after every step, so
      // that SIGINT/SIGTERM handlers, progress timers and a test runner's RPC are never starved
      await new Promise<void>((resolve) => setImmediate(resolve));
      tokens += stepTokens;
      summary.losses.push(result.loss);
      summary.gradNorms.push(result.gradNorm);
      summary.steps = result.step;
      summary.finalLoss = result.loss;
      const elapsed = (performance.now() - t0) / 1000;
      const done = result.step - startStep;
      const info: ProgressInfo = {
        ...result,
        totalSteps: options.totalSteps,
        tokensPerSecond: options.tokens !== undefined ? tokens / Math.max(elapsed, 1e-9) : Number.NaN,
        etaSeconds: (elapsed / done) * (options.totalSteps - result.step),
      };
      if (options.slots !== undefined && slots > 0) info.paddingShare = 1 - tokens / slots;
      if (options.stage !== undefined) info.stage = options.stage;
      printer?.update(info);
      options.callbacks?.onStep?.({ ...result, tokens: stepTokens });
      if (runDir !== undefined) {
        appendFileSync(
          join(runDir, 'metrics.jsonl'),
          `${JSON.stringify({ type: 'train', step: result.step, loss: result.loss, lr: result.lr, grad_norm: result.gradNorm, tokens: stepTokens })}\n`,
        );
      }
      const last = result.step >= options.totalSteps;
      if (
        options.evaluate !== undefined &&
        options.evalEvery !== undefined &&
        (result.step % options.evalEvery === 0 || last)
      ) {
        trainer.syncModel();
        setMode(model, false);
        const metrics = await options.evaluate(result.step);
        setMode(model, true);
        const key = bestMetric ?? Object.keys(metrics)[0];
        if (key === undefined || metrics[key] === undefined || !Number.isFinite(metrics[key]))
          throw new XltFormatError(`evaluation did not return a finite '${key ?? '?'}' metric`, {
            field: 'bestMetric',
          });
        const value = metrics[key] as number;
        const improved = bestValue === undefined || (greater ? value > bestValue : value < bestValue);
        if (improved) {
          bestValue = value;
          sinceBest = 0;
          summary.best = { step: result.step, metrics };
          if (runDir !== undefined) await saveCheckpoint(join(runDir, 'best'), trainer, { metrics });
        } else sinceBest++;
        if (runDir !== undefined)
          appendFileSync(
            join(runDir, 'metrics.jsonl'),
            `${JSON.stringify({ type: 'eval', step: result.step, ...metrics })}\n`,
          );
        printer?.log(
          `eval step ${result.step}: ${Object.entries(metrics)
            .map(([k, v]) => `${k} ${v.toFixed(4)}`)
            .join(' ')}${improved ? ' (best)' : ''}`,
        );
        options.callbacks?.onEval?.(result.step, metrics, improved);
        if (options.earlyStoppingPatience !== undefined && sinceBest >= options.earlyStoppingPatience) {
          summary.stoppedEarly = true;
        }
      }
      const wantCk =
        ckDir !== undefined &&
        options.checkpointEvery !== undefined &&
        (result.step % options.checkpointEvery === 0 || last || summary.stoppedEarly);
      if (wantCk && ckDir !== undefined) {
        const dir = join(ckDir, checkpointName(result.step));
        await saveCheckpoint(dir, trainer);
        options.callbacks?.onCheckpoint?.(dir, result.step);
        const all = listCheckpoints(ckDir);
        for (const old of all.slice(0, Math.max(0, all.length - keep)))
          rmSync(old, { recursive: true, force: true });
      }
      if (summary.stoppedEarly) {
        printer?.log(`early stopping at step ${result.step}: no improvement in ${sinceBest} evaluations`);
        break;
      }
    }
    trainer.syncModel();
    summary.seconds = (performance.now() - t0) / 1000;
    if (runDir !== undefined) writeJsonAtomic(join(runDir, 'summary.json'), summary);
    return summary;
  } finally {
    printer?.end();
    await trainer.dispose();
  }
}

/**
 * Loads the newest checkpoint of `dirs` (oldest first) that verifies and loads, passing over damaged
 * ones (each loads nothing when it fails). When there are checkpoints and none is intact, that is an
 * error: a resumed run never silently starts from scratch.
 */
async function loadNewestIntact<B>(
  dirs: string[],
  trainer: TrainEngine<B>,
): Promise<{ loaded: string | undefined; skipped: Array<{ dir: string; reason: string }> }> {
  const skipped: Array<{ dir: string; reason: string }> = [];
  for (const dir of [...dirs].reverse()) {
    try {
      await loadCheckpoint(dir, trainer);
      return { loaded: dir, skipped };
    } catch (e) {
      if (!isXltError(e)) throw e;
      skipped.push({ dir, reason: e.message });
    }
  }
  if (skipped.length > 0)
    throw new XltFormatError(
      `no intact checkpoint to resume from: ${skipped.map((s) => `${s.dir}: ${s.reason}`).join('; ')} (move them away to start from scratch)`,
      { file: dirname(skipped[0]?.dir ?? '') },
    );
  return { loaded: undefined, skipped };
}
