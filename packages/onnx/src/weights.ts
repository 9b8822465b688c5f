import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SafetensorsReader, toFloat32, XltConfigError, XltFormatError, XltShapeError } from '@xlt/core';
import type { Weight, WeightSource } from './export.js';

/** Anything with PyTorch-style named parameters whose values can be read synchronously (e.g. an @xlt/xmod model). */
export interface NamedParameterSource {
  namedParameters(): Array<[string, { shape: number[]; dataSync(): ArrayLike<number> }]>;
}

/** Weights of an in-memory model (tfjs variables), by Hugging Face name. */
export function moduleWeights(model: NamedParameterSource): WeightSource {
  const params = new Map(model.namedParameters());
  return {
    has: (n) => params.has(n),
    get: (n): Weight => {
      const p = params.get(n);
      if (p === undefined) throw new XltConfigError(`model has no parameter '${n}'`, { tensor: n });
      return { data: Float32Array.from(p.dataSync()), shape: [...p.shape] };
    },
  };
}

interface PeftConfig {
  peft_type?: string;
  r: number;
  lora_alpha: number;
  use_rslora?: boolean;
  rank_pattern?: Record<string, number>;
  alpha_pattern?: Record<string, number>;
  fan_in_fan_out?: boolean;
  use_dora?: boolean;
}

/** Reads and checks a PEFT `adapter_config.json` (LoRA only; DoRA and fan_in_fan_out are refused). */
function readPeftConfig(adapterDir: string): PeftConfig {
  const cfgFile = path.join(adapterDir, 'adapter_config.json');
  let cfg: PeftConfig;
  try {
    cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as PeftConfig;
  } catch (cause) {
    throw new XltFormatError(`cannot read adapter config: ${(cause as Error).message}`, {
      file: cfgFile,
      cause,
    });
  }
  if (cfg.peft_type !== undefined && cfg.peft_type !== 'LORA') {
    throw new XltFormatError(`peft_type '${cfg.peft_type}' is not LORA`, {
      file: cfgFile,
      field: 'peft_type',
    });
  }
  if (cfg.use_dora)
    throw new XltFormatError('DoRA adapters are not supported', { file: cfgFile, field: 'use_dora' });
  if (cfg.fan_in_fan_out)
    throw new XltFormatError('fan_in_fan_out adapters are not supported', {
      file: cfgFile,
      field: 'fan_in_fan_out',
    });
  return cfg;
}

function patternValue(pattern: Record<string, number> | undefined, module: string): number | undefined {
  if (!pattern) return undefined;
  for (const [k, v] of Object.entries(pattern)) {
    if (module === k || module.endsWith(`.${k}`) || new RegExp(`(^|\\.)${k}$`).test(module)) return v;
  }
  return undefined;
}

/**
 * Merges a PEFT LoRA adapter folder (`adapter_config.json` + `adapter_model.safetensors`) into a
 * weight source at export time: W' = W + scaling * B A (embeddings: W' = W + scaling * (B A)^T), with
 * scaling = alpha / r (or alpha / sqrt(r) with rsLoRA) and PEFT's per-module rank/alpha patterns.
 */
export function withPeftAdapter(base: WeightSource, adapterDir: string): WeightSource {
  const cfg = readPeftConfig(adapterDir);
  const file = path.join(adapterDir, 'adapter_model.safetensors');
  const reader = SafetensorsReader.open(file);
  const deltas = new Map<string, { A: string; B: string; embedding: boolean; module: string }>();
  try {
    for (const key of reader.names()) {
      const m =
        /^base_model\.model\.(.+)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.[^.]+)?(?:\.weight)?$/.exec(
          key,
        );
      if (!m) continue;
      const module = m[1] as string;
      const embedding = (m[2] as string).startsWith('lora_embedding');
      const entry = deltas.get(module) ?? { A: '', B: '', embedding, module };
      if ((m[2] as string).endsWith('A')) entry.A = key;
      else entry.B = key;
      deltas.set(module, entry);
    }
    const merged = new Map<string, Weight>();
    for (const [module, d] of deltas) {
      if (!d.A || !d.B)
        throw new XltFormatError(`module '${module}' has lora_A or lora_B but not both`, { file });
      const target = `${module}.weight`;
      if (!base.has(target)) {
        throw new XltShapeError('adapter targets a weight the base model does not have', {
          file,
          tensor: target,
        });
      }
      const W = base.get(target);
      const A = reader.get(d.A);
      const B = reader.get(d.B);
      const a = toFloat32(A);
      const b = toFloat32(B);
      const r = A.shape[0] as number;
      const rank = patternValue(cfg.rank_pattern, module) ?? cfg.r;
      const alpha = patternValue(cfg.alpha_pattern, module) ?? cfg.lora_alpha;
      if (r !== rank)
        throw new XltShapeError(`lora_A rank differs from the config's r=${rank}`, {
          file,
          tensor: d.A,
          expected: [rank],
          got: [r],
        });
      const scaling = cfg.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank;
      const out = Float32Array.from(W.data);
      const [rows, cols] = W.shape as [number, number];
      if (!d.embedding) {
        // W [out, in]; B [out, r]; A [r, in]
        if (B.shape[0] !== rows || A.shape[1] !== cols || B.shape[1] !== r) {
          throw new XltShapeError('adapter shapes do not match the base weight', {
            file,
            tensor: target,
            expected: [rows, cols],
            got: [B.shape[0] as number, A.shape[1] as number],
          });
        }
        for (let i = 0; i < rows; i++)
          for (let j = 0; j < cols; j++) {
            let s = 0;
            for (let k = 0; k < r; k++) s += (b[i * r + k] as number) * (a[k * cols + j] as number);
            out[i * cols + j] = (out[i * cols + j] as number) + scaling * s;
          }
      } else {
        // embedding W [num, dim]; A [r, num]; B [dim, r]; delta = (B A)^T
        if (A.shape[1] !== rows || B.shape[0] !== cols) {
          throw new XltShapeError('embedding adapter shapes do not match the base weight', {
            file,
            tensor: target,
            expected: [rows, cols],
            got: [A.shape[1] as number, B.shape[0] as number],
          });
        }
        for (let i = 0; i < rows; i++)
          for (let j = 0; j < cols; j++) {
            let s = 0;
            for (let k = 0; k < r; k++) s += (b[j * r + k] as number) * (a[k * rows + i] as number);
            out[i * cols + j] = (out[i * cols + j] as number) + scaling * s;
          }
      }
      merged.set(target, { data: out, shape: W.shape });
    }
    return {
      has: (n) => merged.has(n) || base.has(n),
      get: (n) => merged.get(n) ?? base.get(n),
    };
  } finally {
    reader.close();
  }
}

/**
 * A PEFT LoRA adapter kept live (not merged): the base weights plus `<module>.lora_A.weight` and
 * `<module>.lora_B.weight` for each adapted module, and each module's scaling, as the compiled
 * train step takes them (`lora` option). Only linear (not embedding) LoRA modules are supported here.
 */
export function peftAdapterWeights(
  base: WeightSource,
  adapterDir: string,
): { weights: WeightSource; lora: Map<string, number>; names: string[] } {
  const cfg = readPeftConfig(adapterDir);
  const file = path.join(adapterDir, 'adapter_model.safetensors');
  const reader = SafetensorsReader.open(file);
  const extra = new Map<string, Weight>();
  const lora = new Map<string, number>();
  try {
    for (const key of reader.names()) {
      const m = /^base_model\.model\.(.+)\.(lora_A|lora_B)(?:\.[^.]+)?\.weight$/.exec(key);
      if (!m) {
        if (/lora_embedding/.test(key))
          throw new XltFormatError('embedding LoRA cannot be kept live in a compiled step; merge it', {
            file,
            tensor: key,
          });
        continue;
      }
      const module = m[1] as string;
      const t = reader.get(key);
      extra.set(`${module}.${m[2]}.weight`, { data: toFloat32(t), shape: t.shape });
      const rank = patternValue(cfg.rank_pattern, module) ?? cfg.r;
      const alpha = patternValue(cfg.alpha_pattern, module) ?? cfg.lora_alpha;
      lora.set(module, cfg.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank);
      if (!base.has(`${module}.weight`))
        throw new XltShapeError('adapter targets a module the base model does not have', {
          file,
          tensor: `${module}.weight`,
        });
    }
  } finally {
    reader.close();
  }
  return {
    weights: { has: (n) => extra.has(n) || base.has(n), get: (n) => extra.get(n) ?? base.get(n) },
    lora,
    names: [...extra.keys()],
  };
}
