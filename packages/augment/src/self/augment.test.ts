import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Rng, sharedPath, sharedSkipReason } from '@xlt/core';
import { exportToOnnx, OnnxModel, readEncoderConfig, safetensorsWeights } from '@xlt/onnx';
import { beforeAll, describe, expect, it } from 'vitest';
import { onnxMaskedLm, selfAugment } from './augment.js';
import { TokenLanguageProfile } from './profile.js';

const SPECIAL = new Set([0, 1, 2, 3, 2001]);

describe('token language profile', () => {
  it('assigns tokens used mostly by one language and leaves shared ones out', () => {
    const p = TokenLanguageProfile.fromIds(
      new Map([
        [
          'de',
          [
            [10, 11, 12, 50],
            [10, 11, 50, 12],
          ],
        ],
        [
          'fr',
          [
            [20, 21, 50],
            [20, 21, 50, 20],
          ],
        ],
      ]),
      { minCount: 2, dominance: 3 },
    );
    expect(p.languageOf(10)).toBe('de');
    expect(p.languageOf(20)).toBe('fr');
    expect(p.languageOf(50)).toBeUndefined(); // used by both
    expect(p.sizes()).toEqual({ de: 3, fr: 2 });
  });
});

describe.skipIf(sharedSkipReason('fixtures') !== undefined)(
  'self-augmentation with the fixture X-Mod masked LM (onnxruntime)',
  () => {
    let model: OnnxModel;
    let ids: number[][];
    let langs: number[];
    beforeAll(async () => {
      const dir = sharedPath('fixtures', 'xmod-postnorm', 'mlm');
      const w = safetensorsWeights(path.join(dir, 'model.safetensors'));
      model = await OnnxModel.load(exportToOnnx({ config: readEncoderConfig(dir), weights: w }).model, {
        threads: 1,
      });
      w.close();
      const ref = JSON.parse(readFileSync(sharedPath('fixtures', 'xmod-postnorm', 'reference.json'), 'utf8'));
      // the reference rows without their padding
      ids = (ref.inputs.input_ids as number[][]).map((row, i) =>
        row.filter((_, j) => ref.inputs.attention_mask[i][j] === 1),
      );
      langs = ref.inputs.lang_ids;
    });
    const opts = () => ({
      model: onnxMaskedLm(model),
      maskTokenId: 2001,
      padTokenId: 1,
      specialIds: SPECIAL,
    });

    it('replaces the configured ratio of positions with different tokens and never touches specials', async () => {
      const ex = ids.map((row, i) => ({ ids: row, lang: langs[i] as number }));
      const out = await selfAugment(ex, { ...opts(), ratio: 0.25, rng: new Rng(1) });
      out.forEach((r, i) => {
        const row = ex[i]!.ids;
        const eligible = row.filter((t) => !SPECIAL.has(t)).length;
        expect(r.replaced.length + r.kept.length).toBe(Math.round(0.25 * eligible));
        expect(r.replaced.length).toBe(Math.round(0.25 * eligible));
        for (const { position, from, to } of r.replaced) {
          expect(to).not.toBe(from);
          expect(SPECIAL.has(to)).toBe(false);
          expect(SPECIAL.has(from)).toBe(false);
          expect(r.ids[position]).toBe(to);
        }
        // everything else is unchanged, specials included
        const changed = new Set(r.replaced.map((x) => x.position));
        r.ids.forEach((t, j) => {
          if (!changed.has(j)) expect(t).toBe(row[j]);
        });
      });
    });

    it('is reproducible with a seed and independent of the batch size', async () => {
      const ex = ids.map((row, i) => ({ ids: row, lang: langs[i] as number }));
      const a = await selfAugment(ex, { ...opts(), ratio: 0.3, rng: new Rng(5), batchSize: 4 });
      const b = await selfAugment(ex, { ...opts(), ratio: 0.3, rng: new Rng(5), batchSize: 1 });
      const c = await selfAugment(ex, { ...opts(), ratio: 0.3, rng: new Rng(6), batchSize: 4 });
      expect(a).toEqual(b);
      expect(a).not.toEqual(c);
    });

    it('with top-k 1 and temperature the choice is the model argmax among allowed tokens', async () => {
      const ex = [{ ids: ids[0]!, lang: langs[0] as number }];
      const r = (await selfAugment(ex, { ...opts(), ratio: 0.2, topK: 1, rng: new Rng(2) }))[0]!;
      const masked = [...ex[0]!.ids];
      for (const { position } of r.replaced) masked[position] = 2001;
      const { data, dims } = await onnxMaskedLm(model).predict({
        inputIds: [masked],
        attentionMask: [masked.map(() => 1)],
        langIds: [langs[0]!],
      });
      const V = dims[2]!;
      for (const { position, from, to } of r.replaced) {
        let best = -1;
        for (let v = 0; v < V; v++)
          if (
            v !== from &&
            !SPECIAL.has(v) &&
            (best < 0 || data[position * V + v]! > data[position * V + best]!)
          )
            best = v;
        expect(to).toBe(best);
      }
    });

    it('keeps only proposals of the target language', async () => {
      // a profile where even token ids belong to "xx" and odd ones to "yy"
      const even = Array.from({ length: 1000 }, (_, i) => 4 + 2 * (i % 998));
      const odd = even.map((v) => v + 1);
      const profile = TokenLanguageProfile.fromIds(
        new Map([
          ['xx', [even, even, even]],
          ['yy', [odd, odd, odd]],
        ]),
      );
      const ex = ids.map((row, i) => ({ ids: row, lang: langs[i] as number }));
      const out = await selfAugment(ex, {
        ...opts(),
        ratio: 0.3,
        targetLanguages: ['yy'],
        profile,
        rng: new Rng(3),
      });
      const all = out.flatMap((r) => r.replaced);
      expect(all.length).toBeGreaterThan(0);
      for (const { to } of all) expect(profile.languageOf(to)).toBe('yy');
    });

    it('in word mode replaces only tokens that are whole words', async () => {
      const row = ids[1]!;
      // words: every pair of tokens forms one word, except tokens at odd positions 1..3 being single words
      const wordIds = row.map((_, j) =>
        j === 0 || j === row.length - 1 ? null : j <= 3 ? j : 4 + Math.floor((j - 4) / 2),
      );
      const r = (
        await selfAugment([{ ids: row, wordIds, lang: langs[1]! }], {
          ...opts(),
          ratio: 1,
          unit: 'word',
          rng: new Rng(4),
        })
      )[0]!;
      const positions = r.replaced
        .map((x) => x.position)
        .concat(r.kept)
        .sort((a, b) => a - b);
      const singles = row
        .map((_, j) => j)
        .filter((j) => {
          const w = wordIds[j];
          return w !== null && wordIds[j - 1] !== w && wordIds[j + 1] !== w && !SPECIAL.has(row[j]!);
        });
      expect(positions).toEqual(singles);
    });
  },
);

describe('self-augmentation candidates (embedding mixup)', () => {
  it('keeps each replaced position top-k candidates with weights summing to 1, the sampled token among them', async () => {
    const V = 12;
    // logits rising with the token id: the top 3 allowed are 11, 10, 9 (minus the original)
    const model = {
      predict: async (b: { inputIds: number[][] }) => {
        const S = (b.inputIds[0] as number[]).length;
        const data = new Float32Array(b.inputIds.length * S * V);
        for (let i = 0; i < data.length; i++) data[i] = (i % V) / 2;
        return { data, dims: [b.inputIds.length, S, V] };
      },
    };
    const res = await selfAugment([{ ids: [0, 5, 6, 7, 11, 2] }], {
      model,
      maskTokenId: 3,
      padTokenId: 1,
      specialIds: new Set([0, 1, 2, 3]),
      ratio: 1,
      topK: 3,
      keepCandidates: true,
      rng: new Rng(1),
    });
    const r = res[0] as (typeof res)[number];
    expect(r.replaced.map((x) => x.position)).toEqual([1, 2, 3, 4]);
    expect(r.candidates?.map((c) => c.position)).toEqual([1, 2, 3, 4]);
    for (const c of r.candidates ?? []) {
      expect(c.ids).toHaveLength(3);
      expect(c.probs.reduce((a, x) => a + x, 0)).toBeCloseTo(1, 6);
      expect(c.ids).toContain(r.ids[c.position]);
      expect(c.ids).not.toContain(r.replaced.find((x) => x.position === c.position)?.from);
    }
    // position 4 held 11 (the top logit), so its candidates are the next three
    expect(r.candidates?.[3]?.ids).toEqual([10, 9, 8]);
    const plain = await selfAugment([{ ids: [0, 5, 2] }], {
      model,
      maskTokenId: 3,
      padTokenId: 1,
      specialIds: new Set([0, 1, 2, 3]),
      rng: new Rng(1),
    });
    expect(plain[0]?.candidates).toBeUndefined();
  });
});
