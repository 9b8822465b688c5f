import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sharedPath, sharedSkipReason } from '@xlt/core';
import { type CarbSentence, readCarb } from '@xlt/data';
import { carbGold, carbScore } from '@xlt/evaluator';
import { XltTokenizer } from '@xlt/tokenizer';
import { XmodForMaskedLM } from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import { baselineExtract } from './baseline.js';
import { fromCarb, type OieExample } from './convert.js';
import { extract } from './extract.js';
import { OieModel } from './model.js';
import { trainOie } from './train.js';

const skip = sharedSkipReason('fixtures') ?? sharedSkipReason('data/oie');
/** A tiny model: one layer of 32 units, inputs of at most 32 tokens. */
const TINY = {
  hiddenSize: 32,
  numLayers: 1,
  numHeads: 2,
  maxLength: 32,
  oie: { pos_emb_dim: 16, n_arg_heads: 2 },
};
let tok: XltTokenizer;

describe.skipIf(skip !== undefined)('training and extraction (fixture tokenizer)', () => {
  beforeAll(async () => {
    tok = await XltTokenizer.fromFile(sharedPath('fixtures', 'tokenizer', 'tokenizer.json'));
  });

  it('MT4CrossIE stages: embeddings + head, then all but embeddings, then a live LoRA mixture + head', async () => {
    const { examples } = fromCarb([
      {
        sentence: 'The committee approved the new budget on Monday .',
        tuples: [{ relation: 'approved', args: ['The committee', 'the new budget', 'on Monday'] }],
      },
      {
        sentence: 'Scientists discovered a new species in the forest .',
        tuples: [{ relation: 'discovered', args: ['Scientists', 'a new species', 'in the forest'] }],
      },
    ]);
    const size = TINY;
    const res = await trainOie({
      tokenizer: tok,
      examples,
      size,
      stages: [
        { name: 's1', trainable: 'embeddings+head', steps: 30 },
        { name: 's2', trainable: 'all-but-embeddings', steps: 60 },
        { name: 's3', trainable: 'lora+head', steps: 30 },
      ],
      lora: { r: 4, alpha: 8, languages: ['en', 'de'], mode: 'router' },
      batchSize: 2,
      lr: 1e-2,
      warmup: 0.05,
      seed: 0,
      threads: 1,
    });
    expect(res.stages.map((s) => s.name)).toEqual(['s1', 's2', 's3']);
    // stage 1: word embeddings + the head's tensors; stage 3: the head + 2 experts x (A, B) + router on query and value
    const head = res.stages[0]!.trainable - 1;
    expect(res.stages[2]!.trainable).toBe(head + 2 * (2 * 2 + 1));
    for (const s of res.stages) expect(s.lastLoss).toBeLessThan(s.firstLoss);
    expect([...(res.loraMixtures?.keys() ?? [])]).toEqual([
      'roberta.encoder.layer.0.attention.self.query',
      'roberta.encoder.layer.0.attention.self.value',
    ]);
    // stage 3 moved LoRA B away from its zero init (the mixture really trained)
    const b = res.weights.get('roberta.encoder.layer.0.attention.self.query.experts.en.lora_B.weight').data;
    expect(b.some((v) => v !== 0)).toBe(true);
    // the exported model runs with the mixture live and still extracts the training tuples
    const out = await extract(res.model, ['The committee approved the new budget on Monday .']);
    expect(out[0]?.relation).toBe('approved');
    await res.model.release();
  });

  it('the Open IE head trains through fit on onnxruntime (auto, logged) with the losses of tfjs within 1e-3 over 20 steps', async () => {
    const { examples } = fromCarb([
      {
        sentence: 'The committee approved the new budget on Monday .',
        tuples: [{ relation: 'approved', args: ['The committee', 'the new budget', 'on Monday'] }],
      },
      {
        sentence: 'Scientists discovered a new species in the forest .',
        tuples: [{ relation: 'discovered', args: ['Scientists', 'a new species', 'in the forest'] }],
      },
      {
        sentence: 'The company opened a factory in Brazil .',
        tuples: [{ relation: 'opened', args: ['The company', 'a factory', 'in Brazil'] }],
      },
    ]);
    const runs = [];
    for (const engine of ['tfjs', undefined] as const) {
      const lines: string[] = [];
      const res = await trainOie({
        tokenizer: tok,
        examples,
        size: TINY,
        steps: 20,
        batchSize: 2,
        lr: 5e-3,
        seed: 3,
        threads: 1,
        ...(engine !== undefined ? { engine } : {}),
        log: (l) => lines.push(l),
      });
      await res.model.release();
      runs.push({ res, lines });
    }
    const [tfjs, auto] = runs as [(typeof runs)[0], (typeof runs)[0]];
    expect(tfjs.res.stages[0]?.engine).toBe('tfjs');
    expect(auto.res.stages[0]?.engine).toBe('onnxruntime');
    expect(auto.lines[0]).toBe('[oie] engine onnxruntime: supported model and head loss');
    expect(tfjs.lines[0]).toBe('[oie] engine tfjs: asked for');
    expect(auto.lines.at(-1)).toMatch(/^\[oie\] 20 steps, \d+ trainable tensors, loss /);
    expect(auto.res.losses.length).toBe(20);
    for (let s = 0; s < 20; s++)
      expect(Math.abs(auto.res.losses[s]! - tfjs.res.losses[s]!), `step ${s + 1}`).toBeLessThan(1e-3);
    expect(auto.res.losses[19]!).toBeLessThan(auto.res.losses[0]!);
  });

  it('masked-LM pre-training runs through fit first (logged as the mlm stage), then the Open IE run', async () => {
    const { examples } = fromCarb([
      {
        sentence: 'The committee approved the new budget on Monday .',
        tuples: [{ relation: 'approved', args: ['The committee', 'the new budget'] }],
      },
    ]);
    const lines: string[] = [];
    const stages: string[] = [];
    const res = await trainOie({
      tokenizer: tok,
      examples,
      size: TINY,
      pretrain: {
        sentences: ['Scientists discovered a new species in the forest .'],
        steps: 6,
        batchSize: 2,
      },
      steps: 2,
      batchSize: 1,
      threads: 1,
      log: (l) => lines.push(l),
      onProgress: (p) => stages.push(`${p.stage} ${p.step}/${p.total}`),
    });
    expect(res.mlmLosses.length).toBe(6);
    for (const l of res.mlmLosses) expect(Number.isFinite(l) && l > 0).toBe(true);
    expect(lines[0]).toBe('[mlm] engine onnxruntime: supported model and head loss');
    expect(lines).toContain('[oie] engine onnxruntime: supported model and head loss');
    expect(stages.at(5)).toBe('mlm 6/6');
    expect(stages.at(-1)).toBe('oie 2/2');
    await res.model.release();
  });

  it('a tiny model memorises two sentences end to end: tags, export, two-step extraction, save and load', async () => {
    const { examples } = fromCarb([
      {
        sentence: 'The committee approved the new budget on Monday .',
        tuples: [{ relation: 'approved', args: ['The committee', 'the new budget', 'on Monday'] }],
      },
      {
        sentence: 'Scientists discovered a new species in the forest .',
        tuples: [{ relation: 'discovered', args: ['Scientists', 'a new species', 'in the forest'] }],
      },
    ]);
    const res = await trainOie({
      tokenizer: tok,
      examples,
      size: TINY,
      steps: 80,
      batchSize: 2,
      lr: 1e-2,
      warmup: 0.05,
      seed: 0,
      threads: 1,
    });
    expect(res.rows).toBe(2);
    expect(res.losses.at(-1)!).toBeLessThan(res.losses[0]! / 10);
    const sents = [
      'The committee approved the new budget on Monday .',
      'Scientists discovered a new species in the forest .',
    ];
    const out = await extract(res.model, sents);
    expect(out.map((t) => [t.relation, ...t.args])).toEqual([
      ['approved', 'The committee', 'the new budget', 'on Monday'],
      ['discovered', 'Scientists', 'a new species', 'in the forest'],
    ]);
    for (const t of out) expect(t.confidence).toBeGreaterThan(0.5);
    const dir = mkdtempSync(path.join(tmpdir(), 'oie-'));
    try {
      res.model.save(path.join(dir, 'oie.onnx'));
      const back = await OieModel.load(path.join(dir, 'oie.onnx'), tok, { threads: 1 });
      expect(back.maxLength).toBe(32);
      expect(await extract(back, sents)).toEqual(out);
      await back.release();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await res.model.release();
  });

  it('starts from a pre-trained encoder folder: encoder tensors from the checkpoint, a new head', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'oie-enc-'));
    try {
      const cfg = {
        model_type: 'xlm-roberta',
        vocab_size: tok.vocabSize,
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 64,
        max_position_embeddings: 34,
      };
      const mlm = new XmodForMaskedLM(cfg);
      await mlm.savePretrained(path.join(dir, 'mlm'));
      const q = 'roberta.encoder.layer.0.attention.self.query.weight';
      const want = mlm.getParameter(q).dataSync().slice();
      const { examples } = fromCarb([
        {
          sentence: 'The committee approved the new budget on Monday .',
          tuples: [{ relation: 'approved', args: ['The committee', 'the new budget'] }],
        },
      ]);
      const res = await trainOie({
        tokenizer: tok,
        examples,
        encoder: path.join(dir, 'mlm'),
        size: { oie: { pos_emb_dim: 16, n_arg_heads: 2 } },
        stages: [{ name: 'head', trainable: 'embeddings+head', steps: 3 }],
        batchSize: 1,
        threads: 1,
      });
      expect(res.config.hidden_size).toBe(32);
      expect(res.model.maxLength).toBe(32); // max_position_embeddings - 2
      // frozen encoder tensors are the checkpoint's; the head trained
      expect(Array.from(res.weights.get(q).data)).toEqual(Array.from(want));
      expect(res.stages[0]!.trainable).toBeGreaterThan(1);
      await res.model.release();
      const bad = new XmodForMaskedLM({ ...cfg, vocab_size: 100 });
      await bad.savePretrained(path.join(dir, 'bad'));
      await expect(
        trainOie({ tokenizer: tok, examples, encoder: path.join(dir, 'bad'), steps: 1 }),
      ).rejects.toThrow(/vocab_size 100 differs from the tokenizer's/);
      await expect(
        trainOie({ tokenizer: tok, examples, encoder: path.join(dir, 'none'), steps: 1 }),
      ).rejects.toThrow(/config.json/);
      mlm.dispose();
      bad.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('starts from a pre-trained X-Mod encoder: rows run through their language modules, which stay frozen', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'oie-xmod-'));
    try {
      const mlm = new XmodForMaskedLM({
        model_type: 'xmod',
        vocab_size: tok.vocabSize,
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 64,
        max_position_embeddings: 34,
        languages: ['en', 'de'],
        default_language: 'en',
      });
      await mlm.savePretrained(path.join(dir, 'mlm'));
      const adapter = 'roberta.encoder.layer.0.output.adapter_modules.de.dense1.weight';
      const dense = 'roberta.encoder.layer.0.attention.self.query.weight';
      const before = {
        adapter: mlm.getParameter(adapter).dataSync().slice(),
        dense: mlm.getParameter(dense).dataSync().slice(),
      };
      const sents = [
        {
          sentence: 'The committee approved the new budget on Monday .',
          rel: 'approved',
          args: ['The committee', 'the new budget'],
        },
        {
          sentence: 'Der Ausschuss genehmigte den Haushalt .',
          rel: 'genehmigte',
          args: ['Der Ausschuss', 'den Haushalt'],
        },
      ];
      const examples = sents.map(
        (x, i) =>
          ({
            ...(fromCarb([{ sentence: x.sentence, tuples: [{ relation: x.rel, args: x.args }] }])
              .examples[0] as OieExample),
            lang: i === 0 ? 'en' : 'de',
          }) as OieExample,
      );
      const res = await trainOie({
        tokenizer: tok,
        examples,
        encoder: path.join(dir, 'mlm'),
        size: { oie: { pos_emb_dim: 16, n_arg_heads: 2 } },
        stages: [{ name: 'finetune', trainable: 'xmod-finetune', steps: 40 }],
        batchSize: 2,
        lr: 1e-2,
        threads: 1,
      });
      expect(res.config.architectures).toEqual(['XmodForOpenIE']);
      expect(res.stages[0]!.lastLoss).toBeLessThan(res.stages[0]!.firstLoss);
      // language modules (and embeddings) frozen, the shared encoder trained
      expect(Array.from(res.weights.get(adapter).data)).toEqual(Array.from(before.adapter));
      expect(Array.from(res.weights.get(dense).data)).not.toEqual(Array.from(before.dense));
      // extraction through the German modules
      const out = await extract(res.model, [sents[1]!.sentence], { language: 'de' });
      expect(out[0]?.relation).toBe('genehmigte');
      await res.model.release();
      mlm.dispose();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('trained on 500 CaRB dev sentences, beats the second-word baseline on the 141 held-out ones', async () => {
    const s: CarbSentence[] = [];
    for await (const x of readCarb(sharedPath('data', 'oie', 'carb-data_gold_dev.tsv'))) s.push(x);
    const train = s.slice(0, 500);
    const test = s.slice(500);
    const gold = carbGold(test);
    const sentences = test.map((x) => x.sentence);
    const res = await trainOie({
      tokenizer: tok,
      examples: fromCarb(train).examples,
      size: { hiddenSize: 64, numLayers: 2, numHeads: 4, maxLength: 96 },
      epochs: 4,
      batchSize: 16,
      lr: 5e-3,
      seed: 0,
      threads: 2,
    });
    const first = res.losses.slice(0, 20).reduce((a, b) => a + b, 0) / 20;
    const last = res.losses.slice(-20).reduce((a, b) => a + b, 0) / 20;
    expect(last).toBeLessThan(first * 0.8);
    const model = carbScore(gold, await extract(res.model, sentences, { predicateThreshold: 0.1 }));
    const second = carbScore(gold, baselineExtract(sentences, 'second-word'));
    const verb = carbScore(gold, baselineExtract(sentences, 'verb-like'));
    console.log(
      `held-out CaRB F1: model ${model.f1.toFixed(3)} (P ${model.precision.toFixed(3)} R ${model.recall.toFixed(3)} AUC ${model.auc.toFixed(3)}), ` +
        `second-word ${second.f1.toFixed(3)}, verb-like ${verb.f1.toFixed(3)}`,
    );
    expect(model.f1).toBeGreaterThan(second.f1 + 0.03);
    await res.model.release();
    // ~250 training steps and extraction: minutes on a busy 2-core machine
  }, 600_000);
});
