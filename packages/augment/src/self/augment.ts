import { appendFileSync, renameSync, writeFileSync } from 'node:fs';
import { type Rng, XltConfigError } from '@xlt/core';
import type { TokenLanguageProfile } from './profile.js';

/** Anything that gives masked-LM logits [B, S, V] for a padded batch (an ONNX or tfjs model). */
export interface MaskedLmPredictor {
  predict(batch: {
    inputIds: number[][];
    attentionMask: number[][];
    langIds?: number[];
  }): Promise<{ data: Float32Array; dims: number[] }>;
}

/** One example to augment: token ids with specials, and optionally word ids and a language index. */
export interface TokenExample {
  ids: number[];
  /** Word index per token (null for specials): with `unit: 'word'` only single-token words are replaced. */
  wordIds?: Array<number | null>;
  /** Language index passed to the model (X-Mod). */
  lang?: number;
}

export interface SelfAugmentOptions {
  model: MaskedLmPredictor;
  maskTokenId: number;
  padTokenId: number;
  /** Ids never masked nor proposed (`<s>`, `<pad>`, `</s>`, `<unk>`, `<mask>` ...). */
  specialIds: ReadonlySet<number>;
  /** Fraction of eligible positions to replace (default 0.15). */
  ratio?: number;
  /** Sample among the k most likely tokens (default 10). */
  topK?: number;
  /** Softmax temperature (default 1). */
  temperature?: number;
  /** `token`: any non-special token; `word`: only tokens that are a whole word (keeps word alignment). */
  unit?: 'token' | 'word';
  /** Keep only proposals that belong to one of these languages (needs `profile`). */
  targetLanguages?: readonly string[];
  profile?: TokenLanguageProfile;
  batchSize?: number;
  rng: Rng;
  /** Also return each replaced position's top-k candidates and their sampling weights (for embedding mixup). */
  keepCandidates?: boolean;
  /** Appends one JSON line per augmented example (written to a temp file, renamed when done). */
  outFile?: string;
  onProgress?: (done: number, total: number) => void;
}

export interface AugmentedExample {
  ids: number[];
  /** Positions replaced, with the original and the new token. */
  replaced: Array<{ position: number; from: number; to: number }>;
  /** Positions chosen but left as they were (no allowed proposal). */
  kept: number[];
  /** With `keepCandidates`: per replaced position the top-k candidates and their weights (summing to 1). */
  candidates?: Array<{ position: number; ids: number[]; probs: number[] }>;
}

/**
 * SALT-style self-augmented code-switching: masks a ratio of positions and lets the model's own
 * masked-LM head propose replacements (top-k, temperature), keeping proposals that differ from the
 * original and, by option, belong to a target language. Seeded, batched, never touches special tokens.
 */
export async function selfAugment(
  examples: TokenExample[],
  options: SelfAugmentOptions,
): Promise<AugmentedExample[]> {
  const ratio = options.ratio ?? 0.15;
  const topK = options.topK ?? 10;
  const temperature = options.temperature ?? 1;
  if (!(ratio > 0 && ratio <= 1))
    throw new XltConfigError(`ratio must be in (0, 1], got ${ratio}`, { field: 'ratio' });
  if (!(topK >= 1)) throw new XltConfigError('topK must be at least 1', { field: 'topK' });
  if (!(temperature > 0)) throw new XltConfigError('temperature must be > 0', { field: 'temperature' });
  if (options.targetLanguages && !options.profile)
    throw new XltConfigError('targetLanguages needs a profile', { field: 'profile' });
  const targets = options.targetLanguages ? new Set(options.targetLanguages) : undefined;
  const unit = options.unit ?? 'token';
  const bs = options.batchSize ?? 32;
  const out: AugmentedExample[] = [];
  const tmp = options.outFile ? `${options.outFile}.tmp-${process.pid}` : undefined;
  if (tmp) writeFileSync(tmp, '');
  // choose positions first (one pass of the RNG per example, in order: reproducible across batch sizes)
  const plans = examples.map((ex) => {
    const eligible: number[] = [];
    ex.ids.forEach((id, i) => {
      if (options.specialIds.has(id)) return;
      if (unit === 'word') {
        const w = ex.wordIds?.[i];
        if (w === null || w === undefined) return;
        if (ex.wordIds?.[i - 1] === w || ex.wordIds?.[i + 1] === w) return;
      }
      eligible.push(i);
    });
    const n = Math.max(eligible.length > 0 ? 1 : 0, Math.round(ratio * eligible.length));
    return options.rng
      .shuffle(eligible)
      .slice(0, n)
      .sort((a, b) => a - b);
  });
  for (let start = 0; start < examples.length; start += bs) {
    const chunk = examples.slice(start, start + bs);
    const S = Math.max(...chunk.map((e) => e.ids.length));
    const inputIds = chunk.map((e, k) => {
      const row = [...e.ids, ...new Array<number>(S - e.ids.length).fill(options.padTokenId)];
      for (const p of plans[start + k] as number[]) row[p] = options.maskTokenId;
      return row;
    });
    const attentionMask = chunk.map((e) => [
      ...new Array<number>(e.ids.length).fill(1),
      ...new Array<number>(S - e.ids.length).fill(0),
    ]);
    const langIds = chunk.every((e) => e.lang !== undefined) ? chunk.map((e) => e.lang as number) : undefined;
    const { data, dims } = await options.model.predict({
      inputIds,
      attentionMask,
      ...(langIds ? { langIds } : {}),
    });
    const V = dims[2] as number;
    chunk.forEach((ex, k) => {
      const res: AugmentedExample = {
        ids: [...ex.ids],
        replaced: [],
        kept: [],
        ...(options.keepCandidates === true ? { candidates: [] } : {}),
      };
      for (const p of plans[start + k] as number[]) {
        const base = (k * S + p) * V;
        const from = ex.ids[p] as number;
        // candidates: top-k allowed tokens by logit
        const cands: Array<[number, number]> = [];
        for (let v = 0; v < V; v++) {
          if (v === from || options.specialIds.has(v)) continue;
          if (targets && !targets.has(options.profile?.languageOf(v) ?? '')) continue;
          const l = data[base + v] as number;
          if (cands.length < topK) {
            cands.push([v, l]);
            if (cands.length === topK) cands.sort((a, b) => b[1] - a[1]);
          } else if (l > (cands[topK - 1] as [number, number])[1]) {
            cands[topK - 1] = [v, l];
            cands.sort((a, b) => b[1] - a[1]);
          }
        }
        if (cands.length === 0) {
          res.kept.push(p);
          continue;
        }
        const maxL = Math.max(...cands.map((c) => c[1]));
        const w = cands.map((c) => Math.exp((c[1] - maxL) / temperature));
        const to = (cands[options.rng.categorical(w)] as [number, number])[0];
        res.ids[p] = to;
        res.replaced.push({ position: p, from, to });
        if (res.candidates !== undefined) {
          const total = w.reduce((a, x) => a + x, 0);
          res.candidates.push({ position: p, ids: cands.map((c) => c[0]), probs: w.map((x) => x / total) });
        }
      }
      out.push(res);
      if (tmp) appendFileSync(tmp, `${JSON.stringify(res)}\n`);
    });
    options.onProgress?.(Math.min(start + bs, examples.length), examples.length);
  }
  if (tmp && options.outFile) renameSync(tmp, options.outFile);
  return out;
}

/** A {@link MaskedLmPredictor} over anything with an `OnnxModel`-like `run` that returns `logits` (e.g. @xlt/onnx). */
export function onnxMaskedLm(model: {
  run(inputs: {
    inputIds: number[][];
    attentionMask: number[][];
    langIds?: number[];
  }): Promise<Record<string, { data: Float32Array; dims: number[] }>>;
}): MaskedLmPredictor {
  return {
    async predict(batch) {
      const out = await model.run(batch);
      const logits = out.logits;
      if (logits === undefined)
        throw new XltConfigError('the model has no `logits` output: export it with the masked-lm head');
      return logits;
    },
  };
}
