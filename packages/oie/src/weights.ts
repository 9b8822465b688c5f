import * as tf from '@tensorflow/tfjs-core';
import { XltConfigError, XltShapeError } from '@xlt/core';
import type { Weight, WeightSource } from '@xlt/onnx';

/** Weights with some tensors replaced (trained values over a base source). */
export function overlayWeights(
  base: WeightSource,
  values: ReadonlyMap<string, Float32Array | Weight>,
): WeightSource & { names?(): string[] } {
  return {
    has: (n) => base.has(n) || values.has(n),
    get: (n): Weight => {
      const v = values.get(n);
      if (v === undefined) return base.get(n);
      // new tensors (not in `base`) come with their shape
      if (!(v instanceof Float32Array)) return v;
      return { data: v, shape: base.get(n).shape };
    },
  };
}

/** A model's parameters by Hugging Face name (an `@xlt/xmod` module, LoRA wrappers included). */
interface NamedParameters {
  namedParameters(): Array<[string, tf.Variable]>;
}

/**
 * Copies a weight source into a model's variables, by name, with the variable's shape (a misshapen
 * tensor is an error naming it). Every parameter must be in the source unless `partial`.
 */
export function assignWeights(
  model: NamedParameters,
  source: WeightSource,
  options: { what?: string; partial?: boolean } = {},
): void {
  const what = options.what ?? 'the starting weights';
  for (const [name, v] of model.namedParameters()) {
    if (!source.has(name)) {
      if (options.partial === true) continue;
      throw new XltConfigError(`${what} lack tensor ${name}`, { tensor: name });
    }
    const w = source.get(name);
    if (w.shape.length !== v.shape.length || w.shape.some((d, i) => d !== v.shape[i]))
      throw new XltShapeError(`${what}: tensor ${name} has the wrong shape`, {
        tensor: name,
        expected: [...v.shape],
        got: [...w.shape],
      });
    tf.tidy(() => v.assign(tf.tensor(w.data, v.shape, 'float32')));
  }
}

/**
 * The model's current parameters as a weight source of copies (so it outlives the model). LoRA
 * wrappers' `<module>.base_layer.<p>` are listed as `<module>.<p>`, the names the exporter takes
 * next to the live mixture's `experts.*` / `router.weight` / `mix_logits`.
 */
export function snapshotWeights(model: NamedParameters): WeightSource & { names(): string[] } {
  const values = new Map<string, Weight>();
  for (const [name, v] of model.namedParameters()) {
    const plain = name.replace('.base_layer.', '.');
    if (!values.has(plain)) values.set(plain, { data: Float32Array.from(v.dataSync()), shape: [...v.shape] });
  }
  return {
    names: () => [...values.keys()],
    has: (n) => values.has(n),
    get: (n): Weight => {
      const w = values.get(n);
      if (w === undefined) throw new XltConfigError(`the trained model has no tensor ${n}`, { tensor: n });
      return w;
    },
  };
}
