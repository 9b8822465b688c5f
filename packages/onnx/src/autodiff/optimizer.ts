import { XltConfigError } from '@xlt/core';
import { type AdamWSettings, defaultNoDecay } from '../train-types.js';
import { add, div, mul, raw, reduceSum, sqrt, sub } from './ops.js';
import type { Tracer, Value } from './tracer.js';

/** AdamW settings of a traced step (the same as {@link AdamWSettings}). */
export type TracedAdamWSettings = AdamWSettings;

/** A trainable parameter with its gradient, as the optimizer sees it. */
export interface ParamGrad {
  name: string;
  value: Value;
  grad: Value;
}

/** What {@link appendAdamW} adds per parameter: the m/v inputs and the updated values. */
export interface AdamWUpdate {
  name: string;
  m: Value;
  v: Value;
  newParam: Value;
  newM: Value;
  newV: Value;
}

/** sqrt(sum of squares) over all gradients. */
export function globalNorm(grads: readonly Value[]): Value {
  const t = (grads[0] as Value).tracer;
  const squares = grads.map((g) => reduceSum(mul(g, g)));
  const total = squares.length === 1 ? (squares[0] as Value) : raw(t, 'Sum', squares, [], t.floatType);
  return sqrt(total);
}

/** torch.nn.utils.clip_grad_norm_: scales every gradient by min(1, max / (norm + 1e-6)). */
export function clipByGlobalNorm(grads: readonly Value[], norm: Value, maxNorm: number): Value[] {
  const t = norm.tracer;
  const coef = raw(t, 'Min', [div(maxNorm, add(norm, 1e-6)), t.scalar(1)], [], t.floatType);
  return grads.map((g) => mul(g, coef));
}

/**
 * Appends decoupled-weight-decay Adam for `params` (their gradients already clipped or accumulated
 * as wanted): graph inputs `lr` and `step` (float scalars, step counted from 1) and `m:<name>`,
 * `v:<name>` per parameter. Runs in no-grad mode.
 *
 * With `finite` (a bool scalar), a step where it is false leaves parameters and moments exactly as
 * they were: the gradients pass through one `Where(finite, grad, 0)` and the scalars become
 * beta = 1, 1 - beta = 0, lr = 0 (one pass over the gradients instead of one over each output;
 * where `finite` is true the float results are the unguarded ones, bit for bit). Every output
 * depends on `finite`.
 */
export function appendAdamW(
  t: Tracer,
  params: readonly ParamGrad[],
  s: TracedAdamWSettings,
  finite?: Value,
): {
  lr: Value;
  step: Value;
  updates: AdamWUpdate[];
} {
  if (params.length === 0) throw new XltConfigError('AdamW needs at least one trainable parameter');
  const wasNoGrad = t.noGrad;
  t.noGrad = true;
  try {
    const lrInput = t.input('lr', [], t.floatType);
    const step = t.input('step', [], t.floatType);
    // the guard's scalars: their values where finite, the identity of the update where not
    const guarded = (a: number, b: number): Value | number =>
      finite === undefined ? a : raw(t, 'Where', [finite, t.scalar(a), t.scalar(b)], [], t.floatType);
    const lr =
      finite === undefined ? lrInput : raw(t, 'Where', [finite, lrInput, t.scalar(0)], [], t.floatType);
    const [beta1, keep1, beta2, keep2] = [
      guarded(s.beta1, 1),
      guarded(1 - s.beta1, 0),
      guarded(s.beta2, 1),
      guarded(1 - s.beta2, 0),
    ];
    const correct = s.biasCorrection !== false;
    // bias corrections 1 - beta^step, as tensors of the step input
    const powStep = (beta: number) => raw(t, 'Pow', [t.scalar(beta), step], [], t.floatType);
    const stepSize = correct ? div(lr, sub(1, powStep(s.beta1))) : lr;
    const sqrtBc2 = correct ? sqrt(sub(1, powStep(s.beta2))) : undefined;
    const noDecay = s.noDecay ?? defaultNoDecay;
    const updates = params.map(({ name, value, grad: g }) => {
      const m = t.input(`m:${name}`, value.shape, t.floatType);
      const v = t.input(`v:${name}`, value.shape, t.floatType);
      const grad = finite === undefined ? g : raw(t, 'Where', [finite, g, t.scalar(0)], g.shape, t.floatType);
      const decayed =
        s.weightDecay > 0 && !noDecay(name) ? mul(value, sub(1, mul(lr, s.weightDecay))) : value;
      const newM = add(mul(m, beta1), mul(grad, keep1));
      const newV = add(mul(v, beta2), mul(mul(grad, grad), keep2));
      const root = sqrtBc2 === undefined ? sqrt(newV) : div(sqrt(newV), sqrtBc2);
      const newParam = sub(decayed, mul(stepSize, div(newM, add(root, s.eps))));
      return { name, m, v, newParam, newM, newV };
    });
    return { lr: lrInput, step, updates };
  } finally {
    t.noGrad = wasNoGrad;
  }
}
