import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  type BackendName,
  initBackend,
  iso3Of,
  Rng,
  sharedPath,
  XltConfigError,
  XltNotFoundError,
} from '@xlt/core';
import { lineSink, type TextSink } from '@xlt/trainer';
import type { XmodConfig, XmodPreTrainedModel } from '@xlt/xmod';
import { z } from 'zod';

/** A map of language → file(s): `{ en: a.txt }`, `["en=a.txt", "de=b.txt"]` or `"en=a.txt"`. */
export const langFiles = z.preprocess(
  (v) => {
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list)) return v;
    const out: Record<string, string | string[]> = {};
    for (const item of list) {
      if (typeof item !== 'string') return v;
      const eq = item.indexOf('=');
      if (eq <= 0) return v;
      const lang = item.slice(0, eq);
      const file = item.slice(eq + 1);
      const prev = out[lang];
      out[lang] = prev === undefined ? file : [...(Array.isArray(prev) ? prev : [prev]), file];
    }
    return out;
  },
  z.record(
    z.string().regex(/^[A-Za-z0-9_-]+$/, 'a language code'),
    z.union([z.string(), z.array(z.string())]),
    {
      error: 'expected a mapping of language to file(s), or lang=path items',
    },
  ),
);

/** Backends of the tfjs path. */
export const backendSchema = z.enum(['auto', 'cpu', 'wasm', 'tensorflow']).default('auto');

/** The default data root: `<shared>/data` ($XLT_SHARED_DIR, else `../shared` beside the repository root). */
export function defaultDataRoot(): string {
  return sharedPath('data');
}

/** A data path: absolute, or relative to the data root. */
export function dataPath(root: string | undefined, file: string): string {
  return path.isAbsolute(file) ? file : path.resolve(root ?? defaultDataRoot(), file);
}

/** Checks that a data file exists; a clear error (exit 2) names it and the data root. */
export function requireFile(file: string, field: string): string {
  if (!existsSync(file))
    throw new XltNotFoundError(`${field}: file not found (data paths are relative to dataRoot)`, {
      file,
      field,
    });
  return file;
}

/** Picks and reports the tfjs backend. */
export async function setupBackend(backend: z.infer<typeof backendSchema>, log: (l: string) => void) {
  const name = await initBackend({
    ...(backend !== 'auto' ? { backend: backend as BackendName } : {}),
    // one short line; why other backends were not used only with XLT_VERBOSE=1
    log: (m) => log(`[backend] ${process.env.XLT_VERBOSE === '1' ? m : m.replace(/; not used: .*$/s, '')}`),
  });
  return name;
}

/** A progress sink writing complete lines through the command's log. */
export function progressSink(log: (l: string) => void): TextSink {
  return lineSink(log);
}

/**
 * The language-module key of the model for a data language: the code itself, or a module whose
 * code starts with `<lang>_` (`de` → `de_DE`). Undefined for a model without that module.
 */
export function moduleFor(config: XmodConfig, lang: string): string | undefined {
  if (config.model_type !== 'xmod') return undefined;
  if (config.languages.includes(lang)) return lang;
  return config.languages.find((l) => l.split(/[_-]/)[0] === lang);
}

/**
 * The langIds value for examples of `lang`: its module (X-Mod) or undefined (XLM-R). A language
 * without a module falls back to the default language (logged once).
 */
export function langIdFor(
  model: XmodPreTrainedModel,
  lang: string,
  log: (l: string) => void,
  warned: Set<string> = new Set(),
): string | undefined {
  const cfg = model.config;
  if (cfg.model_type !== 'xmod') return undefined;
  const m = moduleFor(cfg, lang);
  if (m !== undefined) return m;
  const fallback = cfg.default_language ?? cfg.languages[0];
  if (fallback === undefined)
    throw new XltConfigError('the X-Mod model has no language module', { field: 'languages' });
  if (!warned.has(lang)) {
    warned.add(lang);
    log(`note: the model has no module for '${lang}'; using '${fallback}' (add one with 'xlt add-language')`);
  }
  return fallback;
}

/** The language of a data file from its name (`dev-de.tsv`, `de_gsd-ud-dev.conllu`): the first 2-letter ISO code. */
export function langOfFile(file: string): string | undefined {
  const base = path.basename(file).replace(/\.[^.]+$/, '');
  return base.split(/[-_.]/).find((t) => t.length === 2 && /^[a-z]{2}$/.test(t) && iso3Of(t) !== undefined);
}

/**
 * Expands an evaluation spec into language → file: a mapping (or lang=path items), a glob whose `*`
 * (in the file name) is the language (`panx/dev-*.tsv`), or a folder (language from each name).
 */
export function expandEvalFiles(
  spec: string | Record<string, string | string[]>,
  root: string | undefined,
  languages?: readonly string[],
): Record<string, string> {
  let out: Record<string, string> = {};
  if (typeof spec !== 'string') {
    for (const [lang, f] of Object.entries(spec)) {
      if (Array.isArray(f))
        throw new XltConfigError(`eval.${lang}: give one file per language`, { field: `eval.${lang}` });
      out[lang] = requireFile(dataPath(root, f), `eval.${lang}`);
    }
  } else {
    const full = dataPath(root, spec);
    const base = path.basename(full);
    if (base.includes('*')) {
      const dir = path.dirname(full);
      if (!existsSync(dir))
        throw new XltNotFoundError('eval: folder not found', { file: dir, field: 'eval' });
      const [pre, post] = base.split('*', 2) as [string, string];
      for (const f of readdirSync(dir).sort()) {
        if (!f.startsWith(pre) || !f.endsWith(post ?? '') || f.length <= pre.length + (post ?? '').length)
          continue;
        const lang = f.slice(pre.length, f.length - (post ?? '').length);
        out[lang] = path.join(dir, f);
      }
    } else if (existsSync(full) && statSync(full).isDirectory()) {
      for (const f of readdirSync(full).sort()) {
        const lang = langOfFile(f);
        if (lang !== undefined && out[lang] === undefined) out[lang] = path.join(full, f);
      }
    } else {
      throw new XltConfigError(
        'eval: expected a mapping (lang: file or lang=path), a glob such as panx/dev-*.tsv, or a folder',
        { field: 'eval', file: full },
      );
    }
    if (Object.keys(out).length === 0)
      throw new XltNotFoundError('eval: no file matched', { file: full, field: 'eval' });
  }
  if (languages !== undefined && languages.length > 0) {
    const missing = languages.filter((l) => out[l] === undefined);
    if (missing.length > 0)
      throw new XltNotFoundError(`eval: no file for ${missing.join(', ')}`, { field: 'languages' });
    out = Object.fromEntries(languages.map((l) => [l, out[l] as string]));
  }
  return out;
}

/** Re-initialises parameters as transformers does (N(0, std) weights, zero biases, unit LayerNorm), seeded. */
export function seededInit(model: XmodPreTrainedModel, names: readonly string[] | 'all', seed: number): void {
  const rng = new Rng(seed).fork('init');
  const std = model.config.initializer_range;
  const only = names === 'all' ? undefined : new Set(names);
  for (const [n, p] of model.namedParameters()) {
    if (only !== undefined && !only.has(n)) continue;
    const isNorm = /LayerNorm|layer_norm/.test(n);
    const size = p.size;
    const data = new Float32Array(size);
    if (isNorm && n.endsWith('weight')) data.fill(1);
    else if (!n.endsWith('bias') && !n.endsWith('position_ids'))
      for (let i = 0; i < size; i++) data[i] = rng.normal(0, std);
    p.assign(tfTensor(data, p.shape));
  }
  // the padding row of the embeddings is zero, as nn.Embedding(padding_idx) initialises it
  const emb = model.namedParameters().find(([n]) => n === 'roberta.embeddings.word_embeddings.weight');
  if (emb !== undefined && (only === undefined || only.has(emb[0]))) {
    const [, e] = emb;
    const d = Float32Array.from(e.dataSync());
    const h = e.shape[1] as number;
    d.fill(0, model.config.pad_token_id * h, (model.config.pad_token_id + 1) * h);
    e.assign(tfTensor(d, e.shape));
  }
}

function tfTensor(data: Float32Array, shape: number[]): tf.Tensor {
  return tf.tensor(data, shape, 'float32');
}

/** Model sizes for `--init`. */
export const SIZES = {
  tiny: {
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 128,
    max_position_embeddings: 130,
  },
  small: {
    hidden_size: 256,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    intermediate_size: 1024,
    max_position_embeddings: 514,
  },
  base: {
    hidden_size: 768,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    intermediate_size: 3072,
    max_position_embeddings: 514,
  },
} as const;

/** Longest input the model's position table allows (XLM-R positions start after the padding index). */
export function maxInputLength(config: XmodConfig, wanted: number): number {
  return Math.min(wanted, config.max_position_embeddings - config.pad_token_id - 1);
}

/** Reads a model folder's `config.json` `xlt` block (task, source language, labels) if any. */
export interface XltModelInfo {
  task?: string;
  source_language?: string;
  max_length?: number;
}

export function xltInfo(config: XmodConfig): XltModelInfo {
  const v = config.xlt;
  return v !== null && typeof v === 'object' ? (v as XltModelInfo) : {};
}
