import { XltConfigError, XltShapeError } from '@xlt/core';
import type { LoraMixtureSpec } from '../model-types.js';
import { type Dim, numericShape, staticDim } from './dims.js';
import { linear } from './layers.js';
import { add, expand, mul, raw, reduceMean, slice, softmax, squeeze, unsqueeze, where } from './ops.js';
import type { Parameters } from './parameters.js';
import type { Value } from './tracer.js';

/**
 * A mixture of LoRA experts on one linear module (see `LoraMixtureSpec`): routing weights per
 * example, then y + scaling sum_i w_i B_i A_i x. Written with the vocabulary: routers, experts and
 * mixing logits get their gradients from the ops' rules.
 */

/** Routing weights [B, n] of a mixture from the module input x [B, S, in]. */
function routing(
  p: Parameters,
  x: Value,
  name: string,
  mix: LoraMixtureSpec,
  langIds: Value | undefined,
): Value {
  const t = p.tracer;
  const n = mix.languages.length;
  const B = x.shape[0] as Dim;
  if (mix.mode === 'language') {
    if (langIds === undefined)
      throw new XltConfigError('language routing needs lang_ids', { field: 'lang_ids', tensor: name });
    return raw(t, 'OneHot', [langIds, t.ints([n], []), t.constant([0, 1], [2])], [B, n], t.floatType, {
      axis: -1,
    });
  }
  if (mix.mode === 'static') return expand(unsqueeze(softmax(p.get(`${name}.mix_logits`, [n])), [0]), [B, n]);
  // router / topk on the first token or the mean over tokens (padding included, as @xlt/lora)
  const inF = staticDim(x.shape[2] as Dim, `router input of ${name}`);
  const h = mix.pooling === 'mean' ? reduceMean(x, [1]) : squeeze(slice(x, 1, 0, 1), [1]);
  const logits = linear(h, p.get(`${name}.router.weight`, [n, inF]));
  if (mix.mode === 'router') return softmax(logits);
  const k = mix.k ?? 1;
  if (!Number.isInteger(k) || k < 1 || k > n)
    throw new XltConfigError(`k must be an integer in [1, ${n}], got ${k}`, { field: 'k', tensor: name });
  // TopK's values are sorted, largest first: the k-th is the threshold (no gradient through it)
  const values = t.emit({
    onnxOp: 'TopK',
    inputs: [logits],
    extraInputs: [t.ints([k]).name],
    attrs: { axis: -1 },
    outputs: [
      { shape: [B, k], dtype: logits.dtype },
      { shape: [B, k], dtype: 'int64' },
    ],
    differentiable: false,
  })[0] as Value;
  const kth = slice(values, 1, k - 1, k);
  const keep = raw(t, 'GreaterOrEqual', [logits, kth], [B, n], 'bool');
  return softmax(where(keep, logits, -1e30));
}

/**
 * Adds the experts of mixture `mix` on module `name` to its base output y [B, S, out]; `dropped`
 * is the module input after the mixture's dropout.
 */
export function addLoraMixture(
  p: Parameters,
  y: Value,
  x: Value,
  dropped: Value,
  name: string,
  mix: LoraMixtureSpec,
  langIds: Value | undefined,
): Value {
  const n = mix.languages.length;
  if (n === 0) throw new XltConfigError('a LoRA mixture needs at least one expert', { tensor: name });
  const [B, S] = x.shape as [Dim, Dim];
  const inF = staticDim(x.shape[2] as Dim, `input of ${name}`);
  const outF = staticDim(y.shape[2] as Dim, `output of ${name}`);
  const perToken = expand(unsqueeze(routing(p, x, name, mix, langIds), [1]), [B, S, n]);
  let out = y;
  mix.languages.forEach((lang, i) => {
    const pre = `${name}.experts.${lang}`;
    const A = p.get(`${pre}.lora_A.weight`);
    const r = A.shape[0] as number;
    if (A.shape[1] !== inF)
      throw new XltShapeError('LoRA expert weights do not fit the module', {
        tensor: `${pre}.lora_A.weight`,
        expected: [r, inF],
        got: numericShape(A.shape),
      });
    const delta = linear(linear(dropped, A), p.get(`${pre}.lora_B.weight`, [outF, r]));
    out = add(out, mul(delta, mul(slice(perToken, 2, i, i + 1), mix.scaling)));
  });
  return out;
}
