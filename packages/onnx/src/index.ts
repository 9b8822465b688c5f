export { loadNativeAdamw, type NativeAdamwOptions, type NativeAdamwStatus } from './adamw-native.js';
/** Reverse-mode autodiff over traced ONNX graphs (op vocabulary, tracer, gradient rules, AdamW). */
export * as autodiff from './autodiff/index.js';
export {
  buildApplyGraph,
  buildTracedTrainGraph,
  buildTrainGraph,
  type TracedAdamWSettings,
  type TracedTrainGraphOptions,
} from './autodiff/index.js';
export {
  type EncoderConfig,
  type ExportOptions,
  type ExportResult,
  exportToOnnx,
  type HeadKind,
  headFromArchitectures,
  ONNX_IO,
  type Weight,
  type WeightSource,
} from './export.js';
export { exportModelDir, writeOnnxModel } from './files.js';
export {
  type AttrValue,
  type Dim,
  type ElemType,
  GraphBuilder,
  type InitData,
  type ModelOptions,
} from './graph.js';
export {
  checkTrainMemory,
  describeTrainMemory,
  estimateTrainMemory,
  FUSED_UPDATE_LIMIT,
  formatGiB,
  MEM_PATTERN_LIMIT,
  type MemoryPart,
  type TrainMemoryEstimate,
  type TrainMemoryOptions,
  usesFusedUpdate,
  XltMemoryError,
} from './memory.js';
export { type CachedModel, loadCachedModel, ModelCacheKey, type ModelCacheOptions } from './model-cache.js';
export type { LoraMixtureSpec, OieHeadConfig } from './model-types.js';
export { type QuantizeOptions, type QuantizeResult, quantizeDynamicInt8 } from './quantize.js';
export { randomWeights, weightShapes } from './random.js';
export {
  checkpointWeights,
  type OnnxInputs,
  OnnxModel,
  type OnnxModelOptions,
  type OnnxOutput,
  readEncoderConfig,
  readerWeights,
  safetensorsWeights,
} from './runner.js';
export { cachedSession } from './session-cache.js';
export {
  type CompiledTrainState,
  CompiledTrainStep,
  type CompiledTrainStepOptions,
  linearWarmupDecay,
  type TrainBatch,
} from './step.js';
export {
  type AdamWSettings,
  defaultNoDecay,
  type TrainGraph,
  type TrainGraphOptions,
  type TrainGraphSignature,
} from './train-types.js';
export { moduleWeights, type NamedParameterSource, withPeftAdapter } from './weights.js';
