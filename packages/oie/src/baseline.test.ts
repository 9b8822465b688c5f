import { sharedPath, sharedSkipReason } from '@xlt/core';
import { describe, expect, it } from 'vitest';
import { baselineExtract } from './baseline.js';
import { benchmarkMarkdown, runOieBenchmark } from './benchmark.js';

describe('baselines', () => {
  it('second-word: relation = word 2, arg0 = word 1, arg1 = the rest', () => {
    expect(baselineExtract(['Cats chase small mice .'], 'second-word')).toEqual([
      {
        sentence: 'Cats chase small mice .',
        relation: 'chase',
        args: ['Cats', 'small mice .'],
        confidence: 1,
      },
    ]);
  });

  it('verb-like: an auxiliary or -ed word with a following preposition, arguments up to punctuation', () => {
    const [t] = baselineExtract(['In 1990 , the old bridge was closed for repairs , they said .']);
    expect([t!.relation, ...t!.args]).toEqual(['was', 'the old bridge', 'closed for repairs']);
    const [u] = baselineExtract(['The team played in Paris .']);
    expect([u!.relation, ...u!.args]).toEqual(['played in', 'The team', 'Paris']);
    // nothing verb-like: falls back to the second word
    expect(baselineExtract(['Oh my god .'])[0]!.relation).toBe('my');
    expect(baselineExtract(['Too short'])).toEqual([]);
  });
});

const skip = sharedSkipReason('data/oie') ?? sharedSkipReason('fixtures');

describe.skipIf(skip !== undefined)('the recipe (runOieBenchmark) on a tiny budget', () => {
  it('trains, scores every requested set with the model and both baselines, and tabulates them', async () => {
    const logs: string[] = [];
    const res = await runOieBenchmark({
      dataDir: sharedPath('data', 'oie'),
      tokenizerFile: sharedPath('fixtures', 'tokenizer', 'tokenizer.json'),
      trainLimit: 20,
      evalLimit: 8,
      sets: ['carb', 'reoie-es', 'benchie-zh'],
      training: {
        size: {
          hiddenSize: 32,
          numLayers: 1,
          numHeads: 2,
          maxLength: 64,
          oie: { pos_emb_dim: 16, n_arg_heads: 2 },
        },
        steps: 3,
        batchSize: 4,
        threads: 1,
        pretrain: { sentences: ['Ein kurzer Satz .'], steps: 2, batchSize: 4 },
      },
      log: (m) => logs.push(m),
    });
    expect(res.conversion.sentences).toBe(20);
    expect(res.losses).toHaveLength(3);
    expect(res.rows.map((r) => `${r.benchmark}/${r.lang}/${r.system}`)).toEqual([
      'CaRB/en/model',
      'CaRB/en/baseline:verb-like',
      'CaRB/en/baseline:second-word',
      'Re-OIE2016/es/model',
      'Re-OIE2016/es/baseline:verb-like',
      'Re-OIE2016/es/baseline:second-word',
      'BenchIE/zh/model',
      'BenchIE/zh/baseline:verb-like',
      'BenchIE/zh/baseline:second-word',
    ]);
    for (const r of res.rows) {
      expect(r.sentences).toBe(8);
      for (const v of [r.precision, r.recall, r.f1]) expect(v >= 0 && v <= 1).toBe(true);
      expect(r.auc === undefined).toBe(r.benchmark === 'BenchIE');
    }
    // the trainer's lines: each run names its engine, then progress (`[stage] step N/total ...`)
    expect(logs).toContain('[mlm] engine onnxruntime: supported model and head loss');
    expect(logs).toContain('[oie] engine onnxruntime: supported model and head loss');
    expect(logs.some((l) => l.startsWith('[mlm] step 2/2'))).toBe(true);
    const md = benchmarkMarkdown(res.rows);
    expect(md.split('\n')).toHaveLength(2 + 9 + 1);
    expect(md).toMatch(/\| CaRB \| en \| model \| 8 \|/);
  });
});
