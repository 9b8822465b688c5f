import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sharedSkipReason } from '@xlt/core';
import { testRedis } from '@xlt/jobs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../cli/main.js';
import { startWorkerProcess, type WorkerProcess } from '../jobs/worker.test-helper.js';
import { cli } from '../test-cli.js';

const skip = sharedSkipReason('data', 'panx');
const redisReason = 'no redis-server installed and no XLT_REDIS_URL (Debian: apt-get install redis-server)';
const dir = mkdtempSync(path.join(tmpdir(), 'xlt-experiment-queue-'));
const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/bin.js');
let redis: Awaited<ReturnType<typeof testRedis>>;
const workers: WorkerProcess[] = [];

beforeAll(async () => {
  redis = await testRedis(7);
});
afterAll(async () => {
  for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  await redis?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** `--kebab-case value` arguments of the options (strings as they are, anything else as JSON). */
const opts = (o: Record<string, unknown>): string[] =>
  Object.entries(o).flatMap(([k, v]) => [
    `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
    typeof v === 'string' ? v : JSON.stringify(v),
  ]);

// every tiny run: 1 layer of 32, 4 pre-training steps of 4 x 32 tokens, 1 thread, a few sentences
const tinyModel = {
  hiddenSize: 32,
  layers: 1,
  pretrainSteps: 4,
  pretrainBatchSize: 4,
  blockSize: 32,
  threads: 1,
  vocabSize: 1000,
  maxSentencesPerLanguage: 200,
};
// fine-tuning: 1 epoch of 16 or 32 sentences, 8 dev sentences for model selection, 16 scored
const tinyFinetune = {
  finetuneEpochs: 1,
  maxTrainExamples: 16,
  maxDevExamples: 8,
  maxEvalExamples: 16,
  resamples: 50,
};

// xmod-curse: 2 languages (1 and 2 of them), both architectures, one seed: 4 models
const tiny = opts({ languages: ['en', 'ru'], ...tinyModel, seeds: 1 });

/** The 2 `xlt worker` processes every test of this file shares (started once). */
function ensureWorkers(url: string): WorkerProcess[] {
  if (!existsSync(bin)) throw new Error(`${bin} is missing: build the CLI first (pnpm build)`);
  while (workers.length < 2) startWorkerProcess(bin, url, [], workers);
  return workers;
}

/** A run directory's results.json without wall times (which differ from run to run). */
function results(run: string): unknown {
  const untimed = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(untimed)
      : v !== null && typeof v === 'object'
        ? Object.fromEntries(
            Object.entries(v)
              .filter(([k]) => k !== 'seconds')
              .map(([k, x]) => [k, untimed(x)]),
          )
        : v;
  return untimed(JSON.parse(readFileSync(path.join(run, 'results.json'), 'utf8')));
}

const completed = () => workers.flatMap((w) => w.out.filter((l) => / completed in \d+\.\d s/.test(l))).length;

/**
 * Runs `argv` in-process into `<dir>/<name>-local`, then on the workers into `<dir>/<name>-queued`;
 * `jobs`: how many jobs the workers logged as completed meanwhile (waiting a little for `expected`
 * of them, as a worker's line may come after the command saw the result).
 */
async function localAndQueued(name: string, argv: string[], expected: number) {
  const local = path.join(dir, `${name}-local`);
  const queued = path.join(dir, `${name}-queued`);
  const url = (redis as NonNullable<typeof redis>).url;
  ensureWorkers(url);
  let t0 = performance.now();
  const here = await cli(...argv, '--run-dir', local);
  const inProcessS = (performance.now() - t0) / 1000;
  if (here.code !== EXIT.ok) console.error(here.out, here.err);
  expect(here.code).toBe(EXIT.ok);
  const jobs = completed();
  t0 = performance.now();
  const r = await cli(...argv, '--queue', url, '--run-dir', queued);
  console.log(
    `[${argv.slice(0, 2).join(' ')} --queue] in-process ${inProcessS.toFixed(1)} s, on 2 workers ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  if (r.code !== EXIT.ok)
    console.error(
      r.out,
      r.err,
      workers.map((w) => w.out.join('\n')),
    );
  expect(r.code).toBe(EXIT.ok);
  for (let i = 0; i < 100 && completed() - jobs < expected; i++) await new Promise((w) => setTimeout(w, 100));
  return { local, queued, out: r.out, jobs: completed() - jobs };
}

describe.skipIf(skip !== undefined)(
  'multi-step commands with --queue redis://',
  { timeout: 1_200_000 },
  () => {
    it('xmod-curse runs its models as jobs on 2 worker processes with the results of an in-process run', async (t) => {
      if (redis === undefined) return t.skip(redisReason);
      const { local, queued, out, jobs } = await localAndQueued(
        'curse',
        ['experiment', 'xmod-curse', ...tiny],
        4,
      );
      expect(out).toMatch(/4 models as jobs on redis:\/\/127\.0\.0\.1:\d+\/7/);
      expect(out).toMatch(/\[#{20}\] 4\/4 queued steps done/);
      expect(out).not.toMatch(/\[pretrain\] step/);
      expect(jobs).toBe(4);
      expect(results(queued)).toEqual(results(local));
      // each model folder holds what the worker wrote (linked from the committed cell)
      const cfg = JSON.parse(
        readFileSync(path.join(queued, 'pretrain-xmod-02lang-seed0', 'model', 'config.json'), 'utf8'),
      );
      expect(cfg.languages).toEqual(['en', 'ru']);
      expect(existsSync(path.join(queued, 'results'))).toBe(true);
    });

    it('xmod-curse: a re-run enqueues nothing finished; a model whose step was lost is taken from the committed cell', async (t) => {
      if (redis === undefined) return t.skip(redisReason);
      const queued = path.join(dir, 'curse-queued');
      const before = readFileSync(path.join(queued, 'results.json'), 'utf8');
      const jobs = completed();
      // as if the command had been stopped after the worker committed the cell, before the step was recorded
      rmSync(path.join(queued, 'pretrain-shared-02lang-seed0'), { recursive: true });
      const r = await cli('experiment', 'xmod-curse', ...tiny, '--queue', redis.url, '--run-dir', queued);
      expect(r.code).toBe(EXIT.ok);
      expect(r.out.match(/done before, skipped/g)?.length).toBe(5);
      expect(r.out).toMatch(/\[#{20}\] 1\/1 queued steps done/);
      expect(completed()).toBe(jobs);
      expect(results(queued)).toEqual(results(path.join(dir, 'curse-local')));
      expect(
        JSON.parse(readFileSync(path.join(queued, 'results.json'), 'utf8')).cells.map(
          (c: { heldOut: unknown }) => c.heldOut,
        ),
      ).toEqual(JSON.parse(before).cells.map((c: { heldOut: unknown }) => c.heldOut));
    });

    // salt: NER en → de, plain and SALT (switching + mixup), one seed, 1 epoch of 16 sentences
    const salt = [
      'experiment',
      'salt',
      ...opts({
        tasks: ['ner'],
        languages: ['en', 'de'],
        settings: ['salt-both'],
        seeds: 1,
        ...tinyModel,
        vocabSize: 1500,
        maxSentencesPerLanguage: 300,
        ...tinyFinetune,
        finetuneBatchSize: 8,
      }),
    ];

    it('salt runs its pre-training and every fine-tuning and evaluation as jobs, with the results of an in-process run', async (t) => {
      if (redis === undefined) return t.skip(redisReason);
      const { local, queued, out, jobs } = await localAndQueued('salt', salt, 5);
      expect(out).toMatch(/1 pre-trained model as jobs on redis:\/\//);
      expect(out).toMatch(/2 cells \(fine-tuning, evaluation\) as jobs on redis:\/\//);
      expect(out).toMatch(/\[#{20}\] 4\/4 queued steps done/);
      // 1 pre-training + 2 cells x (fine-tuning, evaluation)
      expect(jobs).toBe(5);
      const res = results(queued) as { cells: Array<{ setting: string; languages: Record<string, number> }> };
      expect(res.cells.map((c) => c.setting)).toEqual(['plain', 'salt-both']);
      expect(res).toEqual(results(local));
      // the cells fine-tuned the model the pre-training job wrote, linked into the run directory
      const ft = JSON.parse(
        readFileSync(path.join(queued, 'ner-salt-both-seed0', 'finetune', 'config.json'), 'utf8'),
      );
      expect(ft.model).toBe(path.join(queued, 'pretrain-shared', 'model'));
      expect(ft.salt).toMatchObject({ source: 'self', switch: true });
      // a re-run runs nothing: every step is done
      const again = await cli(
        ...salt,
        '--queue',
        (redis as NonNullable<typeof redis>).url,
        '--run-dir',
        queued,
      );
      expect(again.code).toBe(EXIT.ok);
      expect(again.out.match(/done before, skipped/g)?.length).toBe(5);
      expect(again.out).not.toMatch(/queued steps done/);
      expect(results(queued)).toEqual(results(local));
    });

    it('recipe ner runs each model chain as jobs, with the results of an in-process run', async (t) => {
      if (redis === undefined) return t.skip(redisReason);
      const recipe = [
        'recipe',
        'ner',
        ...opts({
          languages: ['en', 'de'],
          baseline: false,
          ...tinyModel,
          maxSentencesPerLanguage: 300,
          ...tinyFinetune,
          maxTrainExamples: 32,
        }),
      ];
      const { local, queued, out, jobs } = await localAndQueued('recipe', recipe, 6);
      expect(out).toMatch(/2 models as jobs on redis:\/\//);
      // shared and X-Mod: pre-training, fine-tuning, evaluation on dev
      expect(jobs).toBe(6);
      expect(out).toMatch(/\[#{20}\] 6\/6 queued steps done/);
      expect(results(queued)).toEqual(results(local));
      const table = (d: string) => readFileSync(path.join(d, 'results.md'), 'utf8').split('Wall time')[0];
      expect(table(queued)).toBe(table(local));
      for (const m of ['shared', 'xmod']) {
        expect(existsSync(path.join(queued, 'model', m, 'config.json'))).toBe(true);
        expect(existsSync(path.join(queued, 'model', `${m}.dev.report.md`))).toBe(true);
      }
    });

    it('xmod-posthoc adds its language on the workers and checks bit identity here, with the results of an in-process run', async (t) => {
      if (redis === undefined) return t.skip(redisReason);
      const posthoc = [
        'experiment',
        'xmod-posthoc',
        ...opts({
          base: ['en'],
          added: ['es'],
          ...tinyModel,
          addLanguageSteps: 2,
          ...tinyFinetune,
          identityBlocks: 2,
          seeds: 1,
        }),
      ];
      const { local, queued, out, jobs } = await localAndQueued('posthoc', posthoc, 7);
      expect(out).toMatch(/2 chains \(pre-training, fine-tuning, evaluation\) as jobs on redis:\/\//);
      // from the start: pre-training, fine-tuning, evaluation; post hoc: the same and the es module
      expect(jobs).toBe(7);
      expect(out).not.toMatch(/added module 'es'/);
      const res = results(queued) as { bitIdentity: Array<{ identical: boolean }> };
      expect(res.bitIdentity.map((b) => b.identical)).toEqual([true]);
      expect(res).toEqual(results(local));
    });

    it.skipIf(sharedSkipReason('data', 'oie') !== undefined)(
      'oie trains each seed on the workers, with the results of an in-process run',
      async (t) => {
        if (redis === undefined) return t.skip(redisReason);
        const oie = [
          'experiment',
          'oie',
          ...opts({
            sets: ['carb'],
            ...tinyModel,
            oieEpochs: 1,
            trainLimit: 20,
            evalLimit: 10,
            seeds: 1,
            resamples: 30,
          }),
        ];
        const { local, queued, out, jobs } = await localAndQueued('oie', oie, 2);
        expect(out).toMatch(/1 seed \(pre-training, Open IE\) as jobs on redis:\/\//);
        expect(jobs).toBe(2);
        expect(results(queued)).toEqual(results(local));
        expect(existsSync(path.join(queued, 'oie-seed0', 'predictions.json'))).toBe(true);
      },
    );

    it.each([
      ['experiment', 'xmod-curse'],
      ['experiment', 'salt'],
      ['experiment', 'mt4crossie'],
      ['experiment', 'xmod-posthoc'],
      ['experiment', 'oie'],
      ['recipe', 'ner'],
      ['recipe', 'pos'],
    ])(
      'xlt %s %s documents --queue and rejects a queue that is not a Redis URL as a usage error',
      async (...name) => {
        const h = await cli(...name, '--help');
        expect(h.out).toMatch(/--queue redis:\/\/host:port {2}each .* a job for 'xlt worker' processes/);
        expect(h.out).toMatch(new RegExp(`^ +xlt ${name.join(' ')} .*--queue redis://\\S+ --run-dir`, 'm'));
        const r = await cli(...name, '--queue', 'http://x', '--run-dir', path.join(dir, 'bad'));
        expect(r.code).toBe(EXIT.usage);
        expect(r.err).toMatch(/queue: expected 'local' or redis:\/\/host:port/);
      },
    );
  },
);
