import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { readXmodConfig, writeFileAtomic, XltConfigError } from '@xlt/core';
import { reportMarkdown, writeReport, zeroShotReport } from '@xlt/evaluator';
import { z } from 'zod';
import type { Command } from '../cli/main.js';
import {
  backendSchema,
  expandEvalFiles,
  langFiles,
  langIdFor,
  maxInputLength,
  setupBackend,
  xltInfo,
} from '../tasks/common.js';
import { loadTaskModel, loadTokenizer, MIXTURE_CONFIG, type MixtureSpec } from '../tasks/model.js';
import {
  itemStats,
  logitsRunner,
  predict,
  readExamples,
  type Scored,
  scoredExamples,
  statsScore,
  TASK_SPECS,
  TASKS,
  type TaskName,
  taskScore,
} from '../tasks/tasks.js';

const evaluateSchema = z.strictObject({
  model: z.string(),
  tokenizer: z.string().optional(),
  task: z.enum(TASKS).optional(),
  eval: z.union([langFiles, z.string()]),
  languages: z.array(z.string()).optional(),
  source: z.string().optional(),
  maxExamplesPerLanguage: z.number().int().positive().optional(),
  batchSize: z.number().int().positive().default(32),
  maxLength: z.number().int().min(8).optional(),
  resamples: z.number().int().min(10).default(1000),
  seed: z.number().int().nonnegative().default(0),
  out: z.string().optional(),
  backend: backendSchema,
  /** Inference engine: the model exported to ONNX and run by onnxruntime (auto), or tfjs. */
  engine: z.enum(['auto', 'tfjs', 'onnxruntime']).default('auto'),
  threads: z.number().int().positive().optional(),
  /** int8: run the exported model with its weight MatMuls dynamically quantized (onnxruntime only). */
  quantize: z.enum(['int8']).optional(),
  dataRoot: z.string().optional(),
});

export const evaluateCommand: Command<typeof evaluateSchema> = {
  name: 'evaluate',
  summary: 'Evaluate a fine-tuned model zero-shot on several languages and write the per-language report',
  help: `Runs the model on each language's dev/test file and writes report.md, report.csv, report.json and
report.svg (per-language score with a bootstrap 95% CI, the source language marked, the target
average and the transfer gap; @xlt/evaluator) to the run directory (or --out BASE), plus
predictions-free per-language numbers in results.json and per-example sufficient statistics in
stats.json (for paired bootstrap comparisons of two models). Metrics: entity F1 (ner, seqeval default
mode), UPOS token accuracy (pos), accuracy (xnli, pawsx), all x 100. X-Mod models run each language
with its own module (a language without one falls back to the default language, with a note).

Options (or config keys):
  --model DIR          a fine-tuned model folder (from xlt finetune; a LoRA mixture beside it is loaded)
  --task ner|pos|xnli|pawsx   default: the task recorded in the model's config.json
  --eval LANG=PATH     repeatable; or a config map  eval: { de: panx/dev-de.tsv, ... };
                       or a glob whose * is the language (panx/dev-*.tsv), or a folder (language
                       from each file name, e.g. de_gsd-ud-dev.conllu)
  --languages '[de,fr]'   keep only these (and require them)
  --source en          the source language (default: the model's, else en); must be among the files
  --max-examples-per-language N --batch-size 32 --max-length (default: the model's) --resamples 1000
  --seed 0 --out BASE (default <run dir>/report) --tokenizer PATH --data-root DIR --backend auto
  --engine auto|tfjs|onnxruntime  (auto: the model is exported to ONNX and run by onnxruntime, LoRA
                                   mixtures live; tfjs for X-Mod models with language-routed mixtures)
  --threads N
  --quantize int8      score the int8 model that \`xlt export --quantize int8\` and \`xlt-serve --quantize
                       int8\` run (weight MatMuls dynamically quantized; onnxruntime only)

Examples:
  xlt evaluate --model runs/ner/ft-xmod/model --eval 'panx/dev-*.tsv' \\
      --languages '[en,de,es,fr,ru,zh,ar,hi,tr]' --run-dir runs/ner/eval-xmod
  xlt evaluate --model runs/pos/ft/model --eval en=ud/en_ewt-ud-dev.conllu --eval de=ud/de_gsd-ud-dev.conllu`,
  schema: evaluateSchema,
  async run(cfg, ctx) {
    const modelConfig = readXmodConfig(cfg.model);
    const info = xltInfo(modelConfig);
    const task = (cfg.task ?? info.task) as TaskName | undefined;
    if (task === undefined || !(TASKS as readonly string[]).includes(task))
      throw new XltConfigError('give --task (the model folder does not record one)', { field: 'task' });
    const spec = TASK_SPECS[task];
    const found = expandEvalFiles(cfg.eval, cfg.dataRoot, cfg.languages);
    const source = cfg.source ?? info.source_language ?? 'en';
    // the source language first, then the targets in the order given (or found)
    const files: Record<string, string> = Object.fromEntries(
      Object.entries(found).sort(([a], [b]) => Number(b === source) - Number(a === source)),
    );
    if (files[source] === undefined)
      throw new XltConfigError(
        `the source language '${source}' has no evaluation file (languages: ${Object.keys(files).join(', ')})`,
        { field: 'source' },
      );
    await setupBackend(cfg.backend, ctx.log);
    const tok = await loadTokenizer(cfg.tokenizer, cfg.model);
    const id2label = modelConfig.id2label;
    if (id2label === undefined)
      throw new XltConfigError('the model has no id2label: is it a fine-tuned model?', {
        file: path.join(cfg.model, 'config.json'),
        field: 'id2label',
      });
    const labels = Object.keys(id2label)
      .sort((a, b) => Number(a) - Number(b))
      .map((k) => id2label[k] as string);
    const model = await loadTaskModel(cfg.model, spec.kind);
    if (model.newlyInitialized.length > 0)
      throw new XltConfigError(
        `the model folder has no ${spec.kind} classification head (missing ${model.newlyInitialized.join(', ')}); fine-tune it first`,
        { file: cfg.model, field: 'task' },
      );
    const maxLength = maxInputLength(model.config, cfg.maxLength ?? info.max_length ?? 128);
    const mixFile = path.join(cfg.model, MIXTURE_CONFIG);
    const mixture = existsSync(mixFile)
      ? (JSON.parse(readFileSync(mixFile, 'utf8')) as MixtureSpec)
      : undefined;
    const runner = await logitsRunner(model, spec.kind, {
      engine: cfg.engine,
      ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
      ...(cfg.quantize !== undefined ? { quantize: cfg.quantize } : {}),
    });
    ctx.log(`inference on ${runner.engine}${cfg.quantize !== undefined ? ` (${cfg.quantize})` : ''}`);
    const byLang = new Map<string, Scored[]>();
    const warned = new Set<string>();
    const perLang: Record<string, { file: string; n: number; score: number; seconds: number }> = {};
    for (const [lang, file] of Object.entries(files)) {
      const t0 = performance.now();
      const examples = await readExamples(task, file, cfg.maxExamplesPerLanguage);
      const module = langIdFor(model, lang, ctx.log, warned);
      let expert: number | undefined;
      if (mixture?.mode === 'language') {
        const k = mixture.languages.indexOf(lang);
        expert = k >= 0 ? k : mixture.languages.indexOf(source);
        if (expert < 0) expert = 0;
      }
      const preds = await predict(model, tok, task, examples, labels, {
        maxLength,
        batchSize: cfg.batchSize,
        ...(module !== undefined ? { langId: module } : {}),
        ...(expert !== undefined ? { expert } : {}),
        runner,
      });
      const scored = scoredExamples(examples, preds);
      byLang.set(lang, scored);
      const score = taskScore(task, scored);
      const seconds = (performance.now() - t0) / 1000;
      perLang[lang] = { file, n: examples.length, score, seconds };
      ctx.log(
        `${lang}${lang === source ? ' (source)' : ''}: ${spec.metric} ${score.toFixed(2)} on ${examples.length} examples (${seconds.toFixed(1)} s)`,
      );
    }
    await runner.release();
    model.dispose();
    // bootstrap over per-example sufficient statistics (a resample is a sum, not a re-scoring)
    const stats = new Map([...byLang].map(([l, items]) => [l, items.map((it) => itemStats(task, it))]));
    const report = zeroShotReport(stats, {
      source,
      metric: spec.metric,
      score: (items) => statsScore(task, items),
      resamples: cfg.resamples,
      seed: cfg.seed,
    });
    // per-example sufficient statistics, for paired comparisons of two models (xlt recipe, experiments)
    writeFileAtomic(
      path.join(ctx.runDir, 'stats.json'),
      `${JSON.stringify({ task, source, languages: Object.fromEntries(stats) })}\n`,
    );
    const base = path.resolve(cfg.out ?? path.join(ctx.runDir, 'report'));
    const written = writeReport(report, base);
    writeFileAtomic(
      path.join(ctx.runDir, 'results.json'),
      `${JSON.stringify({ model: path.resolve(cfg.model), task, source, metric: spec.metric, languages: perLang, targetAverage: report.targetAverage, transferGap: report.transferGap, report: written }, null, 2)}\n`,
    );
    ctx.log('');
    ctx.log(reportMarkdown(report));
    ctx.log(`report written to ${written.md} (.csv .json .svg)`);
  },
};
