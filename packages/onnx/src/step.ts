import { XltConfigError, XltError } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import type { EncoderConfig, HeadKind, WeightSource } from './export.js';
import { sessionOptions } from './runner.js';
import {
  type AdamWSettings,
  buildTrainGraph,
  type LoraMixtureSpec,
  type TrainGraphSignature,
} from './train.js';

/** A training batch: token ids, mask, languages and the head's labels, as nested arrays. */
export interface TrainBatch {
  inputIds: number[][];
  attentionMask?: number[][];
  langIds?: number[];
  /** MLM / token labels [B, S] (-100 ignored) or sequence labels [B]. */
  labels?: number[][] | number[];
  startPositions?: number[];
  endPositions?: number[];
  /** Embedding mixup inputs (see `TrainGraphOptions.embeddingMixup`): candidates [B][S][K], weights [B][S][K], lambda [B][S]. */
  mixIds?: number[][][];
  mixProbs?: number[][][];
  mixLambda?: number[][];
  /** Open IE head (`open-ie`): the predicate of each row [B, S] (1 on its tokens), positions (0 pad, 1 in the predicate, 2 elsewhere), and the two tag layers. */
  predMask?: number[][];
  predPosition?: number[][];
  predLabels?: number[][];
  argLabels?: number[][];
}

export interface CompiledTrainStepOptions {
  config: EncoderConfig;
  weights: WeightSource;
  head: HeadKind;
  trainable: string[];
  adamw: AdamWSettings;
  /** Live LoRA modules and their scaling (see `peftAdapterWeights`). */
  lora?: Map<string, number>;
  /** Live LoRA mixtures with routers (see `LoraMixtureSpec`). */
  loraMixtures?: Map<string, LoraMixtureSpec>;
  /** Embedding mixup inputs in every batch (see `TrainGraphOptions.embeddingMixup`). */
  embeddingMixup?: boolean;
  /**
   * Apply the config's dropout probabilities (default true). Each step's masks derive from
   * `dropoutSeed` and the step number only, so a resumed run draws the same masks.
   */
  dropout?: boolean;
  dropoutSeed?: number;
  /** SALT-style objective: batches hold originals then their augmented versions (see `TrainGraphOptions.salt`). */
  salt?: { augWeight?: number; klWeight?: number };
  /** onnxruntime intra-op threads (default: all cores). */
  threads?: number;
  executionProviders?: string[];
}

/** Optimizer state of a {@link CompiledTrainStep}, for checkpoints. */
export interface CompiledTrainState {
  step: number;
  params: Map<string, Float32Array>;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

interface Buf {
  p: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

const i64 = (rows: number[][] | number[], dims: number[]) =>
  new ort.Tensor(
    'int64',
    BigInt64Array.from((rows as Array<number | number[]>).flat().map((v) => BigInt(v))),
    dims,
  );

/**
 * A training step compiled to one ONNX graph (forward, backward, clipping, AdamW) and run by
 * onnxruntime. Parameters and optimizer state stay in two pre-allocated sets of buffers that swap
 * roles every step (the outputs of one step are the inputs of the next): nothing is re-allocated.
 */
export class CompiledTrainStep {
  readonly signature: TrainGraphSignature;
  private readonly session: ort.InferenceSession;
  private readonly head: HeadKind;
  private readonly hasLangs: boolean;
  private mixup = false;
  private dropoutSeed: number | undefined;
  /** Two buffer sets per parameter: [params, m, v] for reading, the other for writing. */
  private readonly bufs: [Buf[], Buf[]];
  private cur: 0 | 1 = 0;
  private stepCount = 0;

  private constructor(
    session: ort.InferenceSession,
    signature: TrainGraphSignature,
    head: HeadKind,
    init: Map<string, Float32Array>,
  ) {
    this.session = session;
    this.signature = signature;
    this.head = head;
    // X-Mod modules and language-routed LoRA mixtures both read the graph's lang_ids input
    this.hasLangs = signature.batch.includes('lang_ids');
    const mk = (copy: boolean) =>
      signature.params.map((p) => {
        const src = init.get(p.name) as Float32Array;
        return {
          p: copy ? Float32Array.from(src) : new Float32Array(src.length),
          m: new Float32Array(src.length),
          v: new Float32Array(src.length),
        };
      });
    this.bufs = [mk(true), mk(false)];
  }

  static async create(options: CompiledTrainStepOptions): Promise<CompiledTrainStep> {
    const { model, signature } = buildTrainGraph({ ...options, mode: 'adamw' });
    const so = sessionOptions(options);
    const session = await ort.InferenceSession.create(model, so);
    const init = new Map(signature.params.map((p) => [p.name, options.weights.get(p.name).data]));
    const step = new CompiledTrainStep(session, signature, options.head, init);
    step.mixup = options.embeddingMixup === true;
    if (signature.batch.includes('dropout_seed')) step.dropoutSeed = options.dropoutSeed ?? 0;
    return step;
  }

  /** Steps taken so far (AdamW's t). */
  get step(): number {
    return this.stepCount;
  }

  /** Current value of a trainable parameter (a view: copy it to keep it). */
  parameter(name: string): Float32Array {
    const i = this.signature.params.findIndex((p) => p.name === name);
    if (i < 0) throw new XltConfigError('not a trainable parameter of this step', { tensor: name });
    return (this.bufs[this.cur][i] as Buf).p;
  }

  /** Runs one optimisation step at learning rate `lr`; returns the loss and the gradient norm before clipping. */
  async run(batch: TrainBatch, lr: number): Promise<{ loss: number; gradNorm: number }> {
    const B = batch.inputIds.length;
    const S = batch.inputIds[0]?.length ?? 0;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: i64(batch.inputIds, [B, S]),
      attention_mask: batch.attentionMask
        ? i64(batch.attentionMask, [B, S])
        : new ort.Tensor('int64', new BigInt64Array(B * S).fill(1n), [B, S]),
    };
    if (this.hasLangs) {
      if (batch.langIds === undefined || batch.langIds.length !== B)
        throw new XltConfigError(`langIds must have ${B} entries`, { field: 'langIds' });
      feeds.lang_ids = i64(batch.langIds, [B]);
    }
    if (this.head === 'question-answering') {
      if (!batch.startPositions || !batch.endPositions)
        throw new XltConfigError('QA batches need startPositions and endPositions', {
          field: 'startPositions',
        });
      feeds.start_positions = i64(batch.startPositions, [B]);
      feeds.end_positions = i64(batch.endPositions, [B]);
    } else if (this.head === 'open-ie') {
      for (const k of ['predMask', 'predPosition', 'predLabels', 'argLabels'] as const)
        if (batch[k] === undefined) throw new XltConfigError(`Open IE batches need ${k}`, { field: k });
      feeds.pred_mask = i64(batch.predMask as number[][], [B, S]);
      feeds.pred_position = i64(batch.predPosition as number[][], [B, S]);
      feeds.pred_labels = i64(batch.predLabels as number[][], [B, S]);
      feeds.arg_labels = i64(batch.argLabels as number[][], [B, S]);
    } else {
      if (batch.labels === undefined)
        throw new XltConfigError('the batch has no labels', { field: 'labels' });
      feeds.labels = i64(batch.labels, this.head === 'sequence-classification' ? [B] : [B, S]);
    }
    if (this.mixup) {
      if (!batch.mixIds || !batch.mixProbs || !batch.mixLambda)
        throw new XltConfigError('this step mixes embeddings: give mixIds, mixProbs and mixLambda', {
          field: 'mixIds',
        });
      const K = batch.mixIds[0]?.[0]?.length ?? 0;
      feeds.mix_ids = new ort.Tensor(
        'int64',
        BigInt64Array.from(batch.mixIds.flat(2).map((v) => BigInt(v))),
        [B, S, K],
      );
      feeds.mix_probs = new ort.Tensor('float32', Float32Array.from(batch.mixProbs.flat(2)), [B, S, K]);
      feeds.mix_lambda = new ort.Tensor('float32', Float32Array.from(batch.mixLambda.flat()), [B, S]);
    }
    const t = this.stepCount + 1;
    feeds.lr = new ort.Tensor('float32', Float32Array.of(lr), []);
    if (this.dropoutSeed !== undefined) {
      // a per-step seed from (seed, step): same masks after a resume
      const seed = (Math.abs(Math.trunc(this.dropoutSeed)) * 1000003 + t * 7919) % 2147483647;
      feeds.dropout_seed = new ort.Tensor('int64', BigInt64Array.of(BigInt(seed)), []);
    }
    feeds.step = new ort.Tensor('float32', Float32Array.of(t), []);
    const read = this.bufs[this.cur];
    const write = this.bufs[(1 - this.cur) as 0 | 1];
    const fetches: Record<string, ort.Tensor | null> = { loss: null, grad_norm: null };
    this.signature.params.forEach((p, i) => {
      const r = read[i] as Buf;
      const w = write[i] as Buf;
      feeds[p.input] = new ort.Tensor('float32', r.p, p.shape);
      feeds[p.m as string] = new ort.Tensor('float32', r.m, p.shape);
      feeds[p.v as string] = new ort.Tensor('float32', r.v, p.shape);
      fetches[p.newParam as string] = new ort.Tensor('float32', w.p, p.shape);
      fetches[p.newM as string] = new ort.Tensor('float32', w.m, p.shape);
      fetches[p.newV as string] = new ort.Tensor('float32', w.v, p.shape);
    });
    const out = await this.session.run(feeds, fetches as ort.InferenceSession.FetchesType);
    const loss = (out.loss as ort.Tensor).data[0] as number;
    const gradNorm = (out.grad_norm as ort.Tensor).data[0] as number;
    if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
      throw new XltError(
        'NUMERIC',
        `non-finite ${Number.isFinite(loss) ? 'gradient norm' : 'loss'} at step ${t}; parameters were not updated`,
      );
    }
    this.cur = (1 - this.cur) as 0 | 1;
    this.stepCount = t;
    return { loss, gradNorm };
  }

  /** A copy of the parameters and optimizer state. */
  getState(): CompiledTrainState {
    const cur = this.bufs[this.cur];
    const pick = (k: 'p' | 'm' | 'v') =>
      new Map(this.signature.params.map((p, i) => [p.name, Float32Array.from((cur[i] as Buf)[k])]));
    return { step: this.stepCount, params: pick('p'), m: pick('m'), v: pick('v') };
  }

  /** Restores {@link getState}'s output (e.g. from a checkpoint). */
  setState(state: CompiledTrainState): void {
    const cur = this.bufs[this.cur];
    this.signature.params.forEach((p, i) => {
      for (const [k, src] of [
        ['p', state.params],
        ['m', state.m],
        ['v', state.v],
      ] as const) {
        const a = src.get(p.name);
        if (a === undefined || a.length !== (cur[i] as { p: Float32Array }).p.length) {
          throw new XltConfigError(`state has no ${k} of the right size for this parameter`, {
            tensor: p.name,
          });
        }
        (cur[i] as Buf)[k].set(a);
      }
    });
    this.stepCount = state.step;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** transformers' `get_linear_schedule_with_warmup`: the learning rate for 0-based step `t`. */
export function linearWarmupDecay(base: number, t: number, warmup: number, total: number): number {
  if (t < warmup) return (base * t) / Math.max(1, warmup);
  return base * Math.max(0, (total - t) / Math.max(1, total - warmup));
}
