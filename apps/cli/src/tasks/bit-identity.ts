/**
 * Byte-for-byte comparison of two model folders: the claim of X-Mod that a language added after
 * pre-training (a new module, everything shared frozen) leaves the other languages exactly as they
 * were. Compares the weight tensors and the outputs (logits and every layer's hidden states) of both
 * models on the same inputs, run through each language's own module.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { readXmodConfig, SafetensorsReader, XltConfigError } from '@xlt/core';
import { exportToOnnx, OnnxModel, safetensorsWeights } from '@xlt/onnx';

/** The weight tensors of two checkpoints, compared byte for byte. */
export interface WeightComparison {
  /** Tensors of the first model also in the second. */
  compared: number;
  /** Of those, the ones whose dtype, shape and bytes are the same. */
  identical: number;
  /** Names of the compared tensors that differ (dtype, shape or a byte). */
  differing: string[];
  /** Tensors of the first model missing in the second. */
  missing: string[];
  /** Tensors only the second model has (the new modules). */
  added: string[];
}

/** One language's outputs of two models on the same inputs. */
export interface OutputComparison {
  /** Output names compared (logits, hidden states of every layer). */
  outputs: string[];
  /** Float32 values compared over all outputs. */
  values: number;
  /** Input blocks run. */
  blocks: number;
  /** True when every output's bytes are equal. */
  identical: boolean;
  /** The outputs whose bytes differ in some block (absent in files written before it was kept). */
  differing?: string[];
  /** Largest absolute difference of a value (0 when identical). */
  maxAbsDiff: number;
  /** SHA-256 of the first and of the second model's output bytes (all outputs, in order). */
  sha256: [string, string];
}

/** What {@link compareModels} found. */
export interface BitIdentityCheck {
  weights: WeightComparison;
  languages: Record<string, OutputComparison>;
  /** Weights identical (none differing or missing) and every language's outputs identical. */
  identical: boolean;
}

const weightsFile = (dir: string) => path.join(dir, 'model.safetensors');

/** Compares every tensor of `a`'s checkpoint with the same-named tensor of `b`'s, byte for byte. */
export function compareWeights(aDir: string, bDir: string): WeightComparison {
  const a = SafetensorsReader.open(weightsFile(aDir));
  const b = SafetensorsReader.open(weightsFile(bDir));
  try {
    const inB = new Set(b.names());
    const namesA = a.names();
    const out: WeightComparison = {
      compared: 0,
      identical: 0,
      differing: [],
      missing: [],
      added: b.names().filter((n) => !namesA.includes(n)),
    };
    for (const name of namesA) {
      if (!inB.has(name)) {
        out.missing.push(name);
        continue;
      }
      out.compared++;
      const ta = a.get(name);
      const tb = b.get(name);
      const same =
        ta.dtype === tb.dtype &&
        ta.shape.length === tb.shape.length &&
        ta.shape.every((d, i) => d === tb.shape[i]) &&
        Buffer.from(ta.data.buffer, ta.data.byteOffset, ta.data.byteLength).equals(
          Buffer.from(tb.data.buffer, tb.data.byteOffset, tb.data.byteLength),
        );
      if (same) out.identical++;
      else out.differing.push(name);
    }
    return out;
  } finally {
    a.close();
    b.close();
  }
}

async function openWithHiddenStates(dir: string, threads: number | undefined): Promise<OnnxModel> {
  const config = readXmodConfig(dir);
  const weights = safetensorsWeights(weightsFile(dir));
  try {
    const { model } = exportToOnnx({ config, weights, head: 'masked-lm', outputHiddenStates: true });
    return await OnnxModel.load(model, threads !== undefined ? { threads } : {});
  } finally {
    weights.close();
  }
}

const bytesOf = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

/**
 * Runs both models (X-Mod masked-LM folders) on each language's blocks of token ids, through the
 * language's own module, and compares every output (logits and hidden states) byte for byte.
 * Every language must have a module in both models.
 */
export async function compareOutputs(
  aDir: string,
  bDir: string,
  blocks: ReadonlyMap<string, readonly number[][]>,
  o: { batchSize?: number; threads?: number } = {},
): Promise<Record<string, OutputComparison>> {
  const a = await openWithHiddenStates(aDir, o.threads);
  const b = await openWithHiddenStates(bDir, o.threads);
  const out: Record<string, OutputComparison> = {};
  try {
    for (const [lang, list] of blocks) {
      for (const [m, dir] of [
        [a, aDir],
        [b, bDir],
      ] as const)
        if (!m.languages.includes(lang))
          throw new XltConfigError(`the model has no module '${lang}' (it has ${m.languages.join(', ')})`, {
            file: path.join(dir, 'config.json'),
            field: 'languages',
          });
      const ha = createHash('sha256');
      const hb = createHash('sha256');
      const r: OutputComparison = {
        outputs: [],
        values: 0,
        blocks: list.length,
        identical: true,
        differing: [],
        maxAbsDiff: 0,
        sha256: ['', ''],
      };
      const differing = new Set<string>();
      const bs = o.batchSize ?? 8;
      for (let i = 0; i < list.length; i += bs) {
        const batch = list.slice(i, i + bs);
        const width = Math.max(...batch.map((x) => x.length));
        const inputIds = batch.map((x) => [...x, ...new Array<number>(width - x.length).fill(1)]);
        const attentionMask = batch.map((x) => [
          ...new Array<number>(x.length).fill(1),
          ...new Array<number>(width - x.length).fill(0),
        ]);
        const langIds = batch.map(() => lang);
        const ra = await a.run({ inputIds, attentionMask, langIds });
        const rb = await b.run({ inputIds, attentionMask, langIds });
        const names = Object.keys(ra).sort();
        if (r.outputs.length === 0) r.outputs = names;
        for (const name of names) {
          const xa = (ra[name] as { data: Float32Array }).data;
          const xb = rb[name]?.data as Float32Array | undefined;
          if (xb === undefined || xb.length !== xa.length) {
            r.identical = false;
            differing.add(name);
            r.maxAbsDiff = Number.POSITIVE_INFINITY;
            continue;
          }
          ha.update(bytesOf(xa));
          hb.update(bytesOf(xb));
          r.values += xa.length;
          if (!bytesOf(xa).equals(bytesOf(xb))) {
            r.identical = false;
            differing.add(name);
            for (let k = 0; k < xa.length; k++)
              r.maxAbsDiff = Math.max(r.maxAbsDiff, Math.abs((xa[k] as number) - (xb[k] as number)));
          }
        }
      }
      r.sha256 = [ha.digest('hex'), hb.digest('hex')];
      r.differing = r.outputs.filter((n) => differing.has(n));
      out[lang] = r;
    }
  } finally {
    await a.release();
    await b.release();
  }
  return out;
}

/** {@link compareWeights} and {@link compareOutputs} of two model folders. */
export async function compareModels(
  aDir: string,
  bDir: string,
  blocks: ReadonlyMap<string, readonly number[][]>,
  o: { batchSize?: number; threads?: number } = {},
): Promise<BitIdentityCheck> {
  const weights = compareWeights(aDir, bDir);
  const languages = await compareOutputs(aDir, bDir, blocks, o);
  const identical =
    weights.differing.length === 0 &&
    weights.missing.length === 0 &&
    Object.values(languages).every((l) => l.identical);
  return { weights, languages, identical };
}
