import { availableParallelism } from 'node:os';
import { exportToOnnx, OnnxModel, quantizeDynamicInt8, randomWeights } from '@xlt/onnx';
import { benchChild } from './child.js';
import { median, peakRssMiB, timeRuns } from './stats.js';
import { XLMR_BASE } from './xmod-load.js';

/** Inference precision of {@link baseInferMeasure}. */
export type Precision = 'fp32' | 'int8';

/**
 * Inference tokens/s of a random XLM-R-base encoder (base head, `last_hidden_state`) exported to
 * ONNX, float32 or dynamically quantized to int8, and the process's peak RSS (export included).
 */
export async function baseInferMeasure(
  precision: Precision,
  threads: number,
  batch = 16,
  seq = 128,
  reps = 3,
): Promise<{ tokensPerSecond: number; peakRssMiB: number }> {
  const exported = exportToOnnx({
    config: XLMR_BASE,
    weights: randomWeights(XLMR_BASE, 'base', 0),
    head: 'base',
  }).model;
  const bytes = precision === 'int8' ? quantizeDynamicInt8(exported).model : exported;
  const model = await OnnxModel.load(bytes, { threads });
  const ids = Array.from({ length: batch }, (_, i) =>
    Array.from({ length: seq }, (_, j) =>
      j === 0 ? 0 : 4 + ((i * 31 + j * 7) % (XLMR_BASE.vocab_size - 5)),
    ),
  );
  const times = await timeRuns(async () => {
    await model.run({ inputIds: ids });
  }, reps);
  await model.release();
  return { tokensPerSecond: (batch * seq) / median(times), peakRssMiB: peakRssMiB() };
}

/**
 * `infer onnxruntime/cpu base-xlmr fp32 (b16 s128, T threads): N tokens/s, peak RSS M MiB` and the
 * same for `int8`, each measured in its own process (so that one's peak RSS is not the other's).
 */
export async function baseInferLines(threads = availableParallelism()): Promise<string[]> {
  const lines: string[] = [];
  const tps = new Map<Precision, number>();
  for (const precision of ['fp32', 'int8'] as const) {
    const r = await benchChild<{ tokensPerSecond: number; peakRssMiB: number }>(
      `infer-base:${precision}:${threads}`,
    );
    tps.set(precision, r.tokensPerSecond);
    lines.push(
      `infer onnxruntime/cpu base-xlmr ${precision} (b16 s128, ${threads} threads): ${r.tokensPerSecond.toFixed(0)} tokens/s, peak RSS ${r.peakRssMiB.toFixed(0)} MiB (median of 3; RSS includes the export)`,
    );
  }
  lines.push(
    `infer speed ratio base-xlmr int8/fp32: ${((tps.get('int8') ?? 0) / (tps.get('fp32') ?? 1)).toFixed(2)}x`,
  );
  return lines;
}
