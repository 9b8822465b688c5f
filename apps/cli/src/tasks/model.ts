import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
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
} from '@xlt/core';
import { type ApplyMixtureOptions, applyLoraMixture, mixtureLayers, type RoutingMode } from '@xlt/lora';
import { XltTokenizer } from '@xlt/tokenizer';
import {
  type XmodConfig,
  XmodForSequenceClassification,
  XmodForTokenClassification,
  type XmodPreTrainedModel,
} from '@xlt/xmod';

/** File names of a saved LoRA mixture beside the model's `model.safetensors`. */
export const MIXTURE_CONFIG = 'lora_mixture.json';
export const MIXTURE_WEIGHTS = 'lora_mixture.safetensors';

/** The serialisable options of a LoRA mixture. */
export interface MixtureSpec {
  r: number;
  alpha: number;
  targetModules: string[];
  languages: string[];
  mode: RoutingMode;
  k?: number;
}

/** Loads a tokenizer from a `tokenizer.json` or folder; by default from the model folder. */
export async function loadTokenizer(
  spec: string | undefined,
  modelDir: string | undefined,
): Promise<XltTokenizer> {
  const where = spec ?? modelDir;
  if (where === undefined)
    throw new XltNotFoundError('no tokenizer: give --tokenizer (a tokenizer.json or a folder holding one)', {
      field: 'tokenizer',
    });
  return XltTokenizer.fromFile(where);
}

/** Loads a token or sequence classification model (plus a saved LoRA mixture, when the folder has one). */
export async function loadTaskModel(
  dir: string,
  kind: 'token' | 'sequence',
  config?: Partial<XmodConfig>,
): Promise<XmodPreTrainedModel> {
  const opts = config !== undefined ? { config } : {};
  const model =
    kind === 'token'
      ? await XmodForTokenClassification.fromPretrained(dir, opts)
      : await XmodForSequenceClassification.fromPretrained(dir, opts);
  const mix = path.join(dir, MIXTURE_CONFIG);
  if (existsSync(mix)) {
    const spec = JSON.parse(readFileSync(mix, 'utf8')) as MixtureSpec;
    applyMixture(model, spec);
    const file = await readSafetensors(path.join(dir, MIXTURE_WEIGHTS));
    const params = new Map(model.namedParameters());
    for (const [name, t] of file.tensors) {
      const p = params.get(name);
      if (p === undefined)
        throw new XltFormatError('mixture tensor does not match the model', {
          file: path.join(dir, MIXTURE_WEIGHTS),
          tensor: name,
        });
      tf.tidy(() => p.assign(tf.tensor(toFloat32(t), p.shape, 'float32')));
    }
  }
  return model;
}

/** Wraps the model's target linears in LoRA mixtures. */
export function applyMixture(model: XmodPreTrainedModel, spec: MixtureSpec): string[] {
  const opts: ApplyMixtureOptions = {
    r: spec.r,
    alpha: spec.alpha,
    targetModules: spec.targetModules,
    languages: spec.languages,
    mode: spec.mode,
    ...(spec.k !== undefined ? { k: spec.k } : {}),
  };
  return applyLoraMixture(model, opts);
}

/**
 * Saves a fine-tuned model as a Hugging Face folder (`config.json`, `model.safetensors`,
 * `tokenizer.json`). A LoRA mixture is taken off the model first (the base weights keep their HF
 * names) and written beside it as `lora_mixture.json` + `lora_mixture.safetensors`.
 */
export async function saveTaskModel(
  model: XmodPreTrainedModel,
  tok: XltTokenizer,
  dir: string,
  mixture?: MixtureSpec,
): Promise<void> {
  const layers = mixtureLayers(model);
  if (layers.length > 0) {
    const tensors = new Map<string, SafetensorsTensor>();
    for (const [name, layer] of layers) {
      for (const [n, p] of layer.namedParameters()) {
        if (n.startsWith('base_layer.')) continue;
        tensors.set(`${name}.${n}`, {
          dtype: 'F32',
          shape: [...p.shape],
          data: new Float32Array(p.dataSync()),
        });
      }
    }
    for (const [name, layer] of layers) model.replaceModule(name, layer.base_layer);
    await model.savePretrained(dir);
    await writeSafetensors(path.join(dir, MIXTURE_WEIGHTS), tensors, { format: 'pt' });
    writeFileAtomic(path.join(dir, MIXTURE_CONFIG), `${JSON.stringify(mixture ?? {}, null, 2)}\n`);
  } else {
    await model.savePretrained(dir);
  }
  await tok.save(path.join(dir, 'tokenizer.json'));
}

/** The ids a masked-LM augmenter needs from a tokenizer: specials never touched, `<mask>`, `<pad>`. */
export function maskedLmTokens(tok: XltTokenizer): { special: Set<number>; maskId: number; padId: number } {
  const special = new Set(
    ['<s>', '</s>', '<pad>', '<unk>', '<mask>']
      .map((t) => tok.tokenToId(t))
      .filter((v): v is number => v !== undefined),
  );
  const maskId = tok.tokenToId('<mask>');
  if (maskId === undefined)
    throw new XltConfigError('the tokenizer has no <mask> token', { field: 'tokenizer' });
  return { special, maskId, padId: tok.tokenToId('<pad>') ?? 1 };
}
