import * as tf from '@tensorflow/tfjs-core';
import { XltConfigError } from '@xlt/core';
import { readConllu, readNer, readPawsx, readXnli } from '@xlt/data';
import { accuracy, entityF1, lenientEntities, tokenAccuracy } from '@xlt/evaluator';
import { mixtureLayers, setRoutingContext } from '@xlt/lora';
import {
  exportToOnnx,
  type LoraMixtureSpec,
  moduleWeights,
  type NamedParameterSource,
  OnnxModel,
  quantizeDynamicInt8,
} from '@xlt/onnx';
import { alignLabels, wordPredictions, type XltTokenizer } from '@xlt/tokenizer';
import { collateLabelled, type TokenBatch } from '@xlt/trainer';
import type { XmodPreTrainedModel } from '@xlt/xmod';

/** Tasks of `xlt finetune` / `xlt evaluate`. */
export type TaskName = 'ner' | 'pos' | 'xnli' | 'pawsx';
export const TASKS = ['ner', 'pos', 'xnli', 'pawsx'] as const;

/** A word-tagging example (NER, POS). */
export interface TaggingExample {
  words: string[];
  labels: string[];
}

/** A sentence-pair classification example (XNLI, PAWS-X). */
export interface PairExample {
  a: string;
  b: string;
  label: string;
}

export type TaskExample = TaggingExample | PairExample;

/** A tokenised training example. */
export interface Feature {
  inputIds: number[];
  label?: number;
  tokenLabels?: number[];
  langId?: number;
}

/** What a task is: head kind, labels, official metric, reader. */
export interface TaskSpec {
  name: TaskName;
  kind: 'token' | 'sequence';
  labels: readonly string[];
  /** Official metric name in reports. */
  metric: string;
  /** The file format, for help and errors. */
  format: string;
}

const UPOS = [
  'ADJ',
  'ADP',
  'ADV',
  'AUX',
  'CCONJ',
  'DET',
  'INTJ',
  'NOUN',
  'NUM',
  'PART',
  'PRON',
  'PROPN',
  'PUNCT',
  'SCONJ',
  'SYM',
  'VERB',
  'X',
] as const;

export const TASK_SPECS: Record<TaskName, TaskSpec> = {
  ner: {
    name: 'ner',
    kind: 'token',
    labels: ['O', 'B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC'],
    metric: 'entity F1',
    format: 'PAN-X / CoNLL `token \\t tag` lines, blank line between sentences',
  },
  pos: { name: 'pos', kind: 'token', labels: UPOS, metric: 'UPOS accuracy', format: 'CoNLL-U (UD)' },
  xnli: {
    name: 'xnli',
    kind: 'sequence',
    labels: ['entailment', 'neutral', 'contradiction'],
    metric: 'accuracy',
    format: 'XTREME TSV premise \\t hypothesis \\t label',
  },
  pawsx: {
    name: 'pawsx',
    kind: 'sequence',
    labels: ['0', '1'],
    metric: 'accuracy',
    format: 'XTREME TSV s1 \\t s2 \\t 0/1',
  },
};

/** Reads up to `limit` examples of a task's file. */
export async function readExamples(task: TaskName, file: string, limit = Infinity): Promise<TaskExample[]> {
  const out: TaskExample[] = [];
  if (limit <= 0) return out;
  const push = (e: TaskExample) => {
    out.push(e);
    return out.length >= limit;
  };
  if (task === 'ner') {
    for await (const s of readNer(file)) if (push({ words: s.tokens, labels: s.tags })) break;
  } else if (task === 'pos') {
    for await (const s of readConllu(file)) if (push({ words: s.forms, labels: s.upos })) break;
  } else if (task === 'xnli') {
    for await (const r of readXnli(file)) if (push({ a: r.premise, b: r.hypothesis, label: r.label })) break;
  } else {
    for await (const r of readPawsx(file))
      if (push({ a: r.sentence1, b: r.sentence2, label: String(r.label) })) break;
  }
  if (out.length === 0) throw new XltConfigError(`no ${task} examples in the file`, { file });
  return out;
}

function isTagging(e: TaskExample): e is TaggingExample {
  return (e as TaggingExample).words !== undefined;
}

/** Label list of a task, extended by labels seen in the training examples (in order of appearance). */
export function taskLabels(task: TaskName, examples: readonly TaskExample[]): string[] {
  const labels = [...TASK_SPECS[task].labels];
  const seen = new Set(labels);
  for (const e of examples) {
    for (const l of isTagging(e) ? e.labels : [e.label]) {
      if (!seen.has(l)) {
        seen.add(l);
        labels.push(l);
      }
    }
  }
  return labels;
}

/** Tokenises examples into features (token labels on first sub-tokens, -100 elsewhere). */
export async function encodeExamples(
  tok: XltTokenizer,
  task: TaskName,
  examples: readonly TaskExample[],
  labels: readonly string[],
  maxLength: number,
  langId?: number,
): Promise<Feature[]> {
  const index = new Map(labels.map((l, i) => [l, i]));
  const id = (l: string) => {
    const i = index.get(l);
    if (i === undefined)
      throw new XltConfigError(`label '${l}' is not among the model's labels`, { field: 'labels' });
    return i;
  };
  const lang = langId !== undefined ? { langId } : {};
  if (TASK_SPECS[task].kind === 'token') {
    const out: Feature[] = [];
    for (const e of examples as TaggingExample[]) {
      const { encoding, labels: tl } = await alignLabels(tok, e.words, e.labels.map(id), { maxLength });
      out.push({ inputIds: encoding.ids, tokenLabels: tl, ...lang });
    }
    return out;
  }
  const pairs = examples as PairExample[];
  const out: Feature[] = [];
  for (let i = 0; i < pairs.length; i += 256) {
    const chunk = pairs.slice(i, i + 256);
    const enc = await tok.encodeBatch(
      chunk.map((p) => [p.a, p.b] as const),
      { maxLength },
    );
    enc.forEach((e, k) => {
      out.push({ inputIds: e.ids, label: id((chunk[k] as PairExample).label), ...lang });
    });
  }
  return out;
}

/** Pads features into a training batch. */
export function collateFeatures(items: readonly Feature[], padTokenId: number): TokenBatch {
  return collateLabelled(items, padTokenId);
}

/** A forward that also sets the LoRA-mixture routing context (language routing) when there is one. */
export function forwardLogits(
  model: XmodPreTrainedModel,
  batch: TokenBatch,
  langId: string | undefined,
  expert: number | undefined,
): tf.Tensor {
  const layers = mixtureLayers(model);
  if (layers.length > 0 && expert !== undefined)
    setRoutingContext(model, { langIds: batch.inputIds.map(() => expert) });
  const forward = (model as unknown as { forward(i: object): { logits: tf.Tensor } }).forward.bind(model);
  const out = forward({
    inputIds: batch.inputIds,
    attentionMask: batch.attentionMask,
    ...(langId !== undefined ? { langIds: batch.inputIds.map(() => langId) } : {}),
  });
  return out.logits;
}

/** Computes a batch's logits (flat, row-major: [B, T, L] for token tasks, [B, L] otherwise). */
export interface LogitsRunner {
  /** `onnxruntime` or `tfjs`. */
  readonly engine: string;
  run(batch: TokenBatch, langId: string | undefined, expert: number | undefined): Promise<Float32Array>;
  release(): Promise<void>;
}

/** The tfjs model's own forward (eval mode). */
function tfjsRunner(model: XmodPreTrainedModel): LogitsRunner {
  return {
    engine: 'tfjs',
    async run(batch, langId, expert) {
      const t = tf.tidy(() => forwardLogits(model, batch, langId, expert));
      const data = (await t.data()) as Float32Array;
      t.dispose();
      return data;
    },
    async release() {},
  };
}

/**
 * A logits runner for inference: the model exported to ONNX and run by onnxruntime (LoRA mixtures
 * kept live), or tfjs when asked, or when an X-Mod model carries a language-routed mixture (both
 * would read `lang_ids`).
 */
export async function logitsRunner(
  model: XmodPreTrainedModel,
  kind: 'token' | 'sequence',
  options: { engine?: 'auto' | 'tfjs' | 'onnxruntime'; threads?: number; quantize?: 'int8' } = {},
): Promise<LogitsRunner> {
  const engine = options.engine ?? 'auto';
  model.eval();
  if (options.quantize !== undefined && engine === 'tfjs')
    throw new XltConfigError('--quantize int8 runs on onnxruntime, not tfjs', { field: 'quantize' });
  if (engine === 'tfjs') return tfjsRunner(model);
  const isXmod = model.config.model_type === 'xmod';
  const mixtures = new Map<string, LoraMixtureSpec>(
    mixtureLayers(model).map(([name, m]) => [
      name,
      { mode: m.mode, languages: [...m.languages], scaling: m.scaling, k: m.k, pooling: m.pooling },
    ]),
  );
  const languageRouted = [...mixtures.values()].some((m) => m.mode === 'language');
  if (isXmod && languageRouted) {
    if (engine === 'onnxruntime' || options.quantize !== undefined)
      throw new XltConfigError('an X-Mod model with a language-routed LoRA mixture runs on tfjs', {
        field: options.quantize !== undefined ? 'quantize' : 'engine',
      });
    return tfjsRunner(model);
  }
  const { model: bytes } = exportToOnnx({
    config: model.config,
    weights: moduleWeights(model as unknown as NamedParameterSource),
    head: kind === 'token' ? 'token-classification' : 'sequence-classification',
    ...(mixtures.size > 0 ? { loraMixtures: mixtures } : {}),
  });
  const onnx = await OnnxModel.load(
    options.quantize === 'int8' ? quantizeDynamicInt8(bytes).model : bytes,
    options.threads !== undefined ? { threads: options.threads } : {},
  );
  return {
    engine: 'onnxruntime',
    async run(batch, langId, expert) {
      const langIds = isXmod
        ? batch.inputIds.map(() => langId ?? model.config.default_language ?? model.config.languages[0] ?? 0)
        : languageRouted
          ? batch.inputIds.map(() => expert ?? 0)
          : undefined;
      const out = await onnx.run({
        inputIds: batch.inputIds,
        attentionMask: batch.attentionMask,
        ...(langIds !== undefined ? { langIds } : {}),
      });
      return (out.logits as { data: Float32Array }).data;
    },
    release: () => onnx.release(),
  };
}

/** Index of the largest of `n` values starting at `off`. */
function argmaxAt(x: Float32Array, off: number, n: number): number {
  let best = 0;
  for (let j = 1; j < n; j++) if ((x[off + j] as number) > (x[off + best] as number)) best = j;
  return best;
}

/** Per-example predictions of a fine-tuned model on examples of one language. */
export async function predict(
  model: XmodPreTrainedModel,
  tok: XltTokenizer,
  task: TaskName,
  examples: readonly TaskExample[],
  labels: readonly string[],
  options: { maxLength: number; batchSize: number; langId?: string; expert?: number; runner?: LogitsRunner },
): Promise<string[][] | string[]> {
  const spec = TASK_SPECS[task];
  model.eval();
  const runner = options.runner ?? tfjsRunner(model);
  const L = labels.length;
  const pad = model.config.pad_token_id;
  if (spec.kind === 'token') {
    const tagging = examples as TaggingExample[];
    const encs = [];
    for (const e of tagging)
      encs.push(
        (
          await alignLabels(tok, e.words, new Array<number>(e.words.length).fill(0), {
            maxLength: options.maxLength,
          })
        ).encoding,
      );
    const preds: string[][] = [];
    const fallback = spec.name === 'ner' ? 'O' : 'X';
    for (let i = 0; i < encs.length; i += options.batchSize) {
      const chunk = encs.slice(i, i + options.batchSize);
      const batch = collateLabelled(
        chunk.map((e) => ({ inputIds: e.ids })),
        pad,
      );
      const logits = await runner.run(batch, options.langId, options.expert);
      const T = batch.inputIds[0]?.length ?? 0;
      chunk.forEach((e, k) => {
        const tokenPreds = e.ids.map((_, t) => labels[argmaxAt(logits, (k * T + t) * L, L)] ?? fallback);
        const words = tagging[i + k] as TaggingExample;
        preds.push(wordPredictions(e.wordIds, tokenPreds, words.words.length, { fallback }));
      });
    }
    return preds;
  }
  const pairs = examples as PairExample[];
  const preds: string[] = [];
  for (let i = 0; i < pairs.length; i += options.batchSize) {
    const chunk = pairs.slice(i, i + options.batchSize);
    const enc = await tok.encodeBatch(
      chunk.map((p) => [p.a, p.b] as const),
      { maxLength: options.maxLength },
    );
    const batch = collateLabelled(
      enc.map((e) => ({ inputIds: e.ids })),
      pad,
    );
    const logits = await runner.run(batch, options.langId, options.expert);
    for (let k = 0; k < chunk.length; k++) preds.push(labels[argmaxAt(logits, k * L, L)] as string);
  }
  return preds;
}

/** One evaluated example: gold and predicted labels (per word for tagging tasks). */
export type Scored = { gold: string[]; pred: string[] } | { gold: string; pred: string };

/** Pairs gold labels with predictions. */
export function scoredExamples(examples: readonly TaskExample[], preds: string[][] | string[]): Scored[] {
  return examples.map((e, i) =>
    isTagging(e)
      ? { gold: e.labels, pred: preds[i] as string[] }
      : { gold: e.label, pred: preds[i] as string },
  );
}

/** The task's official metric (x 100) over scored examples. */
export function taskScore(task: TaskName, items: readonly Scored[]): number {
  if (task === 'ner') {
    const s = items as Array<{ gold: string[]; pred: string[] }>;
    return (
      100 *
      entityF1(
        s.map((x) => x.gold),
        s.map((x) => x.pred),
      ).f1
    );
  }
  if (task === 'pos') {
    const s = items as Array<{ gold: string[]; pred: string[] }>;
    return (
      100 *
      tokenAccuracy(
        s.map((x) => x.gold),
        s.map((x) => x.pred),
      )
    );
  }
  const s = items as Array<{ gold: string; pred: string }>;
  return (
    100 *
    accuracy(
      s.map((x) => x.gold),
      s.map((x) => x.pred),
    )
  );
}

/**
 * Sufficient statistics of one scored example for the task's metric, so that a bootstrap resample
 * is scored by summing (entity F1 is micro-averaged over sentences): ner `[true positives, predicted
 * entities, gold entities]`, pos `[correct tokens, tokens]`, classification `[correct, 1]`.
 */
export function itemStats(task: TaskName, item: Scored): [number, number, number] {
  if (task === 'ner') {
    const x = item as { gold: string[]; pred: string[] };
    const key = (e: { type: string; start: number; end: number }) => `${e.type}:${e.start}:${e.end}`;
    const gold = new Set(lenientEntities([x.gold]).map(key));
    const pred = lenientEntities([x.pred]).map(key);
    return [pred.filter((k) => gold.has(k)).length, pred.length, gold.size];
  }
  if (task === 'pos') {
    const x = item as { gold: string[]; pred: string[] };
    return [x.gold.filter((g, i) => g === x.pred[i]).length, x.gold.length, 0];
  }
  const x = item as { gold: string; pred: string };
  return [x.gold === x.pred ? 1 : 0, 1, 0];
}

/** The task's metric (x 100) from summed {@link itemStats}: equals {@link taskScore} on the same items. */
export function statsScore(task: TaskName, stats: readonly (readonly [number, number, number])[]): number {
  let a = 0;
  let b = 0;
  let c = 0;
  for (const [x, y, z] of stats) {
    a += x;
    b += y;
    c += z;
  }
  if (task === 'ner') return b + c === 0 ? 0 : (100 * 2 * a) / (b + c);
  return b === 0 ? 0 : (100 * a) / b;
}
