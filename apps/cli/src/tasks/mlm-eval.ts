import { Rng } from '@xlt/core';
import { exportToOnnx, moduleWeights, type NamedParameterSource, OnnxModel } from '@xlt/onnx';
import { collateMlm, type MlmOptions } from '@xlt/trainer';
import type { XmodForMaskedLM } from '@xlt/xmod';

/**
 * Per language: mean masked-LM cross-entropy (nats per masked token) and how many tokens it averages;
 * with `unigram` counts, also the cross-entropy a unigram model of the training text gets on the
 * same masked tokens (a model that has not learned to use context scores about that).
 */
export type HeldOutMlmLoss = Record<
  string,
  { loss: number; maskedTokens: number; blocks: number; unigramLoss?: number }
>;

/** Token counts of one language's training text: the unigram model that {@link heldOutMlmLoss} compares with. */
export interface UnigramCounts {
  counts: Float64Array;
  total: number;
}

/**
 * Per-language token counts of (packed) training blocks, the ids in `skip` (`<s>`, `</s>`, padding,
 * mask: tokens that are never masked) left out.
 */
export function unigramCounts(
  corpus: Map<string, number[][]>,
  vocabSize: number,
  skip: ReadonlySet<number>,
): Map<string, UnigramCounts> {
  const out = new Map<string, UnigramCounts>();
  for (const [lang, blocks] of corpus) {
    const counts = new Float64Array(vocabSize);
    let total = 0;
    for (const row of blocks)
      for (const id of row)
        if (!skip.has(id) && id >= 0 && id < vocabSize) {
          counts[id] = (counts[id] as number) + 1;
          total++;
        }
    out.set(lang, { counts, total });
  }
  return out;
}

/** -log p(id) under add-1/2 smoothing of a language's counts. */
function unigramNll(u: UnigramCounts, id: number): number {
  const V = u.counts.length;
  return -Math.log(((u.counts[id] ?? 0) + 0.5) / (u.total + 0.5 * V));
}

/**
 * Held-out masked-LM loss of each language: the model (exported to onnxruntime, its X-Mod module
 * per language) scores blocks of held-out text whose masks are drawn from `seed` and the language
 * only, so two models (or two runs) are scored on exactly the same masked tokens.
 */
export async function heldOutMlmLoss(
  model: XmodForMaskedLM,
  blocks: Map<string, number[][]>,
  o: {
    mask: MlmOptions;
    seed: number;
    batchSize?: number;
    maxBlocks?: number;
    threads?: number;
    /** Training-text counts per language: adds `unigramLoss` on the same masked tokens. */
    unigram?: Map<string, UnigramCounts>;
  },
): Promise<HeldOutMlmLoss> {
  model.eval();
  const { model: bytes } = exportToOnnx({
    config: model.config,
    weights: moduleWeights(model as unknown as NamedParameterSource),
    head: 'masked-lm',
  });
  const onnx = await OnnxModel.load(bytes, o.threads !== undefined ? { threads: o.threads } : {});
  const isXmod = model.config.model_type === 'xmod';
  const out: HeldOutMlmLoss = {};
  const bs = o.batchSize ?? 8;
  try {
    for (const [lang, all] of blocks) {
      const list = all.slice(0, o.maxBlocks ?? 200);
      const rng = new Rng(o.seed).fork(`heldout-${lang}`);
      const uni = o.unigram?.get(lang);
      let sum = 0;
      let uniSum = 0;
      let n = 0;
      for (let i = 0; i < list.length; i += bs) {
        const batch = collateMlm(
          list.slice(i, i + bs).map((inputIds) => ({ inputIds })),
          o.mask,
          rng,
        );
        const res = await onnx.run({
          inputIds: batch.inputIds,
          attentionMask: batch.attentionMask,
          ...(isXmod ? { langIds: batch.inputIds.map(() => lang) } : {}),
        });
        const logits = res.logits as { data: Float32Array; dims: number[] };
        const V = logits.dims[2] as number;
        const S = logits.dims[1] as number;
        (batch.labels as number[][]).forEach((row, b) => {
          row.forEach((label, t) => {
            if (label === -100) return;
            const off = (b * S + t) * V;
            let max = -Infinity;
            for (let v = 0; v < V; v++) max = Math.max(max, logits.data[off + v] as number);
            let z = 0;
            for (let v = 0; v < V; v++) z += Math.exp((logits.data[off + v] as number) - max);
            sum += max + Math.log(z) - (logits.data[off + label] as number);
            if (uni !== undefined) uniSum += unigramNll(uni, label);
            n++;
          });
        });
      }
      out[lang] = {
        loss: n > 0 ? sum / n : Number.NaN,
        maskedTokens: n,
        blocks: list.length,
        ...(uni !== undefined ? { unigramLoss: n > 0 ? uniSum / n : Number.NaN } : {}),
      };
    }
  } finally {
    await onnx.release();
  }
  return out;
}
