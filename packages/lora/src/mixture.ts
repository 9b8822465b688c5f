import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  Rng,
  readSafetensors,
  type SafetensorsTensor,
  toFloat32,
  writeFileAtomic,
  writeSafetensors,
  XltConfigError,
  XltNotFoundError,
  XltShapeError,
} from '@xlt/core';
import { dropout, type LinearLike, Module, ModuleDict } from '@xlt/xmod';
import {
  findTargets,
  kaimingUniformA,
  LoraProjection,
  loraScaling,
  markOnlyLoraTrainable,
  type TargetModules,
} from './lora.js';
import { readPeftConfig } from './peft.js';

/**
 * How a {@link LoraMixtureLinear} mixes its experts per example:
 * - `language`: hard, each example uses the expert of its language (`langIds` of the context);
 * - `router`: softmax(W_r h) where h is the wrapped linear's own input at the first token (or mean);
 * - `topk`: like `router` but the softmax runs over the k largest logits only, others get exactly 0;
 * - `static`: one learned weight vector softmax(mix_logits) shared by every example.
 */
export type RoutingMode = 'language' | 'router' | 'topk' | 'static';

/** Per-batch information the mixture layers read during `forward`. */
export interface RoutingContext {
  /** One expert index per example (index into the mixture's `languages`). */
  langIds?: readonly number[];
}

interface RoutingState {
  context: RoutingContext;
}

const STATES = new WeakMap<Module, RoutingState>();

/** Sets the routing context every mixture layer of `model` reads on the next forward passes. */
export function setRoutingContext(model: Module, context: RoutingContext): void {
  const s = STATES.get(model);
  if (s === undefined)
    throw new XltNotFoundError('the model has no LoRA mixture (call applyLoraMixture first)');
  s.context = context;
}

/** One expert's low-rank pair with PEFT's names. */
export class LoraExpert extends Module {
  readonly lora_A: LoraProjection;
  readonly lora_B: LoraProjection;
  constructor(r: number, inFeatures: number, outFeatures: number, rng: Rng) {
    super();
    this.lora_A = this.registerModule('lora_A', new LoraProjection(kaimingUniformA(r, inFeatures, rng)));
    this.lora_B = this.registerModule('lora_B', new LoraProjection(tf.zeros([outFeatures, r])));
  }
}

/** Options of a mixture layer. */
export interface MixtureOptions {
  r: number;
  alpha?: number;
  useRslora?: boolean;
  dropout?: number;
  /** Expert names, one per language (their order is the `langIds` index). */
  languages: readonly string[];
  mode: RoutingMode;
  /** Experts kept by `topk` (default 1). */
  k?: number;
  /** Router input: the first token (default, as MT4CrossIE) or the mean over tokens. */
  pooling?: 'first' | 'mean';
  /** Whether the router / static weights train (default true). */
  trainRouter?: boolean;
  rng?: Rng;
}

/**
 * y = base(x) + sum_i w_i(x) B_i A_i x * scaling: several LoRA experts on one linear, mixed per
 * example. Parameters: `experts.<lang>.lora_A.weight` [r, in], `experts.<lang>.lora_B.weight`
 * [out, r], `router.weight` [n, in] (router/topk) or `mix_logits` [n] (static).
 *
 * The router reads this linear's own input x (x[:, 0, :] for [B, T, in] inputs), so no hidden
 * state needs to be threaded through the model; `langIds` come from {@link setRoutingContext}.
 */
export class LoraMixtureLinear extends Module implements LinearLike {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly mode: RoutingMode;
  readonly k: number;
  readonly pooling: 'first' | 'mean';
  readonly dropoutRate: number;
  readonly languages: string[] = [];
  readonly base_layer: LinearLike;
  readonly experts: ModuleDict<LoraExpert>;
  router: LoraProjection | null = null;
  mix_logits: tf.Variable | null = null;
  /** Routing probabilities [B, n] of the last forward (kept for the load-balancing loss). */
  lastWeights: tf.Tensor | null = null;
  private readonly state: RoutingState;
  private readonly rng: Rng;

  constructor(base: LinearLike, options: MixtureOptions, state: RoutingState = { context: {} }) {
    super();
    this.r = options.r;
    this.alpha = options.alpha ?? 8;
    this.scaling = loraScaling(options.r, this.alpha, options.useRslora);
    this.mode = options.mode;
    this.k = options.k ?? 1;
    this.pooling = options.pooling ?? 'first';
    this.dropoutRate = options.dropout ?? 0;
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    this.state = state;
    this.rng = options.rng ?? new Rng(0);
    const n = options.languages.length;
    if (n === 0) throw new XltConfigError('a mixture needs at least one language', { field: 'languages' });
    if (this.mode === 'topk' && (!Number.isInteger(this.k) || this.k < 1 || this.k > n))
      throw new XltConfigError(`k must be an integer in [1, ${n}], got ${this.k}`, { field: 'k' });
    this.base_layer = this.registerModule('base_layer', base);
    this.experts = this.registerModule('experts', new ModuleDict<LoraExpert>());
    for (const l of options.languages) this.addExpert(l);
    const train = options.trainRouter ?? true;
    if (this.mode === 'router' || this.mode === 'topk') {
      const w = kaimingUniformA(n, this.inFeatures, this.rng);
      this.router = this.registerModule('router', new LoraProjection(w));
      this.router.weight.trainable = train;
    } else if (this.mode === 'static') {
      this.mix_logits = this.registerParameter('mix_logits', tf.zeros([n]), train);
    }
  }

  /**
   * Adds an expert for a new language (fresh PEFT initialisation); the existing experts are
   * untouched. Router rows / static logits grow by one (new row Kaiming-uniform, old rows kept).
   */
  addExpert(lang: string, rng: Rng = this.rng): LoraExpert {
    if (this.experts.get(lang) !== undefined)
      throw new XltConfigError(`expert '${lang}' already exists`, { field: 'languages' });
    const e = new LoraExpert(this.r, this.inFeatures, this.outFeatures, rng);
    this.experts.set(lang, e);
    this.languages.push(lang);
    if (this.router !== null) {
      const old = this.router.weight;
      const grown = tf.concat([old, kaimingUniformA(1, this.inFeatures, rng)], 0);
      const trainable = old.trainable;
      this.router = this.registerModule('router', new LoraProjection(grown));
      this.router.weight.trainable = trainable;
      old.dispose();
    }
    if (this.mix_logits !== null) {
      const old = this.mix_logits;
      this.mix_logits = this.registerParameter('mix_logits', tf.concat([old, tf.zeros([1])]), old.trainable);
      old.dispose();
    }
    return e;
  }

  /** Routing weights [B, n] for input x ([B, in] or [B, T, in]). */
  routingWeights(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const n = this.languages.length;
      const B = x.shape[0] ?? 1;
      if (this.mode === 'language') {
        const ids = this.state.context.langIds;
        if (ids === undefined || ids.length !== B)
          throw new XltConfigError(`language routing needs ${B} langIds in the routing context`, {
            field: 'langIds',
          });
        for (const id of ids)
          if (!Number.isInteger(id) || id < 0 || id >= n)
            throw new XltConfigError(`langId ${id} is not in [0, ${n})`, { field: 'langIds' });
        return tf.cast(tf.oneHot(tf.tensor1d([...ids], 'int32'), n), 'float32');
      }
      if (this.mode === 'static') {
        return tf.tile(tf.reshape(tf.softmax(this.mix_logits as tf.Variable), [1, n]), [B, 1]);
      }
      let h = x;
      if (x.rank === 3)
        h = this.pooling === 'mean' ? tf.mean(x, 1) : tf.squeeze(tf.slice(x, [0, 0, 0], [B, 1, -1]), [1]);
      const logits = tf.matMul(h, (this.router as LoraProjection).weight, false, true);
      if (this.mode === 'router') return tf.softmax(logits);
      // the k-th largest logit per row, as a constant (tfjs has no TopK gradient; the threshold is
      // piecewise constant, so its gradient is zero anyway)
      const rows = logits.arraySync() as number[][];
      const kth = tf.tensor2d(
        rows.map((r) => [[...r].sort((a, b) => b - a)[this.k - 1] as number]),
        [rows.length, 1],
      );
      const masked = tf.where(tf.greaterEqual(logits, kth), logits, tf.fill(logits.shape, -1e30));
      return tf.softmax(masked);
    });
  }

  apply(x: tf.Tensor): tf.Tensor {
    const w = this.routingWeights(x);
    if (this.lastWeights !== null) this.lastWeights.dispose();
    this.lastWeights = tf.keep(w);
    return tf.tidy(() => {
      let y = this.base_layer.apply(x);
      const B = x.shape[0] ?? 1;
      const xd = dropout(x, this.dropoutRate, this.training);
      const x2 = tf.reshape(xd, [-1, this.inFeatures]);
      const wShape = [B, ...x.shape.slice(1, -1).map(() => 1), 1];
      this.languages.forEach((lang, i) => {
        const e = this.experts.get(lang) as LoraExpert;
        const d = tf.matMul(tf.matMul(x2, e.lora_A.weight, false, true), e.lora_B.weight, false, true);
        const d3 = tf.reshape(d, [...x.shape.slice(0, -1), this.outFeatures]);
        const wi = tf.reshape(tf.slice(w, [0, i], [B, 1]), wShape);
        y = tf.add(y, tf.mul(d3, tf.mul(wi, this.scaling)));
      });
      return y;
    });
  }
}

/** Options of {@link applyLoraMixture}. */
export interface ApplyMixtureOptions extends MixtureOptions {
  targetModules: TargetModules;
}

/**
 * Wraps every targeted linear in a {@link LoraMixtureLinear} and freezes everything but the experts
 * (and the routers when `trainRouter`, default true); returns the wrapped names.
 */
export function applyLoraMixture(model: Module, options: ApplyMixtureOptions): string[] {
  loraScaling(options.r, options.alpha ?? 8, options.useRslora);
  const names = findTargets(model, options.targetModules);
  let state = STATES.get(model);
  if (state === undefined) {
    state = { context: {} };
    STATES.set(model, state);
  }
  const rng = options.rng ?? new Rng(0);
  for (const name of names) {
    const m = model.getModule(name) as LinearLike;
    if (typeof m.inFeatures !== 'number')
      throw new XltConfigError(`mixture target '${name}' is not a linear layer`, { field: 'target_modules' });
    model.replaceModule(name, new LoraMixtureLinear(m, { ...options, rng }, state));
  }
  markOnlyLoraTrainable(model);
  return names;
}

/** Every mixture layer of the model with its name. */
export function mixtureLayers(model: Module): Array<[string, LoraMixtureLinear]> {
  return model
    .namedModules()
    .filter((e): e is [string, LoraMixtureLinear] => e[1] instanceof LoraMixtureLinear);
}

/** Adds an expert for `lang` to every mixture layer; existing experts are unchanged. */
export function addLanguageExpert(model: Module, lang: string, rng: Rng = new Rng(0)): void {
  const layers = mixtureLayers(model);
  if (layers.length === 0) throw new XltNotFoundError('the model has no LoRA mixture layers');
  for (const [, m] of layers) m.addExpert(lang, rng);
}

/**
 * Switch-Transformer load-balancing loss of the last forward, averaged over router/topk layers:
 * n * sum_i f_i P_i, with f_i the fraction of examples whose top expert is i and P_i the mean
 * routing probability of i. Gradients flow through P. Returns a scalar (0 when no router layer).
 */
export function loadBalancingLoss(model: Module): tf.Scalar {
  return tf.tidy(() => {
    const terms: tf.Tensor[] = [];
    for (const [, m] of mixtureLayers(model)) {
      if ((m.mode !== 'router' && m.mode !== 'topk') || m.lastWeights === null) continue;
      const n = m.languages.length;
      const p = m.lastWeights;
      const f = tf.mean(tf.cast(tf.oneHot(tf.argMax(p, -1), n), 'float32'), 0);
      terms.push(tf.mul(tf.sum(tf.mul(f, tf.mean(p, 0))), n));
    }
    if (terms.length === 0) return tf.scalar(0);
    return tf.div(tf.addN(terms), terms.length) as tf.Scalar;
  });
}

/** Makes the routers / static weights of every mixture layer trainable or frozen. */
export function setRouterTrainable(model: Module, on: boolean): void {
  for (const [, m] of mixtureLayers(model)) {
    if (m.router !== null) m.router.weight.trainable = on;
    if (m.mix_logits !== null) m.mix_logits.trainable = on;
  }
}

/**
 * Saves one language's expert of every mixture layer as a standard PEFT LoRA adapter (so it also
 * loads into Python PEFT, or as a plain LoRA into xlt).
 */
export async function saveLanguageExpert(model: Module, lang: string, dir: string): Promise<void> {
  const layers = mixtureLayers(model);
  if (layers.length === 0) throw new XltNotFoundError('the model has no LoRA mixture layers');
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [n, m] of layers) {
    const e = m.experts.get(lang);
    if (e === undefined) throw new XltNotFoundError(`no expert '${lang}' in ${n}`, { field: 'languages' });
    for (const [k, v] of [
      ['lora_A', e.lora_A.weight],
      ['lora_B', e.lora_B.weight],
    ] as const)
      tensors.set(`base_model.model.${n}.${k}.weight`, {
        dtype: 'F32',
        shape: [...v.shape],
        data: (await v.data()) as Float32Array,
      });
  }
  const first = layers[0][1];
  mkdirSync(dir, { recursive: true });
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  const config = {
    peft_type: 'LORA',
    r: first.r,
    lora_alpha: first.alpha,
    lora_dropout: first.dropoutRate,
    target_modules: [...new Set(layers.map(([n]) => n.slice(n.lastIndexOf('.') + 1)))].sort(),
    use_rslora: Math.abs(first.scaling - first.alpha / first.r) > 1e-12,
    use_dora: false,
    bias: 'none',
    fan_in_fan_out: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    rank_pattern: {},
    alpha_pattern: {},
    base_model_name_or_path: null,
    task_type: null,
    xlt_language: lang,
  };
  writeFileAtomic(join(dir, 'adapter_config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * Loads a PEFT adapter (e.g. from {@link saveLanguageExpert}) as the expert of `lang` in every
 * mixture layer, adding the expert when it does not exist yet. Other experts are untouched.
 */
export async function loadLanguageExpert(model: Module, lang: string, dir: string): Promise<void> {
  const config = readPeftConfig(dir);
  const file = join(dir, 'adapter_model.safetensors');
  const st = await readSafetensors(file);
  const layers = mixtureLayers(model);
  if (layers.length === 0) throw new XltNotFoundError('the model has no LoRA mixture layers');
  if (layers[0][1].r !== config.r)
    throw new XltConfigError(`adapter rank ${config.r} differs from the mixture's ${layers[0][1].r}`, {
      file: join(dir, 'adapter_config.json'),
      field: 'r',
    });
  for (const [n, m] of layers) {
    const e = m.experts.get(lang) ?? m.addExpert(lang);
    for (const [k, p] of [
      ['lora_A', e.lora_A.weight],
      ['lora_B', e.lora_B.weight],
    ] as const) {
      const key = `base_model.model.${n}.${k}.weight`;
      const t = st.tensors.get(key);
      if (t === undefined) throw new XltNotFoundError('adapter lacks a tensor', { file, tensor: key });
      if (t.shape.length !== 2 || t.shape[0] !== p.shape[0] || t.shape[1] !== p.shape[1])
        throw new XltShapeError('adapter tensor shape does not match', {
          file,
          tensor: key,
          expected: p.shape,
          got: t.shape,
        });
      p.assign(tf.tensor(toFloat32(t), t.shape, 'float32'));
    }
  }
}

/**
 * Calls `model.forward(inputs)` after setting the routing context from `inputs.langIds` (indices,
 * language codes resolved against the mixture's expert names, or an int tensor), so language
 * routing follows the same `langIds` the model gets.
 */
export function routedForward<I extends { langIds?: ReadonlyArray<number | string> | tf.Tensor }, O>(
  model: Module & { forward(inputs: I): O },
  inputs: I,
): O {
  const raw = inputs.langIds;
  if (raw !== undefined) {
    const langs = mixtureLayers(model)[0]?.[1].languages ?? [];
    const list = raw instanceof tf.Tensor ? Array.from(raw.dataSync()) : [...raw];
    const langIds = list.map((l, i) => {
      if (typeof l === 'number') return l;
      const k = langs.indexOf(l);
      if (k < 0) throw new XltNotFoundError(`no expert for language '${l}'`, { field: `langIds[${i}]` });
      return k;
    });
    setRoutingContext(model, { langIds });
  }
  return model.forward(inputs);
}
