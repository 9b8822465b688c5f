import { availableParallelism } from 'node:os';
import { baseInferLines, baseInferMeasure } from './base-infer.js';
import {
  type MeasureShape,
  type MlmVariant,
  mlmLine,
  mlmMeasure,
  removeModel,
  type ServeStart,
  serveLine,
  serveReadyMeasure,
  type TrainMeasurement,
  type TrainVariant,
  trainLine,
  trainMeasure,
  writeRandomModel,
} from './base-train.js';
import { BENCH_CHILD_ENV, benchChild } from './child.js';
import { onnxMatmulGflops } from './onnx.js';
import { XLMR_BASE } from './xmod-load.js';

const LABEL = 'base-xlmr';
const TRAIN_VARIANTS: readonly TrainVariant[] = ['full', 'frozen-embeddings'];
const MLM_VARIANTS: readonly MlmVariant[] = ['dense', 'labelled'];
const SERVE_STARTS: readonly ServeStart[] = ['plain', 'cold', 'warm'];

/**
 * Runs the measurement a bench child was started for (`XLT_BENCH_CHILD`) and prints its JSON:
 * `infer-base:<fp32|int8>:<threads>`, `train-base:<full|frozen-embeddings>:<threads>`,
 * `mlm-base:<dense|labelled>:<threads>` or `serve-base:<threads>:<plain|cold|warm>:<model folder>`.
 */
export async function runBenchChild(spec: string): Promise<void> {
  const [kind, variant, threadsText, ...rest] = spec.split(':');
  const threads = Number(threadsText);
  const shape: MeasureShape = { threads };
  let out: unknown;
  if (kind === 'infer-base' && (variant === 'fp32' || variant === 'int8'))
    out = await baseInferMeasure(variant, threads);
  else if (kind === 'train-base' && TRAIN_VARIANTS.includes(variant as TrainVariant))
    out = await trainMeasure(variant as TrainVariant, XLMR_BASE, shape);
  else if (kind === 'mlm-base' && MLM_VARIANTS.includes(variant as MlmVariant))
    out = await mlmMeasure(variant as MlmVariant, XLMR_BASE, shape);
  else if (kind === 'serve-base' && variant !== undefined && SERVE_STARTS.includes(threadsText as ServeStart))
    // serve-base:<threads>:<start>:<dir> (the folder may hold ':')
    out = await serveReadyMeasure(rest.join(':'), Number(variant), threadsText as ServeStart);
  else
    throw new Error(
      `${BENCH_CHILD_ENV}='${spec}': expected infer-base:fp32|int8:<threads>, train-base:full|frozen-embeddings:<threads>, mlm-base:dense|labelled:<threads> or serve-base:<threads>:plain|cold|warm:<dir>`,
    );
  console.log(JSON.stringify(out));
}

/** GFLOP/s of onnxruntime's MatMul at 1024^3 and 2048^3 (median of 7 runs each). */
async function matmulReadings(threads: number): Promise<number[]> {
  return [await onnxMatmulGflops(1024, threads), await onnxMatmulGflops(2048, threads)];
}

/**
 * `XLT_BENCH=base`: full and frozen-embeddings fine-tuning, dense and
 * labelled-positions masked-LM training, fp32 and int8 inference, and a served model's start, each
 * measured in its own process on a random model of XLM-R-base's shapes, the train lines against the
 * matmul limit read before and after them.
 */
export async function baseLines(
  threads = availableParallelism(),
  log: (line: string) => void = console.log,
): Promise<void> {
  // the limit is the best the machine does: measured at two sizes before and after the train
  // lines, the highest taken (one reading taken under a passing load, e.g. right after the build,
  // read 50 GFLOP/s where the same matmul ran at 120-160 minutes later, and put a step at 175%)
  const before = await matmulReadings(threads);
  const shape: MeasureShape = { threads };
  const tried = async <T>(what: string, f: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await f();
    } catch (e) {
      log(`${what}: failed: ${(e as Error).message.split('\n')[0]}`);
      return undefined;
    }
  };
  const trained: Array<[TrainVariant, TrainMeasurement]> = [];
  for (const variant of TRAIN_VARIANTS) {
    const r = await tried(`train ${LABEL} ${variant}`, () =>
      benchChild<TrainMeasurement>(`train-base:${variant}:${threads}`),
    );
    if (r !== undefined) trained.push([variant, r]);
  }
  const readings = [...before, ...(await matmulReadings(threads))];
  const limit = Math.max(...readings);
  log(
    `matmul onnxruntime/cpu limit (${threads} threads): ${limit.toFixed(1)} GFLOP/s (the highest of 1024^3 and 2048^3, median of 7 each, before and after the train lines: ${readings.map((g) => g.toFixed(1)).join(', ')})`,
  );
  for (const [variant, r] of trained) log(trainLine(LABEL, variant, shape, r, limit));
  const mlm = new Map<MlmVariant, number>();
  for (const variant of MLM_VARIANTS) {
    const r = await tried(`mlm ${LABEL} ${variant}`, () =>
      benchChild<TrainMeasurement>(`mlm-base:${variant}:${threads}`),
    );
    if (r === undefined) continue;
    mlm.set(variant, r.tokensPerSecond);
    log(mlmLine(LABEL, variant, shape, r));
  }
  if (mlm.size === 2)
    log(
      `mlm speed ratio ${LABEL} labelled/dense: ${((mlm.get('labelled') ?? 0) / (mlm.get('dense') ?? 1)).toFixed(2)}x`,
    );
  for (const line of (await tried(`infer ${LABEL}`, () => baseInferLines(threads))) ?? []) log(line);
  const dir = await writeRandomModel(XLMR_BASE);
  try {
    for (const start of SERVE_STARTS) {
      const r = await tried(`serve ${LABEL} (${start})`, () =>
        benchChild<{ readySeconds: number; peakRssMiB: number }>(`serve-base:${threads}:${start}:${dir}`),
      );
      if (r !== undefined) log(serveLine(LABEL, r, start));
    }
  } finally {
    removeModel(dir);
  }
}
