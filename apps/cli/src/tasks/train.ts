import path from 'node:path';
import { type Rng, XltConfigError } from '@xlt/core';
import { LanguageSampler, readLines } from '@xlt/data';
import { describeTrainMemory } from '@xlt/onnx';
import { NO_SPACE_LANGUAGES, readTaggedSentences, type XltTokenizer } from '@xlt/tokenizer';
import type { ParameterSource } from '@xlt/trainer';
import {
  applyTrainable,
  type BatchFn,
  collateMlm,
  type FitOptions,
  type FitSummary,
  fit,
  type LossFn,
  type MlmExample,
  summaryLine,
  type TokenBatch,
  type TrainableSpec,
} from '@xlt/trainer';
import { z } from 'zod';
import { backendSchema, dataPath, progressSink, requireFile } from './common.js';

/** Training hyper-parameters shared by pretrain, add-language and finetune. */
export const trainFields = {
  steps: z.number().int().positive(),
  batchSize: z.number().int().positive().default(16),
  gradAccumulation: z.number().int().positive().default(1),
  lr: z.number().positive(),
  warmupRatio: z.number().min(0).max(1).default(0.06),
  weightDecay: z.number().min(0).default(0.01),
  /** AdamW's second-moment decay (RoBERTa pre-trains with 0.98; PyTorch's default 0.999). */
  adamBeta2: z.number().min(0).lt(1).default(0.999),
  maxGradNorm: z.number().positive().default(1),
  maxLength: z.number().int().min(8).default(128),
  seed: z.number().int().nonnegative().default(0),
  checkpointEvery: z.number().int().positive().optional(),
  resume: z.boolean().default(false),
  engine: z.enum(['auto', 'tfjs', 'onnxruntime']).default('auto'),
  threads: z.number().int().positive().optional(),
  /** Refuse an onnxruntime run whose estimated memory exceeds this (default: the machine's memory). */
  maxMemoryGib: z.number().positive().optional(),
  backend: backendSchema,
  dataRoot: z.string().optional(),
};

/** The shared training settings after validation. */
export interface TrainSettings {
  steps: number;
  batchSize: number;
  gradAccumulation: number;
  lr: number;
  warmupRatio: number;
  weightDecay: number;
  /** AdamW's beta2 (default 0.999). */
  adamBeta2?: number | undefined;
  maxGradNorm: number;
  seed: number;
  checkpointEvery?: number | undefined;
  resume: boolean;
  engine: 'auto' | 'tfjs' | 'onnxruntime';
  threads?: number | undefined;
  /** Longest sequence fed (the memory estimate's batch shape). */
  maxLength?: number | undefined;
  maxMemoryGib?: number | undefined;
}

/** Trains the parameters `trainable` selects with @xlt/trainer `fit`, logging progress; returns the summary. */
export async function trainStage<B>(
  model: ParameterSource,
  loss: LossFn<B>,
  data: BatchFn<B>,
  s: TrainSettings,
  o: {
    trainable: TrainableSpec;
    runDir: string;
    stage: string;
    log: (l: string) => void;
    tokens?: (b: B) => number;
    /** Token slots of a batch (padding included): progress lines show the padding share. */
    slots?: (b: B) => number;
    /** Evaluation, best-model keeping and early stopping (see `FitOptions`). */
    evaluation?: Pick<
      FitOptions<B>,
      'evaluate' | 'evalEvery' | 'bestMetric' | 'greaterIsBetter' | 'earlyStoppingPatience' | 'callbacks'
    >;
    steps?: number;
    lr?: number;
    /** SALT objective on the compiled step (batches: originals then augmented copies). */
    salt?: { augWeight: number; klWeight: number };
    /** Embedding mixup on the compiled step (batches carry mixIds, mixProbs, mixLambda). */
    embeddingMixup?: boolean;
    /** Tables of which only these rows train (compiled step; see `OnnxEngineOptions.trainableRows`). */
    trainableRows?: Record<string, readonly number[]>;
  },
): Promise<FitSummary> {
  applyTrainable(model, o.trainable);
  const steps = o.steps ?? s.steps;
  const opts: FitOptions<B> = {
    lr: o.lr ?? s.lr,
    totalSteps: steps,
    schedule: { kind: 'linear', warmupRatio: s.warmupRatio },
    weightDecay: s.weightDecay,
    ...(s.adamBeta2 !== undefined ? { betas: [0.9, s.adamBeta2] as [number, number] } : {}),
    maxGradNorm: s.maxGradNorm,
    seed: s.seed,
    data,
    gradAccumulation: s.gradAccumulation,
    runDir: o.runDir,
    resume: s.resume,
    progress: progressSink(o.log),
    stage: o.stage,
    engine: s.engine,
    onnx: {
      ...(s.threads !== undefined ? { threads: s.threads } : {}),
      ...(o.salt !== undefined ? { salt: o.salt } : {}),
      ...(o.embeddingMixup === true ? { embeddingMixup: true } : {}),
      ...(o.trainableRows !== undefined ? { trainableRows: o.trainableRows } : {}),
      // the memory the compiled step needs at the largest batch, printed before the run; refused
      // before anything is allocated when over --max-memory-gib (default: the machine's memory)
      batchShape: {
        batchSize: o.salt !== undefined ? 2 * s.batchSize : s.batchSize,
        sequenceLength: s.maxLength ?? 128,
      },
      ...(s.maxMemoryGib !== undefined ? { maxMemoryBytes: s.maxMemoryGib * 1024 ** 3 } : {}),
      onMemoryEstimate: (e) => o.log(`[${o.stage}] memory: ${describeTrainMemory(e)}`),
    },
    ...(s.checkpointEvery !== undefined ? { checkpointEvery: s.checkpointEvery } : {}),
    ...(o.tokens !== undefined ? { tokens: o.tokens } : {}),
    ...(o.slots !== undefined ? { slots: o.slots } : {}),
    ...o.evaluation,
  };
  const summary = await fit(model, loss, opts);
  o.log(summaryLine(summary, o.stage));
  return summary;
}

/** Reads raw text sentences: plain text (one a line), or the first column of PAN-X/CoNLL `.tsv` files. */
export async function readText(file: string, lang: string, limit: number): Promise<string[]> {
  const out: string[] = [];
  if (/\.(tsv|conll|iob2?)$/i.test(file)) {
    for (const s of await readTaggedSentences(file, lang)) {
      if (out.length >= limit) break;
      out.push(s);
    }
    return out;
  }
  for await (const l of readLines(file)) {
    if (out.length >= limit) break;
    if (l.trim() !== '') out.push(l.trim());
  }
  return out;
}

/** Up to `maxSentences` sentences of one language from its files (paths relative to the data root). */
async function readLanguageText(
  lang: string,
  files: readonly string[],
  dataRoot: string | undefined,
  maxSentences: number,
): Promise<string[]> {
  const sentences: string[] = [];
  for (const file of files) {
    const full = requireFile(dataPath(dataRoot, file), `text.${lang}`);
    sentences.push(...(await readText(full, lang, maxSentences - sentences.length)));
  }
  return sentences;
}

/** Tokenised MLM sentences per language. */
export async function loadMlmCorpus(
  tok: XltTokenizer,
  files: Record<string, string | string[]>,
  o: { dataRoot?: string | undefined; maxSentences: number; maxLength: number; log: (l: string) => void },
): Promise<Map<string, number[][]>> {
  const out = new Map<string, number[][]>();
  for (const [lang, f] of Object.entries(files)) {
    const list = Array.isArray(f) ? f : [f];
    const sentences = await readLanguageText(lang, list, o.dataRoot, o.maxSentences);
    const ids: number[][] = [];
    for (let i = 0; i < sentences.length; i += 512) {
      const enc = await tok.encodeBatch(sentences.slice(i, i + 512), { maxLength: o.maxLength });
      for (const e of enc) if (e.ids.length > 3) ids.push(e.ids);
    }
    if (ids.length === 0)
      throw new XltConfigError(`no usable text for '${lang}'`, {
        field: `text.${lang}`,
        file: list.join(', '),
      });
    const nTok = ids.reduce((a, x) => a + x.length, 0);
    out.set(lang, ids);
    o.log(
      `${lang}: ${ids.length} sentences, ${nTok} tokens from ${list.map((x) => path.basename(x)).join(', ')}${NO_SPACE_LANGUAGES.has(lang) ? ' (no-space script)' : ''}`,
    );
  }
  return out;
}

/**
 * Packed MLM blocks per language (RoBERTa's FULL-SENTENCES packing): each language's sentences are
 * tokenised whole, joined into one stream with `</s>` after every sentence (the document boundary),
 * and cut into blocks of exactly `blockSize` tokens (`<s>` + stream + `</s>`). Every row of a batch
 * is then full: no padding. A block holds one language only (X-Mod routes rows by language); the
 * last partial block of a language is dropped unless it is the only one.
 */
export async function loadPackedMlmCorpus(
  tok: XltTokenizer,
  files: Record<string, string | string[]>,
  o: { dataRoot?: string | undefined; maxSentences: number; blockSize: number; log: (l: string) => void },
): Promise<Map<string, number[][]>> {
  const bos = tok.tokenToId('<s>');
  const eos = tok.tokenToId('</s>');
  if (bos === undefined || eos === undefined)
    throw new XltConfigError('packing needs <s> and </s> in the tokenizer', { field: 'tokenizer' });
  if (o.blockSize < 8) throw new XltConfigError('blockSize must be at least 8', { field: 'maxLength' });
  const inner = o.blockSize - 2;
  const out = new Map<string, number[][]>();
  for (const [lang, f] of Object.entries(files)) {
    const list = Array.isArray(f) ? f : [f];
    const sentences = await readLanguageText(lang, list, o.dataRoot, o.maxSentences);
    const stream: number[] = [];
    for (let i = 0; i < sentences.length; i += 512) {
      const enc = await tok.encodeBatch(sentences.slice(i, i + 512), { addSpecialTokens: false });
      for (const e of enc) {
        if (e.ids.length === 0) continue;
        for (const id of e.ids) stream.push(id);
        stream.push(eos);
      }
    }
    if (stream.length === 0)
      throw new XltConfigError(`no usable text for '${lang}'`, {
        field: `text.${lang}`,
        file: list.join(', '),
      });
    const blocks: number[][] = [];
    for (let s = 0; s + inner <= stream.length; s += inner)
      blocks.push([bos, ...stream.slice(s, s + inner), eos]);
    if (blocks.length === 0) blocks.push([bos, ...stream, eos]);
    out.set(lang, blocks);
    o.log(
      `${lang}: ${sentences.length} sentences, ${stream.length} tokens packed into ${blocks.length} blocks of ${o.blockSize} from ${list.map((x) => path.basename(x)).join(', ')}`,
    );
  }
  return out;
}

/**
 * MLM batches drawn by the multilingual sampler (language l with probability ∝ n_l^alpha, then the
 * next sentence of l's shuffled order). Batch i depends only on the seed and i (the sampler is
 * replayed when a resumed run starts at a later batch).
 */
export function mlmBatches(
  corpus: Map<string, number[][]>,
  o: {
    alpha: number;
    seed: number;
    batchSize: number;
    langIndex: (lang: string) => number | undefined;
    mask: {
      maskTokenId: number;
      vocabSize: number;
      padTokenId: number;
      specialIds: number[];
      probability: number;
      wholeWord?: boolean;
    };
  },
): { data: BatchFn<TokenBatch>; probs: Record<string, number> } {
  const sizes = Object.fromEntries([...corpus].map(([l, s]) => [l, s.length]));
  let sampler = new LanguageSampler(sizes, { alpha: o.alpha, seed: o.seed });
  let drawn = 0;
  const probs = Object.fromEntries(sampler.langs.map((l, i) => [l, sampler.probs[i] as number]));
  const data: BatchFn<TokenBatch> = ({ index, rng }: { index: number; rng: Rng }) => {
    const start = index * o.batchSize;
    if (start < drawn) {
      sampler = new LanguageSampler(sizes, { alpha: o.alpha, seed: o.seed });
      drawn = 0;
    }
    while (drawn < start) {
      sampler.next();
      drawn++;
    }
    const items: MlmExample[] = [];
    for (let k = 0; k < o.batchSize; k++) {
      const { lang, index: i } = sampler.next();
      drawn++;
      const langId = o.langIndex(lang);
      items.push({
        inputIds: (corpus.get(lang) as number[][])[i] as number[],
        ...(langId !== undefined ? { langId } : {}),
      });
    }
    const batch = collateMlm(items, o.mask, rng);
    ensureMasked(batch, o.mask, rng);
    return batch;
  };
  return { data, probs };
}

/**
 * A batch where no token was selected would have a 0/0 (NaN) loss: then one non-special token of the
 * batch is masked (short sentences, small batches).
 */
function ensureMasked(
  batch: TokenBatch,
  mask: { maskTokenId: number; specialIds: number[]; padTokenId: number },
  rng: Rng,
): void {
  const labels = batch.labels as number[][];
  if (labels.some((r) => r.some((v) => v !== -100))) return;
  const special = new Set([...mask.specialIds, mask.padTokenId]);
  const cands: Array<[number, number]> = [];
  batch.inputIds.forEach((r, i) => {
    r.forEach((id, t) => {
      if (!special.has(id)) cands.push([i, t]);
    });
  });
  if (cands.length === 0) return;
  const [i, t] = cands[rng.int(cands.length)] as [number, number];
  const row = batch.inputIds[i] as number[];
  (labels[i] as number[])[t] = row[t] as number;
  row[t] = mask.maskTokenId;
}

/** Number of real tokens in a batch (for tokens/s). */
export function batchTokens(b: TokenBatch): number {
  let n = 0;
  for (const r of b.attentionMask) for (const v of r) n += v;
  return n;
}

/** Number of token slots in a batch, padding included (for the padding share). */
export function batchSlots(b: TokenBatch): number {
  return b.inputIds.length * (b.inputIds[0]?.length ?? 0);
}

/** Special-token ids of an XLM-R-layout tokenizer and the MLM collator options. */
export function mlmOptions(tok: XltTokenizer, vocabSize: number, probability: number) {
  const id = (t: string) => {
    const v = tok.tokenToId(t);
    if (v === undefined) throw new XltConfigError(`the tokenizer has no ${t} token`, { field: 'tokenizer' });
    return v;
  };
  return {
    maskTokenId: id('<mask>'),
    padTokenId: id('<pad>'),
    vocabSize,
    specialIds: [id('<s>'), id('</s>'), id('<pad>')],
    probability,
  };
}
