import type * as tf from '@tensorflow/tfjs-core';
import { XltConfigError } from '@xlt/core';

/** Anything with Hugging Face-named parameters: an `@xlt/xmod` `Module`, or a wrapper around one. */
export interface ParameterSource {
  namedParameters(): Array<[string, tf.Variable]>;
}

/**
 * The model's parameters with tied duplicates removed: each variable once, under the first name
 * `namedParameters()` gives it (as PyTorch's `named_parameters()` does).
 */
export function uniqueParameters(model: ParameterSource): Array<[string, tf.Variable]> {
  const seen = new Set<tf.Variable>();
  const out: Array<[string, tf.Variable]> = [];
  for (const [name, v] of model.namedParameters()) {
    if (seen.has(v)) continue;
    seen.add(v);
    out.push([name, v]);
  }
  return out;
}

/** The trainable parameters (`variable.trainable`), each variable once. */
export function trainableParameters(model: ParameterSource): Array<[string, tf.Variable]> {
  return uniqueParameters(model).filter(([, v]) => v.trainable);
}

/**
 * transformers' rule for parameters that get no weight decay: names ending in `bias`, and
 * LayerNorm weights (names containing `LayerNorm` or `layer_norm`).
 */
export function defaultNoDecay(name: string): boolean {
  return name.endsWith('bias') || name.includes('LayerNorm') || name.includes('layer_norm');
}

/**
 * Which parameters a stage trains: a glob on dotted Hugging Face names, a RegExp, or a predicate.
 *
 * Globs: `*` matches within one dotted segment, `**` across segments. A glob that matches a module
 * path (a prefix of a parameter name ending at a dot) selects every parameter under that module, so
 * `roberta.encoder.layer.*.output.adapter_modules.*` selects all adapter weights of all languages.
 * A RegExp is tested (`.test`) against the full name; a predicate is called with name and variable.
 */
export type Selector = string | RegExp | ((name: string, variable: tf.Variable) => boolean);

const globCache = new Map<string, RegExp>();

/** Compiles a glob (see {@link Selector}) to a RegExp matching a full name or a module prefix. */
export function globToRegExp(glob: string): RegExp {
  const cached = globCache.get(glob);
  if (cached !== undefined) return cached;
  if (glob.length === 0) throw new XltConfigError('an empty glob selects nothing', { field: 'selector' });
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        // `**.` also matches zero segments, so `**.embeddings` selects a top-level `embeddings`
        if (glob[i + 2] === '.') {
          re += '(?:.*\\.)?';
          i += 2;
        } else {
          re += '.*';
          i++;
        }
      } else re += '[^.]*';
    } else if (c === '?') re += '[^.]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  const out = new RegExp(`^${re}(?:\\..*)?$`);
  globCache.set(glob, out);
  return out;
}

/** True when `name` is selected by `selector`. */
export function matchesSelector(selector: Selector, name: string, variable: tf.Variable): boolean {
  if (typeof selector === 'string') return globToRegExp(selector).test(name);
  if (selector instanceof RegExp) {
    selector.lastIndex = 0;
    return selector.test(name);
  }
  return selector(name, variable);
}

/** True when any selector selects `name`. */
export function matchesAny(selectors: readonly Selector[], name: string, variable: tf.Variable): boolean {
  return selectors.some((s) => matchesSelector(s, name, variable));
}

/** What to train: parameters matched by `include` and not by `exclude`. */
export interface TrainableSpec {
  /** Selected parameters (default: all). */
  include?: readonly Selector[];
  /** Parameters removed from the selection. */
  exclude?: readonly Selector[];
}

/**
 * Sets `trainable` on every parameter of `model` from `spec` (true exactly for the selected ones)
 * and returns the names of the trainable ones. Tied variables are decided by their first name.
 * Throws an XltConfigError when nothing is selected, since training nothing is always a mistake.
 */
export function applyTrainable(model: ParameterSource, spec: TrainableSpec): string[] {
  const names: string[] = [];
  for (const [name, v] of uniqueParameters(model)) {
    const inc = spec.include === undefined || matchesAny(spec.include, name, v);
    const on = inc && !(spec.exclude !== undefined && matchesAny(spec.exclude, name, v));
    v.trainable = on;
    if (on) names.push(name);
  }
  if (names.length === 0) {
    throw new XltConfigError('the trainable selectors match no parameter of the model', {
      field: 'trainable',
    });
  }
  return names;
}
