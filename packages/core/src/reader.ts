import type { SafetensorsDType, SafetensorsTensor } from './tensor-data.js';

/** dtype and shape of a stored tensor, known without reading its data. */
export interface TensorInfo {
  /** Element type, named as in safetensors (a PyTorch `float32` tensor is `F32`, `int64` is `I64`). */
  dtype: SafetensorsDType;
  shape: number[];
}

/**
 * Read access to the named tensors of a checkpoint, one tensor at a time. Implemented by
 * {@link SafetensorsReader} (`.safetensors`), {@link TorchCheckpointReader} (`torch.save` zip files
 * such as `pytorch_model.bin`) and the sharded reader {@link openCheckpoint} returns for an
 * `*.index.json`, so loaders can take any of them.
 */
export interface TensorReader {
  /** The file the tensors come from (for a sharded checkpoint, its index file). */
  readonly path: string;
  /** Tensor names, in the checkpoint's order. */
  names(): string[];
  has(name: string): boolean;
  /** dtype and shape of a tensor, without reading its data; an `XltNotFoundError` if there is none. */
  info(name: string): TensorInfo;
  /** Reads one tensor's elements (row-major, in a fresh typed array); {@link toFloat32} converts them. */
  get(name: string): SafetensorsTensor;
  /** Releases the open file(s). */
  close(): void;
}
