import { Rng } from '@xlt/core';
import { exportToOnnx, moduleWeights, type NamedParameterSource, OnnxModel } from '@xlt/onnx';
import { collateMlm, type MlmOptions } from '@xlt/trainer';
import type { XmodForMaskedLM } from '@xlt/xmod';

/** Per language: mean masked-LM cross-entropy (nats per masked token) and how many tokens it averages. */
export type HeldOutMlmLoss = Record<string, { loss: number; maskedTokens: number; blocks: number }>;

/**
 * Held-out masked-LM loss of each language: the model (exported to onnxruntime, its X-Mod module
 * per language) scores blocks of held-out text whose masks are drawn from `seed` and the language
 * only, so two models (or two runs) are scored on exactly the same masked tokens.
 */
export async function heldOutMlmLoss(
  model: XmodForMaskedLM,
  blocks: Map<string, number[][]>,
  o: { mask: MlmOptions; seed: number; batchSize?: number; maxBlocks?: number; threads?: number },
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
      let sum = 0;
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
            n++;
          });
        });
      }
      out[lang] = { loss: n > 0 ? sum / n : Number.NaN, maskedTokens: n, blocks: list.length };
    }
  } finally {
    await onnx.release();
  }
  return out;
}
