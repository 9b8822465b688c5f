import { XltConfigError, XltShapeError } from '@xlt/core';
import { numericShape } from './dims.js';
import { GRADIENT_RULES } from './gradients.js';
import { expand, raw, zeros } from './ops.js';
import type { Value } from './tracer.js';

/**
 * Reverse-mode autodiff over the traced graph: appends the backward nodes and returns the gradient
 * of `loss` (a scalar, or any value with `seed` as its incoming gradient) with respect to each of
 * `wrt`. A value used several times gets the sum of its gradients; values that do not require a
 * gradient (frozen parameters, constants, indices) get none, and a `wrt` entry that the loss does
 * not depend on gets zeros.
 */
export function backward(loss: Value, wrt: readonly Value[], seed?: Value): Value[] {
  const t = loss.tracer;
  if (seed === undefined && loss.size !== 1)
    throw new XltShapeError('backward from a non-scalar needs a seed gradient', {
      got: numericShape(loss.shape),
    });
  for (const w of wrt)
    if (!w.requiresGrad)
      throw new XltConfigError(`'${w.name}' does not require a gradient (declare it trainable)`, {
        tensor: w.name,
      });
  const recorded = t.nodes.length;
  const wasNoGrad = t.noGrad;
  t.noGrad = true;
  try {
    const pending = new Map<Value, Value[]>();
    const accumulate = (v: Value, g: Value) => {
      if (g.shape.join(',') !== v.shape.join(','))
        throw new XltShapeError(`gradient of '${v.name}' has the wrong shape`, {
          tensor: v.name,
          expected: numericShape(v.shape),
          got: numericShape(g.shape),
        });
      const list = pending.get(v);
      if (list === undefined) pending.set(v, [g]);
      else list.push(g);
    };
    const total = (v: Value): Value | undefined => {
      const list = pending.get(v);
      if (list === undefined) return undefined;
      if (list.length === 1) return list[0];
      const sum = raw(t, 'Sum', list, v.shape, v.dtype);
      pending.set(v, [sum]);
      return sum;
    };
    accumulate(loss, seed ?? expand(t.constant([1], [], loss.dtype), loss.shape));
    for (let i = recorded - 1; i >= 0; i--) {
      const node = t.nodes[i];
      if (node === undefined) continue;
      const dy = total(node.outputs[0] as Value);
      if (dy === undefined) continue;
      const rule = GRADIENT_RULES[node.op];
      if (rule === undefined)
        throw new XltConfigError(`op '${node.op}' has no gradient rule`, { tensor: node.outputs[0]?.name });
      const grads = rule(node, dy);
      node.inputs.forEach((x, k) => {
        const g = grads[k];
        if (g !== undefined && x.requiresGrad) accumulate(x, g);
      });
    }
    return wrt.map((w) => total(w) ?? zeros(t, w.shape, w.dtype));
  } finally {
    t.noGrad = wasNoGrad;
  }
}
