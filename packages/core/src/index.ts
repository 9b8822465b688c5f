export {
  BACKEND_ORDER,
  type BackendName,
  type BackendReport,
  backendReport,
  type InitBackendOptions,
  initBackend,
} from './backend.js';
export { type OpenIeBatch, padTokenRows, type TokenBatch } from './batch.js';
export {
  CHECKPOINT_FILES,
  checkpointFiles,
  findCheckpoint,
  legacyKeyName,
  openCheckpoint,
  openCheckpointFile,
  ShardedCheckpointReader,
  withLegacyKeyNames,
} from './checkpoint.js';
export {
  isXltError,
  XltConfigError,
  XltError,
  type XltErrorCode,
  type XltErrorLocation,
  type XltErrorOptions,
  XltFormatError,
  XltNotFoundError,
  XltShapeError,
} from './errors.js';
export { writeFileAtomic } from './files.js';
export { detectLanguage, iso3Of } from './lang.js';
export {
  labelCount,
  normalizeConfig,
  type OieHeadConfig,
  oieHeadSizes,
  readXmodConfig,
  type XmodConfig,
} from './model-config.js';
export type { TensorInfo, TensorReader } from './reader.js';
export { hashString, Rng, type RngState } from './rng.js';
export {
  bf16ToF32,
  dtypeSize,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  readSafetensors,
  type SafetensorsEntry,
  type SafetensorsFile,
  SafetensorsReader,
  toFloat32,
  writeSafetensors,
} from './safetensors.js';
export { findRepoRoot, hasSharedDir, sharedDir, sharedPath, sharedSkipReason } from './shared.js';
export type { SafetensorsData, SafetensorsDType, SafetensorsTensor } from './tensor-data.js';
export { TorchCheckpointReader, type TorchReadOptions, type TorchTensorInfo } from './torch.js';
export { tensorBytes, writeTorchCheckpoint } from './torch-write.js';
