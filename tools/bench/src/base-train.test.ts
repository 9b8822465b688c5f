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
      expect(serveLine('tiny', r)).toMatch(/^serve tiny: ready in \d+\.\d s/);
    } finally {
      removeModel(dir);
    }
  });

  it('refuses an unknown child measurement', async () => {
    await expect(runBenchChild('train-base:half:2')).rejects.toThrow(/expected infer-base/);
  });
});
