import { totalmem } from 'node:os';
import { XltError } from '@xlt/core';
import type { EncoderConfig, HeadKind, WeightSource } from './model-types.js';
import { weightShapes } from './random.js';
import { ROW_GRADIENTS } from './row-gradients.js';

/** One part of a {@link TrainMemoryEstimate}, in bytes. */
export interface MemoryPart {
  /** `weights`, `gradients`, `moments`, `activations`, `head logits` or `runtime`. */
  name: string;
  bytes: number;
  /** What the bytes are, in words (e.g. `278.0M parameters, 86.1M trainable`). */
  detail: string;
}

/**
 * What a compiled training step needs in memory, by part: the weights (the source's, onnxruntime's
 * copy of the frozen ones, the step's copy of the trainable ones), one gradient and two AdamW moments
 * per trainable parameter (frozen parameters have none), and the forward values kept for the
 * backward pass at the batch shape, and onnxruntime's own share (`runtime`). An estimate, fitted to
 * measured peak RSS.
 */
export interface TrainMemoryEstimate {
  parts: MemoryPart[];
  totalBytes: number;
  parameters: number;
  trainableParameters: number;
  /**
   * Whether the step should run with onnxruntime's memory pattern: the fused (small) step, while its
   * activations and head logits stay under {@link MEM_PATTERN_LIMIT} (the pattern holds them twice).
   */
  memoryPattern: boolean;
}

/** Options of {@link estimateTrainMemory}. */
export interface TrainMemoryOptions {
  config: EncoderConfig;
  head: HeadKind;
  /** Hugging Face names of the parameters that train. */
  trainable: readonly string[];
  /** Shapes of trainable parameters the config does not list (LoRA modules) are read from it. */
  weights?: WeightSource;
  batchSize: number;
  sequenceLength: number;
  /**
   * Micro-batches per step: K > 1 adds a scratch buffer per dense gradient and keeps K micro-batches'
   * word-embedding rows (default 1).
   */
  gradAccumulation?: number;
  /**
   * masked-lm: the share of positions the LM decoder runs on (default 0.15, the labelled
   * positions; 1 for the dense head).
   */
  maskedLmShare?: number;
  /** The step's parameters are the weight source's arrays (no copy of the trainable ones). */
  updateWeightsInPlace?: boolean;
  /** Frozen parameters are fed to the graph (no copy of them in onnxruntime). */
  frozenAsInputs?: boolean;
  /** The step's update path (default `auto`): fused into the training graph or sliced. */
  update?: 'auto' | 'fused' | 'sliced';
  /**
   * The sliced step's update keeps the word embeddings' gradient as the batch's rows (the
   * WebAssembly update), not as a dense buffer of the table: not for the masked-LM head, whose tied
   * decoder gives the table a dense gradient.
   */
  rowGradients?: boolean;
}

/**
 * Trainable elements up to which `update: 'auto'` fuses the update into the training graph (16M,
 * 64 MiB: a small model's fused temporaries are a few times that; XLM-R-base has 278M).
 */
export const FUSED_UPDATE_LIMIT = 1 << 24;

/**
 * Whether a step runs the fused graph (gradients, clipping and AdamW in one run): without
 * accumulation, for `update: 'fused'`, or for `auto` up to {@link FUSED_UPDATE_LIMIT} trainable
 * elements.
 */
export function usesFusedUpdate(
  o: Pick<TrainMemoryOptions, 'config' | 'head' | 'trainable' | 'weights' | 'gradAccumulation' | 'update'>,
): boolean {
  const update = o.update ?? 'auto';
  return (
    (o.gradAccumulation ?? 1) === 1 &&
    (update === 'fused' || (update === 'auto' && parameterCounts(o).trained <= FUSED_UPDATE_LIMIT))
  );
}

const F32 = 4;
/**
 * What onnxruntime adds whatever the model (its arenas' slack, the sliced update's temporaries):
 * 200 MiB, measured as a step's peak RSS less everything else at 1 to 12 layers.
 */
const RUNTIME_BYTES = 200 * 1024 ** 2;
const GiB = 1024 ** 3;
/**
 * Fitted to measured peak RSS (tools/bench/scripts/step-memory.mjs, XLM-R-base shapes, 2026-12-06):
 * onnxruntime holds about 1.25x the forward values {@link estimateTrainMemory} counts (b8 and b16 at
 * 4 layers: +25% of the counted activations), plus one float32 copy of the encoder layers' matrices
 * (about 27 MiB a layer at h768, independent of the batch).
 */
const ACTIVATION_FIT = 1.25;
/**
 * Copies of the head's logits [rows, classes] at the peak: 5 in the fused step (logits, their
 * log-softmax, the one-hot labels, their product and the logits' gradient); 3.3 where the step
 * recomputes (fitted: masked LM at V 125,002 and 250,002, dense and labelled).
 */
const LOGIT_COPIES = { fused: 5, recompute: 3.3 } as const;
/**
 * The masked-LM decoder's gradient of a trainable tied word-embedding table, in the step that
 * recomputes: about 3.5x the table (the decoder's product, its transpose and the row blocks it
 * leaves the graph in; fitted at V 125,002 and 250,002).
 */
const TIED_DECODER_COPIES = 3.5;
/**
 * Activations and head logits up to which the fused step runs with onnxruntime's memory pattern
 * (1 GiB): the pattern plans one block per batch shape on the second run on top of the arena the
 * first run grew, holding them twice (measured: +0.9 GiB for a masked-LM step at V 250,002 with 146
 * labelled rows, +5.2 GiB with 1,024); without it a small model's step is slower.
 */
export const MEM_PATTERN_LIMIT = GiB;

const numel = (shape: readonly number[]) => shape.reduce((a, d) => a * d, 1);

/** `N.N GiB` (two decimals under 1 GiB). */
export function formatGiB(bytes: number): string {
  const g = bytes / GiB;
  return `${g.toFixed(g < 1 ? 2 : 1)} GiB`;
}

/**
 * Elements of every parameter of the model (`all`, LoRA modules included) and of the trainable ones
 * (`trained`): the config's shapes, and the weight source's for parameters the config does not list.
 */
export function parameterCounts(o: Pick<TrainMemoryOptions, 'config' | 'head' | 'trainable' | 'weights'>): {
  all: number;
  trained: number;
} {
  const shapes = weightShapes(o.config, o.head);
  let all = 0;
  for (const s of shapes.values()) all += numel(s);
  let trained = 0;
  for (const n of new Set(o.trainable)) {
    const s = shapes.get(n) ?? (o.weights?.has(n) === true ? o.weights.get(n).shape : undefined);
    if (s === undefined) continue;
    trained += numel(s);
    if (!shapes.has(n)) all += numel(s);
  }
  return { all, trained };
}

/**
 * Estimates the memory of a compiled training step (see {@link TrainMemoryEstimate}) from the
 * config, the head, the trainable set and the batch shape, before anything is allocated.
 */
export function estimateTrainMemory(o: TrainMemoryOptions): TrainMemoryEstimate {
  const { all, trained } = parameterCounts(o);
  const c = o.config;
  const H = c.hidden_size;
  const I = c.intermediate_size;
  const A = c.num_attention_heads;
  const S = o.sequenceLength;
  const tokens = o.batchSize * S;
  // per token and layer, the values the backward pass reads and onnxruntime's buffers for them: the
  // linear layers' inputs, LayerNorm inputs, Q/K/V per head, bool dropout masks (~8 H), the FFN's
  // pre- and post-GELU values (~2 I: GELU is one op whose gradient needs only its input), attention
  // probabilities before and after
  // dropout (~2 A S); with RUNTIME_BYTES, fitted to the peak RSS of XLM-R-base full fine-tuning at
  // b8 s128 (5,139 MiB measured, 5,153 MiB estimated; tools/bench/scripts/step-memory.mjs, 2026-12-04)
  // (since refitted: x ACTIVATION_FIT, and the layers' matrices in `runtime`: 4,934 MiB measured,
  // 4,907 estimated, 2026-12-06)
  const perTokenLayer = 8 * H + 2 * I + 2 * A * S;
  const activations = Math.round(ACTIVATION_FIT * tokens * c.num_hidden_layers * perTokenLayer * F32);
  const classes =
    o.head === 'masked-lm'
      ? c.vocab_size
      : o.head === 'question-answering'
        ? 2
        : (c.num_labels ?? (c.id2label ? Object.keys(c.id2label).length : 2));
  const headRows =
    o.head === 'masked-lm'
      ? Math.ceil(tokens * (o.maskedLmShare ?? 0.15))
      : o.head === 'sequence-classification'
        ? o.batchSize
        : tokens;
  const fused = usesFusedUpdate(o);
  const logits = Math.round(headRows * classes * LOGIT_COPIES[fused ? 'fused' : 'recompute'] * F32);
  const K = o.gradAccumulation ?? 1;
  const M = (n: number) => `${(n / 1e6).toFixed(1)}M`;
  // the weight source holds every parameter; onnxruntime a copy of the frozen ones (initializers);
  // the step a copy of the trainable ones unless it trains the source's arrays in place
  const frozen = all - trained;
  const fedFrozen = o.frozenAsInputs === true;
  // the word embeddings' gradient as rows: one row per token (and their sums) instead of the table
  const shapes = weightShapes(o.config, o.head);
  const table = o.trainable
    .filter((n) => ROW_GRADIENTS.test(n))
    .reduce((a, n) => a + numel(shapes.get(n) ?? [0]), 0);
  const asRows = o.rowGradients === true && o.head !== 'masked-lm' ? table : 0;
  // every micro-batch's rows, then their sums
  const rowBytes = asRows > 0 ? (K + 1) * tokens * H * F32 : 0;
  const tiedDecoder = o.head === 'masked-lm' && !fused ? Math.round(TIED_DECODER_COPIES * table * F32) : 0;
  const layerMatrices = c.num_hidden_layers * (4 * H * H + 2 * H * I) * F32;
  const memoryPattern = fused && activations + logits <= MEM_PATTERN_LIMIT;
  const copies = (fedFrozen ? 0 : frozen) + (o.updateWeightsInPlace === true ? 0 : trained);
  const parts: MemoryPart[] = [
    {
      name: 'weights',
      bytes: (all + copies) * F32,
      detail: `${M(all)} parameters${frozen > 0 && !fedFrozen ? `, ${M(frozen)} frozen (copied into the session)` : ''}${o.updateWeightsInPlace === true ? '' : ', trainable ones copied into the step'}`,
    },
    {
      name: 'gradients',
      bytes: (trained - asRows) * (K > 1 ? 2 : 1) * F32 + rowBytes,
      detail: `${M(trained)} trainable${asRows > 0 ? `, the word embeddings' (${M(asRows)}) as the batch's rows` : ''}${K > 1 ? ', + a scratch buffer for accumulation' : ''}`,
    },
    { name: 'moments', bytes: 2 * trained * F32, detail: 'AdamW m and v of the trainable parameters' },
    {
      name: 'activations',
      bytes: activations,
      detail: `b${o.batchSize} s${S}, ${c.num_hidden_layers} layers`,
    },
    {
      name: 'head logits',
      bytes: logits,
      detail: `${headRows} rows x ${classes} classes`,
    },
    ...(tiedDecoder > 0
      ? [
          {
            name: 'decoder gradient',
            bytes: tiedDecoder,
            detail:
              "the tied word embeddings' decoder gradient in onnxruntime (about 3.5x the table, measured)",
          },
        ]
      : []),
    ...(memoryPattern
      ? [
          {
            name: 'memory pattern',
            bytes: activations + logits,
            detail:
              "onnxruntime's planned block for the batch shape (the fused step's activations and logits again)",
          },
        ]
      : []),
    {
      name: 'runtime',
      bytes: RUNTIME_BYTES + layerMatrices,
      detail:
        "onnxruntime's arenas, the update's temporaries and its copy of the layers' matrices (measured)",
    },
  ];
  return {
    parts,
    totalBytes: parts.reduce((a, p) => a + p.bytes, 0),
    parameters: all,
    trainableParameters: trained,
    memoryPattern,
  };
}

/** One line: `needs ~N GiB (weights A, gradients B, moments C, activations D, head logits E, runtime F)`. */
export function describeTrainMemory(e: TrainMemoryEstimate): string {
  return `needs ~${formatGiB(e.totalBytes)} (${e.parts.map((p) => `${p.name} ${formatGiB(p.bytes)}`).join(', ')})`;
}

/**
 * A training run would need more memory than allowed: thrown before anything is allocated. `estimate`
 * holds the parts; the message names the largest.
 */
export class XltMemoryError extends XltError {
  readonly estimate: TrainMemoryEstimate;
  readonly limitBytes: number;
  constructor(estimate: TrainMemoryEstimate, limitBytes: number, limitName: string) {
    const largest = [...estimate.parts].sort((a, b) => b.bytes - a.bytes)[0] as MemoryPart;
    super(
      'MEMORY',
      `the training step ${describeTrainMemory(estimate)}, more than the ${formatGiB(limitBytes)} of ${limitName}; the largest part is ${largest.name} (${formatGiB(largest.bytes)}: ${largest.detail}): train fewer parameters, use a smaller batch or sequence length, or raise the limit`,
      { field: 'maxMemory' },
    );
    this.estimate = estimate;
    this.limitBytes = limitBytes;
  }
}

/**
 * Throws {@link XltMemoryError} when `estimate` exceeds `maxBytes` (default: the machine's memory,
 * `os.totalmem()`).
 */
export function checkTrainMemory(estimate: TrainMemoryEstimate, maxBytes?: number): void {
  const limit = maxBytes ?? totalmem();
  if (estimate.totalBytes > limit)
    throw new XltMemoryError(estimate, limit, maxBytes === undefined ? "this machine's memory" : 'maxMemory');
}
