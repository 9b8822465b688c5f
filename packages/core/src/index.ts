export {
  XltError,
  XltFormatError,
  XltConfigError,
  XltShapeError,
  XltNotFoundError,
  isXltError,
  type XltErrorCode,
  type XltErrorLocation,
  type XltErrorOptions,
} from './errors.js';
export { findRepoRoot, sharedDir, sharedPath, hasSharedDir, sharedSkipReason } from './shared.js';
export { Rng, hashString, type RngState } from './rng.js';
export {
  readSafetensors,
  writeSafetensors,
  SafetensorsReader,
  toFloat32,
  dtypeSize,
  f16ToF32,
  f32ToF16,
  bf16ToF32,
  f32ToBf16,
  type SafetensorsDType,
  type SafetensorsData,
  type SafetensorsTensor,
  type SafetensorsFile,
  type SafetensorsEntry,
} from './safetensors.js';
export {
  initBackend,
  backendReport,
  BACKEND_ORDER,
  type BackendName,
  type BackendReport,
  type InitBackendOptions,
} from './backend.js';
