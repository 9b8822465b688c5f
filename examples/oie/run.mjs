#!/usr/bin/env node
// End-to-end cross-lingual Open IE: train on CaRB dev gold, score on CaRB test (en), Re-OIE2016
// binary (en, es, pt) and BenchIE (en, de, zh). Usage (from the repo root, after `pnpm build`):
//   node examples/oie/run.mjs [--config examples/oie/config.json] [--epochs N] [--eval-limit N] [--out DIR]
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchmarkMarkdown, runOieBenchmark } from '../../packages/oie/dist/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    config: { type: 'string', default: path.join(here, 'config.json') },
    epochs: { type: 'string' },
    steps: { type: 'string' },
    'pretrain-steps': { type: 'string' },
    'train-limit': { type: 'string' },
    'eval-limit': { type: 'string' },
    out: { type: 'string', default: path.join(here, 'out') },
  },
});
const cfg = JSON.parse(readFileSync(values.config, 'utf8'));
const shared = path.resolve(process.env.XLT_SHARED_DIR ?? path.join(here, '..', '..', '..', 'shared'));
const num = (v) => (v === undefined ? undefined : Number(v));
const training = { ...cfg.training };
if (values.epochs) training.epochs = num(values.epochs);
if (values.steps) training.steps = num(values.steps);
if (values['pretrain-steps'])
  training.pretrain = { ...(training.pretrain ?? {}), steps: num(values['pretrain-steps']) };
if (training.pretrain) {
  // raw text for masked-LM pre-training (paths under the shared folder), plus the training sentences
  const { files = [], ...rest } = training.pretrain;
  const sentences = files.flatMap((f) =>
    readFileSync(path.join(shared, f), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== ''),
  );
  training.pretrain = { ...rest, sentences };
}

const result = await runOieBenchmark({
  dataDir: path.join(shared, 'data', 'oie'),
  tokenizerFile: path.join(shared, cfg.tokenizer ?? 'fixtures/tokenizer/tokenizer.json'),
  train: cfg.train ?? 'carb-dev',
  trainLimit: num(values['train-limit']) ?? cfg.trainLimit,
  evalLimit: num(values['eval-limit']) ?? cfg.evalLimit,
  training,
  extract: cfg.extract ?? {},
  log: (m) => console.log(m),
});
const md = benchmarkMarkdown(result.rows);
mkdirSync(values.out, { recursive: true });
writeFileSync(path.join(values.out, 'results.md'), md);
writeFileSync(
  path.join(values.out, 'results.json'),
  `${JSON.stringify({ config: cfg, training, trainSeconds: result.trainSeconds, trainRows: result.trainRows, conversion: { ...result.conversion, skipped: result.conversion.skipped.length }, rows: result.rows }, null, 2)}\n`,
);
console.log(`\n${md}`);
console.log(`written to ${values.out}/results.{md,json}`);
