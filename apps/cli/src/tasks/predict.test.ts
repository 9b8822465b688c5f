import * as tf from '@tensorflow/tfjs-core';
import { Rng, sharedPath, sharedSkipReason } from '@xlt/core';
import { XltTokenizer } from '@xlt/tokenizer';
import { collateLabelled } from '@xlt/trainer';
import { describe, expect, it } from 'vitest';
import { applyMixture, loadTaskModel } from './model.js';
import {
  itemStats,
  logitsRunner,
  predict,
  readExamples,
  type Scored,
  statsScore,
  TASK_SPECS,
  taskScore,
} from './tasks.js';

const skip = sharedSkipReason('fixtures') ?? sharedSkipReason('data');

describe.skipIf(skip !== undefined)(`inference engines (${skip ?? 'shared data found'})`, () => {
  it('onnxruntime and tfjs give the same logits and predictions (token and sequence heads, a live LoRA mixture)', async () => {
    const tok = await XltTokenizer.fromFile(sharedPath('fixtures', 'tokenizer', 'tokenizer.json'));
    const ner = await readExamples('ner', sharedPath('data', 'panx', 'dev-de.tsv'), 24);
    const xnli = await readExamples('xnli', sharedPath('data', 'xnli', 'dev-de.tsv'), 24);
    const cases = [
      { dir: 'tokcls', task: 'ner' as const, examples: ner, mixture: false },
      { dir: 'tokcls', task: 'ner' as const, examples: ner, mixture: true },
      { dir: 'seqcls', task: 'xnli' as const, examples: xnli, mixture: false },
    ];
    const enc = await tok.encodeBatch(['Die Stadt liegt am Rhein .', 'Er wohnt in Berlin .'], {
      maxLength: 24,
    });
    for (const c of cases) {
      const kind = TASK_SPECS[c.task].kind;
      const model = await loadTaskModel(sharedPath('fixtures', 'xmod-postnorm', c.dir), kind);
      if (c.mixture) {
        applyMixture(model, {
          r: 2,
          alpha: 4,
          targetModules: ['query', 'value'],
          languages: ['en', 'de'],
          mode: 'router',
        });
        // non-zero B so that the mixture changes the outputs
        for (const [n, p] of model.namedParameters())
          if (n.includes('lora_B')) p.assign(tf.fill(p.shape, 0.3));
      }
      const n = model.config.num_labels ?? 2;
      const names = c.task === 'ner' ? TASK_SPECS.ner.labels : TASK_SPECS.xnli.labels;
      const labels = Array.from({ length: n }, (_, i) => names[i] ?? `L${i}`);
      const batch = collateLabelled(
        enc.map((e) => ({ inputIds: e.ids })),
        model.config.pad_token_id,
      );
      const preds: Array<string[][] | string[]> = [];
      const logits: Float32Array[] = [];
      for (const engine of ['tfjs', 'onnxruntime'] as const) {
        const runner = await logitsRunner(model, kind, { engine });
        expect(runner.engine).toBe(engine);
        preds.push(
          await predict(model, tok, c.task, c.examples, labels, {
            maxLength: 24,
            batchSize: 8,
            langId: 'de_DE',
            runner,
          }),
        );
        logits.push(await runner.run(batch, 'de_DE', undefined));
        await runner.release();
      }
      expect(preds[1]).toEqual(preds[0]);
      const [a, b] = logits as [Float32Array, Float32Array];
      expect(a.length).toBe(b.length);
      expect(a.length).toBeGreaterThan(0);
      let worst = 0;
      for (let i = 0; i < a.length; i++)
        worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
      expect(worst, `${c.dir}${c.mixture ? ' + mixture' : ''}`).toBeLessThan(1e-4);
      model.dispose();
    }
  });
});

describe('bootstrap statistics', () => {
  it('summed per-example statistics give exactly the official metric (ner, pos, xnli)', () => {
    const rng = new Rng(3);
    const tags = ['O', 'O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC', 'I-ORG'];
    const tagSeq = (n: number) => Array.from({ length: n }, () => tags[rng.int(tags.length)] as string);
    for (let trial = 0; trial < 5; trial++) {
      const ner: Scored[] = Array.from({ length: 60 }, () => {
        const n = 1 + rng.int(12);
        return { gold: tagSeq(n), pred: tagSeq(n) };
      });
      const sub = ner.filter(() => rng.next() < 0.6);
      for (const items of [ner, sub])
        expect(
          statsScore(
            'ner',
            items.map((x) => itemStats('ner', x)),
          ),
        ).toBeCloseTo(taskScore('ner', items), 10);
      const pos: Scored[] = ner.map((x) => ({
        gold: (x as { gold: string[] }).gold,
        pred: (x as { pred: string[] }).pred,
      }));
      expect(
        statsScore(
          'pos',
          pos.map((x) => itemStats('pos', x)),
        ),
      ).toBeCloseTo(taskScore('pos', pos), 10);
      const cls: Scored[] = Array.from({ length: 40 }, () => ({
        gold: String(rng.int(3)),
        pred: String(rng.int(3)),
      }));
      expect(
        statsScore(
          'xnli',
          cls.map((x) => itemStats('xnli', x)),
        ),
      ).toBeCloseTo(taskScore('xnli', cls), 10);
    }
  });
});
