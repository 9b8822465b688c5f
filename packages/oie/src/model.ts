import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { normalizeConfig, Rng, writeFileAtomic, XltConfigError } from '@xlt/core';
import {
  type AdamWSettings,
  CompiledTrainStep,
  checkpointWeights,
  type EncoderConfig,
  exportToOnnx,
  type LoraMixtureSpec,
  linearWarmupDecay,
  OnnxModel,
  randomWeights,
  readEncoderConfig,
  type TrainGraphSignature,
  type Weight,
  type WeightSource,
} from '@xlt/onnx';
import type { XltTokenizer } from '@xlt/tokenizer';
import type { OieExample } from './convert.js';
import { decodeTuples } from './decode.js';
import { collateRows, encodeWords, examplesToRows, type OieBatch, type OieRow } from './features.js';
import { ARGUMENT_TAGS, type ArgumentTag, PREDICATE_TAGS, type PredicateTag } from './tags.js';
import { splitWords } from './words.js';

/** Sizes of a model trained from scratch (defaults: a tiny model for CPU tests). */
export interface OieModelSize {
  /** Default 64. */
  hiddenSize?: number;
  /** Default 2. */
  numLayers?: number;
  /** Default 4. */
  numHeads?: number;
  /** Default 4 x hiddenSize. */
  intermediateSize?: number;
  /** Longest input in tokens, specials included (default 128). */
  maxLength?: number;
  /** Head sizes (default: pos_emb_dim 32, 1 argument layer, 4 heads, feed-forward 4 x hidden). */
  oie?: NonNullable<EncoderConfig['oie']>;
}

/** An XLM-R-style encoder config with the Open IE head for a tokenizer's vocabulary. */
export function oieConfig(vocabSize: number, size: OieModelSize = {}): EncoderConfig {
  const H = size.hiddenSize ?? 64;
  const P = size.oie?.pos_emb_dim ?? 32;
  return normalizeConfig({
    model_type: 'xlm-roberta',
    architectures: ['XLMRobertaForOpenIE'],
    vocab_size: vocabSize,
    hidden_size: H,
    num_hidden_layers: size.numLayers ?? 2,
    num_attention_heads: size.numHeads ?? 4,
    intermediate_size: size.intermediateSize ?? 4 * H,
    layer_norm_eps: 1e-5,
    pad_token_id: 1,
    type_vocab_size: 1,
    max_position_embeddings: (size.maxLength ?? 128) + 2,
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    oie: {
      pos_emb_dim: P,
      n_arg_layers: size.oie?.n_arg_layers ?? 1,
      n_arg_heads: size.oie?.n_arg_heads ?? 4,
      d_feedforward: size.oie?.d_feedforward ?? 4 * H,
    },
  });
}

/**
 * A compiled AdamW step for the `open-ie` head: `@xlt/onnx`'s `CompiledTrainStep` fed with the head's
 * inputs (`predMask`, `predPosition`, `predLabels`, `argLabels`).
 */
export class OieTrainStep {
  private constructor(private readonly compiled: CompiledTrainStep) {}

  static async create(options: {
    config: EncoderConfig;
    weights: WeightSource;
    trainable: string[];
    adamw: AdamWSettings;
    loraMixtures?: Map<string, LoraMixtureSpec>;
    threads?: number;
  }): Promise<OieTrainStep> {
    return new OieTrainStep(await CompiledTrainStep.create({ ...options, head: 'open-ie' }));
  }

  get signature(): TrainGraphSignature {
    return this.compiled.signature;
  }

  get step(): number {
    return this.compiled.step;
  }

  /** One AdamW step; returns the loss (predicate + argument cross-entropy) and the gradient norm. */
  run(batch: OieBatch, lr: number): Promise<{ loss: number; gradNorm: number }> {
    return this.compiled.run(batch, lr);
  }

  /** Current trainable parameter values (copies). */
  parameters(): Map<string, Float32Array> {
    return this.compiled.getState().params;
  }

  release(): Promise<void> {
    return this.compiled.release();
  }
}

/** Weights with some tensors replaced (trained values over a base source). */
export function overlayWeights(
  base: WeightSource,
  values: ReadonlyMap<string, Float32Array | Weight>,
): WeightSource & { names?(): string[] } {
  return {
    has: (n) => base.has(n) || values.has(n),
    get: (n): Weight => {
      const v = values.get(n);
      if (v === undefined) return base.get(n);
      // new tensors (not in `base`) come with their shape
      if (!(v instanceof Float32Array)) return v;
      return { data: v, shape: base.get(n).shape };
    },
  };
}

/** Progress of {@link trainOie}. */
export interface TrainProgress {
  /** `mlm` (pre-training), `oie` (a single run) or the name of a stage. */
  stage: string;
  step: number;
  total: number;
  loss: number;
}

/** Options of {@link trainOie}. */
export interface TrainOieOptions {
  tokenizer: XltTokenizer;
  examples: readonly OieExample[];
  /** Model config (default {@link oieConfig} for the tokenizer's vocabulary and `size`). */
  config?: EncoderConfig;
  size?: OieModelSize;
  /** Starting weights (e.g. a pre-trained encoder plus a head); default: random, initialised as transformers does. */
  weights?: WeightSource;
  /**
   * A pre-trained encoder to start from: a Hugging Face model folder (`config.json` +
   * `model.safetensors` or `pytorch_model.bin`, sharded or not, e.g. from `xlt pretrain`) of an XLM-R-layout model whose vocabulary is the
   * tokenizer's. Its encoder weights are used as they are; the Open IE head (sizes from `size.oie`)
   * is new. Overrides `config`, `weights` and the encoder sizes of `size`.
   */
  encoder?: string;
  /** Brief masked-LM pre-training of the encoder first (random-init models): sentences and steps. */
  pretrain?: {
    sentences: readonly string[];
    steps: number;
    lr?: number;
    batchSize?: number;
    maskProb?: number;
  };
  /** Epochs over the rows (default 10), or `steps` to fix the number of updates. */
  epochs?: number;
  steps?: number;
  batchSize?: number;
  /** Peak learning rate (default 1e-3), linear warm-up over `warmup` of the steps (default 0.1), then decay to 0. */
  lr?: number;
  warmup?: number;
  weightDecay?: number;
  seed?: number;
  threads?: number;
  /**
   * Train in stages instead of one run over every parameter: `mt4crossie` is MT4CrossIE's schedule
   * (1: word embeddings + Open IE head, encoder frozen; 2: everything except the word embeddings;
   * 3: a LoRA mixture on the attention query/value projections + the head, all else frozen), or a
   * list of stages. Each stage has its own epochs/steps and learning rate (default: the run's).
   */
  stages?: 'mt4crossie' | OieStage[];
  /** The LoRA mixture of a `lora` stage (default: rank 8, alpha 16, router over `['en']`, query + value). */
  lora?: {
    r?: number;
    alpha?: number;
    languages?: string[];
    mode?: LoraMixtureSpec['mode'];
    targets?: string[];
  };
  onProgress?: (p: TrainProgress) => void;
}

/** One training stage of {@link trainOie}. */
export interface OieStage {
  name: string;
  /** Which parameters train. */
  trainable: 'all' | 'embeddings+head' | 'all-but-embeddings' | 'lora+head' | 'xmod-finetune';
  epochs?: number;
  steps?: number;
  lr?: number;
}

/** MT4CrossIE's three stages. */
export const MT4CROSSIE_STAGES: readonly OieStage[] = [
  { name: 'stage1-embeddings-head', trainable: 'embeddings+head' },
  { name: 'stage2-encoder', trainable: 'all-but-embeddings' },
  { name: 'stage3-lora-mixture', trainable: 'lora+head' },
];

/** What {@link trainOie} returns. */
export interface TrainOieResult {
  model: OieModel;
  config: EncoderConfig;
  /** Trained weights (the initial source with the trained values). */
  weights: WeightSource;
  losses: number[];
  mlmLosses: number[];
  /** Per stage: its name, trainable tensor count, steps and first/last loss. */
  stages: Array<{ name: string; trainable: number; steps: number; firstLoss: number; lastLoss: number }>;
  /** The LoRA mixture kept live in the model, when a `lora+head` stage ran. */
  loraMixtures?: Map<string, LoraMixtureSpec>;
  rows: number;
  /** Tuples whose predicate fell beyond `maxLength` and were dropped. */
  truncated: number;
}

async function pretrainMlm(
  config: EncoderConfig,
  tokenizer: XltTokenizer,
  opts: NonNullable<TrainOieOptions['pretrain']>,
  seed: number,
  maxLength: number,
  threads: number | undefined,
  onProgress: TrainOieOptions['onProgress'],
): Promise<{ values: Map<string, Float32Array>; losses: number[] }> {
  const maskId = tokenizer.tokenToId('<mask>');
  if (maskId === undefined)
    throw new XltConfigError('the tokenizer has no <mask> token for pre-training', { field: 'pretrain' });
  const weights = randomWeights(config, 'masked-lm', seed, 0.02, 'hf');
  const trainable = weights.names();
  const step = await CompiledTrainStep.create({
    config,
    weights,
    head: 'masked-lm',
    trainable,
    adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
    ...(threads !== undefined ? { threads } : {}),
  });
  const rng = new Rng(seed).fork('mlm');
  const encs = await Promise.all(
    opts.sentences.map((s) => tokenizer.encode(s, { maxLength }).then((e) => e.ids)),
  );
  const bs = opts.batchSize ?? 16;
  const p = opts.maskProb ?? 0.15;
  const losses: number[] = [];
  const special = new Set([0, 1, 2, tokenizer.padId]);
  // X-Mod encoders pre-train through the default language's modules
  const langs = config.languages ?? [];
  const d = langs.length > 0 ? Math.max(0, langs.indexOf(config.default_language ?? '')) : -1;
  for (let t = 0; t < opts.steps; t++) {
    const rows = Array.from({ length: bs }, () => encs[rng.int(encs.length)] as number[]);
    const S = Math.max(...rows.map((r) => r.length));
    const inputIds: number[][] = [];
    const labels: number[][] = [];
    const attentionMask: number[][] = [];
    for (const r of rows) {
      const ids: number[] = [];
      const lab: number[] = [];
      for (const id of r) {
        if (!special.has(id) && rng.next() < p) {
          lab.push(id);
          const u = rng.next();
          ids.push(u < 0.8 ? maskId : u < 0.9 ? 3 + rng.int(config.vocab_size - 4) : id);
        } else {
          lab.push(-100);
          ids.push(id);
        }
      }
      if (!lab.some((l) => l !== -100)) {
        const k = 1 + rng.int(Math.max(1, r.length - 2));
        lab[k] = r[k] as number;
        ids[k] = maskId;
      }
      const pad = S - r.length;
      inputIds.push([...ids, ...new Array<number>(pad).fill(tokenizer.padId)]);
      labels.push([...lab, ...new Array<number>(pad).fill(-100)]);
      attentionMask.push([...new Array<number>(r.length).fill(1), ...new Array<number>(pad).fill(0)]);
    }
    const lr = linearWarmupDecay(opts.lr ?? 2e-3, t, Math.ceil(opts.steps * 0.1), opts.steps);
    const { loss } = await step.run(
      { inputIds, attentionMask, labels, ...(d >= 0 ? { langIds: inputIds.map(() => d) } : {}) },
      lr,
    );
    losses.push(loss);
    onProgress?.({ stage: 'mlm', step: t + 1, total: opts.steps, loss });
  }
  const values = new Map<string, Float32Array>();
  for (const n of trainable)
    if (n.startsWith('roberta.')) values.set(n, Float32Array.from(step.parameter(n)));
  await step.release();
  return { values, losses };
}

/** Config and weights of an Open IE model whose encoder comes from a pre-trained model folder. */
function pretrainedEncoder(
  dir: string,
  options: TrainOieOptions,
  seed: number,
): { config: EncoderConfig; weights: WeightSource } {
  const raw = readEncoderConfig(dir);
  if (raw.vocab_size !== options.tokenizer.vocabSize)
    throw new XltConfigError(
      `the encoder's vocab_size ${raw.vocab_size} differs from the tokenizer's ${options.tokenizer.vocabSize}`,
      { file: path.join(dir, 'config.json'), field: 'vocab_size' },
    );
  const H = raw.hidden_size;
  const o = options.size?.oie ?? {};
  const config: EncoderConfig = {
    ...raw,
    architectures: [raw.model_type === 'xmod' ? 'XmodForOpenIE' : 'XLMRobertaForOpenIE'],
    oie: {
      pos_emb_dim: o.pos_emb_dim ?? 32,
      n_arg_layers: o.n_arg_layers ?? 1,
      n_arg_heads: o.n_arg_heads ?? 4,
      d_feedforward: o.d_feedforward ?? 4 * H,
    },
  };
  const ckpt = checkpointWeights(dir);
  const prefixed = ckpt.has('roberta.embeddings.word_embeddings.weight');
  if (!prefixed && !ckpt.has('embeddings.word_embeddings.weight'))
    throw new XltConfigError('the checkpoint has no embeddings.word_embeddings.weight', { file: dir });
  const fresh = randomWeights(config, 'open-ie', seed, 0.02, 'hf');
  // encoder tensors by their `roberta.` name from the checkpoint (bare base-model names too); head new
  const fromCkpt = (n: string) => (prefixed ? n : n.replace(/^roberta\./, ''));
  const weights: WeightSource & { names(): string[] } = {
    names: () => fresh.names(),
    has: (n) => fresh.has(n),
    get: (n) => (n.startsWith('roberta.') ? ckpt.get(fromCkpt(n)) : fresh.get(n)),
  };
  for (const n of fresh.names()) {
    if (!n.startsWith('roberta.')) continue;
    if (!ckpt.has(fromCkpt(n)))
      throw new XltConfigError(`the checkpoint lacks encoder tensor ${fromCkpt(n)}`, {
        file: dir,
        tensor: fromCkpt(n),
      });
  }
  return { config, weights };
}

/**
 * Trains an encoder with Multi2OIE's two-step head (predicate tagger, then per-predicate argument
 * tagger; loss = the two cross-entropies) on converted examples with the compiled ONNX training
 * step, optionally after a brief masked-LM pre-training of a random encoder, and returns the
 * exported inference model. Rows are shuffled with a seeded generator: same inputs, same model.
 */
export async function trainOie(options: TrainOieOptions): Promise<TrainOieResult> {
  const { tokenizer } = options;
  const seed = options.seed ?? 0;
  const start = options.encoder !== undefined ? pretrainedEncoder(options.encoder, options, seed) : undefined;
  const config = start?.config ?? options.config ?? oieConfig(tokenizer.vocabSize, options.size);
  const maxLength = Math.min(
    options.size?.maxLength ?? Number.POSITIVE_INFINITY,
    ((config as { max_position_embeddings?: number }).max_position_embeddings ?? 130) - 2,
  );
  const rng = new Rng(seed).fork('oie');
  let base: WeightSource =
    start?.weights ?? options.weights ?? randomWeights(config, 'open-ie', seed, 0.02, 'hf');
  let mlmLosses: number[] = [];
  if (options.pretrain !== undefined && options.pretrain.steps > 0) {
    const r = await pretrainMlm(
      config,
      tokenizer,
      options.pretrain,
      seed,
      maxLength,
      options.threads,
      options.onProgress,
    );
    base = overlayWeights(base, r.values);
    mlmLosses = r.losses;
  }
  const { rows, truncated } = await examplesToRows(tokenizer, options.examples, maxLength);
  // X-Mod encoders: each row through its language's modules (languages without one: the default)
  const langSpec =
    (config.languages ?? []).length > 0
      ? {
          languages: config.languages ?? [],
          ...(config.default_language != null ? { fallback: config.default_language } : {}),
        }
      : undefined;
  if (rows.length === 0)
    throw new XltConfigError('no training rows: every tuple was skipped', { field: 'examples' });
  const bs = options.batchSize ?? 16;
  const perEpoch = Math.ceil(rows.length / bs);
  // batches of similar lengths (less padding): shuffle, sort within windows of 8 batches, shuffle batches
  const epochBatches = (): OieRow[][] => {
    const idx = rng.shuffle(rows.map((_, i) => i));
    const out: OieRow[][] = [];
    for (let w = 0; w < idx.length; w += bs * 8) {
      const win = idx
        .slice(w, w + bs * 8)
        .sort((a, b) => (rows[a] as OieRow).inputIds.length - (rows[b] as OieRow).inputIds.length);
      for (let k = 0; k < win.length; k += bs) out.push(win.slice(k, k + bs).map((i) => rows[i] as OieRow));
    }
    return rng.shuffle(out);
  };
  const plan: readonly OieStage[] =
    options.stages === undefined
      ? [{ name: 'oie', trainable: 'all' }]
      : options.stages === 'mt4crossie'
        ? MT4CROSSIE_STAGES
        : options.stages;
  if (plan.length === 0) throw new XltConfigError('stages is empty', { field: 'stages' });
  const losses: number[] = [];
  const stageResults: TrainOieResult['stages'] = [];
  let loraMixtures: Map<string, LoraMixtureSpec> | undefined;
  const lp = `${(config.architectures?.[0] ?? '').startsWith('XLMRoberta') || base.has('roberta.embeddings.word_embeddings.weight') ? 'roberta.' : ''}`;
  for (const stage of plan) {
    if (stage.trainable === 'lora+head' && loraMixtures === undefined) {
      const added = loraMixtureWeights(config, lp, options.lora ?? {}, seed);
      loraMixtures = added.specs;
      base = overlayWeights(base, added.values);
    }
    const names = [...weightNames(config, base)];
    const isHead = (n: string) => n.startsWith('oie.');
    const isWordEmb = (n: string) => n.endsWith('embeddings.word_embeddings.weight');
    const loraNames = loraMixtures === undefined ? [] : [...loraParamNames(loraMixtures, base)];
    const trainable =
      stage.trainable === 'all'
        ? [...names, ...loraNames]
        : stage.trainable === 'embeddings+head'
          ? names.filter((n) => isHead(n) || isWordEmb(n))
          : stage.trainable === 'all-but-embeddings'
            ? [...names.filter((n) => !isWordEmb(n)), ...loraNames]
            : stage.trainable === 'xmod-finetune'
              ? // X-Mod's fine-tuning: embeddings and language modules frozen (transformers' freeze_embeddings_and_language_adapters)
                [
                  ...names.filter(
                    (n) => !/\.embeddings\.|\.adapter_modules\.|\.adapter_layer_norm\./.test(n),
                  ),
                  ...loraNames,
                ]
              : [...names.filter(isHead), ...loraNames];
    const step = await OieTrainStep.create({
      config,
      weights: base,
      trainable,
      adamw: {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: options.weightDecay ?? 0.01,
        maxGradNorm: 1,
      },
      ...(loraMixtures !== undefined ? { loraMixtures } : {}),
      ...(options.threads !== undefined ? { threads: options.threads } : {}),
    });
    const total = stage.steps ?? options.steps ?? perEpoch * (stage.epochs ?? options.epochs ?? 10);
    const warm = Math.ceil(total * (options.warmup ?? 0.1));
    const stageLosses: number[] = [];
    let queue: OieRow[][] = [];
    for (let t = 0; t < total; t++) {
      if (queue.length === 0) queue = epochBatches();
      const batch = collateRows(queue.shift() as OieRow[], tokenizer.padId, langSpec);
      const { loss } = await step.run(
        batch,
        linearWarmupDecay(stage.lr ?? options.lr ?? 1e-3, t, warm, total),
      );
      stageLosses.push(loss);
      options.onProgress?.({ stage: stage.name, step: t + 1, total, loss });
    }
    base = overlayWeights(base, step.parameters());
    await step.release();
    losses.push(...stageLosses);
    stageResults.push({
      name: stage.name,
      trainable: trainable.length,
      steps: total,
      firstLoss: stageLosses[0] ?? Number.NaN,
      lastLoss: stageLosses[stageLosses.length - 1] ?? Number.NaN,
    });
  }
  const weights = base;
  const model = await OieModel.fromWeights({
    config,
    weights,
    tokenizer,
    maxLength,
    ...(loraMixtures !== undefined ? { loraMixtures } : {}),
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
  });
  return {
    model,
    config,
    weights,
    losses,
    mlmLosses,
    stages: stageResults,
    ...(loraMixtures !== undefined ? { loraMixtures } : {}),
    rows: rows.length,
    truncated,
  };
}

function weightNames(config: EncoderConfig, w: WeightSource): string[] {
  const r = randomWeights(config, 'open-ie');
  const names = r.names().filter((n) => w.has(n));
  return names;
}

/**
 * A fresh LoRA mixture on every layer's attention projections (PEFT init: A Kaiming-uniform-like,
 * B zero; router rows small random), as weights by name and its specs.
 */
function loraMixtureWeights(
  config: EncoderConfig,
  prefix: string,
  o: NonNullable<TrainOieOptions['lora']>,
  seed: number,
): { values: Map<string, Weight>; specs: Map<string, LoraMixtureSpec> } {
  const r = o.r ?? 8;
  const alpha = o.alpha ?? 16;
  const langs = o.languages ?? ['en'];
  const mode = o.mode ?? 'router';
  const H = config.hidden_size;
  const rng = new Rng(seed).fork('oie-lora');
  const values = new Map<string, Weight>();
  const specs = new Map<string, LoraMixtureSpec>();
  const bound = 1 / Math.sqrt(H);
  const uniform = (n: number) => Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * bound);
  for (let l = 0; l < config.num_hidden_layers; l++) {
    for (const t of o.targets ?? ['query', 'value']) {
      const name = `${prefix}encoder.layer.${l}.attention.self.${t}`;
      specs.set(name, { mode, languages: [...langs], scaling: alpha / r });
      for (const lang of langs) {
        values.set(`${name}.experts.${lang}.lora_A.weight`, { data: uniform(r * H), shape: [r, H] });
        values.set(`${name}.experts.${lang}.lora_B.weight`, { data: new Float32Array(H * r), shape: [H, r] });
      }
      if (mode === 'router' || mode === 'topk')
        values.set(`${name}.router.weight`, { data: uniform(langs.length * H), shape: [langs.length, H] });
      if (mode === 'static')
        values.set(`${name}.mix_logits`, { data: new Float32Array(langs.length), shape: [langs.length] });
    }
  }
  return { values, specs };
}

/** Names of the mixture parameters present in a weight source. */
function* loraParamNames(specs: ReadonlyMap<string, LoraMixtureSpec>, w: WeightSource): Generator<string> {
  for (const [name, spec] of specs) {
    for (const lang of spec.languages)
      for (const k of ['lora_A', 'lora_B']) yield `${name}.experts.${lang}.${k}.weight`;
    for (const extra of [`${name}.router.weight`, `${name}.mix_logits`]) if (w.has(extra)) yield extra;
  }
}

/** One extraction of a sentence (the shape CaRB / BenchIE scorers take). */
export interface OieExtraction {
  sentence: string;
  relation: string;
  args: string[];
  confidence: number;
}

/** Options of {@link extract}. */
export interface ExtractOptions {
  batchSize?: number;
  /** Drop tuples with fewer arguments (default 2: a relation and two arguments, as CaRB expects). */
  minArgs?: number;
  /** When no predicate is tagged, use the word with the highest P-B probability (default true). */
  forcePredicate?: boolean;
  /**
   * Also start a predicate at a word tagged O whose P(P-B) is at least this (default 1: argmax
   * tags only). Lower values give more, lower-confidence extractions (CaRB picks its best threshold).
   */
  predicateThreshold?: number;
  /** X-Mod models: the language module every sentence runs through (default: the config's default language). */
  language?: string;
}

const softmaxRow = (a: Float32Array, off: number, n: number): number[] => {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) m = Math.max(m, a[off + i] as number);
  const e = Array.from({ length: n }, (_, i) => Math.exp((a[off + i] as number) - m));
  const s = e.reduce((x, y) => x + y, 0);
  return e.map((x) => x / s);
};
const argmax = (p: number[]) => p.reduce((b, v, i) => (v > (p[b] as number) ? i : b), 0);

/**
 * An exported Open IE model (encoder + two-step head) run by onnxruntime, with its tokenizer.
 * Inputs of the graph: `input_ids`, `attention_mask`, `pred_mask`, `pred_position`; outputs
 * `pred_logits` [B, S, 3] and `arg_logits` [B, S, 9].
 */
export class OieModel {
  readonly bytes: Uint8Array;
  readonly config: EncoderConfig;
  readonly tokenizer: XltTokenizer;
  readonly maxLength: number;
  private readonly onnx: OnnxModel;

  private constructor(
    onnx: OnnxModel,
    bytes: Uint8Array,
    config: EncoderConfig,
    tokenizer: XltTokenizer,
    maxLength: number,
  ) {
    this.onnx = onnx;
    this.bytes = bytes;
    this.config = config;
    this.tokenizer = tokenizer;
    this.maxLength = maxLength;
  }

  /** Exports weights to ONNX (head `open-ie`) and opens the graph. */
  static async fromWeights(options: {
    config: EncoderConfig;
    weights: WeightSource;
    tokenizer: XltTokenizer;
    maxLength?: number;
    threads?: number;
    /** A LoRA mixture kept live in the exported graph. */
    loraMixtures?: Map<string, LoraMixtureSpec>;
  }): Promise<OieModel> {
    const { model } = exportToOnnx({
      config: options.config,
      weights: options.weights,
      head: 'open-ie',
      ...(options.loraMixtures !== undefined ? { loraMixtures: options.loraMixtures } : {}),
    });
    return OieModel.fromBytes(model, options.tokenizer, options);
  }

  /** Opens exported bytes (from {@link OieModel.save} or `exportToOnnx` with head `open-ie`). */
  static async fromBytes(
    bytes: Uint8Array,
    tokenizer: XltTokenizer,
    options: { maxLength?: number; threads?: number } = {},
  ): Promise<OieModel> {
    const onnx = await OnnxModel.load(
      bytes,
      options.threads !== undefined ? { threads: options.threads } : {},
    );
    if (!onnx.session.outputNames.includes('arg_logits')) {
      await onnx.release();
      throw new XltConfigError('the ONNX model has no arg_logits output (not an open-ie export)', {
        field: 'head',
      });
    }
    const config = onnx.config;
    const maxLength =
      options.maxLength ??
      ((config as { max_position_embeddings?: number }).max_position_embeddings ?? 514) - 2;
    return new OieModel(onnx, bytes, config, tokenizer, maxLength);
  }

  /**
   * Opens a Hugging Face-style model folder (`config.json` + `model.safetensors` or
   * `pytorch_model.bin`, sharded or not) of an Open IE model, e.g. an `XmodForOpenIE` trained with
   * `@xlt/trainer` and saved with `savePretrained`.
   */
  static async fromPretrained(
    dir: string,
    tokenizer: XltTokenizer,
    options: { maxLength?: number; threads?: number } = {},
  ): Promise<OieModel> {
    const config = readEncoderConfig(dir);
    if (!(config.architectures ?? []).some((a) => a.endsWith('ForOpenIE')))
      throw new XltConfigError(
        `not an Open IE model (architectures ${JSON.stringify(config.architectures ?? [])})`,
        { file: path.join(dir, 'config.json'), field: 'architectures' },
      );
    const weights = checkpointWeights(dir);
    try {
      return await OieModel.fromWeights({ config, weights, tokenizer, ...options });
    } finally {
      weights.close();
    }
  }

  /** Loads a model written by {@link OieModel.save}. */
  static async load(
    file: string,
    tokenizer: XltTokenizer,
    options: { threads?: number } = {},
  ): Promise<OieModel> {
    return OieModel.fromBytes(new Uint8Array(await readFile(file)), tokenizer, options);
  }

  /** Writes the ONNX file (config in its metadata). */
  save(file: string): void {
    writeFileAtomic(file, this.bytes);
  }

  /** Runs the graph on a padded batch; returns the logits. */
  async run(
    batch: Pick<OieBatch, 'inputIds' | 'attentionMask' | 'predMask' | 'predPosition'> & {
      /** X-Mod models: one language (code or index) per row (default: the config's default language). */
      langIds?: Array<number | string>;
    },
  ): Promise<{
    pred: Float32Array;
    arg: Float32Array;
    dims: [number, number];
  }> {
    const out = await this.onnx.run({
      inputIds: batch.inputIds,
      attentionMask: batch.attentionMask,
      predMask: batch.predMask,
      predPosition: batch.predPosition,
      ...(batch.langIds !== undefined ? { langIds: batch.langIds } : {}),
    });
    const dims: [number, number] = [batch.inputIds.length, batch.inputIds[0]?.length ?? 0];
    return {
      pred: (out.pred_logits as { data: Float32Array }).data,
      arg: (out.arg_logits as { data: Float32Array }).data,
      dims,
    };
  }

  async release(): Promise<void> {
    await this.onnx.release();
  }
}

/**
 * Extracts tuples from sentences with the two steps of Multi2OIE: predicates are tagged on the
 * sentence, then the argument tagger runs once per predicate; tags are read on each word's first
 * token and decoded with {@link decodeTuples} (confidence = P(P-B) x mean P(A*-B)). Sentences are
 * split into words by whitespace (Chinese / Japanese: one word per character), or given as words.
 */
export async function extract(
  model: OieModel,
  sentences: ReadonlyArray<string | readonly string[]>,
  options: ExtractOptions = {},
): Promise<OieExtraction[]> {
  const bs = options.batchSize ?? 32;
  const out: OieExtraction[] = [];
  const lang = options.language;
  const withLang = <T extends { inputIds: number[][] }>(b: T): T & { langIds?: string[] } =>
    lang === undefined ? b : { ...b, langIds: b.inputIds.map(() => lang) };
  for (let b0 = 0; b0 < sentences.length; b0 += bs) {
    const chunk = sentences.slice(b0, b0 + bs);
    const items = await Promise.all(
      chunk.map(async (s) => {
        const words = typeof s === 'string' ? splitWords(s).map((w) => w.text) : [...s];
        const sentence = typeof s === 'string' ? s : s.join(' ');
        return { sentence, words, enc: await encodeWords(model.tokenizer, words, model.maxLength) };
      }),
    );
    const base: OieRow[] = items.map(({ enc }) => ({
      inputIds: enc.ids,
      predMask: enc.ids.map((_, i) => (i === 0 ? 1 : 0)),
      predPosition: enc.ids.map(() => 2),
      predLabels: [],
      argLabels: [],
    }));
    if (base.length === 0) continue;
    const step1 = await model.run(withLang(collateRows(base, model.tokenizer.padId)));
    const S1 = step1.dims[1];
    // step 1: predicate tags per word
    const preds = items.map(({ words, enc }, b) => {
      const probs = enc.firstToken.map((t) =>
        t < 0 ? [1, 0, 0] : softmaxRow(step1.pred, (b * S1 + t) * 3, 3),
      );
      const tags = probs.map((p) => PREDICATE_TAGS[argmax(p)] as PredicateTag);
      const thr = options.predicateThreshold ?? 1;
      probs.forEach((p, i) => {
        if (tags[i] === 'O' && (p[1] as number) >= thr) tags[i] = 'P-B';
      });
      if (
        options.forcePredicate !== false &&
        !tags.includes('P-B') &&
        !tags.includes('P-I') &&
        words.length > 0
      ) {
        const best = argmax(probs.map((p) => (p[1] as number) + (p[2] as number)));
        tags[best] = 'P-B';
      }
      return { tags, probs };
    });
    // step 2: one row per predicate span
    const jobs: Array<{ b: number; span: number[] }> = [];
    const rows: OieRow[] = [];
    items.forEach(({ enc }, b) => {
      const spans: number[][] = [];
      let cur: number[] | null = null;
      (preds[b] as { tags: PredicateTag[] }).tags.forEach((t, i) => {
        if (t === 'P-B' || (t === 'P-I' && cur === null)) {
          cur = [i];
          spans.push(cur);
        } else if (t === 'P-I') (cur as number[]).push(i);
        else cur = null;
      });
      for (const span of spans) {
        const inPred = new Set(span);
        const predMask = enc.wordIds.map((w) => (w !== null && inPred.has(w) ? 1 : 0));
        jobs.push({ b, span });
        rows.push({
          inputIds: enc.ids,
          predMask,
          predPosition: predMask.map((m) => (m === 1 ? 1 : 2)),
          predLabels: [],
          argLabels: [],
        });
      }
    });
    const argTags = new Map<number, ArgumentTag[][]>();
    const argBegin = new Map<number, Array<(i: number, a: number) => number>>();
    for (let r0 = 0; r0 < rows.length; r0 += bs) {
      const part = rows.slice(r0, r0 + bs);
      const res = await model.run(withLang(collateRows(part, model.tokenizer.padId)));
      const S = res.dims[1];
      part.forEach((_, k) => {
        const { b } = jobs[r0 + k] as { b: number };
        const { enc } = items[b] as (typeof items)[number];
        const probs = enc.firstToken.map((t) =>
          t < 0 ? [1, 0, 0, 0, 0, 0, 0, 0, 0] : softmaxRow(res.arg, (k * S + t) * 9, 9),
        );
        const tags = probs.map((p) => ARGUMENT_TAGS[argmax(p)] as ArgumentTag);
        const lt = argTags.get(b) ?? [];
        lt.push(tags);
        argTags.set(b, lt);
        const lb = argBegin.get(b) ?? [];
        lb.push((i, a) => (probs[i]?.[1 + 2 * a] as number | undefined) ?? 1);
        argBegin.set(b, lb);
      });
    }
    items.forEach(({ sentence, words }, b) => {
      const p = preds[b] as { tags: PredicateTag[]; probs: number[][] };
      const layers = argTags.get(b) ?? [];
      const spanStarts: number[] = [];
      p.tags.forEach((t, i) => {
        if (t === 'P-B' || (t === 'P-I' && (i === 0 || p.tags[i - 1] === 'O'))) spanStarts.push(i);
      });
      const tuples = decodeTuples(
        {
          words,
          predicate: p.tags,
          predicateScores: spanStarts.map((i) => Math.max(p.probs[i]?.[1] ?? 0, p.probs[i]?.[2] ?? 0)),
          arguments: layers,
          argumentBeginScores: argBegin.get(b) ?? [],
        },
        { minArgs: options.minArgs ?? 2 },
      );
      for (const t of tuples)
        out.push({ sentence, relation: t.relation, args: t.args, confidence: t.confidence ?? 1 });
    });
  }
  return out;
}
