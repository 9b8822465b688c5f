import { normalizeConfig, Rng, type XmodConfig } from '@xlt/core';
import {
  CompiledTrainStep,
  exportToOnnx,
  type HeadKind,
  linearWarmupDecay,
  OnnxModel,
  randomWeights,
  type Weight,
  type WeightSource,
} from '@xlt/onnx';
import { trainUnigram, type XltTokenizer } from '@xlt/tokenizer';
import { maskForMlm, pad } from './mlm.js';
import { buildDemoBenchmark, type DemoBenchmark } from './synthetic.js';

export interface DemoRunOptions {
  seed?: number;
  numLanguages?: number;
  hidden?: number;
  layers?: number;
  pretrainSteps?: number;
  finetuneSteps?: number;
  batchSize?: number;
  /** onnxruntime threads (fixed so that runs are reproducible; default 2). */
  threads?: number;
  /**
   * X-Mod fine-tuning: train everything (default; transfers best at the demo's size) or freeze the
   * embeddings and language modules as X-Mod's paper recipe does.
   */
  xmodFinetune?: 'freeze' | 'full';
  /**
   * Shared-model fine-tuning: train everything (default) or freeze the embeddings.
   */
  sharedFinetune?: 'freeze' | 'full';
  /** Share of the artificial languages' words equal to the source language's (default 0.5; see `DemoOptions.cognateRatio`). */
  cognateRatio?: number;
  /** Size of the Unigram vocabulary trained on the raw text (default 400). */
  vocabSize?: number;
  /** Peak learning rates (default 1e-3 for both). */
  pretrainLr?: number;
  finetuneLr?: number;
  log?: (line: string) => void;
}

/** Accuracy per language for one model. */
export interface DemoModelResult {
  model: 'shared' | 'xmod';
  accuracy: Record<string, number>;
  /** Number of correct predictions and examples per language (for confidence intervals). */
  correct: Record<string, boolean[]>;
  mlmLoss: number[];
}

export interface DemoResult {
  benchmark: DemoBenchmark;
  /** The tokenizer trained on the benchmark's raw text. */
  tokenizer: XltTokenizer;
  results: DemoModelResult[];
  seconds: number;
}

const ADAMW = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };

function layered(base: WeightSource, over: ReadonlyMap<string, Float32Array>): WeightSource {
  return {
    has: (n) => over.has(n) || base.has(n),
    get: (n): Weight => {
      const v = over.get(n);
      return v !== undefined ? { data: v, shape: base.get(n).shape } : base.get(n);
    },
  };
}

/**
 * The demo: an in-memory synthetic multilingual benchmark, a tokenizer, masked-LM pre-training of a
 * shared model and of an X-Mod model, fine-tuning on the source language only, and zero-shot
 * evaluation on the other languages. Training runs on onnxruntime through the compiled train step.
 */
export async function runDemo(options: DemoRunOptions = {}): Promise<DemoResult> {
  const t0 = performance.now();
  const log = options.log ?? (() => undefined);
  const seed = options.seed ?? 0;
  const threads = options.threads ?? 2;
  const B = options.batchSize ?? 32;
  const bm = buildDemoBenchmark({
    seed,
    numLanguages: options.numLanguages ?? 4,
    cognateRatio: options.cognateRatio ?? 0.5,
  });
  const langs = bm.languages.map((l) => l.code);
  // a Unigram vocabulary trained on every language's raw text, language-balanced
  const trained = await trainUnigram({
    texts: Object.fromEntries(bm.raw),
    vocabSize: options.vocabSize ?? 400,
    seed,
  });
  const tokenizer = trained.tokenizer;
  const V = tokenizer.vocabSize;
  const maskId = tokenizer.tokenToId('<mask>') as number;
  const specials = new Set([0, 1, 2, 3, maskId]);
  const encode = async (texts: readonly string[]) =>
    (await tokenizer.encodeBatch([...texts])).map((e) => e.ids);
  log(
    `benchmark: ${langs.length} languages (${langs.join(', ')}), source ${bm.source}; ${bm.train.length} training examples; Unigram vocabulary of ${V} trained in ${(trained.elapsedMs / 1000).toFixed(1)} s`,
  );
  const encodedRaw = new Map<string, number[][]>();
  for (const l of langs) encodedRaw.set(l, await encode(bm.raw.get(l) as string[]));
  const trainIds = await encode(bm.train.map((e) => e.text));
  const testIds = new Map<string, number[][]>();
  for (const l of langs)
    testIds.set(l, await encode((bm.test.get(l) as Array<{ text: string }>).map((e) => e.text)));
  const maxLen = Math.max(
    ...[...encodedRaw.values(), trainIds, ...testIds.values()].flat().map((r) => r.length),
  );
  const results: DemoModelResult[] = [];
  for (const kind of ['shared', 'xmod'] as const) {
    const rng = new Rng(seed).fork(kind);
    const config = normalizeConfig({
      model_type: kind === 'xmod' ? 'xmod' : 'xlm-roberta',
      vocab_size: V,
      hidden_size: options.hidden ?? 64,
      num_hidden_layers: options.layers ?? 2,
      num_attention_heads: 4,
      intermediate_size: 4 * (options.hidden ?? 64),
      max_position_embeddings: maxLen + 2,
      pad_token_id: 1,
      hidden_dropout_prob: 0,
      attention_probs_dropout_prob: 0,
      ...(kind === 'xmod'
        ? {
            languages: langs,
            default_language: bm.source,
            adapter_reduction_factor: 2,
            adapter_layer_norm: false,
            adapter_reuse_layer_norm: true,
            ln_before_adapter: true,
            pre_norm: false,
          }
        : {}),
    });
    // 1. masked-LM pre-training on every language's raw text
    const init = randomWeights(config, 'masked-lm', seed, 0.02, 'hf');
    const pretrain = await CompiledTrainStep.create({
      config,
      weights: init,
      head: 'masked-lm',
      trainable: init.names(),
      adamw: ADAMW,
      threads,
    });
    const steps = options.pretrainSteps ?? 3000;
    const mlmLoss: number[] = [];
    for (let t = 0; t < steps; t++) {
      const rows: number[][] = [];
      const langIds: number[] = [];
      for (let b = 0; b < B; b++) {
        const li = rng.int(langs.length);
        const pool = encodedRaw.get(langs[li] as string) as number[][];
        rows.push(pool[rng.int(pool.length)] as number[]);
        langIds.push(li);
      }
      const { inputIds, attentionMask } = pad(rows, 1);
      const m = maskForMlm(inputIds, rng, { maskId, vocabSize: V, specialIds: specials });
      const labels = m.labels.map((r, i) => r.map((v, j) => (attentionMask[i]?.[j] === 0 ? -100 : v)));
      const { loss } = await pretrain.run(
        { inputIds: m.inputIds, attentionMask, labels, ...(kind === 'xmod' ? { langIds } : {}) },
        linearWarmupDecay(options.pretrainLr ?? 1e-3, t, Math.round(steps / 10), steps),
      );
      mlmLoss.push(loss);
      if ((t + 1) % Math.max(1, Math.round(steps / 4)) === 0) {
        const recent = mlmLoss.slice(-20);
        log(
          `[${kind}] pre-train step ${t + 1}/${steps}: MLM loss ${(recent.reduce((a, v) => a + v, 0) / recent.length).toFixed(3)}`,
        );
      }
    }
    const encoder = new Map([...pretrain.getState().params].filter(([n]) => n.startsWith('roberta.')));
    await pretrain.release();

    // 2. fine-tuning on the source language only
    const clsConfig: XmodConfig = {
      ...config,
      architectures: ['XmodForSequenceClassification'],
      num_labels: bm.labels.length,
      id2label: Object.fromEntries(bm.labels.map((l, i) => [String(i), l])),
    };
    const head: HeadKind = 'sequence-classification';
    const clsInit = layered(randomWeights(clsConfig, head, seed + 1, 0.02, 'hf'), encoder);
    const allNames = [...randomWeights(clsConfig, head).names()];
    // X-Mod fine-tuning freezes the embeddings and the language modules (transformers' freeze_embeddings_and_language_adapters)
    const freeze = kind === 'xmod' ? options.xmodFinetune === 'freeze' : options.sharedFinetune === 'freeze';
    const trainable = freeze
      ? allNames.filter((n) => !n.startsWith('roberta.embeddings.') && !n.includes('adapter_modules'))
      : allNames;
    const ft = await CompiledTrainStep.create({
      config: clsConfig,
      weights: clsInit,
      head,
      trainable,
      adamw: ADAMW,
      threads,
    });
    const ftSteps = options.finetuneSteps ?? 600;
    const src = langs.indexOf(bm.source);
    for (let t = 0; t < ftSteps; t++) {
      const pick = Array.from({ length: B }, () => rng.int(bm.train.length));
      const exs = pick.map((i) => bm.train[i] as (typeof bm.train)[number]);
      const { inputIds, attentionMask } = pad(
        pick.map((i) => trainIds[i] as number[]),
        1,
      );
      const { loss } = await ft.run(
        {
          inputIds,
          attentionMask,
          labels: exs.map((e) => e.label),
          ...(kind === 'xmod' ? { langIds: exs.map(() => src) } : {}),
        },
        linearWarmupDecay(options.finetuneLr ?? 1e-3, t, Math.round(ftSteps / 10), ftSteps),
      );
      if ((t + 1) % Math.max(1, Math.round(ftSteps / 3)) === 0)
        log(`[${kind}] fine-tune step ${t + 1}/${ftSteps}: loss ${loss.toFixed(3)}`);
    }
    const finalWeights = layered(clsInit, ft.getState().params);
    await ft.release();

    // 3. zero-shot evaluation: every language's test set (X-Mod: through that language's module)
    const model = await OnnxModel.load(
      exportToOnnx({ config: clsConfig, weights: finalWeights, head }).model,
      { threads },
    );
    const accuracy: Record<string, number> = {};
    const correct: Record<string, boolean[]> = {};
    for (const [li, lang] of langs.entries()) {
      const exs = bm.test.get(lang) as Array<{ text: string; label: number }>;
      const { inputIds, attentionMask } = pad(testIds.get(lang) as number[][], 1);
      const out = await model.run({
        inputIds,
        attentionMask,
        ...(kind === 'xmod' ? { langIds: exs.map(() => li) } : {}),
      });
      const logits = out.logits as { data: Float32Array; dims: number[] };
      const C = logits.dims[1] as number;
      correct[lang] = exs.map((e, i) => {
        let best = 0;
        for (let c = 1; c < C; c++)
          if ((logits.data[i * C + c] as number) > (logits.data[i * C + best] as number)) best = c;
        return best === e.label;
      });
      accuracy[lang] = (correct[lang] as boolean[]).filter(Boolean).length / exs.length;
    }
    await model.release();
    log(
      `[${kind}] accuracy: ${langs.map((l) => `${l} ${(100 * (accuracy[l] as number)).toFixed(1)}`).join(', ')}`,
    );
    results.push({ model: kind, accuracy, correct, mlmLoss });
  }
  return { benchmark: bm, tokenizer, results, seconds: (performance.now() - t0) / 1000 };
}
