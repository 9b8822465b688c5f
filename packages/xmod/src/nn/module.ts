import * as tf from '@tensorflow/tfjs-core';
import { XltNotFoundError } from '@xlt/core';

/**
 * Base of every layer and model in xlt: a tree of named children and parameters whose dotted paths
 * are exactly the Hugging Face checkpoint names (`roberta.encoder.layer.0.attention.self.query.weight`),
 * so loading a checkpoint is a name lookup, as in PyTorch's `nn.Module`.
 *
 * A child registered with {@link Module.registerModule} is also reachable as a property of the same
 * name; {@link Module.replaceModule} swaps both (this is how LoRA wraps a `Linear`).
 */
export abstract class Module {
  /** Dropout and other training-only behaviour is active when true. Eval mode by default. */
  training = false;
  private readonly _params = new Map<string, tf.Variable>();
  private readonly _modules = new Map<string, Module>();

  /** Registers a parameter under a local name (no dots) and returns it. */
  protected registerParameter(name: string, value: tf.Tensor | tf.Variable, trainable = true): tf.Variable {
    const v = value instanceof tf.Variable ? value : tf.variable(value, trainable);
    if (!(value instanceof tf.Variable)) value.dispose();
    v.trainable = trainable;
    this._params.set(name, v);
    return v;
  }

  /** Registers a child module under a local name (no dots) and returns it. */
  protected registerModule<M extends Module>(name: string, module: M): M {
    this._modules.set(name, module);
    return module;
  }

  /** Local parameters (not recursive). */
  localParameters(): ReadonlyMap<string, tf.Variable> {
    return this._params;
  }

  /** Direct children. */
  children(): ReadonlyMap<string, Module> {
    return this._modules;
  }

  /** Every parameter of this subtree with its dotted Hugging Face name. */
  namedParameters(prefix = ''): Array<[string, tf.Variable]> {
    const out: Array<[string, tf.Variable]> = [];
    for (const [n, p] of this._params) out.push([prefix + n, p]);
    for (const [n, m] of this._modules) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** Every module of this subtree (this one first, with name `prefix` minus its trailing dot). */
  namedModules(prefix = ''): Array<[string, Module]> {
    const out: Array<[string, Module]> = [[prefix.replace(/\.$/, ''), this]];
    for (const [n, m] of this._modules) out.push(...m.namedModules(`${prefix}${n}.`));
    return out;
  }

  /** The module at a dotted path (`''` is this one). */
  getModule(path: string): Module {
    if (path === '') return this;
    let m: Module = this;
    for (const part of path.split('.')) {
      const next = m._modules.get(part);
      if (next === undefined)
        throw new XltNotFoundError(`no module '${part}' in path '${path}'`, { field: path });
      m = next;
    }
    return m;
  }

  /** The parameter at a dotted path. */
  getParameter(path: string): tf.Variable {
    const dot = path.lastIndexOf('.');
    const owner = dot < 0 ? this : this.getModule(path.slice(0, dot));
    const p = owner._params.get(path.slice(dot + 1));
    if (p === undefined) throw new XltNotFoundError('no such parameter', { tensor: path });
    return p;
  }

  /**
   * Replaces the child at a dotted path (and the property of the same name on its parent) with
   * `module`; returns the old child, which is not disposed.
   */
  replaceModule(path: string, module: Module): Module {
    const dot = path.lastIndexOf('.');
    const parent = dot < 0 ? this : this.getModule(path.slice(0, dot));
    const name = path.slice(dot + 1);
    const old = parent._modules.get(name);
    if (old === undefined) throw new XltNotFoundError(`no module at '${path}'`, { field: path });
    parent._modules.set(name, module);
    if (Object.hasOwn(parent, name)) Reflect.set(parent, name, module);
    return old;
  }

  /** Removes a child (and its property); returns it, not disposed. */
  protected removeModule(name: string): Module | undefined {
    const old = this._modules.get(name);
    this._modules.delete(name);
    return old;
  }

  /** Sets training mode on the whole subtree. */
  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  /** Sets eval mode on the whole subtree. */
  eval(): this {
    return this.train(false);
  }

  /** Marks every parameter of the subtree trainable (or frozen). */
  setTrainable(on: boolean): this {
    for (const [, p] of this.namedParameters()) p.trainable = on;
    return this;
  }

  /** Parameters with `trainable` set, by name. */
  trainableParameters(): Array<[string, tf.Variable]> {
    return this.namedParameters().filter(([, p]) => p.trainable);
  }

  /** Number of scalar parameters (all, or only trainable ones). */
  numParameters(onlyTrainable = false): number {
    let n = 0;
    for (const [, p] of this.namedParameters()) if (!onlyTrainable || p.trainable) n += p.size;
    return n;
  }

  /** Frees every parameter of the subtree. */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.dispose();
  }
}

/** An ordered list of children named `0`, `1`, ... (PyTorch's `nn.ModuleList`). */
export class ModuleList<M extends Module> extends Module {
  readonly items: M[] = [];
  constructor(items: M[] = []) {
    super();
    for (const m of items) this.push(m);
  }
  push(m: M): void {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
  }
  get length(): number {
    return this.items.length;
  }
  override replaceModule(path: string, module: Module): Module {
    const old = super.replaceModule(path, module);
    if (!path.includes('.')) this.items[Number(path)] = module as M;
    return old;
  }
}

/** Children by string key (PyTorch's `nn.ModuleDict`), e.g. X-Mod's `adapter_modules.en_XX`. */
export class ModuleDict<M extends Module> extends Module {
  get(key: string): M | undefined {
    return this.children().get(key) as M | undefined;
  }
  set(key: string, m: M): void {
    this.registerModule(key, m);
  }
  delete(key: string): M | undefined {
    return this.removeModule(key) as M | undefined;
  }
  keys(): string[] {
    return [...this.children().keys()];
  }
}
