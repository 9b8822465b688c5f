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
 * Inverted dropout with in-graph masks: a counter-based uint32 hash of (element index, the int64
 * scalar input `dropout_seed`, site number) compared with a threshold (see {@link keep}), so a
 * step's masks depend only on its seed and the forward's order of sites.
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

  /**
   * A fresh bool mask, true where kept (with probability 1 - rate): element i of site k keeps when
   * fmix32((i * 0x9E3779B1) xor key) < (1 - rate) 2^32, in uint32 arithmetic (MurmurHash3's
   * finaliser, a bijection with full avalanche), where key = fmix32(seed * 0x85EBCA77 + fmix32(k + 1))
   * mixes the step's seed and the site. Ten uint32 passes an element; the int64 hash it replaced
   * (five `Mod`s an element) took 27-37% of a small model's fine-tuning step.
   */
  keep(shape: readonly Dim[], rate: number): Value {
    const t = this.t;
    if (this.seed === undefined) this.seed = t.input('dropout_seed', [], 'int64');
    const site = this.site++;
    const n = dimProduct(shape);
    const u32 = (v: number) => t.constant([v >>> 0], [], 'uint32');
    const op = (name: string, a: Value, b: Value, s: readonly Dim[], attrs?: Record<string, string>) =>
      raw(t, name, [a, b], s, 'uint32', attrs);
    const fmix = (x: Value, s: readonly Dim[]) => {
      const shift = (v: Value, k: number) =>
        op('BitwiseXor', v, op('BitShift', v, u32(k), s, { direction: 'RIGHT' }), s);
      const h = op('Mul', shift(x, 16), u32(0x85ebca6b), s);
      return shift(op('Mul', shift(h, 13), u32(0xc2b2ae35), s), 16);
    };
    const seed32 = raw(t, 'Cast', [this.seed], [], 'uint32', { to: 12 });
    const key = fmix(op('Add', op('Mul', seed32, u32(0x85ebca77), []), u32(fmix32(site + 1)), []), []);
    const idx = raw(
      t,
      'Cast',
      [raw(t, 'Range', [t.ints([0], []), t.dimScalar(n), t.ints([1], [])], [n], 'int64')],
      [n],
      'uint32',
      { to: 12 },
    );
    const h = fmix(op('BitwiseXor', op('Mul', idx, u32(0x9e3779b1), [n]), key, [n]), [n]);
    const threshold = Math.min(2 ** 32 - 1, Math.round((1 - rate) * 2 ** 32));
    return reshape(raw(t, 'Less', [h, u32(threshold)], [n], 'bool'), shape);
  }
}

/** MurmurHash3's 32-bit finaliser, in JS (the site keys; the graph computes the same on uint32). */
export function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}
