export { type BatcherOptions, DynamicBatcher } from './batcher.js';
export { type ErrorBody, HttpError, type ServeErrorCode } from './errors.js';
export {
  type ModuleFleet,
  type ModuleSync,
  type ModuleSyncOptions,
  startModuleSync,
} from './fleet.js';
export { type LoadResult, loadTest } from './load.js';
export { ServeMetrics } from './metrics.js';
export { ServedModel, type ServedModelOptions, type ServeQuantization } from './model.js';
export {
  DEFAULT_LIMITS,
  DEFAULT_MAX_MODULE_BYTES,
  DEFAULT_TIMEOUTS,
  type ServeLimits,
  type ServeOptions,
  type ServeTimeouts,
} from './options.js';
export { createServer, type XltServer } from './server.js';
export type {
  ClassifyResult,
  Encoded,
  FillResult,
  QaResult,
  ServeTokenizer,
  TaggedWord,
} from './tasks.js';
export { whitespaceTokenizer, writeTinyModel, writeTinyModule } from './testing.js';
export { loadTokenizer, serveTokenizer } from './tokenizer.js';
