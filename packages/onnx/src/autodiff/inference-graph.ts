import { XltConfigError } from '@xlt/core';
import type { HeadKind, LoraMixtureSpec, WeightSource, XmodConfig } from '../model-types.js';
import { symbol } from './dims.js';
import { XmodEncoder } from './encoder.js';
import { headLogits, spanLogits } from './heads.js';
import { oieLogits } from './oie-head.js';
import { Parameters } from './parameters.js';
import { Tracer, type Value } from './tracer.js';
import { encoderInputs } from './train-graph.js';

/** Options of {@link buildInferenceGraph}. */
export interface InferenceGraphOptions {
  config: XmodConfig;
  weights: WeightSource;
  head: HeadKind;
  /** Also output the embeddings' and every layer's hidden state (`hidden_states_0..L`). */
  outputHiddenStates?: boolean;
  /** Live LoRA: module name -> scaling (see `EncoderOptions.lora`). */
  lora?: Map<string, number>;
  /** Live LoRA mixtures by module name; language routing adds the `lang_ids` input. */
  loraMixtures?: Map<string, LoraMixtureSpec>;
}

/**
 * The forward graph of a model with a head, for inference: the encoder's one traced definition with
 * every parameter frozen (an initializer) and symbolic `batch` and `sequence` sizes. Inputs
 * `input_ids`, `attention_mask` (int64 [batch, sequence]), `lang_ids` (int64 [batch], X-Mod or
 * language-routed mixtures) and, for Open IE, `pred_mask` and `pred_position`; outputs
 * `last_hidden_state` [batch, sequence, H] and the head's logits. Used by `exportToOnnx`.
 */
export function buildInferenceGraph(o: InferenceGraphOptions): Tracer {
  const t = new Tracer({ name: 'xlt' });
  const enc = new XmodEncoder(new Parameters(t, o.weights, []), o.config, {
    ...(o.lora !== undefined ? { lora: o.lora } : {}),
    ...(o.loraMixtures !== undefined ? { loraMixtures: o.loraMixtures } : {}),
  });
  const [B, S] = [symbol('batch'), symbol('sequence')];
  const byLanguage = [...(o.loraMixtures?.values() ?? [])].some((m) => m.mode === 'language');
  const inputs = encoderInputs(t, o.config, B, S, undefined, byLanguage);
  const oie =
    o.head === 'open-ie'
      ? {
          predMask: t.input('pred_mask', [B, S], 'int64'),
          predPosition: t.input('pred_position', [B, S], 'int64'),
        }
      : undefined;
  const hidden: Value[] = [];
  const x = enc.forward(inputs, hidden);
  t.output(x, 'last_hidden_state');
  if (o.outputHiddenStates === true) for (const [k, h] of hidden.entries()) t.output(h, `hidden_states_${k}`);
  if (o.head === 'base') return t;
  if (oie !== undefined) {
    const { pred, arg } = oieLogits(enc, x, oie);
    t.output(pred, 'pred_logits');
    t.output(arg, 'arg_logits');
  } else if (o.head === 'question-answering') {
    const { start, end } = spanLogits(enc, x);
    t.output(start, 'start_logits');
    t.output(end, 'end_logits');
  } else if (o.head === 'masked-lm' || o.head.endsWith('classification'))
    t.output(headLogits(enc, o.head, x), 'logits');
  else throw new XltConfigError(`head '${o.head}' cannot be exported`, { field: 'head' });
  return t;
}
