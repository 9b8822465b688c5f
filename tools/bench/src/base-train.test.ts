import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runBenchChild } from './base.js';
import {
  mlmLine,
  mlmMeasure,
  removeModel,
  serveLine,
  serveReadyMeasure,
  trainLine,
  trainMeasure,
  writeRandomModel,
} from './base-train.js';
import { XLMR_BASE } from './xmod-load.js';

// XLM-R-base's config with a tiny hidden size: the XLT_BENCH=base code paths in seconds
const TINY = {
  ...XLMR_BASE,
  vocab_size: 300,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 64,
  max_position_embeddings: 40,
};
const shape = { threads: 1, batch: 2, seq: 16, reps: 2 };

describe('XLT_BENCH=base measurements on a tiny XLM-R', () => {
  it('train full and frozen-embeddings: tokens/s, GFLOP/s, the share of the matmul limit and peak RSS in the issue form', async () => {
    const full = await trainMeasure('full', TINY, shape);
    const frozen = await trainMeasure('frozen-embeddings', TINY, shape);
    for (const r of [full, frozen]) {
      expect(r.tokensPerSecond).toBeGreaterThan(0);
      expect(r.losses).toHaveLength(2);
      expect(r.losses.every(Number.isFinite)).toBe(true);
      // the second build found onnxruntime's optimised graph in the session cache
      expect(Number.isFinite(r.cachedSetupSeconds)).toBe(true);
    }
    // the frozen word, position and type embeddings have no moments: a smaller estimate
    expect(frozen.estimateBytes).toBeLessThan(full.estimateBytes);
    expect(trainLine('tiny', 'full', shape, full, 10)).toMatch(
      /^train onnxruntime\/cpu tiny full \(b2 s16, 1 threads\): \d+ tokens\/s, \d+\.\d GFLOP\/s, \d+% of matmul limit, peak RSS \d+ MiB/,
    );
    expect(trainLine('tiny', 'frozen-embeddings', shape, frozen, 10)).toMatch(
      /^train onnxruntime\/cpu tiny frozen-embeddings \(b2 s16, 1 threads\): \d+ tokens\/s, /,
    );
  });

  it('mlm dense and labelled: the same losses (1e-4), lines in the issue form', async () => {
    const dense = await mlmMeasure('dense', TINY, shape);
    const labelled = await mlmMeasure('labelled', TINY, shape);
    dense.losses.forEach((l, i) => {
      expect(Math.abs(l - (labelled.losses[i] as number))).toBeLessThan(1e-4);
    });
    expect(dense.estimateBytes).toBeGreaterThan(labelled.estimateBytes);
    expect(mlmLine('tiny', 'labelled', shape, labelled)).toMatch(
      /^mlm onnxruntime\/cpu tiny labelled \(b2 s16, 1 threads\): \d+ tokens\/s/,
    );
  });

  it('serve: a written random model is served and answers, ready time in the issue form', async () => {
    const dir = await writeRandomModel(TINY);
    try {
      const r = await serveReadyMeasure(dir, 1);
      expect(r.status).toBe(200);
      expect(r.readySeconds).toBeGreaterThan(0);
      expect(r.fromCache).toBeUndefined();
      expect(serveLine('tiny', r)).toMatch(/^serve tiny without --cache-dir: ready in \d+\.\d s/);
      const cold = await serveReadyMeasure(dir, 1, 'cold');
      expect(cold.fromCache).toBe(false);
      const warm = await serveReadyMeasure(dir, 1, 'warm');
      expect(warm.fromCache).toBe(true);
      expect(serveLine('tiny', warm, 'warm')).toMatch(
        /^serve tiny: ready in \d+\.\d s \(--cache-dir, graph from the cache/,
      );
    } finally {
      removeModel(dir);
    }
  });

  it('the step memory estimate is within 2x of the RSS a fresh process adds for a h256 l4 model at b8 s128', () => {
    // a fresh process: its peak RSS is this step's alone (the weights are made before the baseline)
    const script = `
      const onnx = await import('@xlt/onnx');
      const { normalizeConfig } = await import('@xlt/core');
      const config = normalizeConfig({ model_type: 'xlm-roberta', vocab_size: 8002, hidden_size: 256,
        num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 1024, num_labels: 7,
        max_position_embeddings: 130, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1 });
      const head = 'token-classification';
      const weights = onnx.randomWeights(config, head, 0);
      const names = [...onnx.weightShapes(config, head).keys()];
      for (const n of names) weights.get(n);
      const base = process.resourceUsage().maxRSS * 1024;
      let estimate;
      const step = await onnx.CompiledTrainStep.create({ config, weights, head, trainable: names,
        adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }, threads: 1,
        updateWeightsInPlace: true, batchShape: { batchSize: 8, sequenceLength: 128 },
        onMemoryEstimate: (e) => { estimate = e; } });
      const ids = Array.from({ length: 8 }, (_, i) => Array.from({ length: 128 }, (_, j) => 4 + ((i * 31 + j * 7) % 7990)));
      for (let k = 0; k < 2; k++) await step.run({ inputIds: ids, labels: ids.map((r) => r.map((v) => v % 7)) }, 1e-5);
      const grew = process.resourceUsage().maxRSS * 1024 - base;
      // the weight source was there before the baseline: compare what the step adds
      const added = estimate.totalBytes - 4 * estimate.parameters;
      console.log(JSON.stringify({ grew, added }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: path.dirname(fileURLToPath(import.meta.url)),
      encoding: 'utf8',
    });
    const { grew, added } = JSON.parse(out.trim().split('\n').at(-1) as string) as {
      grew: number;
      added: number;
    };
    expect(grew / added).toBeGreaterThan(0.5);
    expect(grew / added).toBeLessThan(2);
  });

  it('refuses an unknown child measurement', async () => {
    await expect(runBenchChild('train-base:half:2')).rejects.toThrow(/expected infer-base/);
  });
});
