import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type SafetensorsTensor, writeSafetensors } from '@xlt/core';
import {
  CompiledTrainStep,
  type CompiledTrainStepOptions,
  type EncoderConfig,
  formatGiB,
  type HeadKind,
  randomWeights,
  type TrainMemoryEstimate,
  weightShapes,
} from '@xlt/onnx';
import { encoderFlopsPerToken } from './onnx.js';
import { median, peakRssMiB, timeRuns } from './stats.js';

/** Full fine-tuning, or every parameter but the embedding tables. */
export type TrainVariant = 'full' | 'frozen-embeddings';
/** The masked-LM head on every position, or on the labelled ones only. */
export type MlmVariant = 'dense' | 'labelled';

/** What one training measurement reports. */
export interface TrainMeasurement {
  tokensPerSecond: number;
  /** 3 x the encoder's forward matmul FLOPs per token (and the LM decoder's, on the positions it runs on). */
  gflops: number;
  peakRssMiB: number;
  /** Seconds to trace the graph and build the onnxruntime session. */
  setupSeconds: number;
  /** The same with onnxruntime's optimised graph from the session cache (built after the timed steps). */
  cachedSetupSeconds: number;
  /** The step's own memory estimate (`estimateTrainMemory`), bytes. */
  estimateBytes: number;
  /** Each timed step's loss, in order. */
  losses: number[];
  /** What ran the update (`CompiledTrainStep.updateKernelName`: fused, native, wasm or onnxruntime). */
  updateKernel: string;
}

/** Batch shape, threads and repetitions of a measurement. */
export interface MeasureShape {
  threads: number;
  batch?: number;
  seq?: number;
  /** Timed steps after one warm-up step (default 3). */
  reps?: number;
}

const ADAMW = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };
const EMBEDDING_TABLES = /embeddings\.(word|position|token_type)_embeddings\.weight$/;
const NER_LABELS = 7;

function syntheticIds(config: EncoderConfig, batch: number, seq: number): number[][] {
  return Array.from({ length: batch }, (_, i) =>
    Array.from({ length: seq }, (_, j) => (j === 0 ? 0 : 4 + ((i * 31 + j * 7) % (config.vocab_size - 5)))),
  );
}

async function measureStep(
  config: EncoderConfig,
  head: HeadKind,
  trainable: (name: string) => boolean,
  labels: (ids: number[][]) => number[][],
  shape: MeasureShape,
  extra: { maskedLmHead?: MlmVariant },
  flopsPerToken: number,
): Promise<TrainMeasurement> {
  const batch = shape.batch ?? 8;
  const seq = shape.seq ?? 128;
  const weights = randomWeights(config, head, 0);
  const names = [...weightShapes(config, head).keys()].filter(trainable);
  let estimate: TrainMemoryEstimate | undefined;
  const cacheDir = mkdtempSync(path.join(tmpdir(), 'xlt-bench-session-'));
  const options: CompiledTrainStepOptions = {
    config,
    weights,
    head,
    trainable: names,
    adamw: ADAMW,
    threads: shape.threads,
    dropoutSeed: 0,
    updateWeightsInPlace: true,
    frozenAsInputs: true,
    batchShape: { batchSize: batch, sequenceLength: seq },
    onMemoryEstimate: (e) => {
      estimate = e;
    },
    sessionCacheDir: cacheDir,
    ...extra,
  };
  const t0 = performance.now();
  const step = await CompiledTrainStep.create(options);
  const setupSeconds = (performance.now() - t0) / 1000;
  const ids = syntheticIds(config, batch, seq);
  const b = { inputIds: ids, attentionMask: ids.map((row) => row.map(() => 1)), labels: labels(ids) };
  const losses: number[] = [];
  const times = await timeRuns(async () => {
    losses.push((await step.run(b, 1e-5)).loss);
  }, shape.reps ?? 3);
  const updateKernel = step.updateKernelName;
  await step.release();
  const peak = peakRssMiB();
  // again, from the session cache the first build filled (after the peak RSS was read)
  let cachedSetupSeconds = Number.NaN;
  try {
    const t1 = performance.now();
    const again = await CompiledTrainStep.create(options);
    cachedSetupSeconds = again.sessionFromCache ? (performance.now() - t1) / 1000 : Number.NaN;
    await again.release();
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
  const tokensPerSecond = (batch * seq) / median(times);
  return {
    tokensPerSecond,
    gflops: (tokensPerSecond * 3 * flopsPerToken) / 1e9,
    peakRssMiB: peak,
    setupSeconds,
    cachedSetupSeconds,
    estimateBytes: estimate?.totalBytes ?? Number.NaN,
    losses: losses.slice(1),
    updateKernel,
  };
}

/**
 * Token classification (7 labels) fine-tuning with the compiled step on random weights of `config`:
 * every parameter trainable (`full`) or the embedding tables frozen (`frozen-embeddings`), batch
 * 8 x 128 by default, parameters updated in place, frozen ones fed (no copy in onnxruntime).
 */
export function trainMeasure(
  variant: TrainVariant,
  config: EncoderConfig,
  shape: MeasureShape,
): Promise<TrainMeasurement> {
  const cfg = { ...config, num_labels: NER_LABELS };
  return measureStep(
    cfg,
    'token-classification',
    (n) => variant === 'full' || !EMBEDDING_TABLES.test(n),
    (ids) => ids.map((row, i) => row.map((_, j) => (j === 0 ? -100 : (i + j) % NER_LABELS))),
    shape,
    {},
    encoderFlopsPerToken(cfg, shape.seq ?? 128),
  );
}

/**
 * Masked-LM training (every parameter, 1 position in 7 labelled, ~14%) with the LM head on every
 * position (`dense`) or on the labelled ones only (`labelled`): the same losses, different work.
 */
export function mlmMeasure(
  variant: MlmVariant,
  config: EncoderConfig,
  shape: MeasureShape,
): Promise<TrainMeasurement> {
  const share = variant === 'dense' ? 1 : 1 / 7;
  const H = config.hidden_size;
  return measureStep(
    config,
    'masked-lm',
    () => true,
    (ids) => ids.map((row) => row.map((v, j) => (j % 7 === 3 ? v : -100))),
    shape,
    { maskedLmHead: variant },
    encoderFlopsPerToken(config, shape.seq ?? 128) + share * 2 * H * (H + config.vocab_size),
  );
}

/**
 * Writes a random token-classification model of `config` (config.json + model.safetensors) into a
 * new temporary folder; the caller removes it.
 */
export async function writeRandomModel(config: EncoderConfig): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'xlt-bench-base-'));
  const cfg = {
    ...config,
    architectures: ['XLMRobertaForTokenClassification'],
    id2label: Object.fromEntries(Array.from({ length: NER_LABELS }, (_, i) => [String(i), `L${i}`])),
  };
  const head = 'token-classification';
  const w = randomWeights(cfg, head, 0);
  const tensors: Record<string, SafetensorsTensor> = {};
  for (const [n, shape] of weightShapes(cfg, head)) tensors[n] = { dtype: 'F32', shape, data: w.get(n).data };
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  return dir;
}

/** How a served model starts: without a session cache, writing it (first start), or from it. */
export type ServeStart = 'plain' | 'cold' | 'warm';

/** The session cache folder the `cold` and `warm` starts of a model folder share (inside the folder). */
export const serveCacheDir = (dir: string): string => path.join(dir, 'serve-cache');

/**
 * Loads the model folder as `xlt-serve` does (`ServedModel.load`, `createServer`, listen on
 * 127.0.0.1) and answers one request; `readySeconds` is the process's uptime when it listened.
 * `cold` and `warm` start with `--cache-dir` (see {@link serveCacheDir}): the first writes the
 * optimised graph, the second loads it.
 */
export async function serveReadyMeasure(
  dir: string,
  threads: number,
  start: ServeStart = 'plain',
): Promise<{ readySeconds: number; peakRssMiB: number; status: number; fromCache: boolean | undefined }> {
  const { createServer, ServedModel, whitespaceTokenizer } = await import('@xlt/serve');
  const model = await ServedModel.load(dir, {
    threads,
    ...(start === 'plain' ? {} : { cacheDir: serveCacheDir(dir) }),
  });
  const server = await createServer({ model, tokenizer: whitespaceTokenizer() });
  const address = await server.app.listen({ port: 0, host: '127.0.0.1' });
  const readySeconds = process.uptime();
  const res = await fetch(`${address}/v1/tag`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'a quick test sentence' }),
  });
  await res.arrayBuffer();
  await server.shutdown();
  return { readySeconds, peakRssMiB: peakRssMiB(), status: res.status, fromCache: model.sessionFromCache };
}

/** Clean-up of {@link writeRandomModel}'s folder. */
export function removeModel(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** `train onnxruntime/cpu <label> <variant> (bB sS, T threads): N tokens/s, G GFLOP/s, P% of matmul limit, peak RSS M MiB`. */
export function trainLine(
  label: string,
  variant: TrainVariant,
  shape: MeasureShape,
  r: TrainMeasurement,
  matmulLimit: number,
): string {
  return `train onnxruntime/cpu ${label} ${variant} (b${shape.batch ?? 8} s${shape.seq ?? 128}, ${shape.threads} threads): ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.gflops.toFixed(1)} GFLOP/s, ${((100 * r.gflops) / matmulLimit).toFixed(0)}% of matmul limit, peak RSS ${r.peakRssMiB.toFixed(0)} MiB (session ${r.setupSeconds.toFixed(1)} s, ${r.cachedSetupSeconds.toFixed(1)} s from the session cache, estimate ~${formatGiB(r.estimateBytes)}, median of ${r.losses.length} steps, update ${r.updateKernel})`;
}

/** `mlm onnxruntime/cpu <label> <variant> (bB sS, T threads): N tokens/s`, with peak RSS and the losses. */
export function mlmLine(
  label: string,
  variant: MlmVariant,
  shape: MeasureShape,
  r: TrainMeasurement,
): string {
  return `mlm onnxruntime/cpu ${label} ${variant} (b${shape.batch ?? 8} s${shape.seq ?? 128}, ${shape.threads} threads): ${r.tokensPerSecond.toFixed(0)} tokens/s, peak RSS ${r.peakRssMiB.toFixed(0)} MiB, losses ${r.losses.map((l) => l.toFixed(5)).join(' ')}`;
}

/**
 * `serve <label>: ready in S s` for a start from the session cache; the starts without it and the
 * one that writes it say so before `ready`.
 */
export function serveLine(
  label: string,
  r: { readySeconds: number; peakRssMiB: number },
  start: ServeStart = 'plain',
): string {
  const how = {
    plain: ' without --cache-dir',
    cold: ' --cache-dir, first start (exports, optimises, writes the cache)',
    warm: '',
  }[start];
  const note = start === 'warm' ? '--cache-dir, graph from the cache; ' : '';
  return `serve ${label}${how}: ready in ${r.readySeconds.toFixed(1)} s (${note}process start to listening, token classification fp32; peak RSS ${r.peakRssMiB.toFixed(0)} MiB)`;
}
