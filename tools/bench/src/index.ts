/**
 * `pnpm bench`: xlt's benchmarks. Each prints one line per measurement with medians; run it on an
 * otherwise idle machine. `XLT_BENCH=matmul,tokenizer` selects suites.
 */
import { BACKEND_ORDER, type BackendName, initBackend } from '@xlt/core';
import { matmulGflops } from './matmul.js';
import {
  onnxInferenceTokensPerSecond,
  onnxMatmulGflops,
  onnxTrainTokensPerSecond,
  SMALL_XMOD,
} from './onnx.js';
import { safetensorsLoad } from './safetensors.js';
import { serveLoad } from './serve.js';
import { peakRssMiB } from './stats.js';
import { tokenizerEncode, tokenizerTrain } from './tokenizer.js';

export { matmulGflops } from './matmul.js';
export {
  encoderFlopsPerToken,
  onnxInferenceTokensPerSecond,
  onnxMatmulGflops,
  onnxTrainTokensPerSecond,
  SMALL_XMOD,
} from './onnx.js';
export { safetensorsLoad } from './safetensors.js';
export { serveLoad } from './serve.js';
export { median, peakRssMiB, timeRuns } from './stats.js';
export { tokenizerEncode, tokenizerTrain } from './tokenizer.js';

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
  }
  if (want('train')) {
    const threads = 2;
    const r = await onnxTrainTokensPerSecond(SMALL_XMOD, 16, 128, threads);
    const lim = limits.get(threads) ?? Number.NaN;
    console.log(
      `train onnxruntime/cpu small-xmod (h256 l4 b16 s128, ${threads} threads): ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.gflops.toFixed(1)} GFLOP/s, ${((100 * r.gflops) / lim).toFixed(0)}% of matmul limit`,
    );
  }
  if (want('safetensors')) console.log(await safetensorsLoad());
  if (want('tokenizer')) {
    for (const line of [await tokenizerEncode(), await tokenizerTrain()])
      console.log(line ?? 'tokenizer: skipped (../shared not found)');
  }
  if (want('serve')) {
    for (const line of await serveLoad()) console.log(line);
  }
  console.log(`peak RSS: ${peakRssMiB().toFixed(0)} MiB`);
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
