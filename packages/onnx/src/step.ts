import os from 'node:os';
import { type TokenBatch, XltConfigError, XltError } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { KernelSlicedUpdate } from './adamw-kernel.js';
import { loadNativeAdamw, NativeAdamw } from './adamw-native.js';
import { WASM_UPDATE_CHUNK, WasmAdamw, wasmSimdAvailable } from './adamw-wasm.js';
import { buildTracedTrainGraph } from './autodiff/train-graph.js';
import {
  checkTrainMemory,
  estimateTrainMemory,
  FUSED_UPDATE_LIMIT,
  type TrainMemoryEstimate,
  usesFusedUpdate,
} from './memory.js';
import type { HeadKind, LoraMixtureSpec, WeightSource, XmodConfig } from './model-types.js';
import { addRows, ROW_GRADIENTS, type RowScatter, rowScatter, scatterRows } from './row-gradients.js';
import { sessionOptions } from './runner.js';
import { cachedSession } from './session-cache.js';
import { SlicedUpdate, UPDATE_CHUNK } from './sliced-update.js';
import { type AdamWSettings, defaultNoDecay, type TrainGraphSignature } from './train-types.js';

/**
 * A training batch of the compiled step: `@xlt/core`'s one batch type.
 * @deprecated use `TokenBatch` from `@xlt/core`.
 */
export type TrainBatch = TokenBatch;

export interface CompiledTrainStepOptions {
  config: XmodConfig;
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
  /**
   * Micro-batches per optimiser step (default 1). With 1, one fused graph runs the whole step (or
   * the sliced step, see `update`). With K > 1, the sliced step's gradients graph runs per
   * micro-batch, the gradients are averaged (the mean over the micro-batches, as the tfjs trainer's
   * accumulation) in its buffers (later micro-batches through scratch buffers allocated once; the
   * word embeddings' rows kept as rows), and the sliced update clips the mean gradient and applies
   * AdamW once per step.
   */
  gradAccumulation?: number;
  /** masked-lm: run the LM head on the labelled positions only (default) or on every position. */
  maskedLmHead?: 'labelled' | 'dense';
  /**
   * Use the weight source's arrays of the trainable parameters as the step's parameters, updated in
   * place (the source then holds the trained values; no copy). Default false: the step copies them.
   */
  updateWeightsInPlace?: boolean;
  /**
   * The largest batch the run will feed: with it, `create` estimates the memory the step needs
   * ({@link estimateTrainMemory}), hands the estimate to `onMemoryEstimate` and throws an
   * `XltMemoryError` (code `MEMORY`) before building anything when it exceeds `maxMemoryBytes`.
   */
  batchShape?: { batchSize: number; sequenceLength: number };
  /**
   * Feed frozen parameters to the graph at run time from the weight source's arrays instead of
   * baking them in (see `TracedTrainGraphOptions.frozenAsInputs`): no second copy of them in
   * onnxruntime and a graph of the config alone. Default false (baked-in weights let onnxruntime
   * pre-pack frozen matmul weights).
   */
  frozenAsInputs?: boolean;
  /**
   * A folder where onnxruntime's optimised graphs are kept (see `cachedSession`): a step built again
   * with the same config, head, trainable set and options skips onnxruntime's graph optimisation.
   * Needs `frozenAsInputs` (a cached graph holds no weights).
   */
  sessionCacheDir?: string;
  /**
   * Elements per update run (default {@link UPDATE_CHUNK}, 256K: 1 MiB): without gradient
   * accumulation the step runs a gradients graph, then clipping and AdamW in runs of at most this
   * many elements (large parameters cut into slices, small ones packed together), each written back
   * in place, so the update's temporaries are a few slices, not a few copies of the largest parameter
   * (the 250,002 x 768 word embeddings at XLM-R-base size). See {@link SlicedUpdate}. For
   * `updateKernel: 'onnxruntime'`; the wasm kernel works in windows of {@link WASM_UPDATE_CHUNK}.
   */
  updateChunk?: number;
  /**
   * How a step without accumulation updates: `fused` (gradients, clipping and AdamW in one graph
   * with onnxruntime's memory pattern: fastest, but its temporaries grow with the parameters),
   * `sliced` (a gradients graph, then {@link SlicedUpdate}; no memory pattern: the bounded-memory
   * path for large models) or `auto` (default: fused while the trainable parameters hold at most
   * {@link FUSED_UPDATE_LIMIT} elements, sliced above).
   */
  update?: 'auto' | 'fused' | 'sliced';
  /**
   * What runs the sliced step's clipping and AdamW: `native` (default where a C++ compiler and
   * Node's headers are found: {@link NativeAdamw}, compiled once per machine and cached, in place on
   * `threads` threads), `wasm` (the default otherwise where WebAssembly SIMD runs: {@link WasmAdamw},
   * one thread; the same bits as native) or `onnxruntime` ({@link SlicedUpdate}'s graphs in runs of
   * `updateChunk` elements; the same values up to float32 rounding). {@link updateKernelName} says
   * which ran, {@link updateKernelNote} why native did not.
   */
  updateKernel?: 'native' | 'wasm' | 'onnxruntime';
  /** The sliced step's largest gradient output in elements, larger ones in row blocks (default {@link GRAD_BLOCK_ELEMENTS}). */
  gradBlockElements?: number;
  /**
   * Tables of which only these rows train (parameter name -> row indices; see
   * `TracedTrainGraphOptions.trainableRows`): the other rows get a zero gradient and the table no
   * weight decay, so they stay bit-identical.
   */
  trainableRows?: ReadonlyMap<string, readonly number[]>;
  /** The memory limit for `batchShape`'s check (default: the machine's memory, `os.totalmem()`). */
  maxMemoryBytes?: number;
  /** Receives the estimate (e.g. to print {@link describeTrainMemory}'s line before a run). */
  onMemoryEstimate?: (estimate: TrainMemoryEstimate) => void;
}

/** Optimizer state of a {@link CompiledTrainStep}, for checkpoints. */
export interface CompiledTrainState {
  step: number;
  params: Map<string, Float32Array>;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

/** A trainable parameter's value and AdamW moments: one buffer each, updated in place. */
interface Buf {
  p: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

export { FUSED_UPDATE_LIMIT, UPDATE_CHUNK, WASM_UPDATE_CHUNK };

/**
 * The sliced step's largest gradient output, in elements (16 MB): a larger one (the XLM-R-base
 * table's, 768 MB) leaves the graph in row blocks, which glibc reuses from run to run instead of
 * mapping a fresh buffer of the table's size each time (see `gradBlockElements`).
 */
export const GRAD_BLOCK_ELEMENTS = 4 * 1024 * 1024;

const i64 = (rows: number[][] | number[], dims: number[]) =>
  new ort.Tensor(
    'int64',
    BigInt64Array.from((rows as Array<number | number[]>).flat().map((v) => BigInt(v))),
    dims,
  );

/**
 * A training step compiled to one ONNX graph (forward, backward, clipping, AdamW) and run by
 * onnxruntime. Each trainable parameter and its two AdamW moments live in one buffer each, which the
 * graph reads and then overwrites in place (its updates run after the whole backward pass and output
 * their inputs unchanged on a non-finite step): nothing is copied or re-allocated per step, and
 * frozen parameters have no moments.
 * With `gradAccumulation` K > 1 a step takes up to K micro-batches: a gradients graph per
 * micro-batch, then one sliced update on the mean gradient (see {@link CompiledTrainStepOptions}).
 */
export class CompiledTrainStep {
  /** Signature of the graph run per batch (the fused step, or the gradients graph when accumulating). */
  readonly signature: TrainGraphSignature;
  private readonly session: ort.InferenceSession;
  private readonly head: HeadKind;
  private readonly hasLangs: boolean;
  private mixup = false;
  /** Whether onnxruntime's optimised graph came from `sessionCacheDir`. */
  sessionFromCache = false;
  /** Frozen parameters fed to the graph (`frozenAsInputs`): input name and tensor, made once. */
  private frozenFeeds: Array<[string, ort.Tensor]> = [];
  private dropoutSeed: number | undefined;
  /** Per trainable parameter: its value and moments, read and written in place by every step. */
  private readonly bufs: Buf[];
  private stepCount = 0;
  /** Micro-batches per step this step was compiled for. */
  private accumulation = 1;
  private sliced: SlicedUpdate | KernelSlicedUpdate | undefined;
  /** What runs the update: the fused graph, or the sliced step's kernel (see `updateKernel`). */
  updateKernelName: 'fused' | 'native' | 'wasm' | 'onnxruntime' = 'fused';
  /** Why the default sliced update is not the native kernel, where it is not. */
  updateKernelNote: string | undefined;
  /** Per trainable parameter with a dense gradient: where micro-batches after the first write it. */
  private scratch: Array<Float32Array | undefined> = [];
  /** Per trainable parameter of the sliced step: its row scatter when its gradient comes as rows. */
  private scatters: Array<RowScatter | undefined> = [];

  private constructor(
    session: ort.InferenceSession,
    signature: TrainGraphSignature,
    head: HeadKind,
    init: Map<string, Float32Array>,
    private readonly inPlace: boolean,
  ) {
    this.session = session;
    this.signature = signature;
    this.head = head;
    // X-Mod modules and language-routed LoRA mixtures both read the graph's lang_ids input
    this.hasLangs = signature.batch.includes('lang_ids');
    this.bufs = signature.params.map((p) => {
      const src = init.get(p.name) as Float32Array;
      return {
        p: inPlace ? src : Float32Array.from(src),
        m: new Float32Array(src.length),
        v: new Float32Array(src.length),
      };
    });
  }

  static async create(given: CompiledTrainStepOptions): Promise<CompiledTrainStep> {
    const options = withoutDecayOfRowTables(given);
    const count = options.gradAccumulation ?? 1;
    if (!Number.isInteger(count) || count < 1)
      throw new XltConfigError(`gradAccumulation must be a positive integer, got ${count}`, {
        field: 'gradAccumulation',
      });
    if (options.sessionCacheDir !== undefined && options.frozenAsInputs !== true)
      throw new XltConfigError('sessionCacheDir needs frozenAsInputs: a cached graph must not hold weights', {
        field: 'sessionCacheDir',
      });
    const update = options.update ?? 'auto';
    if (!['auto', 'fused', 'sliced'].includes(update))
      throw new XltConfigError(`update must be auto, fused or sliced, got ${String(update)}`, {
        field: 'update',
      });
    const fused = usesFusedUpdate({ ...options, gradAccumulation: count, update });
    // the default kernel only where there is a sliced update (the native one may compile first)
    let kernelNote: string | undefined;
    let kernel = options.updateKernel;
    if (!fused && kernel === undefined) {
      const native = loadNativeAdamw();
      if (native.ok) kernel = 'native';
      else {
        kernelNote = `native AdamW kernel not available (${native.reason})`;
        kernel = wasmSimdAvailable() ? 'wasm' : 'onnxruntime';
      }
    }
    let memoryPattern: boolean | undefined;
    if (options.batchShape !== undefined) {
      const estimate = estimateTrainMemory({
        config: options.config,
        head: options.head,
        trainable: options.trainable,
        weights: options.weights,
        ...options.batchShape,
        gradAccumulation: count,
        ...(options.maskedLmHead === 'dense' ? { maskedLmShare: 1 } : {}),
        ...(options.updateWeightsInPlace === true ? { updateWeightsInPlace: true } : {}),
        ...(options.frozenAsInputs === true ? { frozenAsInputs: true } : {}),
        ...(options.update !== undefined ? { update: options.update } : {}),
        rowGradients: !fused && kernel !== 'onnxruntime',
      });
      options.onMemoryEstimate?.(estimate);
      checkTrainMemory(estimate, options.maxMemoryBytes);
      memoryPattern = estimate.memoryPattern;
    }
    // one graph, traced from the encoder's definition with symbolic batch and sequence sizes, serves
    // every batch shape (length-bucketed batches included)
    const {
      embeddingMixup,
      batchShape: _shape,
      maxMemoryBytes: _max,
      onMemoryEstimate: _report,
      updateWeightsInPlace,
      sessionCacheDir,
      ...rest
    } = options;
    const { update: _update, updateKernel: _kernel, gradBlockElements: _blocks, ...graphOptions } = rest;
    const { model, signature } = buildTracedTrainGraph({
      ...graphOptions,
      ...(embeddingMixup === true ? { embeddingMixup: {} } : {}),
      mode: fused ? 'adamw' : 'grads',
      // `Tracer.recompute` groups recomputed only where memory is the limit (the sliced, large-model
      // step); the encoder has none of its own (GELU is one op whose gradient needs only its input)
      recompute: !fused,
      // the sliced step takes the word embeddings' gradient as rows and scatters it itself
      ...(!fused
        ? {
            rowGradients: options.trainable.filter((n) => ROW_GRADIENTS.test(n)),
            gradBlockElements: options.gradBlockElements ?? GRAD_BLOCK_ELEMENTS,
          }
        : {}),
    });
    const so = {
      ...sessionOptions(options),
      // the memory pattern only for the fused (small) step: with symbolic shapes onnxruntime plans
      // one block per batch shape on the second run, on top of the arena the first run grew
      // (measured: +1.3 GiB at h768 l12 b8 s128), but without it a small model's step is slower;
      // with a batch shape, only while that block is small (`MEM_PATTERN_LIMIT`)
      enableMemPattern: fused && memoryPattern !== false,
    };
    const build = async (bytes: Uint8Array) =>
      sessionCacheDir !== undefined
        ? await cachedSession(bytes, so, sessionCacheDir)
        : { session: await ort.InferenceSession.create(bytes, so), hit: false };
    const { session, hit } = await build(model);
    const init = new Map(signature.params.map((p) => [p.name, options.weights.get(p.name).data]));
    const step = new CompiledTrainStep(session, signature, options.head, init, updateWeightsInPlace === true);
    step.sessionFromCache = hit;
    step.mixup = options.embeddingMixup === true;
    step.frozenFeeds = (signature.frozen ?? []).map((f) => [
      f.input,
      new ort.Tensor('float32', options.weights.get(f.name).data, f.shape),
    ]);
    if (signature.batch.includes('dropout_seed')) step.dropoutSeed = options.dropoutSeed ?? 0;
    step.accumulation = count;
    if (!fused) {
      // the slice update graph is small and the same for every model: built here, never cached
      const plain = async (bytes: Uint8Array) => ({ session: await ort.InferenceSession.create(bytes, so) });
      try {
        if (kernel === 'native')
          step.sliced = KernelSlicedUpdate.create(
            signature,
            options.adamw,
            NativeAdamw.create(options.threads ?? os.cpus().length),
          );
        else if (kernel === 'wasm')
          step.sliced = KernelSlicedUpdate.create(signature, options.adamw, WasmAdamw.create());
        else if (kernel === 'onnxruntime')
          step.sliced = await SlicedUpdate.create(signature, options.adamw, plain, options.updateChunk);
        else
          throw new XltConfigError(
            `updateKernel must be native, wasm or onnxruntime, got ${String(kernel)}`,
            {
              field: 'updateKernel',
            },
          );
        step.updateKernelName = kernel;
        if (kernelNote !== undefined) step.updateKernelNote = kernelNote;
      } catch (e) {
        await session.release();
        throw e;
      }
    }
    return step;
  }

  /** Micro-batches per optimiser step this step was compiled for. */
  get gradAccumulation(): number {
    return this.accumulation;
  }

  /** Steps taken so far (AdamW's t). */
  get step(): number {
    return this.stepCount;
  }

  /** Current value of a trainable parameter (a view: copy it to keep it). */
  parameter(name: string): Float32Array {
    const i = this.signature.params.findIndex((p) => p.name === name);
    if (i < 0) throw new XltConfigError('not a trainable parameter of this step', { tensor: name });
    return (this.bufs[i] as Buf).p;
  }

  /** Bytes of the step's own buffers: parameter copies (none when updated in place), moments, gradients. */
  get heldBytes(): { parameters: number; moments: number; gradients: number } {
    const bytes = (list: Array<Float32Array | undefined>) =>
      list.reduce((a, x) => a + (x?.byteLength ?? 0), 0);
    return {
      parameters: this.inPlace ? 0 : bytes(this.bufs.map((b) => b.p)),
      moments: bytes(this.bufs.flatMap((b) => [b.m, b.v])),
      gradients:
        (this.sliced instanceof KernelSlicedUpdate
          ? this.sliced.gradientBytes
          : bytes(this.sliced?.grads ?? [])) + bytes(this.scratch),
    };
  }

  /**
   * Runs one optimisation step at learning rate `lr` on one batch, or on up to `gradAccumulation`
   * micro-batches (their mean gradient); returns the loss (the mean over the micro-batches) and the
   * norm of the (mean) gradient before clipping. Nothing is updated when a loss or the norm is not finite.
   */
  async run(batches: TokenBatch | TokenBatch[], lr: number): Promise<{ loss: number; gradNorm: number }> {
    const list = Array.isArray(batches) ? batches : [batches];
    const K = this.accumulation;
    if (list.length < 1 || list.length > K)
      throw new XltConfigError(
        `this step takes ${K === 1 ? 'one batch' : `1 to ${K} micro-batches`}, got ${list.length}`,
        { field: 'gradAccumulation' },
      );
    const t = this.stepCount + 1;
    const out =
      this.sliced === undefined
        ? await this.runFused(list[0] as TokenBatch, lr, t)
        : await this.runSliced(list, lr, t, this.sliced);
    this.stepCount = t;
    return out;
  }

  /** The whole step in one graph (its updates wait for a finite loss and norm), in place. */
  private async runFused(
    batch: TokenBatch,
    lr: number,
    t: number,
  ): Promise<{ loss: number; gradNorm: number }> {
    const feeds = this.batchFeeds(batch, t);
    feeds.lr = new ort.Tensor('float32', Float32Array.of(lr), []);
    feeds.step = new ort.Tensor('float32', Float32Array.of(t), []);
    const fetches: Record<string, ort.Tensor | null> = { loss: null, grad_norm: null };
    this.signature.params.forEach((p, i) => {
      feedInPlace(feeds, fetches, p, this.bufs[i] as Buf);
    });
    const out = await this.session.run(feeds, fetches as ort.InferenceSession.FetchesType);
    const loss = (out.loss as ort.Tensor).data[0] as number;
    const gradNorm = (out.grad_norm as ort.Tensor).data[0] as number;
    finiteOrThrow(loss, gradNorm, t);
    return { loss, gradNorm };
  }

  /**
   * The gradients graph into the gradient buffers, once per micro-batch (later ones through scratch
   * buffers, added; the mean over them taken as the tfjs trainer's accumulation does), then (after a
   * finite loss and norm) clipping and AdamW slice by slice, each slice's parameter and moments
   * written back into the buffers it reads.
   */
  private async runSliced(
    list: TokenBatch[],
    lr: number,
    t: number,
    u: SlicedUpdate | KernelSlicedUpdate,
  ): Promise<{ loss: number; gradNorm: number }> {
    const params = this.signature.params;
    const K = list.length;
    // per parameter given as rows only: every micro-batch's ids and rows
    const rowParts: RowPart[][] = params.map(() => []);
    let lossSum = 0;
    // K = 1: the graph's norm of the dense gradients, corrected by the rows (the one-batch step's
    // norm, unchanged); K > 1: the norm of the mean gradient, taken over the buffers at the end
    let sq = 0;
    for (let micro = 0; micro < K; micro++) {
      // micro-batch u = (t - 1) K + micro + 1 of the run: its dropout masks depend on (seed, t, micro) only
      const feeds = this.batchFeeds(list[micro] as TokenBatch, (t - 1) * this.accumulation + micro + 1);
      const target = (i: number) => (micro === 0 ? u.grads[i] : this.scratchOf(i, u)) as Float32Array;
      const fetches: Record<string, ort.Tensor | null> = { loss: null, grad_norm: null };
      params.forEach((p, i) => {
        feeds[p.input] = new ort.Tensor('float32', (this.bufs[i] as Buf).p, p.shape);
        if (p.gradRows !== undefined) {
          fetches[p.gradRows] = null;
          fetches[p.gradIds as string] = null;
        }
        if (p.grad !== undefined) fetches[p.grad] = new ort.Tensor('float32', target(i), p.shape);
        else if (p.gradBlocks !== undefined) blockFetches(fetches, p, target(i));
      });
      const out = await this.session.run(feeds, fetches as ort.InferenceSession.FetchesType);
      const loss = (out.loss as ort.Tensor).data[0] as number;
      if (!Number.isFinite(loss))
        throw new XltError(
          'NUMERIC',
          `non-finite loss at step ${t}${K > 1 ? `, micro-batch ${micro}` : ''}; parameters were not updated`,
        );
      lossSum += loss;
      if (K === 1) sq = ((out.grad_norm as ort.Tensor).data[0] as number) ** 2;
      params.forEach((p, i) => {
        const dense = hasDenseGrad(p);
        if (p.gradRows !== undefined) {
          const ids = (out[p.gradIds as string] as ort.Tensor).data as BigInt64Array;
          const rows = (out[p.gradRows] as ort.Tensor).data as Float32Array;
          // a tied table (the masked-LM decoder): the rows join its other uses' gradient, which the
          // graph's norm covered
          if (dense) {
            const delta = addRows(
              target(i),
              p.shape.slice(1).reduce((a, d) => a * d, 1),
              ids,
              rows,
            );
            if (K === 1) sq += delta;
          } else (rowParts[i] as RowPart[]).push({ ids, rows });
        }
        if (dense && micro > 0) {
          const sum = u.grads[i] as Float32Array;
          const g = target(i);
          for (let j = 0; j < sum.length; j++) sum[j] = (sum[j] as number) + (g[j] as number);
        }
      });
    }
    const scale = 1 / K;
    if (K > 1)
      params.forEach((p, i) => {
        // the dense gradients (a row-only parameter's buffer, onnxruntime's kernel, is scattered below)
        if (!hasDenseGrad(p)) return;
        const sum = u.grads[i] as Float32Array;
        for (let j = 0; j < sum.length; j++) {
          const g = Math.fround((sum[j] as number) * scale);
          sum[j] = g;
          sq += g * g;
        }
      });
    // the word embeddings' rows (all micro-batches', scaled to the mean): the one-pass kernels (native,
    // WebAssembly) keep them as rows (no dense buffer of the table), onnxruntime's scatters them into one
    params.forEach((p, i) => {
      const parts = rowParts[i] as RowPart[];
      if (parts.length === 0) return;
      const ids = parts.length === 1 ? (parts[0] as RowPart).ids : concatIds(parts);
      const rows = K === 1 ? (parts[0] as RowPart).rows : concatRows(parts, scale);
      if (u instanceof KernelSlicedUpdate) sq += u.setRows(i, ids, rows);
      else {
        this.scatters[i] ??= rowScatter(p.shape);
        sq += scatterRows(u.grads[i] as Float32Array, this.scatters[i] as RowScatter, ids, rows);
      }
    });
    const loss = lossSum / K;
    const gradNorm = Math.fround(Math.sqrt(sq));
    finiteOrThrow(loss, gradNorm, t);
    await u.apply(this.bufs, lr, t, gradNorm);
    return { loss, gradNorm };
  }

  /** Parameter `i`'s scratch gradient buffer (allocated on first use, as large as its gradient). */
  private scratchOf(i: number, u: SlicedUpdate | KernelSlicedUpdate): Float32Array {
    this.scratch[i] ??= new Float32Array((u.grads[i] as Float32Array).length);
    return this.scratch[i] as Float32Array;
  }

  /** The batch's graph inputs (and the dropout seed of micro-batch `u`, 1-based over the run). */
  private batchFeeds(batch: TokenBatch, u: number): Record<string, ort.Tensor> {
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
    for (const [input, tensor] of this.frozenFeeds) feeds[input] = tensor;
    if (this.dropoutSeed !== undefined) {
      // a seed from (seed, u): same masks after a resume (u = the step number without accumulation)
      const seed = (Math.abs(Math.trunc(this.dropoutSeed)) * 1000003 + u * 7919) % 2147483647;
      feeds.dropout_seed = new ort.Tensor('int64', BigInt64Array.of(BigInt(seed)), []);
    }
    return feeds;
  }

  /** A copy of the parameters and optimizer state. */
  getState(): CompiledTrainState {
    const cur = this.bufs;
    const pick = (k: 'p' | 'm' | 'v') =>
      new Map(this.signature.params.map((p, i) => [p.name, Float32Array.from((cur[i] as Buf)[k])]));
    return { step: this.stepCount, params: pick('p'), m: pick('m'), v: pick('v') };
  }

  /** Restores {@link getState}'s output (e.g. from a checkpoint). */
  setState(state: CompiledTrainState): void {
    const cur = this.bufs;
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
    await this.sliced?.release();
  }
}

/**
 * Feeds a parameter and its moments and fetches their updated values into the same buffers: the
 * graph's updates run after every read of them (see `appendUpdate` in the traced train graph).
 */
function feedInPlace(
  feeds: Record<string, ort.Tensor>,
  fetches: Record<string, ort.Tensor | null>,
  p: TrainGraphSignature['params'][number],
  b: Buf,
): void {
  const p32 = new ort.Tensor('float32', b.p, p.shape);
  const m32 = new ort.Tensor('float32', b.m, p.shape);
  const v32 = new ort.Tensor('float32', b.v, p.shape);
  feeds[p.input] = p32;
  feeds[p.m as string] = m32;
  feeds[p.v as string] = v32;
  fetches[p.newParam as string] = p32;
  fetches[p.newM as string] = m32;
  fetches[p.newV as string] = v32;
}

/** Fetches of a gradient's row blocks (`gradBlocks`): views of its buffer `grad`, in row order. */
function blockFetches(
  fetches: Record<string, ort.Tensor | null>,
  p: { shape: number[]; gradBlocks?: Array<{ output: string; rows: number }> },
  grad: Float32Array,
): void {
  const width = p.shape.slice(1).reduce((a, d) => a * d, 1);
  let from = 0;
  for (const { output, rows } of p.gradBlocks ?? []) {
    fetches[output] = new ort.Tensor('float32', grad.subarray(from * width, (from + rows) * width), [
      rows,
      ...p.shape.slice(1),
    ]);
    from += rows;
  }
}

/** One micro-batch's gradient of a table given as rows: the table rows and their gradients. */
interface RowPart {
  ids: BigInt64Array;
  rows: Float32Array;
}

/** Whether the gradients graph gives parameter `p` a dense gradient (whole or in row blocks). */
function hasDenseGrad(p: TrainGraphSignature['params'][number]): boolean {
  return p.grad !== undefined || p.gradBlocks !== undefined;
}

/** The micro-batches' row ids, one after another. */
function concatIds(parts: readonly RowPart[]): BigInt64Array {
  const out = new BigInt64Array(parts.reduce((a, p) => a + p.ids.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p.ids, at);
    at += p.ids.length;
  }
  return out;
}

/** The micro-batches' rows, one after another, times `scale` (1/K: their mean). */
function concatRows(parts: readonly RowPart[], scale: number): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.rows.length, 0));
  let at = 0;
  for (const p of parts) {
    for (let j = 0; j < p.rows.length; j++) out[at + j] = (p.rows[j] as number) * scale;
    at += p.rows.length;
  }
  return out;
}

function finiteOrThrow(loss: number, gradNorm: number, t: number): void {
  if (!Number.isFinite(loss) || !Number.isFinite(gradNorm))
    throw new XltError(
      'NUMERIC',
      `non-finite ${Number.isFinite(loss) ? 'gradient norm' : 'loss'} at step ${t}; parameters were not updated`,
    );
}

/** transformers' `get_linear_schedule_with_warmup`: the learning rate for 0-based step `t`. */
export function linearWarmupDecay(base: number, t: number, warmup: number, total: number): number {
  if (t < warmup) return (base * t) / Math.max(1, warmup);
  return base * Math.max(0, (total - t) / Math.max(1, total - warmup));
}

/** The options with no weight decay on the tables of `trainableRows` (their frozen rows must not shrink). */
function withoutDecayOfRowTables(options: CompiledTrainStepOptions): CompiledTrainStepOptions {
  const tables = options.trainableRows;
  if (tables === undefined || tables.size === 0) return options;
  const noDecay = options.adamw.noDecay ?? defaultNoDecay;
  return { ...options, adamw: { ...options.adamw, noDecay: (name) => tables.has(name) || noDecay(name) } };
}
