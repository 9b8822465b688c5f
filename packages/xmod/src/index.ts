export { normalizeConfig, type XmodConfig } from '@xlt/core';
export {
  type ClassifierOutput,
  crossEntropy,
  embeddingLookup,
  type FromPretrainedOptions,
  type IdsInput,
  type LabelsInput,
  type QuestionAnsweringOutput,
  XmodAdapter,
  XmodForMaskedLM,
  XmodForQuestionAnswering,
  XmodForSequenceClassification,
  XmodForTokenClassification,
  type XmodInputs,
  XmodModel,
  type XmodModelOutput,
  XmodOutput,
  XmodPreTrainedModel,
} from './model.js';
export { dropout, Embedding, gelu, LayerNorm, Linear, type LinearLike, normalInit } from './nn/layers.js';
export { Module, ModuleDict, ModuleList } from './nn/module.js';
