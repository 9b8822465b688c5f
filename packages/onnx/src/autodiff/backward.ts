import { XltConfigError, XltShapeError } from '@xlt/core';
import { numericShape } from './dims.js';
import { GRADIENT_RULES, type GradientRule } from './gradients.js';
import { concat, expand, raw, reshape, zeros } from './ops.js';
import { RECOMPUTE, type TracedNode, Value } from './tracer.js';

/**
 * The gradient of a table read only by axis-0 Gathers (an embedding), as the gathered rows'
 * gradients: `rows` [N, ...row shape] for the table rows `ids` [N] (int64, repeats allowed). The
 * dense gradient is their scatter-add into zeros of the table's shape.
 */
export interface RowGradient {
  ids: Value;
  rows: Value;
}

/**
 * Reverse-mode autodiff over the traced graph: appends the backward nodes and returns the gradient
 * of `loss` (a scalar, or any value with `seed` as its incoming gradient) with respect to each of
 * `wrt`. A value used several times gets the sum of its gradients; values that do not require a
 * gradient (frozen parameters, constants, indices) get none, and a `wrt` entry that the loss does
 * not depend on gets zeros.
 */
export function backward(loss: Value, wrt: readonly Value[], seed?: Value): Value[] {
  return backwardWithRows(loss, wrt, new Set(), seed).grads as Value[];
}

/**
 * {@link backward}, with the gradients of the `asRows` values among `wrt` as {@link RowGradient}s
 * when every use of them is an axis-0 Gather (no dense zeros of the table's size and scatter in the
 * graph); `grads` then has undefined at their places. A value of `asRows` with any other use gets
 * its dense gradient as {@link backward} gives it, or with `tied: true` both: in `grads` the
 * gradient of its other uses (a tied decoder's matmul) and in `rows` its Gathers' rows, the whole
 * gradient being their sum (the caller adds the rows; no zeros of the table's size, scatter or sum
 * of two table-sized tensors in the graph).
 */
export function backwardWithRows(
  loss: Value,
  wrt: readonly Value[],
  asRows: ReadonlySet<Value>,
  seed?: Value,
  options: { tied?: boolean } = {},
): { grads: Array<Value | undefined>; rows: Map<Value, RowGradient> } {
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
    // per `asRows` value: its Gather nodes and their incoming gradients, kept as rows
    const gathered = new Map<Value, Array<{ node: TracedNode; dy: Value }>>();
    const rowsOf = (node: TracedNode): Value | undefined => {
      const table = node.inputs[0] as Value;
      // a graph input (no producer): its gradient feeds nothing further back, so it can wait
      return node.op === 'Gather' &&
        node.params.axis === 0 &&
        asRows.has(table) &&
        table.producer === undefined
        ? table
        : undefined;
    };
    const skip = new Set<TracedNode>();
    accumulate(loss, seed ?? expand(t.constant([1], [], loss.dtype), loss.shape));
    for (let i = recorded - 1; i >= 0; i--) {
      const node = t.nodes[i];
      if (node === undefined) continue;
      const dy = total(node.outputs[0] as Value);
      if (dy === undefined) continue;
      if (skip.has(node)) continue;
      if (node.op === RECOMPUTE) {
        const { fn, group } = node.params as { fn: (x: Value) => Value; group: Set<TracedNode> };
        for (const g of group) skip.add(g);
        const x = node.inputs[0] as Value;
        const dx = recomputed(x, fn, dy);
        if (x.requiresGrad) accumulate(x, dx);
        continue;
      }
      const table = rowsOf(node);
      if (table !== undefined) {
        const list = gathered.get(table) ?? [];
        list.push({ node, dy });
        gathered.set(table, list);
        continue;
      }
      const rule = GRADIENT_RULES[node.op];
      if (rule === undefined)
        throw new XltConfigError(`op '${node.op}' has no gradient rule`, { tensor: node.outputs[0]?.name });
      const grads = rule(node, dy);
      node.inputs.forEach((x, k) => {
        const g = grads[k];
        if (g !== undefined && x.requiresGrad) accumulate(x, g);
      });
    }
    const rows = new Map<Value, RowGradient>();
    for (const [table, list] of gathered) {
      if (pending.has(table) && options.tied !== true) {
        // another use too: the dense gradient, Gathers included
        for (const { node, dy } of list)
          accumulate(table, (GRADIENT_RULES.Gather as GradientRule)(node, dy)[0] as Value);
        continue;
      }
      const rest = table.shape.slice(1);
      const ids = list.map(({ node }) => reshape(node.inputs[1] as Value, [-1]));
      const parts = list.map(({ dy }) => reshape(dy, [-1, ...rest]));
      rows.set(table, {
        ids: ids.length === 1 ? (ids[0] as Value) : concat(ids, 0),
        rows: parts.length === 1 ? (parts[0] as Value) : concat(parts, 0),
      });
    }
    // a tied table (rows and another use) keeps the other use's gradient beside its rows
    const grads = wrt.map((w) => (rows.has(w) ? total(w) : (total(w) ?? zeros(t, w.shape, w.dtype))));
    return { grads, rows };
  } finally {
    t.noGrad = wasNoGrad;
  }
}

/**
 * The gradient of `fn` at `x` for the incoming gradient `dy`, from `fn` traced again on a leaf copy
 * of `x`. The copy is `x` reshaped to `dy`'s runtime shape (the same shape): it reads `dy`, so
 * onnxruntime runs the recomputation in the backward pass, and it is a value of its own, so
 * onnxruntime does not merge the recomputed ops with the forward ones.
 */
function recomputed(x: Value, fn: (x: Value) => Value, dy: Value): Value {
  const t = x.tracer;
  const shape = raw(t, 'Shape', [dy], [dy.rank], 'int64');
  const copy = raw(t, 'Reshape', [x, shape], x.shape, x.dtype);
  const leaf = new Value(t, copy.name, x.shape, x.dtype, true);
  const wasNoGrad = t.noGrad;
  t.noGrad = false;
  let y: Value;
  try {
    y = fn(leaf);
  } finally {
    t.noGrad = wasNoGrad;
  }
  return backward(y, [leaf], dy)[0] as Value;
}
