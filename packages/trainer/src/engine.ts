import * as tf from '@tensorflow/tfjs-core';
import { Rng, type TokenBatch, XltConfigError, type XmodConfig } from '@xlt/core';
import {
  CompiledTrainStep,
  type HeadKind,
  headFromArchitectures,
  type LoraMixtureSpec,
  moduleWeights,
  type TrainMemoryEstimate,
  weightShapes,
} from '@xlt/onnx';
import { HEAD_LOSS } from './objectives.js';
import type { AdamWParamState } from './optim.js';
import { defaultNoDecay, type ParameterSource, trainableParameters } from './params.js';
import { LrScheduler } from './schedule.js';
import { type LossFn, type StepResult, Trainer, type TrainerOptions, type TrainerState } from './trainer.js';

/**
 * Which engine runs the training steps. `tfjs`: eager tfjs autograd on the active backend (any
 * model, any loss). `onnxruntime`: the whole step (forward, backward, clipping, AdamW) compiled to
 * one ONNX graph and run by onnxruntime-node (an `@xlt/xmod` model with its own head loss); with
 * gradient accumulation, a gradients graph per micro-batch and one update graph per step.
 * `auto` (default): onnxruntime when {@link onnxSupport} accepts the model and loss, else tfjs; with
 * the native `tensorflow` backend active, tfjs.
 */
export type EngineName = 'tfjs' | 'onnxruntime';
export type EngineChoice = EngineName | 'auto';

/** onnxruntime settings of the compiled engine. */
export interface OnnxEngineOptions {
  /** Intra-op threads (default: all cores). */
  threads?: number;
  /** e.g. `['cuda', 'cpu']` where the CUDA build of onnxruntime-node is installed. */
  executionProviders?: string[];
  /**
   * SALT-style objective (sequence / token classification; onnxruntime only): each batch holds the
   * originals then their augmented versions, position by position (e.g. `@xlt/augment` selfAugment
   * with `unit: 'token'`); loss = task(originals) + augWeight task(augmented) + klWeight
   * KL(p(originals) || p(augmented)) over the labelled positions.
   */
  salt?: { augWeight?: number; klWeight?: number };
  /**
   * Embedding mixup (onnxruntime only): every batch carries `mixIds`, `mixProbs` and `mixLambda`
   * (see `TokenBatch`), mixed into the word embeddings with gradients into them.
   */
  embeddingMixup?: boolean;
  /**
   * The largest batch the run feeds (rows x tokens): the compiled step's memory is estimated for it
   * and handed to `onMemoryEstimate`, and a step that would need more than `maxMemoryBytes` (default:
   * the machine's memory) is refused with an `XltMemoryError` before anything is allocated.
   */
  batchShape?: { batchSize: number; sequenceLength: number };
  maxMemoryBytes?: number;
  onMemoryEstimate?: (estimate: TrainMemoryEstimate) => void;
  /**
   * The compiled step's update path (`CompiledTrainStepOptions.update`): `auto` (default: one fused
   * graph for small models, sliced above 16M trainable elements), `fused` or `sliced`; and the
   * sliced update's kernel (`native`, the default where a C++ compiler is found, `wasm` or
   * `onnxruntime`). The engine line of the run names a sliced update's kernel.
   */
  update?: 'auto' | 'fused' | 'sliced';
  updateKernel?: 'native' | 'wasm' | 'onnxruntime';
  /**
   * Tables of which only these rows train (onnxruntime only; parameter name -> row indices): the
   * other rows get no gradient and the table no weight decay, so they stay bit-identical (e.g. the
   * vocabulary of a language added after pre-training that no earlier language uses).
   */
  trainableRows?: Readonly<Record<string, readonly number[]>>;
}

/** The optimiser surface checkpoints use (moments by Hugging Face name). */
export interface EngineOptimizer {
  getState(): Promise<Map<string, AdamWParamState>>;
  setState(state: ReadonlyMap<string, AdamWParamState>): void;
}

/** What {@link fit} and the checkpoint functions need from a trainer, whichever engine runs it. */
export interface TrainEngine<B> {
  readonly engine: EngineName;
  readonly model: ParameterSource;
  readonly optimizer: EngineOptimizer;
  readonly scheduler: LrScheduler;
  readonly rng: Rng;
  readonly step: number;
  parameterNames(): string[];
  trainStep(batches: B | B[]): StepResult | Promise<StepResult>;
  /** Writes the engine's current parameters into the model's variables (no-op for tfjs). */
  syncModel(): void;
  getState(): TrainerState;
  setState(state: TrainerState): void;
  dispose(): void | Promise<void>;
}

interface HeadModel {
  config: XmodConfig;
  namedParameters(): Array<[string, tf.Variable]>;
}

/** Whether the compiled engine can train this model with this loss, and the head if so. */
export type OnnxSupport =
  | {
      ok: true;
      head: HeadKind;
      config: XmodConfig;
      /** Live LoRA modules (`@xlt/lora` LoraLinear) and their scaling. */
      lora: Map<string, number>;
      /** Live LoRA mixtures (`@xlt/lora` LoraMixtureLinear). */
      loraMixtures: Map<string, LoraMixtureSpec>;
    }
  | { ok: false; reason: string };

interface LoraLike {
  base_layer?: unknown;
  lora_A?: unknown;
  lora_embedding_A?: unknown;
  experts?: unknown;
  scaling?: number;
  mode?: LoraMixtureSpec['mode'];
  languages?: string[];
  k?: number;
  pooling?: 'first' | 'mean';
  dropoutRate?: number;
}

/** LoRA (linear and embedding) and LoRA-mixture modules of a model, recognised by their structure (as `@xlt/lora` builds them). */
function liveLora(
  model: ParameterSource,
): { lora: Map<string, number>; loraMixtures: Map<string, LoraMixtureSpec> } | string {
  const lora = new Map<string, number>();
  const loraMixtures = new Map<string, LoraMixtureSpec>();
  const nm = (model as { namedModules?: () => Array<[string, unknown]> }).namedModules?.() ?? [];
  for (const [name, mod] of nm) {
    const m = mod as LoraLike;
    if (m === null || typeof m !== 'object' || m.base_layer === undefined) continue;
    if (m.lora_embedding_A !== undefined) {
      // PEFT embedding LoRA on the word embeddings: live in the graph (rows + scaling A^T[ids] B^T)
      if (!/^(?:roberta\.)?embeddings\.word_embeddings$/.test(name) || m.scaling === undefined)
        return `embedding LoRA on ${name} (not the word embeddings) trains on tfjs`;
      lora.set(name, m.scaling);
    } else if (
      m.experts !== undefined &&
      m.mode !== undefined &&
      m.languages !== undefined &&
      m.scaling !== undefined
    ) {
      loraMixtures.set(name, {
        mode: m.mode,
        languages: [...m.languages],
        scaling: m.scaling,
        ...(m.k !== undefined ? { k: m.k } : {}),
        ...(m.pooling !== undefined ? { pooling: m.pooling } : {}),
        ...(m.dropoutRate !== undefined ? { dropout: m.dropoutRate } : {}),
      });
    } else if (m.lora_A !== undefined && m.scaling !== undefined) {
      if ((m.dropoutRate ?? 0) > 0) return `LoRA dropout on ${name} trains on tfjs`;
      lora.set(name, m.scaling);
    }
  }
  return { lora, loraMixtures };
}

/**
 * Decides whether the onnxruntime engine can run a training setup exactly as tfjs would: the loss
 * must be the model's own head loss ({@link modelLoss} without extra losses), the model an
 * `@xlt/xmod` `Xmod*`/`XLMRoberta*` head model whose every parameter the exporter knows (LoRA on
 * linear modules and on the word embeddings, and LoRA mixtures, from `@xlt/lora`, stay live in the
 * graph) and bias-corrected AdamW. Gradient accumulation runs compiled too (a gradients graph per
 * micro-batch, their mean, one update graph), with tfjs's semantics. Dropout is applied by the
 * compiled graph with its own seeded masks (the same probabilities, other random draws than tfjs).
 */
export function onnxSupport(
  model: ParameterSource,
  loss: unknown,
  options: TrainerOptions & { gradAccumulation?: number },
): OnnxSupport {
  if (typeof loss !== 'function' || (loss as { [HEAD_LOSS]?: boolean })[HEAD_LOSS] !== true)
    return { ok: false, reason: 'the loss is not the model head loss (modelLoss without extra losses)' };
  if ((options.extraLosses ?? []).length > 0) return { ok: false, reason: 'extra losses need tfjs autograd' };
  if (options.correctBias === false)
    return { ok: false, reason: 'AdamW without bias correction runs on tfjs' };
  const m = model as unknown as Partial<HeadModel>;
  if (m.config === undefined || typeof m.namedParameters !== 'function')
    return { ok: false, reason: 'not an @xlt/xmod model' };
  const head = headFromArchitectures([model.constructor.name]);
  if (head === 'base') return { ok: false, reason: `no compiled training for ${model.constructor.name}` };
  const cfg = m.config;
  const live = liveLora(model);
  if (typeof live === 'string') return { ok: false, reason: live };
  const shapes = weightShapes(cfg, head);
  const wrapped = [...live.lora.keys(), ...live.loraMixtures.keys()];
  for (const [name, v] of m.namedParameters()) {
    const owner = wrapped.find((w) => name.startsWith(`${w}.`));
    if (owner !== undefined) {
      const rest = name.slice(owner.length + 1);
      if (rest === 'base_layer.weight' || rest === 'base_layer.bias') {
        const s = shapes.get(`${owner}.${rest.slice('base_layer.'.length)}`);
        if (s === undefined)
          return { ok: false, reason: `LoRA on ${owner}, which the compiled graph does not have` };
      }
      continue; // expert, router and LoRA weights: shapes are checked when the graph is built
    }
    const s = shapes.get(name);
    if (s === undefined) return { ok: false, reason: `parameter ${name} is not part of the compiled graph` };
    if (s.length !== v.shape.length || s.some((d, i) => d !== v.shape[i]))
      return { ok: false, reason: `parameter ${name} has shape [${v.shape}], the graph expects [${s}]` };
  }
  return { ok: true, head, config: cfg, ...live };
}

/**
 * A trainer whose steps run as one compiled ONNX graph (see `CompiledTrainStep` in `@xlt/onnx`; with
 * `gradAccumulation` K > 1, a gradients graph per micro-batch and one update graph per step),
 * with the same hyper-parameters, schedule, RNG, state and checkpoint format as {@link Trainer}.
 * Parameters live in onnxruntime's buffers between steps; {@link OnnxTrainer.syncModel} copies
 * them into the model's tfjs variables (done by `fit` before evaluation, checkpoints and the end).
 */
export class OnnxTrainer<B extends TokenBatch = TokenBatch> implements TrainEngine<B> {
  readonly engine = 'onnxruntime' as const;
  readonly model: ParameterSource;
  readonly scheduler: LrScheduler;
  readonly rng: Rng;
  readonly optimizer: EngineOptimizer;
  private readonly params: Array<[string, tf.Variable]>;
  private readonly compiled: CompiledTrainStep;
  private readonly langCount: number;
  private readonly defaultLang: number | undefined;
  private steps = 0;
  private synced = true;

  private constructor(
    model: ParameterSource,
    params: Array<[string, tf.Variable]>,
    compiled: CompiledTrainStep,
    config: XmodConfig,
    options: TrainerOptions,
  ) {
    this.model = model;
    this.params = params;
    this.compiled = compiled;
    this.scheduler = new LrScheduler(options.schedule ?? { kind: 'linear' }, options.lr, options.totalSteps);
    this.rng = new Rng(options.seed ?? 0);
    const langs = config.languages;
    this.langCount = langs.length;
    const d = config.default_language;
    this.defaultLang = d !== undefined && d !== null && langs.includes(d) ? langs.indexOf(d) : undefined;
    this.optimizer = {
      getState: async () => {
        const st = this.compiled.getState();
        const out = new Map<string, AdamWParamState>();
        if (st.step === 0) return out;
        for (const [name, v] of this.params) {
          out.set(name, {
            m: st.m.get(name) as Float32Array,
            v: st.v.get(name) as Float32Array,
            shape: [...v.shape],
            step: st.step,
          });
        }
        return out;
      },
      setState: (moments) => {
        let step = 0;
        const m = new Map<string, Float32Array>();
        const v = new Map<string, Float32Array>();
        const p = new Map<string, Float32Array>();
        for (const [name, variable] of this.params) {
          const s = moments.get(name);
          p.set(name, variable.dataSync() as Float32Array);
          m.set(name, s?.m ?? new Float32Array(variable.size));
          v.set(name, s?.v ?? new Float32Array(variable.size));
          if (s !== undefined) step = Math.max(step, s.step);
        }
        this.compiled.setState({ step, params: p, m, v });
        this.synced = true;
      },
    };
  }

  /** Builds the compiled step for `model` (see {@link onnxSupport}); trainable = variables with `trainable` set. */
  static async create<B extends TokenBatch = TokenBatch>(
    model: ParameterSource,
    loss: LossFn<B>,
    options: TrainerOptions & { gradAccumulation?: number; onnx?: OnnxEngineOptions },
    /** {@link onnxSupport}'s answer when the caller already has it. */
    checked?: OnnxSupport,
  ): Promise<OnnxTrainer<B>> {
    const support = checked ?? onnxSupport(model, loss, options);
    if (!support.ok)
      throw new XltConfigError(`the onnxruntime engine cannot train this setup: ${support.reason}`, {
        field: 'engine',
      });
    if (
      options.onnx?.salt !== undefined &&
      support.head !== 'sequence-classification' &&
      support.head !== 'token-classification'
    )
      throw new XltConfigError(`the SALT objective needs a classification head, not ${support.head}`, {
        field: 'salt',
      });
    const params = trainableParameters(model);
    if (params.length === 0)
      throw new XltConfigError('the model has no trainable parameter', { field: 'trainable' });
    const clip = options.maxGradNorm === undefined ? 1.0 : options.maxGradNorm;
    if (clip !== null && !(clip > 0))
      throw new XltConfigError(`maxGradNorm must be > 0 or null, got ${clip}`, { field: 'maxGradNorm' });
    const noDecay = options.noDecay ?? defaultNoDecay;
    const compiled = await CompiledTrainStep.create({
      config: support.config,
      weights: moduleWeights(model as unknown as HeadModel),
      head: support.head,
      trainable: params.map(([n]) => n),
      dropout: true,
      dropoutSeed: options.seed ?? 0,
      ...(support.lora.size > 0 ? { lora: support.lora } : {}),
      ...(support.loraMixtures.size > 0 ? { loraMixtures: support.loraMixtures } : {}),
      ...(options.onnx?.salt !== undefined ? { salt: options.onnx.salt } : {}),
      ...(options.onnx?.embeddingMixup === true ? { embeddingMixup: true } : {}),
      ...(options.onnx?.trainableRows !== undefined
        ? { trainableRows: new Map(Object.entries(options.onnx.trainableRows)) }
        : {}),
      adamw: {
        beta1: options.betas?.[0] ?? 0.9,
        beta2: options.betas?.[1] ?? 0.999,
        eps: options.eps ?? 1e-8,
        weightDecay: options.weightDecay ?? 0,
        noDecay,
        ...(clip !== null ? { maxGradNorm: clip } : {}),
      },
      gradAccumulation: options.gradAccumulation ?? 1,
      ...(options.onnx?.batchShape !== undefined ? { batchShape: options.onnx.batchShape } : {}),
      ...(options.onnx?.maxMemoryBytes !== undefined ? { maxMemoryBytes: options.onnx.maxMemoryBytes } : {}),
      ...(options.onnx?.onMemoryEstimate !== undefined
        ? { onMemoryEstimate: options.onnx.onMemoryEstimate }
        : {}),
      ...(options.onnx?.threads !== undefined ? { threads: options.onnx.threads } : {}),
      ...(options.onnx?.update !== undefined ? { update: options.onnx.update } : {}),
      ...(options.onnx?.updateKernel !== undefined ? { updateKernel: options.onnx.updateKernel } : {}),
      ...(options.onnx?.executionProviders !== undefined
        ? { executionProviders: options.onnx.executionProviders }
        : {}),
    });
    return new OnnxTrainer<B>(model, params, compiled, support.config, options);
  }

  get step(): number {
    return this.steps;
  }

  /** What runs the update (`fused`, or the sliced step's `native`, `wasm` or `onnxruntime` kernel) and why native is not used, where it is not. */
  get update(): { kernel: string; note?: string } {
    const note = this.compiled.updateKernelNote;
    return { kernel: this.compiled.updateKernelName, ...(note !== undefined ? { note } : {}) };
  }

  parameterNames(): string[] {
    return this.params.map(([n]) => n);
  }

  async trainStep(batches: B | B[]): Promise<StepResult> {
    const list = Array.isArray(batches) ? batches : [batches];
    if (list.length === 0 || list.length > this.compiled.gradAccumulation)
      throw new XltConfigError(
        `this onnxruntime trainer takes 1 to ${this.compiled.gradAccumulation} batches per step (gradAccumulation), got ${list.length}`,
        { field: 'gradAccumulation' },
      );
    const lr = this.scheduler.lr();
    const { loss, gradNorm } = await this.compiled.run(
      list.map((b) => this.trainBatch(b)),
      lr,
    );
    this.synced = false;
    this.scheduler.step();
    this.steps = this.compiled.step;
    return { step: this.steps, loss, gradNorm, lr };
  }

  /** The batch the compiled step runs: languages filled in from `default_language` where missing. */
  private trainBatch(b: B): TokenBatch {
    if (b.langIds !== undefined || this.langCount === 0) return b;
    if (this.defaultLang === undefined)
      throw new XltConfigError('batch has no langIds and config.default_language is not set', {
        field: 'langIds',
      });
    return { ...b, langIds: b.inputIds.map(() => this.defaultLang as number) };
  }

  syncModel(): void {
    if (this.synced) return;
    for (const [name, v] of this.params) {
      const data = this.compiled.parameter(name);
      tf.tidy(() => v.assign(tf.tensor(data, v.shape, 'float32')));
    }
    this.synced = true;
  }

  getState(): TrainerState {
    return { step: this.steps, schedulerStep: this.scheduler.current, rng: this.rng.getState() };
  }

  setState(state: TrainerState): void {
    this.steps = state.step;
    this.scheduler.current = state.schedulerStep;
    this.rng.setState(state.rng);
  }

  async dispose(): Promise<void> {
    await this.compiled.release();
  }
}

/** Where the engine decision came from, for logs and run summaries. */
export interface EngineDecision {
  engine: EngineName;
  reason: string;
}

/**
 * Builds the trainer for `choice` (see {@link EngineChoice}): `tfjs` → {@link Trainer},
 * `onnxruntime` → {@link OnnxTrainer} (an error when unsupported), `auto` → onnxruntime when supported.
 */
export async function createTrainer<B>(
  model: ParameterSource,
  loss: LossFn<B>,
  options: TrainerOptions & { engine?: EngineChoice; gradAccumulation?: number; onnx?: OnnxEngineOptions },
): Promise<{ trainer: TrainEngine<B>; decision: EngineDecision }> {
  const choice = options.engine ?? 'auto';
  if (choice !== 'tfjs' && choice !== 'onnxruntime' && choice !== 'auto')
    throw new XltConfigError(`engine must be 'tfjs', 'onnxruntime' or 'auto', got '${String(choice)}'`, {
      field: 'engine',
    });
  // what only the compiled step can run: it decides the engine under `auto`, and `tfjs` refuses it
  const onnxOnly = onnxOnlyFeature(options.onnx);
  if (choice === 'tfjs' && onnxOnly !== undefined)
    throw new XltConfigError(`${onnxOnly.refusal} on the onnxruntime engine only`, { field: 'engine' });
  if (choice === 'tfjs')
    return { trainer: tfjsEngine(model, loss, options), decision: { engine: 'tfjs', reason: 'asked for' } };
  const support = onnxSupport(model, loss, options);
  if (choice === 'auto' && onnxOnly === undefined) {
    if (tf.getBackend() === 'tensorflow')
      return {
        trainer: tfjsEngine(model, loss, options),
        decision: { engine: 'tfjs', reason: 'the native tensorflow backend is active' },
      };
    if (!support.ok)
      return {
        trainer: tfjsEngine(model, loss, options),
        decision: { engine: 'tfjs', reason: support.reason },
      };
  }
  const trainer = await OnnxTrainer.create(model, loss as unknown as LossFn<TokenBatch>, options, support);
  const why = onnxOnly?.why ?? (choice === 'auto' ? 'supported model and head loss' : 'asked for');
  // a large model's sliced step: say which kernel updates it (and why not the native one)
  const { kernel, note } = trainer.update;
  const update =
    kernel === 'fused'
      ? ''
      : `; sliced update on the ${kernel} kernel${note !== undefined ? `: ${note}` : ''}`;
  return {
    trainer: trainer as unknown as TrainEngine<B>,
    decision: { engine: 'onnxruntime', reason: `${why}${update}` },
  };
}

/** The first option of `onnx` that only the compiled step runs: why it chose onnxruntime, and tfjs's refusal. */
function onnxOnlyFeature(onnx: OnnxEngineOptions | undefined): { why: string; refusal: string } | undefined {
  if (onnx?.salt !== undefined || onnx?.embeddingMixup === true)
    return {
      why: 'the SALT objective or embedding mixup',
      refusal: 'the SALT objective (onnx.salt) and embedding mixup (onnx.embeddingMixup) run',
    };
  if (onnx?.trainableRows !== undefined)
    return { why: 'trainableRows', refusal: 'trainableRows (some rows of a table trained) runs' };
  return undefined;
}

function tfjsEngine<B>(model: ParameterSource, loss: LossFn<B>, options: TrainerOptions): TrainEngine<B> {
  return new Trainer<B>(model, loss, options);
}
