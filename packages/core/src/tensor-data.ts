// The element types and the in-memory form of a stored tensor, shared by the checkpoint readers
// and writers (safetensors, torch.save, sharded) and the TensorReader interface.

/** Element types of the safetensors format. */
export type SafetensorsDType =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL';

/** The typed array that holds each dtype's raw elements. F16 and BF16 are kept as their raw 16-bit words. */
export type SafetensorsData =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Int8Array
  | Uint8Array;

/** One tensor as stored in a safetensors file. */
export interface SafetensorsTensor {
  dtype: SafetensorsDType;
  shape: number[];
  /** Raw elements in row-major order; see {@link SafetensorsData}. Use {@link toFloat32} for floats. */
  data: SafetensorsData;
}
