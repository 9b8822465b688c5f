import { buildInferenceGraph } from './autodiff/inference-graph.js';
import type { ModelOptions } from './graph.js';
import type { HeadKind, LoraMixtureSpec, WeightSource, XmodConfig } from './model-types.js';

export type {
  EncoderConfig,
  HeadKind,
  LoraMixtureSpec,
  OieHeadConfig,
  Weight,
  WeightSource,
  XmodConfig,
} from './model-types.js';

export interface ExportOptions extends Omit<ModelOptions, 'externalData'> {
  /** The model's config, as `readXmodConfig` / `normalizeConfig` of `@xlt/core` return it. */
  config: XmodConfig;
  weights: WeightSource;
  /** Head; default from `config.architectures`. */
  head?: HeadKind;
  /** Also output the embeddings and every layer's hidden state (`hidden_states_0..L`), for checks. */
  outputHiddenStates?: boolean;
  /** LoRA kept live instead of merged: module -> scaling (weights `<module>.lora_{A,B}.weight`). */
  lora?: Map<string, number>;
  /** LoRA mixtures with routers kept live (see `LoraMixtureSpec`); `lang_ids` becomes an input for language routing. */
  loraMixtures?: Map<string, LoraMixtureSpec>;
}

/** Picks the head from `architectures` (e.g. `XmodForMaskedLM` -> masked-lm). */
export function headFromArchitectures(architectures: string[] | undefined): HeadKind {
  const a = architectures?.[0] ?? '';
  if (a.endsWith('ForMaskedLM')) return 'masked-lm';
  if (a.endsWith('ForSequenceClassification')) return 'sequence-classification';
  if (a.endsWith('ForTokenClassification')) return 'token-classification';
  if (a.endsWith('ForQuestionAnswering')) return 'question-answering';
  if (a.endsWith('ForOpenIE')) return 'open-ie';
  return 'base';
}

/** The ONNX graph's input and output names, the same for every exported model. */
export const ONNX_IO = {
  inputIds: 'input_ids',
  attentionMask: 'attention_mask',
  langIds: 'lang_ids',
  logits: 'logits',
  startLogits: 'start_logits',
  endLogits: 'end_logits',
  lastHiddenState: 'last_hidden_state',
} as const;

/** What {@link exportToOnnx} produces: the model bytes and, when used, the external weight file's bytes. */
export interface ExportResult {
  model: Uint8Array;
  /** Present when some initializers were stored outside the model (see `externalThreshold`). */
  external?: { location: string; chunks: Uint8Array[]; size: number };
  head: HeadKind;
  metadata: Record<string, string>;
}

/**
 * Exports an X-Mod / XLM-R encoder with a head to ONNX (opset 20: LayerNormalization, exact GELU
 * as one `Gelu` node), with dynamic batch and sequence length and, for X-Mod, `lang_ids` as an input so one file
 * serves every language. Inputs: `input_ids`, `attention_mask` (int64 [batch, sequence]), `lang_ids`
 * (int64 [batch], X-Mod only). Outputs: `last_hidden_state` and the head's `logits` (QA:
 * `start_logits`, `end_logits`). LoRA is merged into the weights, or kept live with `lora` /
 * `loraMixtures` (a mixture's routers run in the graph).
 */
export function exportToOnnx(options: ExportOptions & { externalLocation?: string }): ExportResult {
  const head = options.head ?? headFromArchitectures(options.config.architectures);
  const g = buildInferenceGraph({
    config: options.config,
    weights: options.weights,
    head,
    outputHiddenStates: options.outputHiddenStates === true,
    ...(options.lora !== undefined ? { lora: options.lora } : {}),
    ...(options.loraMixtures !== undefined ? { loraMixtures: options.loraMixtures } : {}),
  });
  const metadata: Record<string, string> = {
    ...(options.metadata ?? {}),
    'xlt.head': head,
    'xlt.languages': JSON.stringify(
      options.config.languages.length > 0
        ? options.config.languages
        : ([...(options.loraMixtures?.values() ?? [])].find((m) => m.mode === 'language')?.languages ?? []),
    ),
    'xlt.default_language': options.config.default_language ?? '',
    'xlt.id2label': JSON.stringify(options.config.id2label ?? {}),
    'xlt.config': JSON.stringify(options.config),
  };
  const external =
    options.externalThreshold !== undefined
      ? { location: options.externalLocation ?? 'model.onnx.data', chunks: [] as Uint8Array[], size: 0 }
      : undefined;
  const model = g.toBytes({ ...options, metadata, ...(external ? { externalData: external } : {}) });
  const result: ExportResult = { model, head, metadata };
  if (external !== undefined && external.size > 0) result.external = external;
  return result;
}
