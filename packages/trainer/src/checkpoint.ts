import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import {
  readSafetensors,
  type SafetensorsTensor,
  toFloat32,
  writeSafetensors,
  XltError,
  XltFormatError,
  XltNotFoundError,
} from '@xlt/core';
import type { TrainEngine } from './engine.js';
import type { AdamWParamState } from './optim.js';
import { type ParameterSource, uniqueParameters } from './params.js';
import type { TrainerState } from './trainer.js';

/** The manifest written last into every checkpoint directory. */
export interface CheckpointManifest {
  format: 'xlt-checkpoint';
  version: 1;
  step: number;
  /** sha256 (hex) of each file of the checkpoint. */
  files: Record<string, string>;
  /** Free-form data (stage, metrics, config hash...). */
  meta: Record<string, unknown>;
}

const MODEL_FILE = 'model.safetensors';
const OPTIM_FILE = 'optimizer.safetensors';
const STATE_FILE = 'trainer_state.json';
const MANIFEST = 'manifest.json';

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The model's parameters (each variable once, HF names) as float32 safetensors tensors. */
export async function modelTensors(model: ParameterSource): Promise<Map<string, SafetensorsTensor>> {
  const out = new Map<string, SafetensorsTensor>();
  for (const [name, v] of uniqueParameters(model)) {
    out.set(name, { dtype: 'F32', shape: [...v.shape], data: (await v.data()) as Float32Array });
  }
  return out;
}

/** Writes the model's parameters to a safetensors file with HF names (atomically). */
export async function saveModelWeights(model: ParameterSource, path: string): Promise<void> {
  await writeSafetensors(path, await modelTensors(model), { format: 'pt' });
}

/**
 * Assigns weights from a safetensors file to the model's parameters by name. Every parameter of the
 * model must be in the file with its shape (an XltNotFoundError / XltFormatError names the tensor).
 */
export async function loadModelWeights(model: ParameterSource, path: string): Promise<void> {
  const file = await readSafetensors(path);
  const pending: Array<[tf.Variable, tf.Tensor]> = [];
  try {
    for (const [name, v] of uniqueParameters(model)) {
      const t = file.tensors.get(name);
      if (t === undefined)
        throw new XltNotFoundError('parameter missing from the weights file', { file: path, tensor: name });
      if (t.shape.length !== v.shape.length || t.shape.some((d, i) => d !== v.shape[i]))
        throw new XltFormatError(
          `shape [${t.shape.join(', ')}] differs from the parameter's [${v.shape.join(', ')}]`,
          {
            file: path,
            tensor: name,
          },
        );
      pending.push([v, tf.tensor(toFloat32(t), v.shape, 'float32')]);
    }
    for (const [v, t] of pending) v.assign(t);
  } finally {
    tf.dispose(pending.map(([, t]) => t));
  }
}

/**
 * Saves model, optimiser moments, scheduler/step counters and RNG state into `dir`, atomically: the
 * files are written to a temporary sibling directory which is renamed to `dir` once the manifest
 * (sha256 of every file) is written. An existing `dir` is replaced.
 */
export async function saveCheckpoint<B>(
  dir: string,
  trainer: TrainEngine<B>,
  meta: Record<string, unknown> = {},
): Promise<void> {
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tmp = join(parent, `.tmp-${basename(dir)}-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  try {
    trainer.syncModel();
    await saveModelWeights(trainer.model, join(tmp, MODEL_FILE));
    const optim = await trainer.optimizer.getState();
    const tensors = new Map<string, SafetensorsTensor>();
    const steps: Record<string, number> = {};
    for (const [name, st] of optim) {
      tensors.set(`exp_avg.${name}`, { dtype: 'F32', shape: st.shape, data: st.m });
      tensors.set(`exp_avg_sq.${name}`, { dtype: 'F32', shape: st.shape, data: st.v });
      steps[name] = st.step;
    }
    await writeSafetensors(join(tmp, OPTIM_FILE), tensors);
    const state = { ...trainer.getState(), paramSteps: steps, scheduler: trainer.scheduler.spec };
    writeFileSync(join(tmp, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
    const files: Record<string, string> = {};
    for (const f of [MODEL_FILE, OPTIM_FILE, STATE_FILE]) files[f] = sha256(join(tmp, f));
    const manifest: CheckpointManifest = {
      format: 'xlt-checkpoint',
      version: 1,
      step: trainer.step,
      files,
      meta,
    };
    writeFileSync(join(tmp, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    if (existsSync(dir)) {
      const old = `${tmp}-old`;
      renameSync(dir, old);
      renameSync(tmp, dir);
      rmSync(old, { recursive: true, force: true });
    } else renameSync(tmp, dir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Reads and verifies a checkpoint's manifest: every listed file must exist with its sha256. */
export function verifyCheckpoint(dir: string): CheckpointManifest {
  const mpath = join(dir, MANIFEST);
  if (!existsSync(mpath))
    throw new XltNotFoundError('checkpoint has no manifest (incomplete or not a checkpoint)', {
      file: mpath,
    });
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(readFileSync(mpath, 'utf8')) as CheckpointManifest;
  } catch (cause) {
    throw new XltFormatError(`manifest is not valid JSON: ${(cause as Error).message}`, {
      file: mpath,
      cause,
    });
  }
  if (manifest.format !== 'xlt-checkpoint' || typeof manifest.files !== 'object' || manifest.files === null)
    throw new XltFormatError("manifest must have format 'xlt-checkpoint' and a 'files' object", {
      file: mpath,
      field: 'format',
    });
  for (const f of [MODEL_FILE, OPTIM_FILE, STATE_FILE]) {
    const want = manifest.files[f];
    const p = join(dir, f);
    if (want === undefined)
      throw new XltFormatError(`manifest does not list ${f}`, { file: mpath, field: 'files' });
    if (!existsSync(p)) throw new XltNotFoundError('checkpoint file is missing', { file: p });
    const got = sha256(p);
    if (got !== want)
      throw new XltFormatError(`checkpoint file is corrupted: sha256 ${got} but the manifest says ${want}`, {
        file: p,
      });
  }
  return manifest;
}

/**
 * Restores a checkpoint into `trainer` (its model, optimiser, scheduler, RNG and step). The whole
 * checkpoint is verified against its manifest and parsed before anything is changed, so a corrupted
 * checkpoint is reported and never half-loaded.
 */
export async function loadCheckpoint<B>(dir: string, trainer: TrainEngine<B>): Promise<CheckpointManifest> {
  const manifest = verifyCheckpoint(dir);
  const statePath = join(dir, STATE_FILE);
  const state = JSON.parse(readFileSync(statePath, 'utf8')) as TrainerState & {
    paramSteps: Record<string, number>;
  };
  if (
    !Number.isInteger(state.step) ||
    !Number.isInteger(state.schedulerStep) ||
    typeof state.paramSteps !== 'object'
  )
    throw new XltFormatError('trainer state needs integer step, schedulerStep and a paramSteps object', {
      file: statePath,
    });
  const optimPath = join(dir, OPTIM_FILE);
  const optim = await readSafetensors(optimPath);
  const moments = new Map<string, AdamWParamState>();
  const trained = new Set(trainer.parameterNames());
  for (const [name, step] of Object.entries(state.paramSteps)) {
    if (!trained.has(name))
      throw new XltError(
        'STATE',
        'checkpoint has optimiser state for a parameter this trainer does not train',
        {
          file: optimPath,
          tensor: name,
        },
      );
    const m = optim.tensors.get(`exp_avg.${name}`);
    const v = optim.tensors.get(`exp_avg_sq.${name}`);
    if (m === undefined || v === undefined)
      throw new XltNotFoundError('optimiser moments missing', { file: optimPath, tensor: name });
    moments.set(name, { m: toFloat32(m), v: toFloat32(v), shape: m.shape, step });
  }
  // Model weights are checked (names, shapes) before any assignment inside loadModelWeights.
  await loadModelWeights(trainer.model, join(dir, MODEL_FILE));
  trainer.optimizer.setState(moments);
  trainer.setState(state);
  return manifest;
}

/** Checkpoint directories (`step-NNNNNNNN`) under `dir`, oldest first. */
export function listCheckpoints(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => /^step-\d+$/.test(n))
    .sort()
    .map((n) => join(dir, n));
}

/** The name of the checkpoint directory for a step. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}
