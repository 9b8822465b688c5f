import { Rng, XltConfigError } from '@xlt/core';
import { type ApplyMixtureOptions, applyLoraMixture } from '@xlt/lora';
import { type EncoderConfig, type LoraMixtureSpec, randomWeights, type WeightSource } from '@xlt/onnx';
import type { XltTokenizer } from '@xlt/tokenizer';
import {
  type EngineChoice,
  type EngineName,
  epochBatches,
  HEAD,
  LORA,
  lineSink,
  modelLoss,
  onnxSupport,
  preset,
  runStages,
  summaryLine,
  type TrainableSpec,
  WORD_EMBEDDINGS,
} from '@xlt/trainer';
import { maxInputLength, type OieModelSize, oieConfig, pretrainedEncoder } from './config.js';
import type { OieExample } from './convert.js';
import { collateRows, examplesToRows, type OieBatch, type OieRow } from './features.js';
import { XmodForOpenIE } from './head.js';
import { OieModel } from './model.js';
import { type OiePretraining, pretrainEncoder } from './pretrain.js';
import { assignWeights, snapshotWeights } from './weights.js';

/** Progress of {@link trainOie}. */
export interface TrainProgress {
  /** `mlm` (pre-training), `oie` (a single run) or the name of a stage. */
  stage: string;
  step: number;
  total: number;
  loss: number;
}

/** Options of {@link trainOie}. */
export interface TrainOieOptions {
  tokenizer: XltTokenizer;
  examples: readonly OieExample[];
  /** Model config (default {@link oieConfig} for the tokenizer's vocabulary and `size`). */
  config?: EncoderConfig;
  size?: OieModelSize;
  /** Starting weights (e.g. a pre-trained encoder plus a head); default: random, initialised as transformers does. */
  weights?: WeightSource;
  /**
   * A pre-trained encoder to start from: a Hugging Face model folder (`config.json` +
   * `model.safetensors` or `pytorch_model.bin`, sharded or not, e.g. from `xlt pretrain`) of an XLM-R-layout model whose vocabulary is the
   * tokenizer's. Its encoder weights are used as they are; the Open IE head (sizes from `size.oie`)
   * is new. Overrides `config`, `weights` and the encoder sizes of `size`.
   */
  encoder?: string;
  /** Brief masked-LM pre-training of the encoder first (random-init models): sentences and steps. */
  pretrain?: OiePretraining;
  /** Epochs over the rows (default 10), or `steps` to fix the number of updates. */
  epochs?: number;
  steps?: number;
  batchSize?: number;
  /** Peak learning rate (default 1e-3), linear warm-up over `warmup` of the steps (default 0.1), then decay to 0. */
  lr?: number;
  warmup?: number;
  weightDecay?: number;
  seed?: number;
  /** onnxruntime intra-op threads (default: all cores). */
  threads?: number;
  /**
   * `@xlt/trainer` engine of every run (default `auto`: the compiled onnxruntime step, which takes
   * the Open IE head, LoRA mixtures and X-Mod modules; tfjs under the native tensorflow backend).
   */
  engine?: EngineChoice;
  /**
   * Train in stages instead of one run over every parameter: `mt4crossie` is MT4CrossIE's schedule
   * (1: word embeddings + Open IE head, encoder frozen; 2: everything except the word embeddings;
   * 3: a LoRA mixture on the attention query/value projections + the head, all else frozen), or a
   * list of stages. Each stage has its own epochs/steps and learning rate (default: the run's).
   */
  stages?: 'mt4crossie' | OieStage[];
  /** The LoRA mixture of a `lora+head` stage (default: rank 8, alpha 16, router over `['en']`, query + value). */
  lora?: {
    r?: number;
    alpha?: number;
    languages?: string[];
    mode?: LoraMixtureSpec['mode'];
    targets?: string[];
  };
  onProgress?: (p: TrainProgress) => void;
  /**
   * Log lines of the runs, as `@xlt/trainer`'s `fit` prints them: per run `[stage] engine
   * onnxruntime: <why>`, progress every 10 steps, and a summary line.
   */
  log?: (line: string) => void;
}

/** One training stage of {@link trainOie}. */
export interface OieStage {
  name: string;
  /** Which parameters train. */
  trainable: 'all' | 'embeddings+head' | 'all-but-embeddings' | 'lora+head' | 'xmod-finetune';
  epochs?: number;
  steps?: number;
  lr?: number;
}

/** MT4CrossIE's three stages. */
export const MT4CROSSIE_STAGES: readonly OieStage[] = [
  { name: 'stage1-embeddings-head', trainable: 'embeddings+head' },
  { name: 'stage2-encoder', trainable: 'all-but-embeddings' },
  { name: 'stage3-lora-mixture', trainable: 'lora+head' },
];

/** What {@link trainOie} returns. */
export interface TrainOieResult {
  model: OieModel;
  config: EncoderConfig;
  /** Trained weights (every tensor of the model, LoRA mixture included), copies by name. */
  weights: WeightSource;
  losses: number[];
  mlmLosses: number[];
  /** Per stage: its name, trainable tensor count, steps, first/last loss and the engine that ran it. */
  stages: Array<{
    name: string;
    trainable: number;
    steps: number;
    firstLoss: number;
    lastLoss: number;
    engine: EngineName;
    engineReason: string;
  }>;
  /** The LoRA mixture kept live in the model, when a `lora+head` stage ran. */
  loraMixtures?: Map<string, LoraMixtureSpec>;
  rows: number;
  /** Tuples whose predicate fell beyond `maxLength` and were dropped. */
  truncated: number;
}

/** Router weights and static mixing logits of a LoRA mixture (trained with its experts). */
const MIXTURE_WEIGHTS = (name: string) => name.endsWith('.router.weight') || name.endsWith('.mix_logits');

/** The `@xlt/trainer` parameter selection of a stage's `trainable`. */
function trainableSpec(kind: OieStage['trainable']): TrainableSpec {
  switch (kind) {
    case 'all':
      return {};
    case 'embeddings+head':
      return { include: [WORD_EMBEDDINGS, HEAD] };
    case 'all-but-embeddings':
      return { exclude: [WORD_EMBEDDINGS] };
    case 'lora+head':
      return { include: [HEAD, LORA, MIXTURE_WEIGHTS] };
    case 'xmod-finetune':
      // X-Mod's fine-tuning: embeddings and language modules frozen (transformers' freeze_embeddings_and_language_adapters)
      return (preset('xmod-finetune')[0] as { trainable: TrainableSpec }).trainable;
    default:
      throw new XltConfigError(`unknown stage trainable '${String(kind)}'`, { field: 'stages.trainable' });
  }
}

/** The tfjs Open IE model for a config (dropout as the config says; none where it says nothing). */
function openIeModule(config: EncoderConfig): XmodForOpenIE {
  return new XmodForOpenIE({
    ...config,
    hidden_dropout_prob: config.hidden_dropout_prob ?? 0,
    attention_probs_dropout_prob: config.attention_probs_dropout_prob ?? 0,
  });
}

/**
 * Trains an encoder with Multi2OIE's two-step head (predicate tagger, then per-predicate argument
 * tagger; loss = the two cross-entropies) on converted examples through `@xlt/trainer` (`runStages`
 * and `fit` on `XmodForOpenIE` with its head loss: the compiled onnxruntime step by default),
 * optionally after a brief masked-LM pre-training of a random encoder, and returns the exported
 * inference model. Batches are length-bucketed and seeded: same inputs, same model.
 */
export async function trainOie(options: TrainOieOptions): Promise<TrainOieResult> {
  const { tokenizer } = options;
  const seed = options.seed ?? 0;
  const engine = options.engine ?? 'auto';
  const progress = options.log !== undefined ? lineSink(options.log) : undefined;
  const start =
    options.encoder !== undefined
      ? pretrainedEncoder(options.encoder, {
          vocabSize: tokenizer.vocabSize,
          ...(options.size?.oie !== undefined ? { head: options.size.oie } : {}),
          seed,
        })
      : undefined;
  const config = start?.config ?? options.config ?? oieConfig(tokenizer.vocabSize, options.size);
  const maxLength = Math.min(options.size?.maxLength ?? Number.POSITIVE_INFINITY, maxInputLength(config));
  const model = openIeModule(config);
  try {
    try {
      assignWeights(
        model,
        start?.weights ?? options.weights ?? randomWeights(config, 'open-ie', seed, 0.02, 'hf'),
      );
    } finally {
      start?.weights.close();
    }
    let mlmLosses: number[] = [];
    if (options.pretrain !== undefined && options.pretrain.steps > 0) {
      const r = await pretrainEncoder(config, tokenizer, {
        ...options.pretrain,
        seed,
        maxLength,
        engine,
        ...(options.threads !== undefined ? { threads: options.threads } : {}),
        ...(progress !== undefined ? { progress } : {}),
        onStep: (step, loss) =>
          options.onProgress?.({ stage: 'mlm', step, total: options.pretrain?.steps ?? step, loss }),
      });
      assignWeights(model, r.encoder, { what: 'the pre-trained encoder', partial: true });
      mlmLosses = r.summary.losses;
    }
    const { rows, truncated } = await examplesToRows(tokenizer, options.examples, maxLength);
    if (rows.length === 0)
      throw new XltConfigError('no training rows: every tuple was skipped', { field: 'examples' });
    // X-Mod encoders: each row through its language's modules (languages without one: the default)
    const langSpec =
      (config.languages ?? []).length > 0
        ? {
            languages: config.languages ?? [],
            ...(config.default_language != null ? { fallback: config.default_language } : {}),
          }
        : undefined;
    const bs = options.batchSize ?? 16;
    // batches of similar lengths (less padding): shuffled, sorted within windows of 8 batches, batches shuffled
    const batches = epochBatches<OieRow, OieBatch>(
      rows,
      bs,
      (items) => collateRows(items, tokenizer.padId, langSpec),
      { seed, lengthOf: (r) => r.inputIds.length, bucketWindow: 8 },
    );
    const plan: readonly OieStage[] =
      options.stages === undefined
        ? [{ name: 'oie', trainable: 'all' }]
        : options.stages === 'mt4crossie'
          ? MT4CROSSIE_STAGES
          : options.stages;
    if (plan.length === 0) throw new XltConfigError('stages is empty', { field: 'stages' });
    const losses: number[] = [];
    const stageResults: TrainOieResult['stages'] = [];
    let mixtureAdded = false;
    for (const stage of plan) {
      if (stage.trainable === 'lora+head' && !mixtureAdded) {
        applyLoraMixture(model, mixtureOptions(options.lora ?? {}, seed));
        mixtureAdded = true;
      }
      const total = Math.ceil(
        stage.steps ?? options.steps ?? batches.batchesPerEpoch * (stage.epochs ?? options.epochs ?? 10),
      );
      const [summary] = await runStages<OieBatch>(
        model,
        [{ name: stage.name, trainable: trainableSpec(stage.trainable), steps: total }],
        {
          loss: modelLoss(model),
          data: batches.data,
          lr: stage.lr ?? options.lr ?? 1e-3,
          schedule: { kind: 'linear', warmupRatio: options.warmup ?? 0.1 },
          weightDecay: options.weightDecay ?? 0.01,
          maxGradNorm: 1,
          seed,
          engine,
          ...(options.threads !== undefined ? { onnx: { threads: options.threads } } : {}),
          ...(progress !== undefined ? { progress } : {}),
          tokens: (b) => b.attentionMask.reduce((n, row) => n + row.reduce((a, v) => a + v, 0), 0),
          slots: (b) => b.inputIds.length * (b.inputIds[0]?.length ?? 0),
          callbacks: {
            onStep: (r) => options.onProgress?.({ stage: stage.name, step: r.step, total, loss: r.loss }),
          },
        },
      );
      if (summary === undefined)
        throw new XltConfigError(`stage '${stage.name}' did not run`, { field: 'stages' });
      options.log?.(summaryLine(summary, stage.name));
      losses.push(...summary.losses);
      stageResults.push({
        name: stage.name,
        trainable: summary.trainableParameters.length,
        steps: summary.steps,
        firstLoss: summary.losses[0] ?? Number.NaN,
        lastLoss: summary.losses.at(-1) ?? Number.NaN,
        engine: summary.engine,
        engineReason: summary.engineReason,
      });
    }
    const loraMixtures = mixtureAdded ? liveMixtures(model) : undefined;
    const weights = snapshotWeights(model);
    const exported = await OieModel.fromWeights({
      config,
      weights,
      tokenizer,
      maxLength,
      ...(loraMixtures !== undefined ? { loraMixtures } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    });
    return {
      model: exported,
      config,
      weights,
      losses,
      mlmLosses,
      stages: stageResults,
      ...(loraMixtures !== undefined ? { loraMixtures } : {}),
      rows: rows.length,
      truncated,
    };
  } finally {
    model.dispose();
  }
}

/** `@xlt/lora` options of the `lora+head` stage's mixture on the attention projections. */
function mixtureOptions(o: NonNullable<TrainOieOptions['lora']>, seed: number): ApplyMixtureOptions {
  return {
    r: o.r ?? 8,
    alpha: o.alpha ?? 16,
    languages: o.languages ?? ['en'],
    mode: o.mode ?? 'router',
    targetModules: (o.targets ?? ['query', 'value']).map((t) => `attention.self.${t}`),
    rng: new Rng(seed).fork('oie-lora'),
  };
}

/** The live LoRA mixtures of the model, as the exporter takes them (what the trainer's graph ran). */
function liveMixtures(model: XmodForOpenIE): Map<string, LoraMixtureSpec> {
  const support = onnxSupport(model, modelLoss(model), { lr: 0, totalSteps: 1 });
  if (!support.ok)
    throw new XltConfigError(`the trained model cannot be exported: ${support.reason}`, { field: 'lora' });
  return support.loraMixtures;
}
