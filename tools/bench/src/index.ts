/**
 * `pnpm bench`: xlt's benchmarks. Each prints one line per measurement with medians; run it on an
 * otherwise idle machine. `XLT_BENCH=matmul,tokenizer` selects suites.
 */
import { BACKEND_ORDER, type BackendName, initBackend } from '@xlt/core';
import { baseLines, runBenchChild } from './base.js';
import { BENCH_CHILD_ENV } from './child.js';
import { jobsSpeedup } from './jobs.js';
import { matmulGflops } from './matmul.js';
import {
  onnxInferenceTokensPerSecond,
  onnxMatmulGflops,
  onnxTrainTokensPerSecond,
  SMALL_XMOD,
  tfjsInferenceTokensPerSecond,
} from './onnx.js';
import { safetensorsLoad } from './safetensors.js';
import { serveLoad } from './serve.js';
import { peakRssMiB } from './stats.js';
import { tokenizerEncode, tokenizerTrain } from './tokenizer.js';
import { FIXTURE_XMOD, tfjsTrainTokensPerSecond } from './train.js';
import { xmodLoad } from './xmod-load.js';

export { baseLines, runBenchChild } from './base.js';
export { baseInferLines, baseInferMeasure } from './base-infer.js';
export {
  mlmLine,
  mlmMeasure,
  serveLine,
  serveReadyMeasure,
  type TrainMeasurement,
  trainLine,
  trainMeasure,
  writeRandomModel,
} from './base-train.js';
export { jobsSpeedup } from './jobs.js';
export { matmulGflops } from './matmul.js';
export {
  encoderFlopsPerToken,
  onnxInferenceTokensPerSecond,
  onnxMatmulGflops,
  onnxTrainTokensPerSecond,
  SMALL_XMOD,
  tfjsInferenceTokensPerSecond,
} from './onnx.js';
export { safetensorsLoad } from './safetensors.js';
export { serveLoad } from './serve.js';
export { median, peakRssMiB, timeRuns } from './stats.js';
export { tokenizerEncode, tokenizerTrain } from './tokenizer.js';
export { FIXTURE_XMOD, type TfjsTrainResult, tfjsTrainTokensPerSecond, trainFlopsPerToken } from './train.js';
export { XLMR_BASE, xmodLoad } from './xmod-load.js';

async function availableBackends(): Promise<BackendName[]> {
  const out: BackendName[] = [];
  for (const b of BACKEND_ORDER) {
    try {
      await initBackend({ backend: b, log: false });
      out.push(b);
    } catch {
      // not available on this machine
    }
  }
  return out;
}

async function main(): Promise<void> {
  const childSpec = process.env[BENCH_CHILD_ENV];
  if (childSpec !== undefined) return runBenchChild(childSpec);
  const only = process.env.XLT_BENCH?.split(',').map((s) => s.trim());
  const want = (s: string) => only === undefined || only.includes(s);
  const backends = await availableBackends();
  console.log(`backends available: ${backends.join(', ')}`);
  if (want('matmul')) {
    for (const b of backends) {
      for (const n of [256, 512]) {
        const g = await matmulGflops(b, n);
        console.log(`matmul ${b} ${n}x${n}x${n}: ${g.toFixed(2)} GFLOP/s (median of 5)`);
      }
    }
  }
  const limits = new Map<number, number>();
  if (want('onnx') || want('train')) {
    for (const threads of [1, 2]) {
      const lim = await onnxMatmulGflops(1024, threads);
      limits.set(threads, lim);
      console.log(
        `matmul onnxruntime/cpu 1024x1024x1024 (${threads} thread${threads > 1 ? 's' : ''}): ${lim.toFixed(1)} GFLOP/s (median of 7)`,
      );
    }
  }
  if (want('onnx')) {
    for (const threads of [1, 2]) {
      const r = await onnxInferenceTokensPerSecond(SMALL_XMOD, 16, 128, threads);
      console.log(
        `infer onnxruntime/cpu small-xmod (h256 l4 b16 s128, ${threads} thread${threads > 1 ? 's' : ''}): ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.gflops.toFixed(1)} GFLOP/s`,
      );
    }
    // the same encoder on tfjs, side by side (fewer sequences: the cpu backend is slow)
    for (const b of backends) {
      const r = await tfjsInferenceTokensPerSecond(SMALL_XMOD, b, b === 'cpu' ? 2 : 4, 128);
      console.log(
        `infer tfjs/${b} small-xmod (h256 l4 b${b === 'cpu' ? 2 : 4} s128): ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.gflops.toFixed(2)} GFLOP/s`,
      );
    }
  }
  if (want('train')) {
    const threads = 2;
    const r = await onnxTrainTokensPerSecond(SMALL_XMOD, 16, 128, threads);
    const lim = limits.get(threads) ?? Number.NaN;
    console.log(
      `train onnxruntime/cpu small-xmod (h256 l4 b16 s128, ${threads} threads): ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.gflops.toFixed(1)} GFLOP/s, ${((100 * r.gflops) / lim).toFixed(0)}% of matmul limit, peak RSS ${peakRssMiB().toFixed(0)} MiB`,
    );
    const rf = await onnxTrainTokensPerSecond(FIXTURE_XMOD, 16, 24, threads);
    console.log(
      `train onnxruntime/cpu fixture-xmod (h32 l2 b16 s24, ${threads} threads): ${rf.tokensPerSecond.toFixed(0)} tokens/s, ${rf.gflops.toFixed(2)} GFLOP/s, ${((100 * rf.gflops) / lim).toFixed(1)}% of matmul limit, peak RSS ${peakRssMiB().toFixed(0)} MiB`,
    );
    // gradient accumulation: 2 micro-batches of the same shape per step (gradients graph twice, one update)
    for (const [label, cfg, b, s] of [
      ['small-xmod (h256 l4', SMALL_XMOD, 16, 128],
      ['fixture-xmod (h32 l2', FIXTURE_XMOD, 16, 24],
    ] as const) {
      const ra = await onnxTrainTokensPerSecond(cfg, b, s, threads, 5, 2);
      console.log(
        `train onnxruntime/cpu ${label} 2 x b${b} s${s} accumulated, ${threads} threads): ${ra.tokensPerSecond.toFixed(0)} tokens/s, ${ra.gflops.toFixed(2)} GFLOP/s`,
      );
    }
    // tfjs engine (@xlt/trainer's Trainer): the small X-Mod takes 1-2 min a step on cpu, so 2 steps
    // (XLT_BENCH_TRAIN_STEPS overrides); peak RSS is the process's, with this measurement's rise
    const steps = Number(process.env.XLT_BENCH_TRAIN_STEPS ?? 0);
    let tfjsCpuSmall: number | undefined;
    for (const b of backends.filter((x) => x === 'cpu' || x === 'wasm')) {
      const limit = await matmulGflops(b, 512);
      console.log(`matmul tfjs/${b} 512x512x512 (train limit): ${limit.toFixed(2)} GFLOP/s (median of 5)`);
      const runs: Array<[string, typeof SMALL_XMOD, number, number, number]> = [
        ['fixture-xmod (h32 l2 b16 s24)', FIXTURE_XMOD, 16, 24, steps || 5],
        ['small-xmod (h256 l4 b16 s128)', SMALL_XMOD, 16, 128, steps || 2],
      ];
      for (const [label, config, batch, seq, n] of runs) {
        const t = await tfjsTrainTokensPerSecond(b, config, batch, seq, n);
        if (config === SMALL_XMOD && b === 'cpu') tfjsCpuSmall = t.tokensPerSecond;
        console.log(
          `train tfjs/${b} ${label}: ${t.tokensPerSecond.toFixed(1)} tokens/s, ${t.gflops.toFixed(2)} GFLOP/s, ${((100 * t.gflops) / limit).toFixed(0)}% of matmul limit (median of ${n} steps), peak RSS ${t.peakRssMiB.toFixed(0)} MiB (+${t.peakRssRiseMiB.toFixed(0)} in this run), tensors ${t.tensorMiB.toFixed(1)} MiB`,
        );
      }
    }
    if (tfjsCpuSmall !== undefined)
      console.log(
        `train speed ratio onnxruntime/tfjs-cpu small-xmod: ${(r.tokensPerSecond / tfjsCpuSmall).toFixed(0)}x`,
      );
  }
  if (want('safetensors')) console.log(await safetensorsLoad());
  if (want('xmod-load')) console.log(await xmodLoad());
  if (want('tokenizer')) {
    for (const line of [await tokenizerEncode(), await tokenizerTrain()])
      console.log(line ?? 'tokenizer: skipped (../shared not found)');
  }
  if (want('serve')) {
    for (const line of await serveLoad()) console.log(line);
  }
  if (want('jobs')) {
    for (const line of await jobsSpeedup()) console.log(line);
  }
  // base size (XLM-R-base shapes, ~1.1 GB of weights): only when asked, XLT_BENCH=base
  if (only?.includes('base')) await baseLines();
  console.log(`peak RSS: ${peakRssMiB().toFixed(0)} MiB`);
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
