export { type AnnotateSliceSettings, annotateHandler, annotationCells } from './annotate.js';
export {
  canonicalJson,
  cellKey,
  checkCell,
  type GridCell,
  JOB_KINDS,
  type JobContext,
  type JobHandler,
  type JobHandlers,
  type JobKind,
  type Json,
  sha256,
} from './cell.js';
export { type CellOutcome, executeCell } from './execute.js';
export { type CellRunner, forkedCellRunner, serveForkedCells } from './fork-pool.js';
export { type GridResult, type RunGridOptions, runGrid } from './grid.js';
export { type LocalPoolOptions, runLocalPool } from './local.js';
export {
  type LanguageModuleEvent,
  MODULES_CHANNEL,
  type ModuleSubscription,
  publishLanguageModule,
  type SubscribeOptions,
  subscribeLanguageModules,
} from './modules.js';
export {
  type GridProgress,
  parseRedisUrl,
  progressLine,
  type RetryOptions,
  redactUrl,
} from './options.js';
export { localRateLimiter, type RateLimiter, redisRateLimiter } from './rate.js';
export {
  DEFAULT_PREFIX,
  type JobPayload,
  jobIdOf,
  queueName,
  type RedisGridOptions,
  runRedisGrid,
} from './redis-grid.js';
export { hasRedisServer, type LocalRedis, startLocalRedis, testRedis } from './redis-server.js';
export { type CellRecord, checksumTree, DirectoryStore, type FailedCell, type RunStore } from './store.js';
export { startWorker, type WorkerOptions, type XltWorker } from './worker.js';
