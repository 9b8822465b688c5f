import { XltConfigError } from '@xlt/core';
import type { XmodConfig } from '../model-types.js';
import { type Dim, dimProduct } from './dims.js';
import { mul, raw, reshape, where } from './ops.js';
import type { Tracer, Value } from './tracer.js';

/** Dropout probabilities of the encoder's sites, from the config (as transformers reads them). */
export interface DropoutRates {
  hidden: number;
  attention: number;
  classifier: number;
}

/** The config's dropout probabilities, checked to lie in [0, 1). */
export function dropoutRates(cfg: XmodConfig): DropoutRates {
  const hidden = cfg.hidden_dropout_prob;
  const rates = {
    hidden,
    attention: cfg.attention_probs_dropout_prob,
    classifier: cfg.classifier_dropout ?? hidden,
  };
  for (const [k, v] of Object.entries(rates))
    if (!(v >= 0 && v < 1))
      throw new XltConfigError(`${k} dropout probability must be in [0, 1), got ${v}`, { field: 'dropout' });
  return rates;
}

/**
 * Inverted dropout with in-graph masks: uniform numbers from a counter-based integer hash of
 * (element index, the int64 scalar input `dropout_seed`, site number), so a step's masks depend only
 * on its seed and the forward's order of sites. The hash is the compiled step's (`train.ts`), so
 * the same seed drops the same elements in both graphs.
 */
export class DropoutSites {
  private seed: Value | undefined;
  private site = 0;

  constructor(private readonly t: Tracer) {}

  /** The `dropout_seed` input, once a site used it. */
  get seedInput(): Value | undefined {
    return this.seed;
  }

  /**
   * x times a fresh mask (identity at rate 0, where no site is used), as x / (1 - rate) where kept
   * and 0 where dropped. Where the tracer saves memory (`recompute`, the large-model step) the
   * backward pass keeps the bool mask (one byte an element); otherwise x times a float mask.
   */
  apply(x: Value, rate: number): Value {
    if (!(rate > 0)) return x;
    if (!this.t.recomputes) return mul(x, this.mask(x.shape, rate));
    return where(this.keep(x.shape, rate), mul(x, 1 / (1 - rate)), 0);
  }

  /** A mask of 1/(1-rate) where kept and 0 where dropped. */
  mask(shape: readonly Dim[], rate: number): Value {
    const t = this.t;
    const f = t.floatType;
    const keep = raw(t, 'Cast', [this.keep(shape, rate)], shape, f, { to: f === 'float32' ? 1 : 11 });
    return raw(t, 'Mul', [keep, t.scalar(1 / (1 - rate))], shape, f);
  }

  /** A fresh bool mask, true where kept (with probability 1 - rate). */
  keep(shape: readonly Dim[], rate: number): Value {
    const t = this.t;
    if (this.seed === undefined) this.seed = t.input('dropout_seed', [], 'int64');
    const site = this.site++;
    const n = dimProduct(shape);
    const scalar = (v: number) => t.ints([v], []);
    const int = (op: string, a: Value, b: Value, s: readonly Dim[]) => raw(t, op, [a, b], s, 'int64');
    // mod(a * k + c, p) on scalars or [n] vectors
    const affine = (a: Value, k: number, c: Value | number, p: number, s: readonly Dim[]) =>
      int(
        'Mod',
        int('Add', int('Mul', a, scalar(k), s), typeof c === 'number' ? scalar(c) : c, s),
        scalar(p),
        s,
      );
    const P = [2147483647, 2147483629, 2147483587] as const;
    const C = [12345, 1013904223, 987654321] as const;
    const s1 = affine(
      int('Mod', this.seed, scalar(P[0]), []),
      48271,
      (site * 2654435761) % 2147483647,
      P[0],
      [],
    );
    const s2 = affine(int('Mod', this.seed, scalar(P[1]), []), 69621, site * 7 + 11, P[1], []);
    const idx = raw(t, 'Range', [scalar(0), t.dimScalar(n), scalar(1)], [n], 'int64');
    let x = affine(idx, 16807, s1, P[0], [n]);
    // three rounds of x <- x^2 + c (mod a prime < 2^31; x^2 < 2^62 fits int64)
    for (let r = 0; r < 3; r++) {
      x = int('Mod', int('Add', int('Mul', x, x, [n]), scalar(C[r] as number), [n]), scalar(P[r] as number), [
        n,
      ]);
      if (r === 0) x = int('Mod', int('Add', x, s2, [n]), scalar(P[r] as number), [n]);
    }
    const f = t.floatType;
    const u = raw(
      t,
      'Mul',
      [raw(t, 'Cast', [x], [n], f, { to: f === 'float32' ? 1 : 11 }), t.scalar(2 ** -31)],
      [n],
      f,
    );
    return reshape(raw(t, 'Less', [u, t.scalar(1 - rate)], [n], 'bool'), shape);
  }
}
