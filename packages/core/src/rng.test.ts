import { describe, expect, it } from 'vitest';
import { Rng } from './rng.js';

describe('Rng', () => {
  it('gives the same sequence for the same seed and different ones for different seeds', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const sa = Array.from({ length: 20 }, () => a.nextUint32());
    const sb = Array.from({ length: 20 }, () => b.nextUint32());
    const sc = Array.from({ length: 20 }, () => c.nextUint32());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
  });

  it('resumes exactly from a saved state, including the cached normal deviate', () => {
    const a = new Rng(7);
    a.normal();
    const state = JSON.parse(JSON.stringify(a.getState()));
    const rest = [a.normal(), a.next(), a.int(10), a.normal()];
    const b = Rng.fromState(state);
    expect([b.normal(), b.next(), b.int(10), b.normal()]).toEqual(rest);
  });

  it('has uniform floats with mean 1/2 and normals with mean 0 and variance 1', () => {
    const r = new Rng(1);
    const n = 200_000;
    let s = 0;
    let m = 0;
    let v = 0;
    for (let i = 0; i < n; i++) {
      const u = r.next();
      expect(u >= 0 && u < 1).toBe(true);
      s += u;
      const z = r.normal();
      m += z;
      v += z * z;
    }
    // standard errors: uniform mean 0.29/sqrt(n) ~ 6.5e-4; normal mean 1/sqrt(n) ~ 2.2e-3
    expect(Math.abs(s / n - 0.5)).toBeLessThan(4e-3);
    expect(Math.abs(m / n)).toBeLessThan(1e-2);
    expect(Math.abs(v / n - 1)).toBeLessThan(2e-2);
  });

  it('draws categories in proportion to their weights', () => {
    const r = new Rng(3);
    const counts = [0, 0, 0];
    for (let i = 0; i < 60_000; i++) counts[r.categorical([1, 2, 3])]! += 1;
    expect(counts[0]! / 60_000).toBeCloseTo(1 / 6, 1);
    expect(counts[2]! / 60_000).toBeCloseTo(3 / 6, 1);
    expect(() => r.categorical([0, 0])).toThrow(/positive weight/);
    expect(() => r.categorical([1, -1])).toThrow(/weight 1/);
  });

  it('draws Beta(a, a) with mean 1/2 and the right variance', () => {
    const r = new Rng(5);
    const n = 50_000;
    let m = 0;
    let v = 0;
    const xs: number[] = [];
    for (let i = 0; i < n; i++) xs.push(r.beta(0.4, 0.4));
    for (const x of xs) m += x;
    m /= n;
    for (const x of xs) v += (x - m) ** 2;
    v /= n;
    // Var Beta(a,a) = 1 / (4 (2a + 1)) = 1/7.2
    expect(m).toBeCloseTo(0.5, 1);
    expect(v).toBeCloseTo(1 / 7.2, 2);
  });

  it('forks independent streams without advancing the parent', () => {
    const a = new Rng(9);
    const before = a.getState();
    const f1 = a.fork('dropout');
    const f2 = a.fork('masking');
    expect(a.getState()).toEqual(before);
    expect(f1.nextUint32()).not.toBe(f2.nextUint32());
    expect(new Rng(9).fork('dropout').nextUint32()).toBe(new Rng(9).fork('dropout').nextUint32());
  });

  it('shuffles into a permutation', () => {
    const xs = Array.from({ length: 50 }, (_, i) => i);
    const s = new Rng(11).shuffle([...xs]);
    expect(s).not.toEqual(xs);
    expect([...s].sort((p, q) => p - q)).toEqual(xs);
  });
});
