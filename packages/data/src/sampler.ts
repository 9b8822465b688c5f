import { Rng, type RngState, XltConfigError, XltError } from '@xlt/core';

/** Options of {@link LanguageSampler}. */
export interface LanguageSamplerOptions {
  /** Exponent of n_l^alpha (default 0.3, as XLM-R). */
  alpha?: number;
  /** RNG seed (default 0). */
  seed?: number;
}

/** Serializable state of a {@link LanguageSampler}. */
export interface LanguageSamplerState {
  rng: RngState;
  /** Per language: the current shuffle order and position in it, and the epoch count. */
  streams: Record<string, { order: number[]; pos: number; epoch: number }>;
}

/** A sampled item: its language and its index in that language's dataset. */
export interface SampledItem {
  lang: string;
  index: number;
}

/**
 * Draws languages with probability proportional to n_l^alpha, then the next item of that language's
 * shuffled order (reshuffled each epoch). Seeded and resumable via getState/setState.
 */
export class LanguageSampler {
  readonly langs: string[];
  readonly probs: number[];
  private readonly sizes: number[];
  private rng: Rng;
  private streams: { order: number[]; pos: number; epoch: number }[];

  constructor(sizes: Record<string, number>, opts: LanguageSamplerOptions = {}) {
    const alpha = opts.alpha ?? 0.3;
    if (!Number.isFinite(alpha) || alpha < 0)
      throw new XltConfigError(`alpha must be >= 0, got ${alpha}`, { field: 'alpha' });
    this.langs = Object.keys(sizes).sort();
    if (this.langs.length === 0)
      throw new XltConfigError('at least one language is needed', { field: 'sizes' });
    this.sizes = this.langs.map((l) => {
      const n = sizes[l] as number;
      if (!Number.isInteger(n) || n <= 0)
        throw new XltConfigError(`size of '${l}' must be a positive integer, got ${n}`, { field: l });
      return n;
    });
    const w = this.sizes.map((n) => n ** alpha);
    const total = w.reduce((a, b) => a + b, 0);
    this.probs = w.map((x) => x / total);
    this.rng = new Rng(opts.seed ?? 0);
    this.streams = this.sizes.map((n) => ({ order: this.shuffled(n), pos: 0, epoch: 0 }));
  }

  private shuffled(n: number): number[] {
    const a = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.rng.int(i + 1);
      const t = a[i] as number;
      a[i] = a[j] as number;
      a[j] = t;
    }
    return a;
  }

  /** Draws the next item. */
  next(): SampledItem {
    const u = this.rng.next();
    let k = 0;
    let acc = this.probs[0] as number;
    while (u >= acc && k < this.probs.length - 1) {
      k += 1;
      acc += this.probs[k] as number;
    }
    const s = this.streams[k] as { order: number[]; pos: number; epoch: number };
    if (s.pos >= s.order.length) {
      s.order = this.shuffled(s.order.length);
      s.pos = 0;
      s.epoch += 1;
    }
    const index = s.order[s.pos] as number;
    s.pos += 1;
    return { lang: this.langs[k] as string, index };
  }

  /** A deep copy of the state (JSON-serializable). */
  getState(): LanguageSamplerState {
    const streams: LanguageSamplerState['streams'] = {};
    this.langs.forEach((l, i) => {
      const s = this.streams[i] as { order: number[]; pos: number; epoch: number };
      streams[l] = { order: [...s.order], pos: s.pos, epoch: s.epoch };
    });
    return { rng: this.rng.getState(), streams };
  }

  /** Restores a state from {@link getState} of a sampler over the same languages and sizes. */
  setState(state: LanguageSamplerState): void {
    const streams = this.langs.map((l, i) => {
      const s = state.streams[l];
      if (s === undefined || s.order.length !== this.sizes[i]) {
        throw new XltError('STATE', `state does not match language '${l}' of size ${this.sizes[i]}`, {
          field: l,
        });
      }
      return { order: [...s.order], pos: s.pos, epoch: s.epoch };
    });
    this.streams = streams;
    this.rng.setState(state.rng);
  }
}
