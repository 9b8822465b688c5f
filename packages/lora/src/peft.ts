import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  readSafetensors,
  type SafetensorsTensor,
  toFloat32,
  writeFileAtomic,
  writeSafetensors,
  XltConfigError,
  XltFormatError,
  XltNotFoundError,
  XltShapeError,
} from '@xlt/core';
import type { Module } from '@xlt/xmod';
import { applyLora, LoraEmbedding, LoraLinear, loraLayers, markOnlyLoraTrainable } from './lora.js';

/** The `adapter_config.json` fields xlt reads and writes (PEFT's names). */
export interface PeftLoraConfig {
  peft_type: 'LORA';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[] | string;
  use_rslora: boolean;
  use_dora: boolean;
  bias: 'none';
  fan_in_fan_out: boolean;
  init_lora_weights: boolean;
  inference_mode: boolean;
  modules_to_save: string[] | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  base_model_name_or_path: string | null;
  task_type: string | null;
  [key: string]: unknown;
}

const PREFIX = 'base_model.model.';

/** Reads and checks `adapter_config.json`. */
export function readPeftConfig(dir: string): PeftLoraConfig {
  const file = join(dir, 'adapter_config.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new XltFormatError(`cannot read adapter config: ${(cause as Error).message}`, { file, cause });
  }
  const c = raw as Partial<PeftLoraConfig>;
  if (c.peft_type !== 'LORA')
    throw new XltConfigError(`peft_type must be "LORA", got ${JSON.stringify(c.peft_type)}`, {
      file,
      field: 'peft_type',
    });
  if (typeof c.r !== 'number' || !Number.isInteger(c.r) || c.r <= 0)
    throw new XltConfigError(`r must be a positive integer, got ${JSON.stringify(c.r)}`, {
      file,
      field: 'r',
    });
  if (c.use_dora === true)
    throw new XltConfigError('DoRA adapters are not supported', { file, field: 'use_dora' });
  if (c.fan_in_fan_out === true)
    throw new XltConfigError('fan_in_fan_out adapters are not supported', { file, field: 'fan_in_fan_out' });
  if (c.bias !== undefined && c.bias !== 'none')
    throw new XltConfigError('only bias="none" is supported', { file, field: 'bias' });
  if (c.target_modules === undefined || c.target_modules === null)
    throw new XltConfigError('target_modules is missing', { file, field: 'target_modules' });
  return {
    lora_alpha: 8,
    lora_dropout: 0,
    use_rslora: false,
    use_dora: false,
    bias: 'none',
    fan_in_fan_out: false,
    init_lora_weights: true,
    inference_mode: true,
    modules_to_save: null,
    rank_pattern: {},
    alpha_pattern: {},
    base_model_name_or_path: null,
    task_type: null,
    ...c,
  } as PeftLoraConfig;
}

/**
 * Applies a PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`) to
 * `model` in place and returns it with the adapter active (its `forward` is unchanged). Only the
 * LoRA parameters are left trainable. Throws on missing/extra tensors and shape mismatches (for
 * example a base model of another size).
 */
export async function loadPeftAdapter<M extends Module>(model: M, dir: string): Promise<M> {
  const config = readPeftConfig(dir);
  const file = join(dir, 'adapter_model.safetensors');
  const st = await readSafetensors(file);
  applyLora(model, {
    r: config.r,
    alpha: config.lora_alpha,
    dropout: config.lora_dropout,
    useRslora: config.use_rslora,
    targetModules: config.target_modules,
    rankPattern: config.rank_pattern,
    alphaPattern: config.alpha_pattern,
  });
  loadLoraTensors(model, st.tensors, file);
  markOnlyLoraTrainable(model, config.modules_to_save ?? []);
  return model;
}

/** Copies `base_model.model.*` LoRA tensors into the model's LoRA parameters, checking coverage and shapes. */
export function loadLoraTensors(model: Module, tensors: Map<string, SafetensorsTensor>, file?: string): void {
  const params = new Map(model.namedParameters());
  const wanted = new Set(
    loraLayers(model).flatMap(([n, m]) =>
      m instanceof LoraLinear
        ? [`${n}.lora_A.weight`, `${n}.lora_B.weight`]
        : [`${n}.lora_embedding_A`, `${n}.lora_embedding_B`],
    ),
  );
  for (const [key, t] of tensors) {
    const name = key.startsWith(PREFIX) ? key.slice(PREFIX.length) : key;
    const p = params.get(name);
    if (p === undefined || !wanted.has(name))
      throw new XltNotFoundError('adapter tensor has no LoRA parameter in the model', { file, tensor: key });
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i]))
      throw new XltShapeError('adapter tensor shape does not match the model', {
        file,
        tensor: key,
        expected: p.shape,
        got: t.shape,
      });
    p.assign(tf.tensor(toFloat32(t), t.shape, 'float32'));
    wanted.delete(name);
  }
  if (wanted.size > 0) {
    throw new XltNotFoundError(`adapter file lacks ${wanted.size} LoRA tensor(s)`, {
      file,
      tensor: PREFIX + [...wanted][0],
    });
  }
}

/** The model's LoRA tensors under PEFT's saved names (`base_model.model.<path>.lora_A.weight`). */
export async function loraStateDict(model: Module): Promise<Map<string, SafetensorsTensor>> {
  const out = new Map<string, SafetensorsTensor>();
  for (const [n, m] of loraLayers(model)) {
    const entries: Array<[string, tf.Variable]> =
      m instanceof LoraEmbedding
        ? [
            [`${n}.lora_embedding_A`, m.lora_embedding_A],
            [`${n}.lora_embedding_B`, m.lora_embedding_B],
          ]
        : [
            [`${n}.lora_A.weight`, m.lora_A.weight],
            [`${n}.lora_B.weight`, m.lora_B.weight],
          ];
    for (const [k, v] of entries)
      out.set(PREFIX + k, { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array });
  }
  return out;
}

/**
 * Writes the model's LoRA layers as a PEFT adapter directory. `config` fills or overrides config
 * fields; r, lora_alpha and target_modules default to what the model's LoRA layers use.
 */
export async function savePeftAdapter(
  model: Module,
  dir: string,
  config: Partial<PeftLoraConfig> = {},
): Promise<void> {
  const layers = loraLayers(model);
  if (layers.length === 0) throw new XltNotFoundError('the model has no LoRA layers to save', { file: dir });
  const first = layers[0][1];
  const targets = [...new Set(layers.map(([n]) => n.slice(n.lastIndexOf('.') + 1)))].sort();
  const full: PeftLoraConfig = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: first.alpha,
    lora_dropout: first instanceof LoraLinear ? first.dropoutRate : 0,
    modules_to_save: null,
    peft_type: 'LORA',
    r: first.r,
    rank_pattern: {},
    revision: null,
    target_modules: targets,
    task_type: null,
    use_dora: false,
    use_rslora: Math.abs(first.scaling - first.alpha / first.r) > 1e-12,
    ...config,
  };
  for (const [n, m] of layers) {
    if (m.r !== full.r) full.rank_pattern[n] = m.r;
    if (m.alpha !== full.lora_alpha) full.alpha_pattern[n] = m.alpha;
  }
  mkdirSync(dir, { recursive: true });
  await writeSafetensors(join(dir, 'adapter_model.safetensors'), await loraStateDict(model), {
    format: 'pt',
  });
  writeFileAtomic(join(dir, 'adapter_config.json'), `${JSON.stringify(full, null, 2)}\n`);
}
