import { normalizeConfig, type XmodConfig } from '@xlt/core';
import { exportToOnnx, OnnxModel, randomWeights } from '@xlt/onnx';
import { median, timeRuns } from './stats.js';

/** The small X-Mod the issues benchmark: hidden 256, 4 layers, 4 heads, FFN 1024. */
export const SMALL_XMOD: XmodConfig = normalizeConfig({
  model_type: 'xmod',
  vocab_size: 8002,
  hidden_size: 256,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  intermediate_size: 1024,
  languages: ['en', 'de', 'fr', 'zh'],
  default_language: 'en',
  adapter_reduction_factor: 2,
  adapter_layer_norm: false,
  adapter_reuse_layer_norm: true,
  ln_before_adapter: true,
  pre_norm: false,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});

/** A deterministic batch of token ids (first token `<s>`) and per-example language indices. */
function syntheticBatch(
  config: XmodConfig,
  batch: number,
  seq: number,
): { ids: number[][]; langs: number[] } {
  const ids = Array.from({ length: batch }, (_, i) =>
    Array.from({ length: seq }, (_, j) => (j === 0 ? 0 : 4 + ((i * 31 + j * 7) % (config.vocab_size - 5)))),
  );
  return { ids, langs: Array.from({ length: batch }, (_, i) => i % (config.languages.length || 1)) };
}

/** Forward FLOPs per token of an encoder (matmuls only): attention projections, scores, FFN, adapters. */
export function encoderFlopsPerToken(c: XmodConfig, seq: number): number {
  const H = c.hidden_size;
  const I = c.intermediate_size;
  const b = Math.floor(H / c.adapter_reduction_factor);
  const perLayer = 2 * (4 * H * H + 2 * H * I + (c.languages.length > 0 ? 2 * H * b : 0)) + 2 * 2 * seq * H;
  return c.num_hidden_layers * perLayer;
}

/** Batch inference tokens/s of an exported model on onnxruntime-node (median of `reps`). */
export async function onnxInferenceTokensPerSecond(
  config: XmodConfig,
  batch: number,
  seq: number,
  threads: number,
  reps = 5,
): Promise<{ tokensPerSecond: number; gflops: number }> {
  const model = await OnnxModel.load(
    exportToOnnx({ config, weights: randomWeights(config, 'base', 0), head: 'base' }).model,
    { threads },
  );
  const { ids, langs } = syntheticBatch(config, batch, seq);
  const times = await timeRuns(async () => {
    await model.run({ inputIds: ids, ...(config.languages.length > 0 ? { langIds: langs } : {}) });
  }, reps);
  await model.release();
  const tps = (batch * seq) / median(times);
  return { tokensPerSecond: tps, gflops: (tps * encoderFlopsPerToken(config, seq)) / 1e9 };
}

/**
 * Batch inference tokens/s of the same encoder on tfjs (`@xlt/xmod`, eval mode, random weights) on a
 * backend, for the side-by-side with {@link onnxInferenceTokensPerSecond} (median of `reps`).
 */
export async function tfjsInferenceTokensPerSecond(
  config: XmodConfig,
  backend: 'cpu' | 'wasm' | 'tensorflow',
  batch: number,
  seq: number,
  reps = 3,
): Promise<{ tokensPerSecond: number; gflops: number }> {
  const { initBackend } = await import('@xlt/core');
  await initBackend({ backend, log: false });
  const tf = await import('@tensorflow/tfjs-core');
  const { XmodForMaskedLM } = await import('@xlt/xmod');
  const model = new XmodForMaskedLM({ ...config, max_position_embeddings: seq + 2 });
  model.eval();
  const { ids, langs } = syntheticBatch(config, batch, seq);
  const times = await timeRuns(async () => {
    const out = model.roberta.forward({
      inputIds: ids,
      ...(config.languages.length > 0 ? { langIds: langs } : {}),
    });
    await out.lastHiddenState.data();
    tf.dispose(out.lastHiddenState);
  }, reps);
  model.dispose();
  const tps = (batch * seq) / median(times);
  return { tokensPerSecond: tps, gflops: (tps * encoderFlopsPerToken(config, seq)) / 1e9 };
}

/** fp32 matmul GFLOP/s of onnxruntime-node at n x n x n on `threads` threads: the machine's practical limit. */
export async function onnxMatmulGflops(n: number, threads: number, reps = 7): Promise<number> {
  const { GraphBuilder } = await import('@xlt/onnx');
  const g = new GraphBuilder('matmul');
  const a = g.input('a', 'float32', [n, n]);
  const data = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const b = g.initializer('b', data, [n, n]);
  g.output(g.node('MatMul', [a, b]), 'c', 'float32', [n, n]);
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: threads });
  const feed = { a: new ort.Tensor('float32', data, [n, n]) };
  const times = await timeRuns(async () => {
    await session.run(feed);
  }, reps);
  await session.release();
  return (2 * n ** 3) / median(times) / 1e9;
}

/**
 * Training tokens/s of the compiled ONNX train step (forward + backward + AdamW, MLM head, every
 * parameter trainable) on `config`, and its GFLOP/s counting 3x the forward matmul FLOPs. With
 * `gradAccumulation` K > 1 a step takes K micro-batches of `batch` x `seq` (all counted).
 */
export async function onnxTrainTokensPerSecond(
  config: XmodConfig,
  batch: number,
  seq: number,
  threads: number,
  reps = 5,
  gradAccumulation = 1,
): Promise<{ tokensPerSecond: number; gflops: number }> {
  const { CompiledTrainStep, weightShapes } = await import('@xlt/onnx');
  const weights = randomWeights(config, 'masked-lm', 0);
  const trainable = [...weightShapes(config, 'masked-lm').keys()];
  const step = await CompiledTrainStep.create({
    config,
    weights,
    head: 'masked-lm',
    trainable,
    adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
    threads,
    gradAccumulation,
  });
  const { ids, langs } = syntheticBatch(config, batch, seq);
  const labels = ids.map((row) => row.map((v, j) => (j % 7 === 3 ? v : -100)));
  const attentionMask = ids.map((row) => row.map(() => 1));
  const b = {
    inputIds: ids,
    attentionMask,
    labels,
    ...(config.languages.length > 0 ? { langIds: langs } : {}),
  };
  const micro = Array.from({ length: gradAccumulation }, () => b);
  const times = await timeRuns(async () => {
    await step.run(micro, 1e-4);
  }, reps);
  await step.release();
  const tps = (gradAccumulation * batch * seq) / median(times);
  // + the MLM decoder (hidden x vocab) on every token, forward and backward
  const flops = 3 * (encoderFlopsPerToken(config, seq) + 2 * config.hidden_size * config.vocab_size);
  return { tokensPerSecond: tps, gflops: (tps * flops) / 1e9 };
}
