import * as tf from '@tensorflow/tfjs-core';
import { type BackendName, initBackend, normalizeConfig, Rng, type XmodConfig } from '@xlt/core';
import { modelLoss, Trainer } from '@xlt/trainer';
import { XmodForMaskedLM } from '@xlt/xmod';
import { encoderFlopsPerToken } from './onnx.js';
import { median, peakRssMiB } from './stats.js';

/** The shared fixtures' X-Mod (`shared/fixtures/xmod-postnorm/mlm`): hidden 32, 2 layers, 4 heads, FFN 64, vocabulary 2002. */
export const FIXTURE_XMOD: XmodConfig = normalizeConfig({
  model_type: 'xmod',
  vocab_size: 2002,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 64,
  languages: ['en_XX', 'de_DE', 'fr_XX', 'zh_CN', 'sw_KE', 'ar_AR'],
  default_language: 'en_XX',
  adapter_reduction_factor: 2,
  adapter_layer_norm: false,
  adapter_reuse_layer_norm: true,
  ln_before_adapter: true,
  pre_norm: false,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
});

/** Training FLOPs per token as the onnxruntime line counts them: 3x the forward matmuls + the MLM decoder. */
export function trainFlopsPerToken(config: XmodConfig, seq: number): number {
  return 3 * (encoderFlopsPerToken(config, seq) + 2 * config.hidden_size * config.vocab_size);
}

/** One MLM batch: `<s>` first, deterministic ids, ~15% of positions labelled, languages in turn. */
function mlmBatch(config: XmodConfig, batch: number, seq: number, seed: number) {
  const rng = new Rng(seed);
  const inputIds = Array.from({ length: batch }, () =>
    Array.from({ length: seq }, (_, j) => (j === 0 ? 0 : 4 + rng.int(config.vocab_size - 5))),
  );
  const labels = inputIds.map((row) => row.map((v, j) => (j > 0 && rng.next() < 0.15 ? v : -100)));
  const n = config.languages.length;
  return {
    inputIds,
    attentionMask: inputIds.map((row) => row.map(() => 1)),
    labels,
    ...(n > 0 ? { langIds: inputIds.map((_, i) => i % n) } : {}),
  };
}

/** Result of {@link tfjsTrainTokensPerSecond}. */
export interface TfjsTrainResult {
  tokensPerSecond: number;
  gflops: number;
  /** Seconds of each timed step. */
  stepSeconds: number[];
  /** Peak resident memory of the process so far (MiB). */
  peakRssMiB: number;
  /** How much this measurement raised the process's peak RSS (MiB; 0 when an earlier one peaked higher). */
  peakRssRiseMiB: number;
  /** Bytes held by tfjs tensors after the last step (weights + AdamW moments). */
  tensorMiB: number;
}

/**
 * Training tokens/s of the tfjs engine (`@xlt/trainer`'s `Trainer` with `modelLoss` on an
 * `@xlt/xmod` `XmodForMaskedLM`, every parameter trainable, AdamW + clipping) on a tfjs backend:
 * one untimed warm-up step on a 2-example batch, then the median of `steps` timed steps.
 */
export async function tfjsTrainTokensPerSecond(
  backend: BackendName,
  config: XmodConfig,
  batch: number,
  seq: number,
  steps: number,
): Promise<TfjsTrainResult> {
  await initBackend({ backend, log: false });
  const peakBefore = peakRssMiB();
  const model = new XmodForMaskedLM({
    ...config,
    max_position_embeddings: seq + 2,
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
  });
  model.train();
  const trainer = new Trainer(model, modelLoss(model), {
    lr: 1e-4,
    totalSteps: steps + 1,
    weightDecay: 0.01,
    maxGradNorm: 1,
  });
  await trainer.trainStep(mlmBatch(config, 2, seq, 0));
  const b = mlmBatch(config, batch, seq, 1);
  const stepSeconds: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = process.hrtime.bigint();
    await trainer.trainStep(b);
    stepSeconds.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  const tensorMiB = tf.memory().numBytes / 2 ** 20;
  await trainer.dispose();
  model.dispose();
  const tps = (batch * seq) / median(stepSeconds);
  return {
    tokensPerSecond: tps,
    gflops: (tps * trainFlopsPerToken(config, seq)) / 1e9,
    stepSeconds,
    peakRssMiB: peakRssMiB(),
    peakRssRiseMiB: peakRssMiB() - peakBefore,
    tensorMiB,
  };
}
