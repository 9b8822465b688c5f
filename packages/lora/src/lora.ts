import * as tf from '@tensorflow/tfjs-core';
import { Rng, XltConfigError, XltNotFoundError } from '@xlt/core';
import { dropout, Embedding, type LinearLike, Module } from '@xlt/xmod';

/** Options of a LoRA layer (PEFT's `LoraConfig` fields that matter for the math). */
export interface LoraOptions {
  /** Rank r (> 0). */
  r: number;
  /** lora_alpha; scaling is alpha / r (or alpha / sqrt(r) with `useRslora`). Default 8 (PEFT's). */
  alpha?: number;
  /** Dropout on the LoRA branch input (linear layers only, as PEFT). Default 0. */
  dropout?: number;
  /** rsLoRA scaling alpha / sqrt(r). */
  useRslora?: boolean;
  /** Seeded RNG for the initialisation (default seed 0). */
  rng?: Rng;
  /** PEFT `init_lora_weights`: true = A Kaiming-uniform, B zero (embeddings: A zero, B normal). */
  init?: boolean;
}

/** Scaling factor of a LoRA layer, alpha/r or alpha/sqrt(r) (rsLoRA). Throws on rank <= 0. */
export function loraScaling(r: number, alpha: number, useRslora = false, field = 'r'): number {
  if (!Number.isInteger(r) || r <= 0)
    throw new XltConfigError(`LoRA rank must be a positive integer, got ${r}`, { field });
  return useRslora ? alpha / Math.sqrt(r) : alpha / r;
}

function uniformTensor(shape: number[], bound: number, rng: Rng): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = rng.uniform(-bound, bound);
  return tf.tensor(d, shape, 'float32');
}

function normalTensor(shape: number[], rng: Rng): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = rng.normal(0, 1);
  return tf.tensor(d, shape, 'float32');
}

/**
 * PEFT's `lora_A` initialisation: Kaiming-uniform with a = sqrt(5) on a [r, in] weight, i.e.
 * U(-1/sqrt(in), 1/sqrt(in)) (gain sqrt(2/(1+5)) times sqrt(3/fan_in)).
 */
export function kaimingUniformA(r: number, inFeatures: number, rng: Rng): tf.Tensor {
  return uniformTensor([r, inFeatures], 1 / Math.sqrt(inFeatures), rng);
}

/** A bias-free [out, in] projection used for lora_A / lora_B (named `weight` as PEFT). */
export class LoraProjection extends Module {
  weight: tf.Variable;
  constructor(value: tf.Tensor) {
    super();
    this.weight = this.registerParameter('weight', value);
  }
}

/** Something that stores a merged/unmerged state. */
export interface Mergeable {
  merge(): void;
  unmerge(): void;
  readonly merged: boolean;
}

/**
 * LoRA around any {@link LinearLike}: y = base(x) + dropout(x) A^T B^T * scaling, with PEFT's names
 * `base_layer`, `lora_A.weight` [r, in] and `lora_B.weight` [out, r].
 */
export class LoraLinear extends Module implements LinearLike, Mergeable {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly dropoutRate: number;
  readonly base_layer: LinearLike;
  readonly lora_A: LoraProjection;
  readonly lora_B: LoraProjection;
  private _merged: tf.Tensor | null = null;

  constructor(base: LinearLike, options: LoraOptions) {
    super();
    this.r = options.r;
    this.alpha = options.alpha ?? 8;
    this.scaling = loraScaling(options.r, this.alpha, options.useRslora);
    this.dropoutRate = options.dropout ?? 0;
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    this.base_layer = this.registerModule('base_layer', base);
    const rng = options.rng ?? new Rng(0);
    const init = options.init ?? true;
    this.lora_A = this.registerModule(
      'lora_A',
      new LoraProjection(
        init ? kaimingUniformA(this.r, this.inFeatures, rng) : normalTensor([this.r, this.inFeatures], rng),
      ),
    );
    this.lora_B = this.registerModule(
      'lora_B',
      new LoraProjection(
        init ? tf.zeros([this.outFeatures, this.r]) : normalTensor([this.outFeatures, this.r], rng),
      ),
    );
  }

  get merged(): boolean {
    return this._merged !== null;
  }

  /** Delta weight B A * scaling, [out, in]. */
  deltaWeight(): tf.Tensor {
    return tf.tidy(() => tf.mul(tf.matMul(this.lora_B.weight, this.lora_A.weight), this.scaling));
  }

  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const y = this.base_layer.apply(x);
      if (this.merged) return y;
      const lead = x.shape.slice(0, -1);
      const xd = dropout(x, this.dropoutRate, this.training);
      const x2 = tf.reshape(xd, [-1, this.inFeatures]);
      const a = tf.matMul(x2, this.lora_A.weight, false, true);
      const b = tf.matMul(a, this.lora_B.weight, false, true);
      return tf.add(y, tf.reshape(tf.mul(b, this.scaling), [...lead, this.outFeatures]));
    });
  }

  /** Adds B A * scaling into the base weight (keeps a copy of the original for {@link unmerge}). */
  merge(): void {
    if (this.merged) return;
    const w = baseWeight(this.base_layer, 'base_layer');
    this._merged = tf.keep(w.clone());
    const d = this.deltaWeight();
    w.assign(tf.tidy(() => tf.add(w, d)));
    d.dispose();
  }

  /** Restores the exact original base weight. */
  unmerge(): void {
    if (this._merged === null) return;
    baseWeight(this.base_layer, 'base_layer').assign(this._merged);
    this._merged.dispose();
    this._merged = null;
  }
}

function baseWeight(m: Module, name: string): tf.Variable {
  const p = m.localParameters().get('weight');
  if (p === undefined)
    throw new XltNotFoundError('merge needs a base layer with a `weight` parameter', {
      tensor: `${name}.weight`,
    });
  return p;
}

/**
 * LoRA around an {@link Embedding}: y = W[ids] + A^T[ids] B^T * scaling with PEFT's names
 * `lora_embedding_A` [r, num] (zero-initialised) and `lora_embedding_B` [dim, r] (normal).
 */
export class LoraEmbedding extends Module implements Mergeable {
  readonly numEmbeddings: number;
  readonly embeddingDim: number;
  readonly r: number;
  readonly alpha: number;
  readonly scaling: number;
  readonly base_layer: Embedding;
  lora_embedding_A: tf.Variable;
  lora_embedding_B: tf.Variable;
  private _merged: tf.Tensor | null = null;

  constructor(base: Embedding, options: LoraOptions) {
    super();
    this.r = options.r;
    this.alpha = options.alpha ?? 8;
    this.scaling = loraScaling(options.r, this.alpha, options.useRslora);
    this.numEmbeddings = base.numEmbeddings;
    this.embeddingDim = base.embeddingDim;
    this.base_layer = this.registerModule('base_layer', base);
    const rng = options.rng ?? new Rng(0);
    const init = options.init ?? true;
    this.lora_embedding_A = this.registerParameter(
      'lora_embedding_A',
      init ? tf.zeros([this.r, this.numEmbeddings]) : normalTensor([this.r, this.numEmbeddings], rng),
    );
    this.lora_embedding_B = this.registerParameter(
      'lora_embedding_B',
      normalTensor([this.embeddingDim, this.r], rng),
    );
  }

  get merged(): boolean {
    return this._merged !== null;
  }

  get weight(): tf.Variable {
    return this.base_layer.weight;
  }

  /** Delta weight (B A)^T * scaling, [num, dim]. */
  deltaWeight(): tf.Tensor {
    return tf.tidy(() =>
      tf.mul(tf.matMul(this.lora_embedding_A, this.lora_embedding_B, true, true), this.scaling),
    );
  }

  apply(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const y = this.base_layer.apply(ids);
      if (this.merged) return y;
      const flat = tf.cast(tf.reshape(ids, [-1]), 'int32');
      const a = tf.gather(tf.transpose(this.lora_embedding_A), flat);
      const b = tf.matMul(a, this.lora_embedding_B, false, true);
      return tf.add(y, tf.reshape(tf.mul(b, this.scaling), [...ids.shape, this.embeddingDim]));
    });
  }

  merge(): void {
    if (this.merged) return;
    const w = this.base_layer.weight;
    this._merged = tf.keep(w.clone());
    const d = this.deltaWeight();
    w.assign(tf.tidy(() => tf.add(w, d)));
    d.dispose();
  }

  unmerge(): void {
    if (this._merged === null) return;
    this.base_layer.weight.assign(this._merged);
    this._merged.dispose();
    this._merged = null;
  }
}

/** Target selection as PEFT: a string is a full-match regex; a list matches `name` or `*.name`. */
export type TargetModules = string | readonly string[];

/** PEFT's `check_target_module_exists`. */
export function targetMatches(name: string, targets: TargetModules): boolean {
  if (typeof targets === 'string') return new RegExp(`^(?:${targets})$`).test(name);
  return targets.some((t) => name === t || name.endsWith(`.${t}`));
}

function isLinearLike(m: Module): m is LinearLike {
  const c = m as unknown as Partial<LinearLike>;
  return (
    typeof c.inFeatures === 'number' && typeof c.outFeatures === 'number' && typeof c.apply === 'function'
  );
}

function isWrapper(m: Module): boolean {
  return m instanceof LoraLinear || m instanceof LoraEmbedding;
}

/**
 * Names of the modules `targets` selects (Linear-like or Embedding, never a LoRA wrapper's insides).
 * Throws {@link XltNotFoundError} when nothing matches, or a matched module cannot take LoRA.
 */
export function findTargets(model: Module, targets: TargetModules, field = 'target_modules'): string[] {
  const out: string[] = [];
  const inside: string[] = [];
  for (const [name, m] of model.namedModules()) {
    if (name === '') continue;
    if (inside.some((p) => name.startsWith(`${p}.`))) continue;
    if (isWrapper(m)) inside.push(name);
    if (!targetMatches(name, targets)) continue;
    if (!(m instanceof Embedding) && !isLinearLike(m)) {
      throw new XltConfigError(`target '${name}' is a ${m.constructor.name}, not a Linear or Embedding`, {
        field,
      });
    }
    out.push(name);
  }
  if (out.length === 0) {
    throw new XltNotFoundError(`no module matches the targets ${JSON.stringify(targets)}`, { field });
  }
  return out;
}

/** Options of {@link applyLora}. */
export interface ApplyLoraOptions extends LoraOptions {
  targetModules: TargetModules;
  /** Per-module rank overrides (PEFT's `rank_pattern`, key = module name suffix). */
  rankPattern?: Record<string, number>;
  /** Per-module alpha overrides (PEFT's `alpha_pattern`). */
  alphaPattern?: Record<string, number>;
}

function patternValue(name: string, pattern: Record<string, number> | undefined): number | undefined {
  if (pattern === undefined) return undefined;
  for (const [k, v] of Object.entries(pattern))
    if (targetMatches(name, [k]) || targetMatches(name, k)) return v;
  return undefined;
}

/**
 * Wraps every targeted module of `model` in a {@link LoraLinear} / {@link LoraEmbedding} in place
 * and, as PEFT's `get_peft_model`, freezes everything but the LoRA parameters (see
 * {@link markOnlyLoraTrainable} to also train heads). Returns the wrapped module names.
 */
export function applyLora(model: Module, options: ApplyLoraOptions): string[] {
  loraScaling(options.r, options.alpha ?? 8, options.useRslora);
  const names = findTargets(model, options.targetModules);
  const rng = options.rng ?? new Rng(0);
  for (const name of names) {
    const m = model.getModule(name);
    const opts: LoraOptions = {
      ...options,
      r: patternValue(name, options.rankPattern) ?? options.r,
      alpha: patternValue(name, options.alphaPattern) ?? options.alpha ?? 8,
      rng,
    };
    const wrapped =
      m instanceof Embedding ? new LoraEmbedding(m, opts) : new LoraLinear(m as LinearLike, opts);
    wrapped.training = m.training;
    model.replaceModule(name, wrapped);
  }
  markOnlyLoraTrainable(model);
  return names;
}

/** Every LoRA wrapper in the model with its name. */
export function loraLayers(model: Module): Array<[string, LoraLinear | LoraEmbedding]> {
  return model.namedModules().filter((e): e is [string, LoraLinear | LoraEmbedding] => isWrapper(e[1]));
}

/** Merges every LoRA layer into its base weight. */
export function mergeLora(model: Module): void {
  for (const [, m] of loraLayers(model)) m.merge();
}

/** Restores every merged base weight exactly. */
export function unmergeLora(model: Module): void {
  for (const [, m] of loraLayers(model)) m.unmerge();
}

/** True for PEFT LoRA parameter names (`lora_A`, `lora_B`, `lora_embedding_A/B`, including mixture experts). */
export function isLoraParameter(name: string): boolean {
  return /(^|\.)(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(\.|$)/.test(name);
}

function isRouterParameter(name: string): boolean {
  return /(^|\.)(router\.weight|mix_logits)$/.test(name);
}

/**
 * Freezes everything except LoRA parameters; parameters under a module named in `alsoTrain`
 * (PEFT's `modules_to_save`, e.g. `['lm_head', 'classifier']`) stay trainable too. Mixture
 * routers keep their current flag unless `routers` is given. Returns the trainable names.
 */
export function markOnlyLoraTrainable(
  model: Module,
  alsoTrain: readonly string[] = [],
  options: { routers?: boolean } = {},
): string[] {
  const out: string[] = [];
  for (const [name, p] of model.namedParameters()) {
    let on =
      isLoraParameter(name) || alsoTrain.some((t) => name.startsWith(`${t}.`) || name.includes(`.${t}.`));
    if (isRouterParameter(name)) on = options.routers ?? p.trainable;
    p.trainable = on;
    if (on) out.push(name);
  }
  return out;
}
