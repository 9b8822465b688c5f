import { XltNotFoundError, XltShapeError } from '@xlt/core';
import type { WeightSource } from '../model-types.js';
import type { Tracer, Value } from './tracer.js';

/**
 * Model parameters by Hugging Face name as traced values: a trainable one becomes the graph input
 * `param:<name>` (and requires a gradient), a frozen one an initializer holding its values (or, with
 * `frozenAsInputs`, the graph input `frozen:<name>`, fed at run time: no copy in the graph). Each
 * name is materialised once, so a parameter used twice (a tied decoder) accumulates its gradient.
 */
export class Parameters {
  private readonly trainableNames: Set<string>;
  private readonly values = new Map<string, Value>();

  constructor(
    readonly tracer: Tracer,
    readonly weights: WeightSource,
    trainable: Iterable<string>,
    private readonly frozenAsInputs = false,
  ) {
    this.trainableNames = new Set(trainable);
    for (const n of this.trainableNames)
      if (!weights.has(n)) throw new XltNotFoundError('trainable parameter not in the model', { tensor: n });
  }

  has(name: string): boolean {
    return this.weights.has(name);
  }

  isTrainable(name: string): boolean {
    return this.trainableNames.has(name);
  }

  /** The parameter `name`, checked against `shape` when given. */
  get(name: string, shape?: readonly number[]): Value {
    const hit = this.values.get(name);
    if (hit !== undefined) return hit;
    if (!this.weights.has(name)) throw new XltNotFoundError('missing weight', { tensor: name });
    const w = this.weights.get(name);
    if (shape !== undefined && w.shape.join(',') !== shape.join(','))
      throw new XltShapeError('weight has the wrong shape', {
        tensor: name,
        expected: [...shape],
        got: w.shape,
      });
    const t = this.tracer;
    const v = this.trainableNames.has(name)
      ? t.input(`param:${name}`, w.shape, t.floatType, true)
      : this.frozenAsInputs
        ? t.input(`frozen:${name}`, w.shape, t.floatType)
        : t.constant(w.data, w.shape, t.floatType, name);
    this.values.set(name, v);
    return v;
  }

  /** The trainable parameters the traced forward used, in first-use order. */
  used(): Array<{ name: string; value: Value }> {
    return [...this.values]
      .filter(([n]) => this.trainableNames.has(n))
      .map(([name, value]) => ({ name, value }));
  }

  /** The frozen parameters the traced forward used that are graph inputs (`frozenAsInputs`). */
  fedFrozen(): Array<{ name: string; shape: number[]; input: string }> {
    if (!this.frozenAsInputs) return [];
    return [...this.values]
      .filter(([n]) => !this.trainableNames.has(n))
      .map(([name, value]) => ({ name, shape: [...value.shape] as number[], input: value.name }));
  }
}
