import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, Rng } from '@xlt/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { modelLoss, type TokenBatch } from './objectives.js';
import { applyTrainable } from './params.js';
import { type PresetName, preset, runStages, type Stage } from './stages.js';
import { snapshot, TinyModel, tinyBatch } from './test-model.js';

let ALL: string[] = [];
beforeAll(async () => {
  await initBackend();
  const m = new TinyModel(0);
  ALL = m.namedParameters().map(([n]) => n);
  m.dispose();
});
const isEmb = (n: string) => n.startsWith('roberta.embeddings.word_embeddings');
const isHead = (n: string) => n.startsWith('classifier.');
const isLora = (n: string) => n.includes('lora_');
const isModule = (n: string) => n.includes('.adapter_modules.');

/** The intended trainable set of each preset stage, written out independently of the selectors. */
const EXPECTED: Record<string, Array<(n: string) => boolean>> = {
  mt4crossie: [(n) => isEmb(n) || isHead(n), (n) => !isEmb(n), (n) => isLora(n) || isHead(n)],
  'xmod-pretrain': [() => true],
  'xmod-add-language': [(n) => n.includes('.adapter_modules.de_DE.')],
  'xmod-finetune': [(n) => !n.startsWith('roberta.embeddings.') && !isModule(n)],
  'full-finetune': [() => true],
};

describe('stages and presets', () => {
  for (const name of Object.keys(EXPECTED) as PresetName[]) {
    it(`${name}: exactly the intended parameters change in each stage, all others stay bit-identical`, async () => {
      const model = new TinyModel(31);
      const plans = preset(name, { language: 'de_DE' });
      const expected = EXPECTED[name] as Array<(n: string) => boolean>;
      expect(plans.length).toBe(expected.length);
      for (let i = 0; i < plans.length; i++) {
        const plan = plans[i] as (typeof plans)[0];
        const before = snapshot(model);
        const stage: Stage<TokenBatch> = { ...plan, lr: 1e-2, steps: 2, weightDecay: 0.01 };
        const [res] = await runStages<TokenBatch>(model, [stage], {
          loss: modelLoss(model),
          data: ({ rng }) => tinyBatch(rng),
        });
        const after = snapshot(model);
        const want = ALL.filter(expected[i] as (n: string) => boolean);
        expect(res?.trainableParameters.sort()).toEqual([...want].sort());
        for (const n of ALL) {
          const a = before.get(n) as Float32Array;
          const b = after.get(n) as Float32Array;
          const same = a.every((x, k) => x === b[k]);
          expect(same, `${name} stage ${i + 1} ${n}`).toBe(!want.includes(n));
        }
      }
      model.dispose();
    });
  }

  it('runs stages in sequence on the same model with their own lr and steps', async () => {
    const model = new TinyModel(32);
    const steps: Array<[string, number, number]> = [];
    const stages: Array<Stage<TokenBatch>> = [
      {
        name: 'a',
        trainable: { include: ['classifier'] },
        lr: 1e-2,
        steps: 2,
        schedule: { kind: 'constant' },
      },
      {
        name: 'b',
        trainable: { include: ['roberta.encoder.**'] },
        lr: 1e-3,
        epochs: 2,
        stepsPerEpoch: 1.5,
        schedule: { kind: 'constant' },
      },
    ];
    let stage = '';
    const res = await runStages<TokenBatch>(model, stages, {
      loss: modelLoss(model),
      data: ({ rng }) => tinyBatch(rng),
      callbacks: {
        onStep: (r) => {
          if (r.step === 1) stage = stage === '' ? 'a' : 'b';
          steps.push([stage, r.step, r.lr]);
        },
      },
    });
    expect(res.map((r) => [r.name, r.steps])).toEqual([
      ['a', 2],
      ['b', 3],
    ]);
    expect(steps).toEqual([
      ['a', 1, 1e-2],
      ['a', 2, 1e-2],
      ['b', 1, 1e-3],
      ['b', 2, 1e-3],
      ['b', 3, 1e-3],
    ]);
    model.dispose();
  });

  it('rejects an unknown add-language key and a stage without steps', async () => {
    expect(() => preset('xmod-add-language')).toThrow(/language key/);
    const model = new TinyModel(33);
    await expect(
      runStages<TokenBatch>(model, [{ name: 'x', trainable: {}, lr: 1 }], {
        loss: modelLoss(model),
        data: () => tinyBatch(new Rng(1)),
      }),
    ).rejects.toThrow(/needs steps/);
    expect(() => applyTrainable(model, { exclude: ['**'] })).toThrow(/match no parameter/);
    model.dispose();
  });
});

describe('multi-stage resume', () => {
  it('an interrupted multi-stage run resumes inside the stage it stopped in, to the same losses', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'xlt-stages-'));
    const stages: Array<Stage<TokenBatch>> = [
      { name: 'head', trainable: { include: ['classifier'] }, lr: 1e-2, steps: 3 },
      { name: 'body', trainable: { exclude: ['classifier'] }, lr: 5e-3, steps: 4 },
    ];
    const data = ({ rng }: { rng: Rng }) => tinyBatch(rng);
    const m0 = new TinyModel(61);
    const straight = await runStages<TokenBatch>(m0, stages, { loss: modelLoss(m0), data, seed: 2 });
    m0.dispose();

    const m1 = new TinyModel(61);
    let calls = 0;
    await expect(
      runStages<TokenBatch>(m1, stages, {
        loss: modelLoss(m1),
        data,
        seed: 2,
        runDir: join(dir, 'run'),
        checkpointEvery: 1,
        callbacks: {
          onCheckpoint: () => {
            calls++;
            if (calls === 5) throw new Error('interrupted'); // stage 'body', step 2
          },
        },
      }),
    ).rejects.toThrow('interrupted');
    m1.dispose();

    const m2 = new TinyModel(62);
    const resumed = await runStages<TokenBatch>(m2, stages, {
      loss: modelLoss(m2),
      data,
      seed: 2,
      runDir: join(dir, 'run'),
      checkpointEvery: 1,
      resume: true,
    });
    expect(resumed[0]?.losses).toEqual(straight[0]?.losses);
    expect(resumed[1]?.resumedFrom).toBe(2);
    expect(resumed[1]?.losses).toEqual(straight[1]?.losses.slice(2));
    m2.dispose();
    rmSync(dir, { recursive: true, force: true });
  });
});
