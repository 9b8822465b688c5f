import { XltConfigError } from '@xlt/core';
import type { HeadKind, LoraMixtureSpec, WeightSource, XmodConfig } from '../model-types.js';
import type { TrainGraph, TrainGraphOptions, TrainGraphSignature } from '../train-types.js';
import { backwardWithRows, type RowGradient } from './backward.js';
import { type Dim, symbol } from './dims.js';
import { dropoutRates } from './dropout.js';
import { type EncoderInputs, type EncoderOptions, XmodEncoder } from './encoder.js';
import { type HeadLabels, headLogits, headLoss, type ObjectiveOptions, spanLogits } from './heads.js';
import { type OieInputs, oieLogits, oieLoss } from './oie-head.js';
import { add, gather, mul, raw, slice } from './ops.js';
import {
  type AdamWUpdate,
  appendAdamW,
  clipByGlobalNorm,
  globalNorm,
  type TracedAdamWSettings,
} from './optimizer.js';
import { Parameters } from './parameters.js';
import { Tracer, type Value } from './tracer.js';

/** Options of {@link buildTracedTrainGraph}. */
export interface TracedTrainGraphOptions {
  config: XmodConfig;
  /** Values of every parameter (frozen ones are baked in; trainable ones only give shapes). */
  weights: WeightSource;
  /** masked-lm, token or sequence classification, open-ie, or (losses only) question-answering. */
  head: HeadKind;
  /** Hugging Face names of the parameters that train. */
  trainable: string[];
  /**
   * `grads`: raw gradients; `adamw`: updated parameters and moments; `logits`: the head's outputs
   * only (`logits`, or `start_logits`/`end_logits`, or `pred_logits`/`arg_logits`).
   */
  mode: 'grads' | 'adamw' | 'logits';
  adamw?: TracedAdamWSettings;
  /**
   * A static batch shape to trace for; by default the batch and sequence sizes are symbolic
   * (`batch`, `sequence`) and one graph serves every batch shape.
   */
  batchSize?: number;
  sequenceLength?: number;
  /**
   * Embedding mixup with `candidates` tokens per position (symbolic by default): inputs `mix_ids`,
   * `mix_probs` [B, S, K] and `mix_lambda` [B, S] (see {@link EncoderInputs}).
   */
  embeddingMixup?: { candidates?: number };
  /**
   * masked-lm: the head runs on the labelled positions only, found in the graph from the labels;
   * with `maskedPositions` M they are the int64 input `mlm_positions` [M] instead (flat indices
   * b * S + s of the labelled positions, padded with unlabelled ones).
   */
  maskedPositions?: number;
  /**
   * masked-lm: `dense` runs the LM head on every position (unlabelled ones add nothing to the loss);
   * default `labelled` (see `maskedPositions`).
   */
  maskedLmHead?: 'labelled' | 'dense';
  /** SALT-style objective for classification heads (see {@link ObjectiveOptions}). */
  salt?: ObjectiveOptions['salt'];
  /** Live LoRA: module name -> scaling (see {@link EncoderOptions}). */
  lora?: Map<string, number>;
  /** Live LoRA mixtures by module name; language routing adds the `lang_ids` input. */
  loraMixtures?: Map<string, LoraMixtureSpec>;
  /**
   * Apply the config's dropout where transformers does in training (default true, as
   * `buildTrainGraph`); the graph then has an int64 scalar input `dropout_seed`.
   */
  dropout?: boolean;
  /** float64 for gradient checks (default float32). */
  floatType?: 'float32' | 'float64';
  /**
   * Frozen parameters as graph inputs `frozen:<name>` (listed in `signature.frozen`, fed at run
   * time) instead of initializers: the graph holds no weights, so its bytes depend on the config,
   * the head and the trainable set only, and onnxruntime keeps no copy of them.
   */
  frozenAsInputs?: boolean;
  /**
   * `grads` mode: trainable parameters (embedding tables) whose gradient the graph outputs as the
   * gathered rows' gradients, `grad_rows:<name>` [N, ...row shape] for the table rows
   * `grad_ids:<name>` [N] (repeats allowed; the dense gradient is their scatter-add), instead of a
   * dense `grad:<name>`: no zeros of the table's size, scatter or square in the graph. `grad_norm`
   * then covers the dense gradients only. A listed parameter with a use other than an axis-0 Gather
   * (the tied masked-LM decoder) gets both: `grad:<name>`, the gradient of its other uses, and the
   * rows; its gradient is their sum (`addRows`), and `grad_norm` covers the `grad:` part.
   */
  rowGradients?: readonly string[];
  /**
   * Tables of which only some rows train (parameter name -> those row indices): the other rows'
   * gradient is multiplied by 0 in the graph, in the dense form and in the rows form alike, before
   * the gradient norm. With no weight decay on the table (`CompiledTrainStep` sees to that), AdamW
   * then leaves those rows bit-identical. E.g. the vocabulary rows of a language added after
   * pre-training that no earlier language uses.
   */
  trainableRows?: ReadonlyMap<string, readonly number[]>;
  /**
   * `grads` mode: a dense gradient of more elements than this leaves the graph as row blocks
   * `grad:<name>:<k>` of at most this many elements (`gradBlocks` in the signature) instead of one
   * `grad:<name>`. onnxruntime-node passes each output through a buffer of its size that is
   * allocated and freed in every run; above glibc's largest mmap threshold (32 MB) that buffer is
   * mapped afresh every time, and the XLM-R-base table's 768 MB gradient cost about 2 s a step in
   * page faults and copies (measured). Default: no blocks.
   */
  gradBlockElements?: number;
  /**
   * Recompute the intermediates of `Tracer.recompute` groups in the backward pass instead of
   * keeping them (default true: less activation memory; false is faster where memory is not short,
   * as in the fused step of a small model). The encoder has no such group of its own: GELU is one
   * op whose gradient rule needs only its input.
   */
  recompute?: boolean;
}

/** Declares the batch inputs of an encoder graph (`input_ids`, `attention_mask`, `lang_ids`?). */
export function encoderInputs(
  t: Tracer,
  config: XmodConfig,
  B: Dim,
  S: Dim,
  mixupCandidates?: Dim,
  /** Also take `lang_ids` when the model has no languages (language-routed LoRA mixtures). */
  needLangIds = false,
): EncoderInputs {
  const K = mixupCandidates;
  const langs = config.languages.length > 0 || needLangIds;
  return {
    inputIds: t.input('input_ids', [B, S], 'int64'),
    attentionMask: t.input('attention_mask', [B, S], 'int64'),
    ...(langs ? { langIds: t.input('lang_ids', [B], 'int64') } : {}),
    ...(K !== undefined
      ? {
          mixup: {
            ids: t.input('mix_ids', [B, S, K], 'int64'),
            probs: t.input('mix_probs', [B, S, K]),
            lambda: t.input('mix_lambda', [B, S]),
          },
        }
      : {}),
  };
}

/**
 * A training step for an X-Mod / XLM-R model with a head, traced from the encoder's one forward
 * definition: forward, loss, backward by reverse-mode autodiff, global gradient norm (`grad_norm`),
 * then either the gradients (`grad:<name>`) or clipping and AdamW (`new:<name>`, `new_m:<name>`,
 * `new_v:<name>`). Inputs and outputs are named as {@link buildTrainGraph}'s.
 */
export function buildTracedTrainGraph(o: TracedTrainGraphOptions): TrainGraph {
  const t = new Tracer({
    name: 'train_step',
    floatType: o.floatType ?? 'float32',
    ...(o.recompute !== undefined ? { recompute: o.recompute } : {}),
  });
  const p = new Parameters(t, o.weights, o.trainable, o.frozenAsInputs === true);
  const training = o.mode !== 'logits' && o.dropout !== false;
  const enc = new XmodEncoder(p, o.config, {
    ...(o.lora !== undefined ? { lora: o.lora } : {}),
    ...(o.loraMixtures !== undefined ? { loraMixtures: o.loraMixtures } : {}),
    ...(training ? { dropout: dropoutRates(o.config) } : {}),
  });
  const byLanguage = [...(o.loraMixtures?.values() ?? [])].some((m) => m.mode === 'language');
  const inputs = encoderInputs(
    t,
    o.config,
    o.batchSize ?? symbol('batch'),
    o.sequenceLength ?? symbol('sequence'),
    o.embeddingMixup !== undefined ? (o.embeddingMixup.candidates ?? symbol('candidates')) : undefined,
    byLanguage,
  );
  const batch = [inputs.inputIds.name, inputs.attentionMask.name];
  if (inputs.langIds !== undefined) batch.push(inputs.langIds.name);
  if (inputs.mixup !== undefined)
    batch.push(inputs.mixup.ids.name, inputs.mixup.probs.name, inputs.mixup.lambda.name);
  const x = enc.forward(inputs);
  const [B, S] = inputs.inputIds.shape as [Dim, Dim];
  let oie: OieInputs | undefined;
  if (o.head === 'open-ie') {
    oie = {
      predMask: t.input('pred_mask', [B, S], 'int64'),
      predPosition: t.input('pred_position', [B, S], 'int64'),
    };
    batch.push(oie.predMask.name, oie.predPosition.name);
  }
  if (o.mode === 'logits') {
    if (oie !== undefined) {
      const { pred, arg } = oieLogits(enc, x, oie);
      t.output(pred, 'pred_logits');
      t.output(arg, 'arg_logits');
    } else if (o.head === 'question-answering') {
      const { start, end } = spanLogits(enc, x);
      t.output(start, 'start_logits');
      t.output(end, 'end_logits');
    } else t.output(headLogits(enc, o.head, x), 'logits');
    return { model: t.toBytes(), signature: { batch, params: [], ...fedFrozen(p) } };
  }
  const label = (name: string, shape: Dim[]) => {
    const v = t.input(name, shape, 'int64');
    batch.push(v.name);
    return v;
  };
  let loss: Value;
  if (oie !== undefined)
    loss = oieLoss(enc, x, oie, {
      predLabels: label('pred_labels', [B, S]),
      argLabels: label('arg_labels', [B, S]),
    });
  else {
    const labels: HeadLabels =
      o.head === 'question-answering'
        ? { startPositions: label('start_positions', [B]), endPositions: label('end_positions', [B]) }
        : {
            labels: label('labels', o.head === 'sequence-classification' ? [B] : [B, S]),
            ...(o.maskedPositions !== undefined
              ? { positions: label('mlm_positions', [o.maskedPositions]) }
              : {}),
          };
    loss = headLoss(enc, o.head, x, labels, {
      ...(o.salt !== undefined ? { salt: o.salt } : {}),
      ...(o.maskedLmHead === 'dense' ? { denseMaskedLm: true } : {}),
    });
  }
  const seed = enc.drop?.sites.seedInput;
  if (seed !== undefined) batch.push(seed.name);
  t.output(loss, 'loss');
  const used = new Map(p.used().map((u) => [u.name, u.value]));
  const params: Array<{ name: string; value: Value }> = o.trainable.map((name) => {
    const value = used.get(name);
    if (value === undefined)
      throw new XltConfigError(`trainable parameter '${name}' is not used by the ${o.head} graph`, {
        tensor: name,
      });
    return { name, value };
  });
  const asRows = new Set(
    o.mode === 'grads' ? params.filter((q) => o.rowGradients?.includes(q.name)).map((q) => q.value) : [],
  );
  const { grads: maybeDense, rows } = backwardWithRows(
    loss,
    params.map((q) => q.value),
    asRows,
    undefined,
    { tied: true },
  );
  t.noGrad = true;
  if (o.trainableRows !== undefined) maskRows(o.trainableRows, params, maybeDense, rows);
  const dense = maybeDense.filter((g): g is Value => g !== undefined);
  const norm = dense.length > 0 ? globalNorm(dense) : t.scalar(0);
  t.output(norm, 'grad_norm');
  const signature: TrainGraphSignature = { batch, params: [], ...fedFrozen(p) };
  if (o.mode === 'grads') {
    // a dense gradient as one output, or as row blocks when it is larger than gradBlockElements
    const denseOutput = (g: Value, name: string, shape: number[]) => {
      const width = shape.slice(1).reduce((a, d) => a * d, 1);
      const n = (shape[0] ?? 1) * width;
      const limit = o.gradBlockElements;
      if (limit === undefined || n <= limit || shape.length < 2) return { grad: t.output(g, `grad:${name}`) };
      const per = Math.max(1, Math.floor(limit / width));
      const gradBlocks: Array<{ output: string; rows: number }> = [];
      for (let from = 0, k = 0; from < (shape[0] as number); from += per, k++) {
        const to = Math.min(shape[0] as number, from + per);
        gradBlocks.push({ output: t.output(slice(g, 0, from, to), `grad:${name}:${k}`), rows: to - from });
      }
      return { gradBlocks };
    };
    params.forEach(({ name, value }, i) => {
      const shape = [...value.shape] as number[];
      const row = rows.get(value);
      if (row !== undefined) {
        const gradRows = t.output(row.rows, `grad_rows:${name}`);
        const gradIds = t.output(row.ids, `grad_ids:${name}`);
        const other = maybeDense[i];
        signature.params.push({
          name,
          shape,
          input: value.name,
          gradRows,
          gradIds,
          // a tied table: its other uses' gradient beside the rows
          ...(other !== undefined ? denseOutput(other, name, shape) : {}),
        });
      } else
        signature.params.push({
          name,
          shape,
          input: value.name,
          ...denseOutput(maybeDense[i] as Value, name, shape),
        });
    });
    return { model: t.toBytes(), signature };
  }
  const grads = maybeDense as Value[];
  if (o.adamw === undefined)
    throw new XltConfigError("mode 'adamw' needs adamw settings", { field: 'adamw' });
  appendUpdate(t, params, grads, norm, o.adamw, signature, loss);
  return { model: t.toBytes(), signature };
}

/**
 * Zeroes the gradient of every row of a table not listed in `trainableRows` (see
 * {@link TracedTrainGraphOptions.trainableRows}): dense gradients (`grads`, replaced in place)
 * times a [V, 1] 0/1 constant, row gradients times that constant's rows at their ids.
 */
function maskRows(
  trainableRows: ReadonlyMap<string, readonly number[]>,
  params: ReadonlyArray<{ name: string; value: Value }>,
  grads: Array<Value | undefined>,
  rows: Map<Value, RowGradient>,
): void {
  for (const [name, keep] of trainableRows) {
    const i = params.findIndex((q) => q.name === name);
    const param = params[i];
    if (param === undefined)
      throw new XltConfigError(`trainableRows names '${name}', which is not a trainable parameter`, {
        tensor: name,
      });
    const [V, ...rest] = param.value.shape;
    if (typeof V !== 'number' || rest.length !== 1)
      throw new XltConfigError(`trainableRows needs a 2-D table with static rows; '${name}' is not one`, {
        tensor: name,
      });
    const mask = new Float32Array(V);
    for (const r of keep) {
      if (!Number.isInteger(r) || r < 0 || r >= V)
        throw new XltConfigError(`trainableRows of '${name}': row ${r} is not in [0, ${V})`, {
          tensor: name,
        });
      mask[r] = 1;
    }
    const m = param.value.tracer.constant(mask, [V, 1], undefined, 'row_mask');
    const g = grads[i];
    if (g !== undefined) grads[i] = mul(g, m);
    const r = rows.get(param.value);
    if (r !== undefined) rows.set(param.value, { ids: r.ids, rows: mul(r.rows, gather(m, r.ids)) });
  }
}

/** `{ frozen }` for a signature when frozen parameters are graph inputs. */
function fedFrozen(p: Parameters): Pick<TrainGraphSignature, 'frozen'> {
  const frozen = p.fedFrozen();
  return frozen.length > 0 ? { frozen } : {};
}

/**
 * A bool scalar: true when the float scalars `values` are all finite (their sum is neither NaN nor
 * infinite).
 */
function allFinite(values: readonly Value[]): Value {
  const t = (values[0] as Value).tracer;
  const sum = values.slice(1).reduce((a, b) => add(a, b), values[0] as Value);
  const nan = raw(t, 'IsNaN', [sum], [], 'bool');
  const inf = raw(t, 'IsInf', [sum], [], 'bool');
  return raw(t, 'Not', [raw(t, 'Or', [nan, inf], [], 'bool')], [], 'bool');
}

/**
 * Clipping (when set) and AdamW for `params` with gradients `grads`; fills the signature's params.
 * The update is guarded by `finite`, computed from the gradient norm (and `loss`): a non-finite step
 * outputs its inputs unchanged (see {@link appendAdamW}), and every output depends on the whole
 * backward pass, so the caller may fetch the outputs into the very buffers it feeds (an update in
 * place: no reader of a parameter runs after its new value is written).
 */
function appendUpdate(
  t: Tracer,
  params: ReadonlyArray<{ name: string; value: Value }>,
  grads: readonly Value[],
  norm: Value,
  s: TracedAdamWSettings,
  signature: TrainGraphSignature,
  loss?: Value,
): void {
  const clipped = s.maxGradNorm !== undefined ? clipByGlobalNorm(grads, norm, s.maxGradNorm) : grads;
  const finite = allFinite(loss !== undefined ? [loss, norm] : [norm]);
  const { lr, step, updates } = appendAdamW(
    t,
    params.map((q, i) => ({ ...q, grad: clipped[i] as Value })),
    s,
    finite,
  );
  updates.forEach((u, i) => {
    const value = (params[i] as { value: Value }).value;
    const grad = grads[i] as Value;
    signature.params.push({
      name: u.name,
      shape: [...value.shape] as number[],
      input: value.name,
      ...(grad.producer === undefined ? { grad: grad.name } : {}),
      m: u.m.name,
      v: u.v.name,
      newParam: t.output(u.newParam, `new:${u.name}`),
      newM: t.output(u.newM, `new_m:${u.name}`),
      newV: t.output(u.newV, `new_v:${u.name}`),
    });
  });
  signature.batch.push(lr.name, step.name);
}

/**
 * The update half of a step on its own, for gradient accumulation: run the `grads` graph on each
 * micro-batch, sum the gradients (times 1/K for a mean), then run this graph once. Inputs:
 * `param:<name>`, `grad:<name>` (the accumulated gradient), `m:<name>`, `v:<name>`, `lr`, `step`;
 * outputs `grad_norm` (of the accumulated gradient, before clipping) and the updated values.
 */
export function buildApplyGraph(
  params: ReadonlyArray<{ name: string; shape: number[] }>,
  adamw: TracedAdamWSettings,
  floatType: 'float32' | 'float64' = 'float32',
): TrainGraph {
  const t = new Tracer({ name: 'apply_step', floatType });
  t.noGrad = true;
  const values = params.map((q) => ({ name: q.name, value: t.input(`param:${q.name}`, q.shape) }));
  const grads = params.map((q) => t.input(`grad:${q.name}`, q.shape));
  const norm = globalNorm(grads);
  t.output(norm, 'grad_norm');
  const signature: TrainGraphSignature = { batch: [], params: [] };
  appendUpdate(t, values, grads, norm, adamw, signature);
  return { model: t.toBytes(), signature };
}

/** The scalar input of {@link buildChunkUpdateGraph} that carries the global gradient norm. */
export const CHUNK_UPDATE_NORM = 'grad_norm';

/**
 * Clipping (when set) and AdamW on `count` slices (of one or several parameters), for an update run
 * slice by slice: the same operations as {@link buildTracedTrainGraph}'s `adamw` mode (so the same
 * float32 results), on flat inputs of any lengths; the scalars `grad_norm` (the global norm of the
 * unclipped gradient), `lr` and `step`. The signature's `params` (`slot0`, `slot1`, ...) name each
 * slice's inputs (parameter, gradient, moments) and outputs. `decay`: whether the slices' parameters
 * take weight decay. Without the finite guard: the caller runs it only after a finite loss and norm.
 * Its temporaries are a few slices, whatever the parameters' sizes.
 */
export function buildChunkUpdateGraph(adamw: TracedAdamWSettings, decay: boolean, count = 1): TrainGraph {
  if (!Number.isInteger(count) || count < 1)
    throw new XltConfigError(`an update graph needs a positive whole number of slices, got ${count}`, {
      field: 'count',
    });
  const t = new Tracer({ name: 'update_chunk', floatType: 'float32' });
  t.noGrad = true;
  const slots = Array.from({ length: count }, (_, k) => {
    const n = symbol(`n${k}`);
    return { name: `slot${k}`, value: t.input(`param:${k}`, [n]), grad: t.input(`grad:${k}`, [n]) };
  });
  const norm = t.input(CHUNK_UPDATE_NORM, []);
  const clipped =
    adamw.maxGradNorm !== undefined
      ? clipByGlobalNorm(
          slots.map((x) => x.grad),
          norm,
          adamw.maxGradNorm,
        )
      : slots.map((x) => x.grad);
  const { lr, step, updates } = appendAdamW(
    t,
    slots.map((x, k) => ({ name: x.name, value: x.value, grad: clipped[k] as Value })),
    { ...adamw, noDecay: () => !decay },
  );
  const signature: TrainGraphSignature = {
    batch: [lr.name, step.name],
    params: slots.map((x, k) => {
      const u = updates[k] as AdamWUpdate;
      return {
        name: x.name,
        shape: [],
        input: x.value.name,
        grad: x.grad.name,
        m: u.m.name,
        v: u.v.name,
        newParam: t.output(u.newParam, `new:${x.name}`),
        newM: t.output(u.newM, `new_m:${x.name}`),
        newV: t.output(u.newV, `new_v:${x.name}`),
      };
    }),
  };
  return { model: t.toBytes(), signature };
}

/**
 * A training step for any batch shape (see {@link TrainGraphOptions}): the traced graph of
 * {@link buildTracedTrainGraph} with symbolic batch and sequence sizes.
 */
export function buildTrainGraph(options: TrainGraphOptions): TrainGraph {
  const { embeddingMixup, ...rest } = options;
  return buildTracedTrainGraph({ ...rest, ...(embeddingMixup === true ? { embeddingMixup: {} } : {}) });
}
