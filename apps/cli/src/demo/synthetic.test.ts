import { describe, expect, it } from 'vitest';
import { buildDemoBenchmark, DEMO_LABELS } from './synthetic.js';

describe('synthetic demo benchmark', () => {
  it('is deterministic for a seed and differs across seeds', () => {
    const a = buildDemoBenchmark({
      seed: 1,
      rawSentencesPerLanguage: 50,
      trainSize: 20,
      testSizePerLanguage: 10,
    });
    const b = buildDemoBenchmark({
      seed: 1,
      rawSentencesPerLanguage: 50,
      trainSize: 20,
      testSizePerLanguage: 10,
    });
    const c = buildDemoBenchmark({
      seed: 2,
      rawSentencesPerLanguage: 50,
      trainSize: 20,
      testSizePerLanguage: 10,
    });
    expect(a.train).toEqual(b.train);
    expect([...a.raw.get('xa')!]).toEqual([...b.raw.get('xa')!]);
    expect(a.raw.get('xa')).not.toEqual(c.raw.get('xa'));
  });

  it('gives each language its own vocabulary but shares names and digits (no cognates)', () => {
    const bm = buildDemoBenchmark({
      seed: 3,
      numLanguages: 4,
      rawSentencesPerLanguage: 300,
      cognateRatio: 0,
    });
    const vocab = new Map<string, Set<string>>();
    for (const [code, lines] of bm.raw) vocab.set(code, new Set(lines.flatMap((l) => l.split(' '))));
    const en = vocab.get('en')!;
    const xa = vocab.get('xa')!;
    const shared = [...en].filter((w) => xa.has(w));
    // only proper names (capitalised) and numbers may be shared
    expect(shared.length).toBeGreaterThan(0);
    expect(shared.every((w) => /^[A-Z][a-z]+$/.test(w) || /^\d+$/.test(w))).toBe(true);
    expect(bm.languages.map((l) => l.code)).toEqual(['en', 'xa', 'xb', 'xc']);
  });

  it('shares about the configured fraction of the lexicon as cognates', () => {
    const bm = buildDemoBenchmark({ seed: 3, numLanguages: 4, cognateRatio: 0.4 });
    for (const lang of bm.languages.slice(1)) {
      const same = [...lang.lexicon].filter(([c, w]) => c === w).length / lang.lexicon.size;
      expect(same).toBeGreaterThan(0.25);
      expect(same).toBeLessThan(0.55);
    }
    expect(() => buildDemoBenchmark({ cognateRatio: 2 })).toThrow(/cognateRatio/);
  });

  it('has labels in range with every class present, and word orders that differ', () => {
    const bm = buildDemoBenchmark({ seed: 4, trainSize: 400 });
    const counts = new Array(DEMO_LABELS.length).fill(0);
    for (const ex of bm.train) counts[ex.label]++;
    expect(counts.every((n) => n > 40)).toBe(true);
    expect(new Set(bm.languages.map((l) => l.order)).size).toBeGreaterThan(1);
    // the same subject concept in en and in an SOV/VSO language
    for (const [, exs] of bm.test)
      expect(exs.every((e) => e.label >= 0 && e.label < DEMO_LABELS.length)).toBe(true);
  });

  it('rejects an impossible number of languages', () => {
    expect(() => buildDemoBenchmark({ numLanguages: 1 })).toThrow(/numLanguages/);
    expect(() => buildDemoBenchmark({ numLanguages: 99 })).toThrow(/numLanguages/);
  });
});

describe('selectional preferences', () => {
  it("make a sentence's verb depend on its subject's class (what lets pre-training align languages)", () => {
    const bm = buildDemoBenchmark({ seed: 5, trainSize: 2000 });
    // English training sentences are SVO: the verb follows the subject noun phrase
    const verbsByClass = new Map<number, Map<string, number>>();
    for (const ex of bm.train) {
      const words = ex.text.split(' ');
      const verb = words.find((w) =>
        [
          'chase',
          'bite',
          'smell',
          'buy',
          'write',
          'teach',
          'spoil',
          'nourish',
          'sweeten',
          'cut',
          'break',
          'fix',
        ].includes(w),
      );
      if (verb === undefined) continue;
      const m = verbsByClass.get(ex.label) ?? new Map<string, number>();
      m.set(verb, (m.get(verb) ?? 0) + 1);
      verbsByClass.set(ex.label, m);
    }
    // each class's preferred verbs are (almost) only used with that class
    const animal = verbsByClass.get(DEMO_LABELS.indexOf('animal'))!;
    const tool = verbsByClass.get(DEMO_LABELS.indexOf('tool'))!;
    expect((animal.get('bite') ?? 0) + (animal.get('chase') ?? 0)).toBeGreaterThan(100);
    expect(tool.get('bite') ?? 0).toBe(0);
    expect((tool.get('cut') ?? 0) + (tool.get('fix') ?? 0)).toBeGreaterThan(100);
  });
});
