import { describe, expect, it } from 'vitest';
import { LanguageSampler } from './index.js';

describe('LanguageSampler', () => {
  it('uses probabilities proportional to n^alpha', () => {
    const s = new LanguageSampler({ en: 1000, sw: 10 }, { alpha: 0.5 });
    // hand-computed: sqrt(1000)=31.623, sqrt(10)=3.1623; p_en = 31.623/34.785 = 0.90909
    expect(s.langs).toEqual(['en', 'sw']);
    expect(s.probs[0]).toBeCloseTo(10 / 11, 10);
    const counts = { en: 0, sw: 0 };
    for (let i = 0; i < 20000; i++) counts[s.next().lang as 'en' | 'sw']++;
    expect(counts.en / 20000).toBeGreaterThan(0.9);
    expect(counts.en / 20000).toBeLessThan(0.918);
  });
  it('visits every item of a language once per epoch', () => {
    const s = new LanguageSampler({ a: 7 }, { seed: 3 });
    const seen = Array.from({ length: 7 }, () => s.next().index).sort();
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });
  it('a resumed sampler continues exactly like an uninterrupted one', () => {
    const sizes = { de: 50, en: 300, sw: 5 };
    const ref = new LanguageSampler(sizes, { seed: 42 });
    const a = new LanguageSampler(sizes, { seed: 42 });
    const expected = Array.from({ length: 400 }, () => ref.next());
    const got = Array.from({ length: 150 }, () => a.next());
    const state = JSON.parse(JSON.stringify(a.getState()));
    const b = new LanguageSampler(sizes, { seed: 999 });
    b.setState(state);
    for (let i = 0; i < 250; i++) got.push(b.next());
    expect(got).toEqual(expected);
  });
  it('rejects a state from different sizes', () => {
    const st = new LanguageSampler({ en: 3 }).getState();
    expect(() => new LanguageSampler({ en: 4 }).setState(st)).toThrow(/en/);
  });
});
