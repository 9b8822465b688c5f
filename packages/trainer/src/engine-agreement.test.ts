import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng } from '@xlt/core';
import { applyLora } from '@xlt/lora';
import { loadNativeAdamw } from '@xlt/onnx';
import { XmodForTokenClassification } from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import { onnxSupport } from './engine.js';
import { modelLoss, type TokenBatch } from './objectives.js';
import { applyTrainable, type TrainableSpec } from './params.js';
import { type FitOptions, type FitSummary, fit } from './run.js';
import { HEAD, LORA } from './stages.js';

// Setups the compiled engine used to hand to tfjs (gradient accumulation, embedding LoRA) trained
// through `fit` on tiny models built here: `auto` picks onnxruntime and the progress log says so,
// and 20 steps give the losses of the tfjs engine from the same start within 1e-3.

const tinyConfig = {
  model_type: 'xlm-roberta',
  vocab_size: 50,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  intermediate_size: 32,
  max_position_embeddings: 20,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
  num_labels: 3,
};

/** A padded tagging batch: random ids, 6 to 10 real tokens per row, labels on the real ones. */
function tagBatch(seed: number, rows = 4, length = 10): TokenBatch {
  const rng = new Rng(seed);
  const batch: TokenBatch = { inputIds: [], attentionMask: [], labels: [] };
  for (let b = 0; b < rows; b++) {
    const n = length - 4 + rng.int(5);
    const row = (f: () => number, pad: number) => Array.from({ length }, (_, t) => (t < n ? f() : pad));
    batch.inputIds.push(row(() => 3 + rng.int(tinyConfig.vocab_size - 3), 1));
    batch.attentionMask.push(row(() => 1, 0));
    (batch.labels as number[][]).push(row(() => rng.int(tinyConfig.num_labels), -100));
  }
  return batch;
}

type Model = XmodForTokenClassification;

/**
 * Trains a fresh tiny tagger (the same start for both engines: `init` is filled on the first run
 * and copied into the later ones) and returns the summary and the progress log.
 */
async function train(
  engine: 'tfjs' | 'auto',
  setup: (model: Model) => TrainableSpec,
  init: Map<string, Float32Array>,
  options: Partial<FitOptions<TokenBatch>> & Pick<FitOptions<TokenBatch>, 'data'>,
): Promise<{ summary: FitSummary; log: string; params: Map<string, Float32Array> }> {
  const model = new XmodForTokenClassification(tinyConfig);
  try {
    applyTrainable(model, setup(model));
    for (const [n, v] of model.namedParameters()) {
      const want = init.get(n);
      if (want === undefined) init.set(n, v.dataSync().slice() as Float32Array);
      else tf.tidy(() => v.assign(tf.tensor(want, v.shape)));
    }
    let log = '';
    const summary = await fit(model, modelLoss(model), {
      lr: 3e-3,
      totalSteps: 20,
      weightDecay: 0.01,
      schedule: { kind: 'linear', warmupSteps: 4 },
      maxGradNorm: 1,
      engine,
      onnx: { threads: 1 },
      progress: { write: (s: string) => (log += s) },
      ...options,
    });
    const params = new Map(
      model.namedParameters().map(([n, v]) => [n, v.dataSync().slice() as Float32Array]),
    );
    return { summary, log, params };
  } finally {
    model.dispose();
  }
}

function expectSameLosses(a: FitSummary, b: FitSummary): void {
  expect(a.losses.length).toBe(20);
  expect(b.losses.length).toBe(20);
  for (let s = 0; s < 20; s++)
    expect(Math.abs((a.losses[s] as number) - (b.losses[s] as number)), `step ${s + 1}`).toBeLessThan(1e-3);
  expect(a.losses[19] as number).toBeLessThan(a.losses[0] as number);
}

describe('the compiled engine against tfjs over 20 steps (tiny tagger)', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
  });

  it('gradient accumulation (2 micro-batches a step) trains on onnxruntime, logged, with the losses of tfjs within 1e-3', async () => {
    const micro = [tagBatch(1), tagBatch(2), tagBatch(3)];
    const init = new Map<string, Float32Array>();
    const opts = {
      gradAccumulation: 2,
      data: ({ index }: { index: number }) => micro[index % 3] as TokenBatch,
    };
    const tfjs = await train('tfjs', () => ({}), init, opts);
    const auto = await train('auto', () => ({}), init, opts);
    expect(tfjs.summary.engine).toBe('tfjs');
    expect(auto.summary.engine).toBe('onnxruntime');
    // accumulation runs the sliced step (gradients graph, then the update)
    expect(auto.log).toMatch(
      /^engine onnxruntime: supported model and head loss; sliced update on the (native|wasm) kernel/,
    );
    expect(tfjs.log).toMatch(/^engine tfjs: asked for\n/);
    expectSameLosses(tfjs.summary, auto.summary);
  });

  it.each(['native', 'wasm', undefined] as const)(
    'the sliced update (kernel %s) trains as tfjs does, and the engine line names its kernel',
    async (updateKernel) => {
      const batches = [tagBatch(1), tagBatch(2)];
      const init = new Map<string, Float32Array>();
      const data = ({ index }: { index: number }) => batches[index % 2] as TokenBatch;
      const native = loadNativeAdamw();
      if (updateKernel === 'native' && !native.ok) return;
      const tfjs = await train('tfjs', () => ({}), init, { data });
      const sliced = await train('auto', () => ({}), init, {
        data,
        onnx: { threads: 1, update: 'sliced', ...(updateKernel !== undefined ? { updateKernel } : {}) },
      });
      const ran = updateKernel ?? (native.ok ? 'native' : 'wasm');
      expect(sliced.log.split('\n')[0]).toBe(
        `engine onnxruntime: supported model and head loss; sliced update on the ${ran} kernel${
          updateKernel === undefined && !native.ok
            ? `: native AdamW kernel not available (${native.reason})`
            : ''
        }`,
      );
      expectSameLosses(tfjs.summary, sliced.summary);
    },
  );

  it('embedding LoRA on the word embeddings (with the head) trains on onnxruntime, logged, with the losses of tfjs within 1e-3', async () => {
    const batches = [tagBatch(4), tagBatch(5)];
    const withLora = (model: Model): TrainableSpec => {
      applyLora(model, { r: 4, alpha: 8, targetModules: ['word_embeddings'], rng: new Rng(9) });
      return { include: [LORA, HEAD] };
    };
    const probe = new XmodForTokenClassification(tinyConfig);
    withLora(probe);
    const support = onnxSupport(probe, modelLoss(probe), { lr: 1e-3, totalSteps: 1 });
    expect(support.ok && [...support.lora]).toEqual([['roberta.embeddings.word_embeddings', 2]]);
    probe.dispose();
    const init = new Map<string, Float32Array>();
    const opts = { data: ({ index }: { index: number }) => batches[index % 2] as TokenBatch };
    const tfjs = await train('tfjs', withLora, init, opts);
    const auto = await train('auto', withLora, init, opts);
    expect(auto.summary.engine).toBe('onnxruntime');
    expect(auto.log).toMatch(/^engine onnxruntime: supported model and head loss\n/);
    expect(auto.summary.trainableParameters).toContain('roberta.embeddings.word_embeddings.lora_embedding_A');
    expect(auto.summary.trainableParameters).not.toContain(
      'roberta.embeddings.word_embeddings.base_layer.weight',
    );
    expectSameLosses(tfjs.summary, auto.summary);
    // A left its zero init on both engines, to the same values
    const a = 'roberta.embeddings.word_embeddings.lora_embedding_A';
    const [ta, oa] = [tfjs.params.get(a), auto.params.get(a)] as [Float32Array, Float32Array];
    expect(ta.some((v) => v !== 0)).toBe(true);
    let worst = 0;
    for (let i = 0; i < ta.length; i++)
      worst = Math.max(worst, Math.abs((ta[i] as number) - (oa[i] as number)));
    expect(worst).toBeLessThan(1e-4);
  });
});
