import { XltConfigError } from '@xlt/core';
import { type SparseRows, sumRows } from './row-gradients.js';
import type { ParamBuffers } from './sliced-update.js';
import { type AdamWSettings, defaultNoDecay, type TrainGraphSignature } from './train-types.js';

/** One step's float32 factors of clipping and AdamW, as the update graphs compute them. */
export interface AdamwScalars {
  /** The clipping factor (1 without clipping). */
  coef: number;
  /** 1 - lr weightDecay, or 1 for a parameter without decay. */
  decay: number;
  beta1: number;
  mFactor: number;
  beta2: number;
  vFactor: number;
  sqrtBc2: number;
  eps: number;
  stepSize: number;
}

/**
 * A one-pass AdamW kernel over a parameter's elements: g = grad coef; m = m beta1 + g mFactor;
 * v = v beta2 + g g vFactor; p = p decay - stepSize (m / (sqrt(v) / sqrtBc2 + eps)), in place, with
 * the gradient dense (`grad`) or as rows (`rows`, zeros elsewhere). Implementations give the same bits.
 */
export interface AdamwKernel {
  readonly name: 'wasm' | 'native';
  run(b: ParamBuffers, grad: Float32Array | undefined, rows: SparseRows | undefined, s: AdamwScalars): void;
}

/**
 * The sliced step's update (see {@link SlicedUpdate}) on a one-pass kernel ({@link AdamwKernel}:
 * WebAssembly SIMD or native): one gradient buffer per parameter, written by the gradients graph;
 * `apply` clips and updates every parameter in place. A parameter whose gradient the graph gives as
 * rows (`gradRows`: the word embeddings) has no dense buffer: {@link setRows} keeps the rows, and
 * `apply` reads zeros elsewhere (the same update as a dense gradient with zero rows, without a
 * buffer of the table's size).
 */
export class KernelSlicedUpdate {
  /** Per parameter given as rows: the last step's rows ({@link setRows}). */
  private readonly rows: Array<SparseRows | undefined>;

  private constructor(
    /** Per parameter: its gradient, written by the gradients graph (allocated once); none for a row gradient. */
    readonly grads: Array<Float32Array | undefined>,
    private readonly shapes: number[][],
    private readonly decays: boolean[],
    private readonly adamw: AdamWSettings,
    /** What runs the update. */
    readonly kernel: AdamwKernel,
  ) {
    this.rows = shapes.map(() => undefined);
  }

  static create(
    signature: TrainGraphSignature,
    adamw: AdamWSettings,
    kernel: AdamwKernel,
  ): KernelSlicedUpdate {
    const noDecay = adamw.noDecay ?? defaultNoDecay;
    return new KernelSlicedUpdate(
      signature.params.map((p) =>
        // rows only (no dense part, unlike a tied table): no buffer of the table's size
        p.gradRows !== undefined && p.grad === undefined && p.gradBlocks === undefined
          ? undefined
          : new Float32Array(p.shape.reduce((a, d) => a * d, 1)),
      ),
      signature.params.map((p) => [...p.shape]),
      signature.params.map((p) => adamw.weightDecay > 0 && !noDecay(p.name)),
      adamw,
      kernel,
    );
  }

  /**
   * Keeps parameter `param`'s gradient as the rows `rows` [N, width] of table rows `ids` (summed per
   * row); returns their sum of squares. Only for a parameter without a dense buffer.
   */
  setRows(param: number, ids: BigInt64Array, rows: Float32Array): number {
    const shape = this.shapes[param];
    if (shape === undefined || this.grads[param] !== undefined)
      throw new XltConfigError(`parameter ${param} has a dense gradient buffer, not rows`, {
        field: 'param',
      });
    const width = shape.slice(1).reduce((a, d) => a * d, 1);
    const { sparse, sq } = sumRows(shape[0] ?? 0, width, ids, rows);
    this.rows[param] = sparse;
    return sq;
  }

  /** Clips (by `gradNorm`, the unclipped global norm) and applies AdamW step `step` to `bufs` in place. */
  apply(bufs: readonly ParamBuffers[], lr: number, step: number, gradNorm: number): void {
    const f = Math.fround;
    const s = this.adamw;
    const correct = s.biasCorrection !== false;
    const coef =
      s.maxGradNorm !== undefined ? Math.min(1, f(f(s.maxGradNorm) / f(f(gradNorm) + f(1e-6)))) : 1;
    // as the graphs compute them: float32 betas raised to the step (1 - beta2^step loses digits to
    // cancellation, so the betas' float32 rounding shows: 1e-5 relative at step 2)
    const stepSize = correct ? f(f(lr) / f(1 - f(f(s.beta1) ** step))) : f(lr);
    const sqrtBc2 = correct ? f(Math.sqrt(f(1 - f(f(s.beta2) ** step)))) : 1;
    const decayed = f(1 - f(f(lr) * f(s.weightDecay)));
    const common = {
      coef,
      beta1: f(s.beta1),
      mFactor: f(1 - s.beta1),
      beta2: f(s.beta2),
      vFactor: f(1 - s.beta2),
      sqrtBc2,
      eps: f(s.eps),
      stepSize,
    };
    bufs.forEach((b, param) => {
      const decay = this.decays[param] === true ? decayed : 1;
      this.kernel.run(b, this.grads[param], this.rows[param], { ...common, decay });
    });
  }

  /** Gradient bytes held: the dense buffers and the rows of the last step. */
  get gradientBytes(): number {
    let n = 0;
    for (const g of this.grads) n += g?.byteLength ?? 0;
    for (const r of this.rows) n += r?.data.byteLength ?? 0;
    return n;
  }

  /** Nothing to release (the kernels' memory is garbage-collected); for the same interface as {@link SlicedUpdate}. */
  async release(): Promise<void> {}
}
