/**
 * @xlt/trainer: PyTorch-exact AdamW training loops for `@xlt/xmod` modules, multi-stage tuning
 * schedules (parameter selection by HF-name globs), objectives, atomic checkpoints with resume.
 * @packageDocumentation
 */
export {
  type CheckpointManifest,
  checkpointName,
  listCheckpoints,
  loadCheckpoint,
  loadModelWeights,
  modelTensors,
  saveCheckpoint,
  saveModelWeights,
  verifyCheckpoint,
} from './checkpoint.js';
export { type EpochBatches, epochBatches, evaluateLoss } from './data.js';
export {
  createTrainer,
  type EngineChoice,
  type EngineDecision,
  type EngineName,
  type EngineOptimizer,
  type OnnxEngineOptions,
  type OnnxSupport,
  OnnxTrainer,
  onnxSupport,
  type TrainEngine,
} from './engine.js';
export {
  type CorpusExample,
  type LanguageGrouping,
  type MultilingualBatches,
  type MultilingualBatchOptions,
  multilingualMlmBatches,
} from './multilingual.js';
export {
  batchTensors,
  collateLabelled,
  collateMlm,
  type ForwardInputs,
  type ForwardModel,
  HEAD_LOSS,
  IGNORE_INDEX,
  type MlmExample,
  type MlmOptions,
  modelLoss,
  type TokenBatch,
} from './objectives.js';
export { AdamW, type AdamWOptions, type AdamWParamState, type ClipResult, clipGradNorm } from './optim.js';
export {
  applyTrainable,
  defaultNoDecay,
  globToRegExp,
  matchesAny,
  matchesSelector,
  type ParameterSource,
  type Selector,
  type TrainableSpec,
  trainableParameters,
  uniqueParameters,
} from './params.js';
export { formatProgress, lineSink, type ProgressInfo, ProgressPrinter, type TextSink } from './progress.js';
export {
  type BatchContext,
  type BatchFn,
  type EvalMetrics,
  engineLine,
  type FitOptions,
  type FitSummary,
  fit,
  summaryLine,
  type TrainCallbacks,
} from './run.js';
export { LrScheduler, lrMultiplier, type ScheduleSpec, warmupStepsOf } from './schedule.js';
export {
  HEAD,
  LANGUAGE_MODULES,
  LORA,
  type PresetName,
  type PresetOptions,
  preset,
  type RunStagesOptions,
  runStages,
  type Stage,
  type StagePlan,
  type StageResult,
  WORD_EMBEDDINGS,
} from './stages.js';
export {
  type LossContext,
  type LossFn,
  type StepResult,
  Trainer,
  type TrainerOptions,
  type TrainerState,
} from './trainer.js';
