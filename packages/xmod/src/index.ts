export { normalizeConfig, type XmodConfig } from '@xlt/core';
export { embeddingLookup } from './embeddings.js';
export {
  type ClassifierOutput,
  type QuestionAnsweringOutput,
  XmodForMaskedLM,
  XmodForQuestionAnswering,
  XmodForSequenceClassification,
  XmodForTokenClassification,
} from './heads.js';
export type { IdsInput, LabelsInput, XmodInputs } from './inputs.js';
export { XmodAdapter, XmodOutput } from './language-adapters.js';
export { crossEntropy } from './losses.js';
export { type FromPretrainedOptions, XmodModel, type XmodModelOutput, XmodPreTrainedModel } from './model.js';
export { dropout, Embedding, gelu, LayerNorm, Linear, type LinearLike, normalInit } from './nn/layers.js';
export { Module, ModuleDict, ModuleList } from './nn/module.js';
