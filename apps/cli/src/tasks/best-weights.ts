import * as tf from '@tensorflow/tfjs-core';
import { type ParameterSource, uniqueParameters } from '@xlt/trainer';

/**
 * An in-memory copy of a model's weights at its best evaluation, for model selection: `keep()`
 * copies every parameter, `restore()` writes the copy back. Nothing is kept on tfjs tensors.
 */
export class BestWeights {
  private readonly params: Array<[string, tf.Variable]>;
  private saved: Float32Array[] | undefined;

  constructor(model: ParameterSource) {
    this.params = uniqueParameters(model);
  }

  /** Copies the current weights (replacing an earlier copy). */
  keep(): void {
    this.saved = this.params.map(([, v]) => Float32Array.from(v.dataSync() as Float32Array));
  }

  /** Whether a copy was kept. */
  get kept(): boolean {
    return this.saved !== undefined;
  }

  /** Writes the kept copy back into the model's variables; a no-op when nothing was kept. */
  restore(): void {
    const saved = this.saved;
    if (saved === undefined) return;
    this.params.forEach(([, v], i) => {
      tf.tidy(() => v.assign(tf.tensor(saved[i] as Float32Array, v.shape, 'float32')));
    });
  }

  dispose(): void {
    this.saved = undefined;
  }
}
