import { describe, expect, it } from 'vitest';
import { LrScheduler, lrMultiplier } from './schedule.js';

describe('lr schedules (transformers optimization.py lambdas)', () => {
  it('linear warm-up starts at 0, peaks at the end of warm-up and decays to 0 at the total', () => {
    const spec = { kind: 'linear' as const, warmupSteps: 5 };
    // step/5 during warm-up, then (20 - step)/15
    expect([0, 1, 4, 5, 6, 19, 20, 25].map((s) => lrMultiplier(spec, s, 20))).toEqual([
      0,
      0.2,
      0.8,
      1,
      14 / 15,
      1 / 15,
      0,
      0,
    ]);
  });

  it('cosine is 0.5 halfway through the decay and 0 at the end; constant stays at 1 after warm-up', () => {
    const cos = { kind: 'cosine' as const, warmupSteps: 10 };
    expect(lrMultiplier(cos, 10, 110)).toBeCloseTo(1, 12);
    expect(lrMultiplier(cos, 60, 110)).toBeCloseTo(0.5, 12);
    expect(lrMultiplier(cos, 110, 110)).toBeCloseTo(0, 12);
    expect(lrMultiplier({ kind: 'constant', warmupSteps: 4 }, 2, 100)).toBe(0.5);
    expect(lrMultiplier({ kind: 'constant' }, 99, 100)).toBe(1);
  });

  it('warmupRatio rounds up as transformers does, and the scheduler steps like LambdaLR', () => {
    const s = new LrScheduler({ kind: 'linear', warmupRatio: 0.1 }, 1e-3, 25); // ceil(2.5) = 3 warm-up steps
    const lrs: number[] = [];
    for (let i = 0; i < 4; i++) {
      lrs.push(s.lr());
      s.step();
    }
    expect(lrs[0]).toBe(0);
    expect(lrs[1]).toBeCloseTo(1e-3 / 3, 15);
    expect(lrs[3]).toBeCloseTo(1e-3, 15);
  });

  it('rejects a bad total or lr with a config error naming the field', () => {
    expect(() => new LrScheduler({ kind: 'linear' }, 1e-3, 0)).toThrow(/totalSteps/);
    expect(() => new LrScheduler({ kind: 'linear' }, Number.NaN, 10)).toThrow(/'lr'/);
  });
});
