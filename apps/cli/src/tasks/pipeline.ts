/**
 * The machinery of multi-step commands (`xlt recipe`, `xlt experiment`): resumable steps, the
 * runners that execute a step's command in this process or in an `xlt` child process, lanes, and
 * the steps both kinds of command share (corpus, tokenizer, a masked-LM pre-training config).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { writeFileAtomic, XltError } from '@xlt/core';
import { trainUnigram } from '@xlt/tokenizer';
import { z } from 'zod';
import { validateConfig } from '../cli/config.js';
import type { Command, CommandContext } from '../cli/main.js';
import { buildCorpus, type CorpusManifest } from './corpus.js';
import { museDictionaries } from './corpus-switch.js';
import type { RecipeSettings } from './recipes.js';

/** Position of a step among a command's steps (for the `== i/n name` log lines). */
export interface StepIndex {
  i: number;
  n: number;
}

/** A step of a pipeline: done when `<run dir>/<name>/done.json` exists (so a rerun skips it). */
export async function step(
  ctx: CommandContext,
  name: string,
  index: StepIndex,
  work: (dir: string, log: (l: string) => void) => Promise<unknown>,
): Promise<void> {
  index.i++;
  const dir = path.join(ctx.runDir, name);
  const marker = path.join(dir, 'done.json');
  if (existsSync(marker)) {
    ctx.log(`== ${index.i}/${index.n} ${name}: done before, skipped`);
    return;
  }
  ctx.log(`== ${index.i}/${index.n} ${name}`);
  const t0 = performance.now();
  const result = await work(dir, (l) => ctx.log(`  ${l}`));
  const seconds = (performance.now() - t0) / 1000;
  writeFileAtomic(marker, `${JSON.stringify({ seconds, result: result ?? null }, null, 2)}\n`);
  ctx.log(`== ${name} finished in ${(seconds / 60).toFixed(1)} min`);
}

/** Wall time (seconds) a finished step took when it ran, from its `done.json` (NaN if not done). */
export function stepSeconds(runDir: string, name: string): number {
  const f = path.join(runDir, name, 'done.json');
  return existsSync(f) ? readJson<{ seconds: number }>(f).seconds : Number.NaN;
}

/** Runs a step's command: in this process, or as an `xlt` child process (`self`, the CLI script). */
export type StepRunner = <S extends z.ZodType>(
  cmd: Command<S>,
  config: Record<string, unknown>,
  dir: string,
  log: (l: string) => void,
) => Promise<void>;

/** A {@link StepRunner} that runs the command in this process. */
export const runCommand: StepRunner = async (cmd, config, dir, log) => {
  const cfg = validateConfig(cmd.schema, config, `step ${cmd.name}`);
  writeFileAtomic(path.join(dir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
  await cmd.run(cfg, { runDir: dir, log });
};

/** Child processes of the running command, ended with it (a lane never outlives the command). */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGTERM');
});

/** A {@link StepRunner} that runs each command as `node <self> <command> --config <its config.json>`. */
export function childRunner(self: string): StepRunner {
  return async (cmd, config, dir, log) => {
    const cfg = validateConfig(cmd.schema, config, `step ${cmd.name}`);
    const file = path.join(dir, 'config.json');
    writeFileAtomic(file, `${JSON.stringify(cfg, null, 2)}\n`);
    const args = [self, ...cmd.name.split(' '), '--config', file, '--run-dir', dir];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const tail: string[] = [];
    const lines = (stream: NodeJS.ReadableStream) => {
      let rest = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        const parts = (rest + chunk).split('\n');
        rest = parts.pop() ?? '';
        for (const l of parts) {
          const line = l.replace(/\r/g, '');
          if (line.trim() === '') continue;
          log(`[${path.basename(dir)}] ${line}`);
          tail.push(line);
          if (tail.length > 5) tail.shift();
        }
      });
    };
    lines(child.stdout);
    lines(child.stderr);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c));
    });
    children.delete(child);
    if (code !== 0)
      throw new XltError('STATE', `step ${cmd.name} in ${dir} exited with ${code}: ${tail.join(' | ')}`);
  };
}

/** Runs the tasks, at most `lanes` at once, in order; the first failure rejects. */
export async function inLanes(tasks: Array<() => Promise<void>>, lanes: number): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < tasks.length) {
      const task = tasks[next++] as () => Promise<void>;
      await task();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(lanes, tasks.length)) }, lane));
}

/** How a command's independent chains run: lanes, the runner and the threads of each lane. */
export interface LanePlan {
  lanes: number;
  run: StepRunner;
  /** Threads per lane (undefined: the engine's default). */
  threads: number | undefined;
}

/**
 * At most `jobs` chains at once (default: the cores), each in its own `xlt` child process when the
 * CLI runs as a program (onnxruntime runs on the calling JS thread); in-process otherwise.
 */
export function lanePlan(
  ctx: CommandContext,
  o: { lanes?: number; threads?: number; jobs: number; what: string },
): LanePlan {
  const cores = availableParallelism();
  const lanes = ctx.self === undefined ? 1 : Math.max(1, Math.min(o.lanes ?? cores, o.jobs));
  const run = lanes > 1 ? childRunner(ctx.self as string) : runCommand;
  const threads = o.threads ?? (lanes > 1 ? Math.max(1, Math.floor(cores / lanes)) : undefined);
  if (lanes > 1) ctx.log(`${lanes} lanes (one xlt process per ${o.what}), ${threads} thread(s) each`);
  return { lanes, run, threads };
}

export function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(file, 'utf8')) as T;
}

/** The training and held-out text files of a corpus built by {@link corpusAndTokenizerSteps}. */
export interface CorpusFiles {
  /** language → training text. */
  text: Record<string, string>;
  /** language → held-out text. */
  heldOut: Record<string, string>;
  /** The tokenizer trained on all of the corpus's languages. */
  tokenizer: string;
}

/**
 * The steps `corpus` (raw text of `languages`, see {@link buildCorpus}) and `tokenizer` (a Unigram
 * vocabulary of `vocabSize` pieces over all of them); returns their files.
 */
export async function corpusAndTokenizerSteps(
  ctx: CommandContext,
  index: StepIndex,
  o: {
    dataRoot: string;
    languages: readonly string[];
    seed: number;
    vocabSize: number;
    maxSentencesPerLanguage?: number;
    /** Mix dictionary code-switched copies (MUSE `dict/muse-<source>-<l>.tsv`) into the text at this ratio. */
    codeSwitch?: { source: string; ratio: number };
  },
): Promise<CorpusFiles> {
  const corpusDir = path.join(ctx.runDir, 'corpus');
  await step(ctx, 'corpus', index, async (dir, log) => {
    const cs = o.codeSwitch;
    const m = await buildCorpus({
      dataRoot: o.dataRoot,
      languages: o.languages,
      out: dir,
      seed: o.seed,
      ...(cs !== undefined
        ? {
            codeSwitch: {
              source: cs.source,
              ratio: cs.ratio,
              dictionaries: museDictionaries(o.dataRoot, cs.source, o.languages),
            },
          }
        : {}),
      log,
    });
    return { units: Object.fromEntries(Object.entries(m.languages).map(([l, x]) => [l, x.trainUnits])) };
  });
  const manifest = readJson<CorpusManifest>(path.join(corpusDir, 'manifest.json'));
  const files = (key: 'train' | 'heldOut', fallback: (l: string) => string) =>
    Object.fromEntries(
      o.languages.map((l) => [l, path.join(corpusDir, manifest.languages[l]?.[key] ?? fallback(l))]),
    );
  const text = files('train', (l) => `${l}.txt`);
  const heldOut = files('heldOut', (l) => `${l}.heldout.txt`);
  const tokenizer = path.join(ctx.runDir, 'tokenizer', 'tokenizer.json');
  await step(ctx, 'tokenizer', index, async (_dir, log) => {
    const r = await trainUnigram({
      files: text,
      vocabSize: o.vocabSize,
      alpha: 0.3,
      seed: o.seed,
      ...(o.maxSentencesPerLanguage !== undefined
        ? { maxSentencesPerLanguage: o.maxSentencesPerLanguage }
        : {}),
      onProgress: (p) => {
        if (p.stage !== 'em') log(`tokenizer: ${p.message}`);
      },
      output: tokenizer,
    });
    log(`vocabulary of ${r.tokenizer.vocabSize} pieces in ${(r.elapsedMs / 1000).toFixed(1)} s`);
    return { vocabSize: r.tokenizer.vocabSize };
  });
  return { text, heldOut, tokenizer };
}

/**
 * The config of an `xlt pretrain` step for a new model of the settings' size (packed blocks,
 * held-out masked-LM loss per language, resumable checkpoints); `extra` adds seed, engine, threads.
 */
export function pretrainStepConfig(
  s: Pick<RecipeSettings, 'hiddenSize' | 'layers' | 'pretrain'>,
  o: {
    architecture: 'shared' | 'xmod';
    tokenizer: string;
    text: Record<string, string>;
    heldOut: Record<string, string>;
    maxSentencesPerLanguage?: number;
  },
  extra: Record<string, unknown>,
): Record<string, unknown> {
  return {
    init: 'small',
    hiddenSize: s.hiddenSize,
    layers: s.layers,
    architecture: o.architecture,
    tokenizer: o.tokenizer,
    text: o.text,
    heldOut: o.heldOut,
    packing: true,
    ...(o.maxSentencesPerLanguage !== undefined
      ? { maxSentencesPerLanguage: o.maxSentencesPerLanguage }
      : {}),
    steps: s.pretrain.steps,
    batchSize: s.pretrain.batchSize,
    maxLength: s.pretrain.maxLength,
    lr: s.pretrain.lr,
    warmupRatio: s.pretrain.warmupRatio,
    dropout: s.pretrain.dropout,
    maskProbability: s.pretrain.maskProbability,
    checkpointEvery: Math.max(50, Math.round(s.pretrain.steps / 10)),
    resume: true,
    ...extra,
  };
}

/** Config fields of every multi-step command: the first seed, data, threads, lanes and engine. */
export const pipelineFields = {
  seed: z.number().int().nonnegative().default(0),
  dataRoot: z.string().optional(),
  threads: z.number().int().positive().optional(),
  /** Models trained at once, each in its own `xlt` process (default: the cores; 1 in-process). */
  lanes: z.number().int().positive().optional(),
  engine: z.enum(['auto', 'tfjs', 'onnxruntime']).default('auto'),
};

/** Config fields that override a variant's model size and pre-training settings (tests use tiny ones). */
export const pretrainOverrideFields = {
  vocabSize: z.number().int().min(50).optional(),
  hiddenSize: z.number().int().positive().optional(),
  layers: z.number().int().positive().optional(),
  pretrainSteps: z.number().int().positive().optional(),
  pretrainBatchSize: z.number().int().positive().optional(),
  pretrainLr: z.number().positive().optional(),
  pretrainDropout: z.number().min(0).max(1).optional(),
  maskProbability: z.number().positive().max(1).optional(),
  blockSize: z.number().int().min(16).optional(),
};

type PretrainOverrides = {
  [K in keyof typeof pretrainOverrideFields]?: z.infer<(typeof pretrainOverrideFields)[K]>;
};

/** `base`'s size and pre-training settings with the config's overrides applied. */
export function withPretrainOverrides<
  S extends Pick<RecipeSettings, 'vocabSize' | 'hiddenSize' | 'layers' | 'pretrain'>,
>(base: S, cfg: PretrainOverrides): S {
  return {
    ...base,
    vocabSize: cfg.vocabSize ?? base.vocabSize,
    hiddenSize: cfg.hiddenSize ?? base.hiddenSize,
    layers: cfg.layers ?? base.layers,
    pretrain: {
      ...base.pretrain,
      steps: cfg.pretrainSteps ?? base.pretrain.steps,
      batchSize: cfg.pretrainBatchSize ?? base.pretrain.batchSize,
      lr: cfg.pretrainLr ?? base.pretrain.lr,
      dropout: cfg.pretrainDropout ?? base.pretrain.dropout,
      maskProbability: cfg.maskProbability ?? base.pretrain.maskProbability,
      maxLength: cfg.blockSize ?? base.pretrain.maxLength,
    },
  };
}
