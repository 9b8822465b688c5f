import { padTokenRows, type Rng, XltConfigError } from '@xlt/core';
import { type EncoderConfig, randomWeights, type WeightSource } from '@xlt/onnx';
import type { XltTokenizer } from '@xlt/tokenizer';
import {
  type EngineChoice,
  type FitSummary,
  fit,
  modelLoss,
  type TextSink,
  type TokenBatch,
} from '@xlt/trainer';
import { XmodForMaskedLM } from '@xlt/xmod';
import { assignWeights, snapshotWeights } from './weights.js';

/** Brief masked-LM pre-training of a random encoder (see `TrainOieOptions.pretrain`). */
export interface OiePretraining {
  sentences: readonly string[];
  steps: number;
  /** Peak learning rate (default 2e-3), linear warm-up over 10% of the steps, then decay to 0. */
  lr?: number;
  batchSize?: number;
  /** Share of tokens masked (default 0.15: 80% `<mask>`, 10% a random token, 10% kept). */
  maskProb?: number;
}

/**
 * Masks a batch of encoded sentences as BERT does (special tokens never; at least one token per
 * row), padded to the longest, with labels -100 off the masked positions.
 */
function maskedBatch(
  rows: ReadonlyArray<readonly number[]>,
  rng: Rng,
  o: { maskId: number; padId: number; vocabSize: number; p: number; special: ReadonlySet<number> },
): TokenBatch {
  const S = Math.max(...rows.map((r) => r.length));
  const masked: number[][] = [];
  const labels: number[][] = [];
  for (const r of rows) {
    const ids: number[] = [];
    const lab: number[] = [];
    for (const id of r) {
      if (!o.special.has(id) && rng.next() < o.p) {
        lab.push(id);
        const u = rng.next();
        ids.push(u < 0.8 ? o.maskId : u < 0.9 ? 3 + rng.int(o.vocabSize - 4) : id);
      } else {
        lab.push(-100);
        ids.push(id);
      }
    }
    if (!lab.some((l) => l !== -100)) {
      const k = 1 + rng.int(Math.max(1, r.length - 2));
      lab[k] = r[k] as number;
      ids[k] = o.maskId;
    }
    masked.push(ids);
    labels.push([...lab, ...new Array<number>(S - r.length).fill(-100)]);
  }
  return { ...padTokenRows(masked, o.padId), labels };
}

/**
 * Pre-trains the encoder of `config` with masked LM through `@xlt/trainer`'s `fit` (the engine
 * `engine` picks; `auto`: the compiled onnxruntime step), from random weights initialised as
 * transformers does. X-Mod encoders pre-train through the default language's modules. Returns the
 * trained `roberta.*` tensors and the run's summary.
 */
export async function pretrainEncoder(
  config: EncoderConfig,
  tokenizer: XltTokenizer,
  o: OiePretraining & {
    seed: number;
    maxLength: number;
    engine: EngineChoice;
    threads?: number;
    progress?: TextSink;
    onStep?: (step: number, loss: number) => void;
  },
): Promise<{ encoder: WeightSource; summary: FitSummary }> {
  const maskId = tokenizer.tokenToId('<mask>');
  if (maskId === undefined)
    throw new XltConfigError('the tokenizer has no <mask> token for pre-training', { field: 'pretrain' });
  if (o.sentences.length === 0)
    throw new XltConfigError('masked-LM pre-training needs sentences', { field: 'pretrain.sentences' });
  const encoded = await Promise.all(
    o.sentences.map((s) => tokenizer.encode(s, { maxLength: o.maxLength }).then((e) => e.ids)),
  );
  const langs = config.languages ?? [];
  const d = langs.length > 0 ? Math.max(0, langs.indexOf(config.default_language ?? '')) : -1;
  const model = new XmodForMaskedLM({
    ...config,
    architectures: [config.model_type === 'xmod' ? 'XmodForMaskedLM' : 'XLMRobertaForMaskedLM'],
    hidden_dropout_prob: config.hidden_dropout_prob ?? 0,
    attention_probs_dropout_prob: config.attention_probs_dropout_prob ?? 0,
  });
  try {
    assignWeights(model, randomWeights(config, 'masked-lm', o.seed, 0.02, 'hf'));
    const bs = o.batchSize ?? 16;
    const masking = {
      maskId,
      padId: tokenizer.padId,
      vocabSize: config.vocab_size,
      p: o.maskProb ?? 0.15,
      special: new Set([0, 1, 2, tokenizer.padId]),
    };
    const summary = await fit(model, modelLoss(model), {
      lr: o.lr ?? 2e-3,
      totalSteps: o.steps,
      schedule: { kind: 'linear', warmupRatio: 0.1 },
      weightDecay: 0.01,
      maxGradNorm: 1,
      seed: o.seed,
      engine: o.engine,
      stage: 'mlm',
      ...(o.threads !== undefined ? { onnx: { threads: o.threads } } : {}),
      ...(o.progress !== undefined ? { progress: o.progress } : {}),
      data: ({ rng }) => {
        const rows = Array.from({ length: bs }, () => encoded[rng.int(encoded.length)] as number[]);
        const batch = maskedBatch(rows, rng, masking);
        return d >= 0 ? { ...batch, langIds: rows.map(() => d) } : batch;
      },
      callbacks: { onStep: (r) => o.onStep?.(r.step, r.loss) },
    });
    const trained = snapshotWeights(model);
    const encoder: WeightSource = {
      has: (n) => n.startsWith('roberta.') && trained.has(n),
      get: (n) => trained.get(n),
    };
    return { encoder, summary };
  } finally {
    model.dispose();
  }
}
