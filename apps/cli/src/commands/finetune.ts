import path from 'node:path';
import { dictionaryCodeSwitch, onnxMaskedLm, selfAugment } from '@xlt/augment';
import {
  CHECKPOINT_FILES,
  findCheckpoint,
  Rng,
  readXmodConfig,
  writeFileAtomic,
  XltConfigError,
  XltNotFoundError,
} from '@xlt/core';
import { readMuseDictionary } from '@xlt/data';
import { mixtureLayers, setRoutingContext } from '@xlt/lora';
import { checkpointWeights, exportToOnnx, OnnxModel } from '@xlt/onnx';
import type { XltTokenizer } from '@xlt/tokenizer';
import {
  epochBatches,
  type ForwardModel,
  LORA,
  type LossFn,
  modelLoss,
  preset,
  type StagePlan,
  type TokenBatch,
} from '@xlt/trainer';
import type { XmodPreTrainedModel } from '@xlt/xmod';
import { z } from 'zod';
import type { Command } from '../cli/main.js';
import { BestWeights } from '../tasks/best-weights.js';
import {
  dataPath,
  langFiles,
  langIdFor,
  maxInputLength,
  requireFile,
  seededInit,
  setupBackend,
} from '../tasks/common.js';
import {
  applyMixture,
  loadTaskModel,
  loadTokenizer,
  type MixtureSpec,
  maskedLmTokens,
  saveTaskModel,
} from '../tasks/model.js';
import {
  collateFeatures,
  encodeExamples,
  type Feature,
  logitsRunner,
  type PairExample,
  predict,
  readExamples,
  scoredExamples,
  TASK_SPECS,
  TASKS,
  type TaggingExample,
  type TaskExample,
  taskLabels,
  taskScore,
} from '../tasks/tasks.js';
import { batchSlots, batchTokens, trainFields, trainStage } from '../tasks/train.js';

const stageSchema = z.strictObject({
  steps: z.number().int().positive().optional(),
  lr: z.number().positive().optional(),
});

const finetuneSchema = z
  .strictObject({
    task: z.enum(TASKS),
    model: z.string(),
    tokenizer: z.string().optional(),
    train: z.string(),
    language: z.string().default('en'),
    preset: z.enum(['full', 'xmod-finetune', 'mt4crossie', 'salt']).default('full'),
    maxTrainExamples: z.number().int().positive().optional(),
    dropout: z.number().min(0).max(1).optional(),
    epochs: z.number().positive().optional(),
    labels: z.array(z.string()).min(2).optional(),
    dev: z.string().optional(),
    maxDevExamples: z.number().int().positive().default(2000),
    /** Score the source dev set every N steps (needs dev); the best-scoring weights are kept. */
    evalEvery: z.number().int().positive().optional(),
    /** Stop after this many dev evaluations without improvement. */
    earlyStoppingPatience: z.number().int().positive().optional(),
    /** Length-bucketed batches (examples of similar length together; less padding). */
    lengthBucketing: z.boolean().default(true),
    stages: z.array(stageSchema).max(3).optional(),
    lora: z
      .strictObject({
        r: z.number().int().positive().default(8),
        alpha: z.number().positive().default(16),
        targetModules: z.array(z.string()).min(1).default(['query', 'value']),
        mode: z.enum(['router', 'topk', 'language', 'static']).default('router'),
        languages: z.array(z.string()).min(1).optional(),
        k: z.number().int().positive().optional(),
      })
      .default({ r: 8, alpha: 16, targetModules: ['query', 'value'], mode: 'router' }),
    salt: z
      .strictObject({
        /** `dictionary`: code-switched copies (CoSDA-ML); `self`: the model's own MLM proposals + KL consistency. */
        source: z.enum(['dictionary', 'self']).default('dictionary'),
        dictionaries: langFiles.optional(),
        ratio: z.number().min(0).max(1).default(0.5),
        copies: z.number().int().positive().default(1),
        seed: z.number().int().nonnegative().default(0),
        mlm: z.string().optional(),
        topK: z.number().int().positive().default(10),
        temperature: z.number().positive().default(1),
        augWeight: z.number().nonnegative().default(1),
        klWeight: z.number().nonnegative().default(1),
        /** source self: the copies take the re-sampled tokens (code-switching); false keeps the originals' tokens. */
        switch: z.boolean().default(true),
        /** source self: embedding mixup weight at the chosen positions of the copies (0: none). */
        mixup: z.number().min(0).max(1).default(0),
      })
      .optional(),
    out: z.string().optional(),
    ...trainFields,
    steps: z.number().int().positive().default(500),
    lr: z.number().positive().default(5e-5),
    batchSize: z.number().int().positive().default(32),
  })
  .refine(
    (c) =>
      c.preset !== 'salt' ||
      (c.salt !== undefined && (c.salt.source === 'self' || c.salt.dictionaries !== undefined)),
    {
      message: 'preset salt needs salt.dictionaries (e.g. { de: dict/muse-en-de.tsv }) or salt.source: self',
      path: ['salt'],
    },
  )
  .refine((c) => c.salt === undefined || c.salt.switch || c.salt.mixup > 0, {
    message: 'salt.switch false needs salt.mixup > 0 (else the copies equal the originals)',
    path: ['salt', 'mixup'],
  })
  .refine((c) => c.salt === undefined || c.salt.source === 'self' || (c.salt.switch && c.salt.mixup === 0), {
    message: 'salt.switch and salt.mixup apply to salt.source self only',
    path: ['salt', 'source'],
  });

type FinetuneConfig = z.infer<typeof finetuneSchema>;

/** Originals plus dictionary code-switched copies (the SALT objective as run on the tfjs path). */
async function codeSwitched(cfg: FinetuneConfig, examples: TaskExample[], log: (l: string) => void) {
  const salt = cfg.salt;
  if (salt === undefined || salt.source === 'self') return examples;
  const dictionaries = new Map<string, Map<string, string[]>>();
  for (const [lang, f] of Object.entries(salt.dictionaries ?? {})) {
    if (Array.isArray(f))
      throw new XltConfigError('give one dictionary file per language', {
        field: `salt.dictionaries.${lang}`,
      });
    dictionaries.set(
      lang,
      await readMuseDictionary(requireFile(dataPath(cfg.dataRoot, f), `salt.dictionaries.${lang}`)),
    );
  }
  const rng = new Rng(salt.seed).fork('salt');
  const out: TaskExample[] = [...examples];
  let switched = 0;
  const opts = { dictionaries, ratio: salt.ratio, rng };
  for (let c = 0; c < salt.copies; c++) {
    for (const e of examples) {
      if ((e as TaggingExample).words !== undefined) {
        const t = e as TaggingExample;
        const s = dictionaryCodeSwitch({ words: t.words, labels: t.labels }, opts);
        switched += s.switched.length;
        out.push({ words: s.words, labels: s.labels as string[] });
      } else {
        const p = e as PairExample;
        const a = dictionaryCodeSwitch({ words: p.a.split(/\s+/).filter(Boolean) }, opts);
        const b = dictionaryCodeSwitch({ words: p.b.split(/\s+/).filter(Boolean) }, opts);
        switched += a.switched.length + b.switched.length;
        out.push({ a: a.words.join(' '), b: b.words.join(' '), label: p.label });
      }
    }
  }
  log(
    `salt: ${examples.length} originals + ${out.length - examples.length} code-switched copies (${switched} words switched into ${[...dictionaries.keys()].join(' ')})`,
  );
  return out;
}

/** A SALT copy: its token ids and, with embedding mixup, the candidates mixed in at its positions. */
type AugmentedFeature = Feature & { mix?: Array<{ position: number; ids: number[]; probs: number[] }> };

/**
 * SALT's self-augmentation: every training feature gets a copy in which `salt.ratio` of its tokens
 * are re-sampled from a masked-LM (the pre-trained model the fine-tuning starts from, or `salt.mlm`),
 * position by position, so labels and positions stay aligned for the KL consistency term. With
 * `salt.switch` false the copy keeps its tokens; with `salt.mixup` the chosen positions keep their
 * top-k candidates and weights for embedding mixup.
 */
async function selfAugmentedCopies(
  cfg: FinetuneConfig,
  features: Feature[],
  tok: XltTokenizer,
  log: (l: string) => void,
): Promise<AugmentedFeature[]> {
  const salt = cfg.salt as NonNullable<FinetuneConfig['salt']>;
  const dir = salt.mlm ?? cfg.model;
  if (findCheckpoint(dir) === undefined)
    throw new XltNotFoundError(
      `salt.mlm: no model weights in ${dir} (looked for ${CHECKPOINT_FILES.join(', ')})`,
      { file: dir, field: 'salt.mlm' },
    );
  const weights = checkpointWeights(dir);
  let mlm: OnnxModel;
  try {
    const config = readXmodConfig(dir);
    const heads = ['lm_head.dense.weight', 'lm_head.bias'];
    if (!heads.every((n) => weights.has(n)))
      throw new XltConfigError(
        `salt.source self needs a masked-LM checkpoint with lm_head weights (${dir} has none): set salt.mlm to the pre-trained model`,
        { field: 'salt.mlm', file: dir },
      );
    mlm = await OnnxModel.load(exportToOnnx({ config, weights, head: 'masked-lm' }).model, {
      ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
    });
  } finally {
    weights.close();
  }
  const { special, maskId, padId } = maskedLmTokens(tok);
  const t0 = performance.now();
  const res = await selfAugment(
    features.map((f) => ({ ids: f.inputIds, ...(f.langId !== undefined ? { lang: f.langId } : {}) })),
    {
      model: onnxMaskedLm(mlm),
      maskTokenId: maskId,
      padTokenId: padId,
      specialIds: special,
      ratio: salt.ratio,
      topK: salt.topK,
      temperature: salt.temperature,
      unit: 'token',
      rng: new Rng(salt.seed).fork('salt-self'),
      keepCandidates: salt.mixup > 0,
    },
  );
  await mlm.release();
  const replaced = res.reduce((a, r) => a + r.replaced.length, 0);
  const tokens = features.reduce((a, f) => a + f.inputIds.length - 2, 0);
  const what = [
    salt.switch ? 're-sampled' : '',
    salt.mixup > 0 ? `mixed (embedding mixup ${salt.mixup})` : '',
  ]
    .filter(Boolean)
    .join(' and ');
  log(
    `salt: ${features.length} self-augmented copies from ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s (${replaced} of ${tokens} tokens ${what}, ${((100 * replaced) / Math.max(1, tokens)).toFixed(1)}%); loss = task + ${salt.augWeight} task(augmented) + ${salt.klWeight} KL`,
  );
  return features.map((f, i) => {
    const r = res[i] as (typeof res)[number];
    return {
      ...f,
      inputIds: salt.switch ? r.ids : f.inputIds,
      ...(r.candidates !== undefined ? { mix: r.candidates } : {}),
    };
  });
}

/**
 * Embedding mixup inputs of a batch of originals then copies (K candidates a position): the
 * copies' chosen positions mix `lambda` of the candidates' weighted embedding in; elsewhere nothing.
 */
function withMixup(
  b: TokenBatch,
  copies: readonly AugmentedFeature[],
  o: { lambda: number; k: number; pad: number },
): TokenBatch {
  const S = (b.inputIds[0] as number[]).length;
  const originals = b.inputIds.length - copies.length;
  const mixIds: number[][][] = [];
  const mixProbs: number[][][] = [];
  const mixLambda: number[][] = [];
  for (let row = 0; row < b.inputIds.length; row++) {
    const ids = Array.from({ length: S }, () => new Array<number>(o.k).fill(o.pad));
    const probs = Array.from({ length: S }, () => new Array<number>(o.k).fill(0));
    const lambda = new Array<number>(S).fill(0);
    for (const m of row >= originals ? (copies[row - originals]?.mix ?? []) : []) {
      if (m.position >= S) continue;
      m.ids.forEach((id, j) => {
        (ids[m.position] as number[])[j] = id;
        (probs[m.position] as number[])[j] = m.probs[j] as number;
      });
      lambda[m.position] = o.lambda;
    }
    mixIds.push(ids);
    mixProbs.push(probs);
    mixLambda.push(lambda);
  }
  return { ...b, mixIds, mixProbs, mixLambda };
}

const ROUTER = (n: string) => /\.router\.weight$|\.mix_logits$/.test(n);

function stagePlans(cfg: FinetuneConfig, model: XmodPreTrainedModel, log: (l: string) => void): StagePlan[] {
  switch (cfg.preset) {
    case 'full':
    case 'salt':
      return preset('full-finetune');
    case 'xmod-finetune':
      if (model.config.model_type !== 'xmod')
        log('note: xmod-finetune on a shared (XLM-R) model freezes only the embeddings');
      return preset('xmod-finetune');
    case 'mt4crossie':
      return preset('mt4crossie').map((p, i) =>
        i === 2 ? { ...p, trainable: { include: [...(p.trainable.include ?? []), ROUTER] } } : p,
      );
  }
}

export const finetuneCommand: Command<typeof finetuneSchema> = {
  name: 'finetune',
  summary:
    'Fine-tune on source-language data (ner, pos, xnli, pawsx) with a preset: full, xmod-finetune, mt4crossie, salt',
  help: `Loads a Hugging Face model folder (an MLM checkpoint gets a fresh task head), trains on the
source language's training file with @xlt/trainer fit and writes the fine-tuned Hugging Face folder
(config.json with id2label and an "xlt" block naming the task, model.safetensors, tokenizer.json)
to <run dir>/model or --out. X-Mod models train with the source language's module.

Tasks (--task) and their files:
  ner    PAN-X / CoNLL: token \\t tag lines, blank line between sentences (entity F1)
  pos    UD CoNLL-U, UPOS column (token accuracy)
  xnli   XTREME TSV premise \\t hypothesis \\t label (accuracy)
  pawsx  XTREME TSV s1 \\t s2 \\t 0/1 (accuracy)

Presets (--preset):
  full           every parameter trains
  xmod-finetune  embeddings and language modules frozen (X-Mod's recipe)
  mt4crossie     3 stages: 1. word embeddings + head; 2. all but word embeddings; 3. a LoRA mixture
                 (lora.mode router|topk|language|static over lora.languages, on lora.targetModules)
                 + head + routers. The mixture is saved beside the model as lora_mixture.json /
                 lora_mixture.safetensors (the base weights stay a plain HF model).
                 Per-stage steps / lr: stages: [{ steps: 100, lr: 1e-3 }, {...}, {...}]
  salt           salt.source self (SALT): every training example gets a copy with salt.ratio of its tokens
                 re-sampled by the pre-trained masked-LM (the --model checkpoint, or salt.mlm; top-k
                 salt.topK, salt.temperature); each batch holds originals + copies and the loss is
                 task + salt.augWeight task(copies) + salt.klWeight KL(p(orig) || p(copy)) on the
                 compiled onnxruntime step. salt.switch false keeps the copies' tokens; salt.mixup L
                 mixes, at the copies' chosen positions, L of the masked LM's top-k expected embedding
                 into the token's (embedding mixup; both together: code-switching + mixup).
                 salt.source dictionary (default): trains (fully) on the
                 originals plus dictionary code-switched copies (@xlt/augment dictionaryCodeSwitch,
                 CoSDA-ML style: salt.ratio of translatable words, salt.copies copies, labels follow
                 words) with MUSE dictionaries salt.dictionaries { de: dict/muse-en-de.tsv, ... }.

Options (or config keys):
  --task ner --model DIR --train panx/train-en.tsv --language en (source; its X-Mod module)
  --tokenizer PATH (default: the model folder) --data-root DIR (data paths relative to it;
  default ../shared/data beside the repo) --max-train-examples N --labels '["O","B-PER",...]'
  --steps 500 | --epochs E   --batch-size 32 --lr 5e-5 --warmup-ratio 0.06 --weight-decay 0.01 --adam-beta2 0.999
  --max-length 128 --dropout P (override the model's) --seed 0 --dev FILE (source dev set, scored after training) --out DIR
  --eval-every N (score the source dev set every N steps and keep the best weights; needs --dev)
  --early-stopping-patience K (stop after K evaluations without improvement)
  --length-bucketing true|false (default true: batches of similar lengths, padded to their longest)
  --checkpoint-every N --resume --backend auto|cpu|wasm|tensorflow
  --engine auto|tfjs|onnxruntime   (auto: the compiled onnxruntime step when the model and loss allow
                                    it, else tfjs; the run log names the engine and why) --threads N
  --max-memory-gib N               refuse an onnxruntime run whose memory estimate (printed before it
                                    starts: weights, gradients, moments, activations) is larger (default: RAM)

Examples:
  xlt finetune --task ner --model runs/ner/pretrain-xmod/model --train panx/train-en.tsv \\
      --preset xmod-finetune --steps 300 --lr 1e-3 --run-dir runs/ner/ft-xmod
  xlt finetune --config examples/ner/finetune-mt4crossie.yaml`,
  schema: finetuneSchema,
  async run(cfg, ctx) {
    await setupBackend(cfg.backend, ctx.log);
    const spec = TASK_SPECS[cfg.task];
    const tok = await loadTokenizer(cfg.tokenizer, cfg.model);
    const trainFile = requireFile(dataPath(cfg.dataRoot, cfg.train), 'train');
    const originals = await readExamples(cfg.task, trainFile, cfg.maxTrainExamples);
    const labels = cfg.labels ?? taskLabels(cfg.task, originals);
    ctx.log(`${originals.length} ${cfg.task} training examples (${cfg.language}); ${labels.length} labels`);
    const model = await loadTaskModel(cfg.model, spec.kind, {
      num_labels: labels.length,
      id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
      label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
      ...(cfg.dropout !== undefined
        ? {
            hidden_dropout_prob: cfg.dropout,
            attention_probs_dropout_prob: cfg.dropout,
            classifier_dropout: cfg.dropout,
          }
        : {}),
    });
    if (model.newlyInitialized.length > 0) {
      seededInit(model, model.newlyInitialized, cfg.seed);
      ctx.log(
        `new ${spec.kind === 'token' ? 'token' : 'sequence'} classification head: ${model.newlyInitialized.join(', ')}`,
      );
    }
    const maxLength = maxInputLength(model.config, cfg.maxLength);
    const module = langIdFor(model, cfg.language, ctx.log);
    const langIndex = module !== undefined ? model.config.languages.indexOf(module) : undefined;
    const examples = cfg.preset === 'salt' ? await codeSwitched(cfg, originals, ctx.log) : originals;
    const features = await encodeExamples(tok, cfg.task, examples, labels, maxLength, langIndex);
    const pad = model.config.pad_token_id;
    const selfSalt = cfg.preset === 'salt' && cfg.salt?.source === 'self';
    const augmented = selfSalt ? await selfAugmentedCopies(cfg, features, tok, ctx.log) : undefined;
    const mixup = selfSalt && (cfg.salt?.mixup ?? 0) > 0;
    const mixupOf = (b: TokenBatch, copies: AugmentedFeature[]) =>
      mixup ? withMixup(b, copies, { lambda: cfg.salt?.mixup ?? 0, k: cfg.salt?.topK ?? 10, pad }) : b;
    // SALT (self): each batch is the originals followed by their augmented copies, row by row
    const { data, batchesPerEpoch } = epochBatches(
      features.map((f, i) => ({ f, a: augmented?.[i] })),
      cfg.batchSize,
      (items) =>
        augmented === undefined
          ? collateFeatures(
              items.map((x) => x.f),
              pad,
            )
          : mixupOf(
              collateFeatures([...items.map((x) => x.f), ...items.map((x) => x.a as Feature)], pad),
              items.map((x) => x.a as AugmentedFeature),
            ),
      {
        seed: cfg.seed,
        ...(cfg.lengthBucketing ? { lengthOf: (x: { f: Feature }) => x.f.inputIds.length } : {}),
      },
    );
    const steps =
      cfg.epochs !== undefined ? Math.ceil((cfg.epochs * batchesPerEpoch) / cfg.gradAccumulation) : cfg.steps;
    const plans = stagePlans(cfg, model, ctx.log);
    const devExamples =
      cfg.dev !== undefined
        ? await readExamples(
            cfg.task,
            requireFile(dataPath(cfg.dataRoot, cfg.dev), 'dev'),
            cfg.maxDevExamples,
          )
        : undefined;
    if (cfg.evalEvery !== undefined && devExamples === undefined)
      throw new XltConfigError('evalEvery needs a source dev set (dev)', { field: 'evalEvery' });
    let expertRef: { value: number | undefined } = { value: undefined };
    const scoreDev = async (): Promise<number> => {
      const runner = await logitsRunner(model, spec.kind, {
        engine: cfg.engine,
        ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
      });
      try {
        const preds = await predict(model, tok, cfg.task, devExamples as TaskExample[], labels, {
          runner,
          maxLength,
          batchSize: 64,
          ...(module !== undefined ? { langId: module } : {}),
          ...(expertRef.value !== undefined ? { expert: expertRef.value } : {}),
        });
        return taskScore(cfg.task, scoredExamples(devExamples as TaskExample[], preds));
      } finally {
        await runner.release();
      }
    };
    let mixture: MixtureSpec | undefined;
    const baseLoss = modelLoss(model as unknown as ForwardModel);
    let expert: number | undefined;
    // language routing needs the routing context set per batch (tfjs engine); otherwise the model's
    // own head loss, which the compiled onnxruntime engine can run
    const routedLoss: LossFn<TokenBatch> = (b, c) => {
      if (expert !== undefined) setRoutingContext(model, { langIds: b.inputIds.map(() => expert as number) });
      return baseLoss(b, c);
    };
    const results = [];
    for (let i = 0; i < plans.length; i++) {
      const plan = plans[i] as StagePlan;
      if (plan.trainable.include?.includes(LORA) === true && mixtureLayers(model).length === 0) {
        const langs = cfg.lora.languages ?? [cfg.language];
        mixture = {
          r: cfg.lora.r,
          alpha: cfg.lora.alpha,
          targetModules: cfg.lora.targetModules,
          languages: langs,
          mode: cfg.lora.mode,
          ...(cfg.lora.k !== undefined ? { k: cfg.lora.k } : {}),
        };
        const wrapped = applyMixture(model, mixture);
        if (cfg.lora.mode === 'language') {
          expert = langs.indexOf(cfg.language);
          if (expert < 0)
            throw new XltConfigError(`lora.languages must include the source language '${cfg.language}'`, {
              field: 'lora.languages',
            });
        }
        ctx.log(
          `LoRA mixture (${cfg.lora.mode}, r ${cfg.lora.r}, experts ${langs.join(' ')}) on ${wrapped.length} linears`,
        );
      }
      const st = cfg.stages?.[i];
      expertRef = { value: expert };
      const best = cfg.evalEvery !== undefined ? new BestWeights(model) : undefined;
      const summary = await trainStage(model, expert !== undefined ? routedLoss : baseLoss, data, cfg, {
        trainable: plan.trainable,
        runDir: path.join(ctx.runDir, plans.length > 1 ? `${i + 1}-${plan.name}` : 'train'),
        stage: plan.name,
        log: ctx.log,
        tokens: batchTokens,
        slots: batchSlots,
        ...(best !== undefined
          ? {
              evaluation: {
                evalEvery: cfg.evalEvery,
                evaluate: async () => ({ dev: await scoreDev() }),
                bestMetric: 'dev',
                greaterIsBetter: true,
                ...(cfg.earlyStoppingPatience !== undefined
                  ? { earlyStoppingPatience: cfg.earlyStoppingPatience }
                  : {}),
                callbacks: {
                  onEval: (_s: number, _m: unknown, improved: boolean) => improved && best.keep(),
                },
              },
            }
          : {}),
        steps: st?.steps ?? steps,
        lr: st?.lr ?? cfg.lr,
        ...(selfSalt && cfg.salt !== undefined
          ? { salt: { augWeight: cfg.salt.augWeight, klWeight: cfg.salt.klWeight } }
          : {}),
        ...(mixup ? { embeddingMixup: true } : {}),
      });
      if (best !== undefined && summary.best !== undefined) {
        best.restore();
        ctx.log(
          `[${plan.name}] kept the weights of step ${summary.best.step} (dev ${spec.metric} ${(summary.best.metrics.dev ?? Number.NaN).toFixed(2)})${summary.stoppedEarly ? '; stopped early' : ''}`,
        );
      }
      best?.dispose();
      results.push({
        stage: plan.name,
        ...(summary.best !== undefined
          ? { bestStep: summary.best.step, bestDev: summary.best.metrics.dev }
          : {}),
        steps: summary.steps,
        firstLoss: summary.losses[0],
        finalLoss: summary.finalLoss,
        trainable: summary.trainableParameters.length,
        seconds: summary.seconds,
      });
    }
    let devScore: number | undefined;
    if (devExamples !== undefined) {
      expertRef = { value: expert };
      devScore = await scoreDev();
      ctx.log(
        `dev (${cfg.language}) ${spec.metric}: ${devScore.toFixed(2)} on ${devExamples.length} examples`,
      );
    }
    model.config.xlt = {
      task: cfg.task,
      source_language: cfg.language,
      max_length: maxLength,
      preset: cfg.preset,
    };
    const out = path.resolve(cfg.out ?? path.join(ctx.runDir, 'model'));
    model.eval();
    await saveTaskModel(model, tok, out, mixture);
    writeFileAtomic(
      path.join(ctx.runDir, 'results.json'),
      `${JSON.stringify({ model: out, task: cfg.task, preset: cfg.preset, trainExamples: examples.length, stages: results, ...(devScore !== undefined ? { dev: { metric: spec.metric, score: devScore } } : {}) }, null, 2)}\n`,
    );
    ctx.log(`fine-tuned model written to ${out}`);
    model.dispose();
  },
};
