import * as tf from '@tensorflow/tfjs-core';
import { XltConfigError, XltError } from '@xlt/core';
import { defaultNoDecay } from './params.js';

/** AdamW hyper-parameters (PyTorch `torch.optim.AdamW` defaults except `weightDecay`, which defaults to 0). */
export interface AdamWOptions {
  /** Betas (default [0.9, 0.999]). */
  betas?: [number, number];
  /** Added to sqrt of the bias-corrected second moment (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0). */
  weightDecay?: number;
  /** Parameters that get no weight decay (default: {@link defaultNoDecay}). */
  noDecay?: (name: string) => boolean;
  /** Bias-correct both moments as torch does (default true; false is transformers' old `correct_bias=False`). */
  correctBias?: boolean;
}

interface Slot {
  name: string;
  variable: tf.Variable;
  decay: boolean;
  m: tf.Variable | null;
  v: tf.Variable | null;
  /** Updates of this parameter so far (torch keeps one step count per parameter). */
  step: number;
}

/** Saved moments of one parameter. */
export interface AdamWParamState {
  m: Float32Array;
  v: Float32Array;
  shape: number[];
  step: number;
}

/** A non-trainable variable holding `t`'s values; `t` itself is disposed (the variable keeps the data). */
function ownedVariable(t: tf.Tensor): tf.Variable {
  const v = tf.variable(t, false);
  t.dispose();
  return v;
}

/**
 * AdamW exactly as `torch.optim.AdamW` computes it in float32:
 * `p *= 1 - lr*wd` (decay groups), `m = lerp(m, g, 1-b1)`, `v = b2*v + (1-b2)*g*g`,
 * `p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)`. A parameter without a gradient in a step
 * is skipped entirely (no decay, no moment update), as torch skips a `None` grad.
 */
export class AdamW {
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly correctBias: boolean;
  private readonly slots: Slot[];
  private readonly byName = new Map<string, Slot>();

  constructor(params: Array<[string, tf.Variable]>, options: AdamWOptions = {}) {
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    this.correctBias = options.correctBias ?? true;
    const [b1, b2] = this.betas;
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1))
      throw new XltConfigError(`betas must lie in [0, 1), got [${b1}, ${b2}]`, { field: 'betas' });
    if (!(this.eps >= 0)) throw new XltConfigError(`eps must be >= 0, got ${this.eps}`, { field: 'eps' });
    if (!(this.weightDecay >= 0))
      throw new XltConfigError(`weight decay must be >= 0, got ${this.weightDecay}`, {
        field: 'weightDecay',
      });
    const noDecay = options.noDecay ?? defaultNoDecay;
    this.slots = params.map(([name, variable]) => ({
      name,
      variable,
      decay: !noDecay(name),
      m: null,
      v: null,
      step: 0,
    }));
    for (const s of this.slots) this.byName.set(s.name, s);
  }

  /** Names of the parameters this optimiser updates, with whether each gets weight decay. */
  groups(): { decay: string[]; noDecay: string[] } {
    return {
      decay: this.slots.filter((s) => s.decay).map((s) => s.name),
      noDecay: this.slots.filter((s) => !s.decay).map((s) => s.name),
    };
  }

  /** The optimised parameters in order. */
  parameters(): Array<[string, tf.Variable]> {
    return this.slots.map((s) => [s.name, s.variable]);
  }

  /**
   * One update with learning rate `lr`. `grads` maps parameter names to gradients (missing: no
   * update for that parameter). The gradients are not disposed.
   */
  step(grads: ReadonlyMap<string, tf.Tensor>, lr: number): void {
    const [b1, b2] = this.betas;
    for (const s of this.slots) {
      const g = grads.get(s.name);
      if (g === undefined) continue;
      s.step++;
      const t = s.step;
      if (s.m === null || s.v === null) {
        s.m = ownedVariable(tf.zerosLike(s.variable));
        s.v = ownedVariable(tf.zerosLike(s.variable));
      }
      const m = s.m;
      const v = s.v;
      const bc1 = this.correctBias ? 1 - b1 ** t : 1;
      const bc2Sqrt = this.correctBias ? Math.sqrt(1 - b2 ** t) : 1;
      const decayFactor = s.decay ? 1 - lr * this.weightDecay : 1;
      const [newP, newM, newV] = tf.tidy(() => {
        const p0 = s.decay && this.weightDecay !== 0 ? tf.mul(s.variable, decayFactor) : s.variable;
        // torch: exp_avg.lerp_(grad, 1 - beta1) = m + (1 - beta1) * (g - m)
        const m1 = tf.add(m, tf.mul(tf.sub(g, m), 1 - b1));
        // torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        const v1 = tf.add(tf.mul(v, b2), tf.mul(tf.mul(g, g), 1 - b2));
        const denom = tf.add(tf.div(tf.sqrt(v1), bc2Sqrt), this.eps);
        const p1 = tf.sub(p0, tf.mul(tf.div(m1, denom), lr / bc1));
        return [p1, m1, v1];
      });
      s.variable.assign(newP);
      m.assign(newM);
      v.assign(newV);
      newP.dispose();
      newM.dispose();
      newV.dispose();
    }
  }

  /** Moments and step count of every parameter that has been updated at least once. */
  async getState(): Promise<Map<string, AdamWParamState>> {
    const out = new Map<string, AdamWParamState>();
    for (const s of this.slots) {
      if (s.m === null || s.v === null) continue;
      out.set(s.name, {
        m: (await s.m.data()) as Float32Array,
        v: (await s.v.data()) as Float32Array,
        shape: [...s.variable.shape],
        step: s.step,
      });
    }
    return out;
  }

  /** Restores moments saved by {@link AdamW.getState}; names must be parameters of this optimiser. */
  setState(state: ReadonlyMap<string, AdamWParamState>): void {
    for (const [name, st] of state) {
      const s = this.byName.get(name);
      if (s === undefined)
        throw new XltError('STATE', 'optimiser state names a parameter this optimiser does not train', {
          tensor: name,
        });
      const want = s.variable.shape;
      if (st.shape.length !== want.length || st.shape.some((d, i) => d !== want[i]))
        throw new XltError(
          'STATE',
          `optimiser state shape [${st.shape.join(', ')}] differs from the parameter's [${want.join(', ')}]`,
          { tensor: name },
        );
      s.m?.dispose();
      s.v?.dispose();
      s.m = ownedVariable(tf.tensor(st.m, want, 'float32'));
      s.v = ownedVariable(tf.tensor(st.v, want, 'float32'));
      s.step = st.step;
    }
  }

  /** Frees the moment buffers. */
  dispose(): void {
    for (const s of this.slots) {
      s.m?.dispose();
      s.v?.dispose();
      s.m = null;
      s.v = null;
    }
  }
}

/** Result of {@link clipGradNorm}. */
export interface ClipResult {
  /** Global L2 norm before clipping. */
  norm: number;
  /** Per-parameter L2 norms before clipping (same order as the gradient map). */
  paramNorms: Array<[string, number]>;
  /** The gradients after clipping (new tensors; the inputs are not disposed). */
  grads: Map<string, tf.Tensor>;
}

/**
 * Global-norm clipping as `torch.nn.utils.clip_grad_norm_`: total = ||(||g_i||)_i||,
 * coef = min(1, maxNorm / (total + 1e-6)), each gradient multiplied by coef. With `maxNorm`
 * null only the norms are computed and the gradients are returned (cloned) unchanged.
 */
export function clipGradNorm(grads: ReadonlyMap<string, tf.Tensor>, maxNorm: number | null): ClipResult {
  const names = [...grads.keys()];
  if (names.length === 0) return { norm: 0, paramNorms: [], grads: new Map() };
  const [normsT, totalT, coefT] = tf.tidy(() => {
    const norms = tf.stack(names.map((n) => tf.norm(grads.get(n) as tf.Tensor)));
    const total = tf.norm(norms);
    const coef =
      maxNorm === null ? tf.scalar(1) : tf.minimum(tf.div(tf.scalar(maxNorm), tf.add(total, 1e-6)), 1);
    return [norms, total, coef];
  });
  const perParam = normsT.dataSync();
  const norm = totalT.dataSync()[0] as number;
  const out = new Map<string, tf.Tensor>();
  for (const n of names) {
    const g = grads.get(n) as tf.Tensor;
    out.set(n, maxNorm === null ? tf.clone(g) : tf.mul(g, coefT));
  }
  normsT.dispose();
  totalT.dispose();
  coefT.dispose();
  return { norm, paramNorms: names.map((n, i) => [n, perParam[i] as number]), grads: out };
}
