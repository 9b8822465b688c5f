import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { XltError, XltFormatError, XltNotFoundError } from './errors.js';
import { writeFileAtomic } from './files.js';
import type { TensorReader } from './reader.js';
import type { SafetensorsData, SafetensorsDType, SafetensorsTensor } from './tensor-data.js';

/** What {@link readSafetensors} returns: tensors by name, plus the file's `__metadata__`. */
export interface SafetensorsFile {
  tensors: Map<string, SafetensorsTensor>;
  metadata: Record<string, string>;
}

const DTYPE_SIZE: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** Bytes per element of a dtype. */
export function dtypeSize(dtype: SafetensorsDType): number {
  return DTYPE_SIZE[dtype];
}

/** @internal */
export function isDType(d: unknown): d is SafetensorsDType {
  return typeof d === 'string' && Object.hasOwn(DTYPE_SIZE, d);
}

/** @internal A typed array of `dtype` over `buf` (whose length must be a multiple of the element size). */
export function viewAs(dtype: SafetensorsDType, buf: ArrayBuffer): SafetensorsData {
  switch (dtype) {
    case 'F64':
      return new Float64Array(buf);
    case 'F32':
      return new Float32Array(buf);
    case 'F16':
    case 'BF16':
    case 'U16':
      return new Uint16Array(buf);
    case 'I64':
      return new BigInt64Array(buf);
    case 'U64':
      return new BigUint64Array(buf);
    case 'I32':
      return new Int32Array(buf);
    case 'U32':
      return new Uint32Array(buf);
    case 'I16':
      return new Int16Array(buf);
    case 'I8':
      return new Int8Array(buf);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(buf);
  }
}

const MAX_HEADER = 100_000_000; // the reference implementation's limit

/** Entry of the header of an open safetensors file. */
export interface SafetensorsEntry {
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

/**
 * An open safetensors file whose tensors are read one at a time on demand, so a file larger than
 * the free heap can be loaded tensor by tensor. Close it with {@link SafetensorsReader.close}.
 */
export class SafetensorsReader implements TensorReader {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly entries: Map<string, SafetensorsEntry>;
  private fd: number | null;

  private constructor(
    path: string,
    fd: number,
    entries: Map<string, SafetensorsEntry>,
    metadata: Record<string, string>,
  ) {
    this.path = path;
    this.fd = fd;
    this.entries = entries;
    this.metadata = metadata;
  }

  /** Opens and validates the header of a safetensors file. */
  static open(path: string): SafetensorsReader {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (cause) {
      throw new XltNotFoundError(`cannot open safetensors file: ${(cause as Error).message}`, {
        file: path,
        cause,
      });
    }
    try {
      const size = fstatSync(fd).size;
      if (size < 8)
        throw new XltFormatError(`file is ${size} bytes, shorter than the 8-byte header length`, {
          file: path,
        });
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(MAX_HEADER)) {
        throw new XltFormatError(
          `header length ${headerLen} exceeds the format's limit of ${MAX_HEADER} bytes`,
          { file: path },
        );
      }
      const n = Number(headerLen);
      if (8 + n > size) {
        throw new XltFormatError(`header length ${n} runs past the end of the file (${size} bytes)`, {
          file: path,
        });
      }
      const hbuf = Buffer.alloc(n);
      readSync(fd, hbuf, 0, n, 8);
      let header: unknown;
      try {
        header = JSON.parse(hbuf.toString('utf8'));
      } catch (cause) {
        throw new XltFormatError(`header is not valid JSON: ${(cause as Error).message}`, {
          file: path,
          cause,
        });
      }
      if (header === null || typeof header !== 'object' || Array.isArray(header)) {
        throw new XltFormatError('header must be a JSON object', { file: path });
      }
      const dataStart = 8 + n;
      const dataLen = size - dataStart;
      const entries = new Map<string, SafetensorsEntry>();
      let metadata: Record<string, string> = {};
      const ranges: Array<[number, number, string]> = [];
      for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
        if (name === '__metadata__') {
          if (value === null || typeof value !== 'object' || Array.isArray(value)) {
            throw new XltFormatError('__metadata__ must be an object of strings', {
              file: path,
              field: '__metadata__',
            });
          }
          for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
            if (typeof v !== 'string') {
              throw new XltFormatError(`__metadata__ value for '${k}' must be a string`, {
                file: path,
                field: '__metadata__',
              });
            }
          }
          metadata = { ...(value as Record<string, string>) };
          continue;
        }
        const e = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
        if (e === null || typeof e !== 'object')
          throw new XltFormatError('header entry is not an object', { file: path, tensor: name });
        if (!isDType(e.dtype)) {
          throw new XltFormatError(
            `unknown dtype ${JSON.stringify(e.dtype)}; expected one of ${Object.keys(DTYPE_SIZE).join(', ')}`,
            {
              file: path,
              tensor: name,
            },
          );
        }
        if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
          throw new XltFormatError(
            `shape must be an array of non-negative integers, got ${JSON.stringify(e.shape)}`,
            {
              file: path,
              tensor: name,
            },
          );
        }
        const off = e.data_offsets;
        if (
          !Array.isArray(off) ||
          off.length !== 2 ||
          off.some((d) => !Number.isSafeInteger(d) || d < 0) ||
          off[0] > off[1]
        ) {
          throw new XltFormatError(
            `data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(off)}`,
            {
              file: path,
              tensor: name,
            },
          );
        }
        const [b, en] = off as [number, number];
        if (en > dataLen) {
          throw new XltFormatError(
            `data_offsets [${b}, ${en}] lie outside the data section of ${dataLen} bytes`,
            {
              file: path,
              tensor: name,
            },
          );
        }
        const shape = e.shape as number[];
        const numel = shape.reduce((a, d) => a * d, 1);
        const expected = numel * DTYPE_SIZE[e.dtype];
        if (en - b !== expected) {
          throw new XltFormatError(
            `data_offsets cover ${en - b} bytes but ${e.dtype} [${shape.join(', ')}] needs ${expected}`,
            { file: path, tensor: name },
          );
        }
        entries.set(name, { dtype: e.dtype, shape: [...shape], begin: dataStart + b, end: dataStart + en });
        ranges.push([b, en, name]);
      }
      ranges.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
      let cursor = 0;
      for (const [b, en, name] of ranges) {
        if (b < cursor)
          throw new XltFormatError(`data of this tensor overlaps the previous one`, {
            file: path,
            tensor: name,
          });
        if (b > cursor)
          throw new XltFormatError(`gap of ${b - cursor} bytes before this tensor's data`, {
            file: path,
            tensor: name,
          });
        cursor = en;
      }
      if (cursor !== dataLen) {
        throw new XltFormatError(`data section has ${dataLen} bytes but the tensors cover ${cursor}`, {
          file: path,
        });
      }
      return new SafetensorsReader(path, fd, entries, metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Tensor names in file order of their data. */
  names(): string[] {
    return [...this.entries.entries()].sort((a, b) => a[1].begin - b[1].begin).map(([k]) => k);
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** dtype, shape and byte range of a tensor, without reading it. */
  info(name: string): SafetensorsEntry {
    const e = this.entries.get(name);
    if (e === undefined)
      throw new XltNotFoundError('no such tensor in the file', { file: this.path, tensor: name });
    return { ...e, shape: [...e.shape] };
  }

  /** Reads one tensor's data from disk into a fresh, aligned typed array. */
  get(name: string): SafetensorsTensor {
    if (this.fd === null) throw new XltError('STATE', 'reader is closed', { file: this.path });
    const e = this.entries.get(name);
    if (e === undefined)
      throw new XltNotFoundError('no such tensor in the file', { file: this.path, tensor: name });
    const nbytes = e.end - e.begin;
    const buf = new ArrayBuffer(nbytes);
    const bytes = new Uint8Array(buf);
    let done = 0;
    while (done < nbytes) {
      const chunk = Math.min(nbytes - done, 1 << 30);
      const got = readSync(this.fd, bytes, done, chunk, e.begin + done);
      if (got <= 0)
        throw new XltFormatError('file ended while reading tensor data', { file: this.path, tensor: name });
      done += got;
    }
    return { dtype: e.dtype, shape: [...e.shape], data: viewAs(e.dtype, buf) };
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

/**
 * Reads a whole safetensors file. Each tensor's bytes are read straight into its own typed array,
 * so peak memory is the file's size (not twice it). For files larger than memory use
 * {@link SafetensorsReader}.
 */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const reader = SafetensorsReader.open(path);
  try {
    const tensors = new Map<string, SafetensorsTensor>();
    for (const name of reader.names()) tensors.set(name, reader.get(name));
    return { tensors, metadata: { ...reader.metadata } };
  } finally {
    reader.close();
  }
}

function expectedArray(dtype: SafetensorsDType): string {
  return viewAs(dtype, new ArrayBuffer(0)).constructor.name;
}

/**
 * Writes tensors to a safetensors file atomically (a temp file beside `path`, then rename). As the
 * reference implementation does, tensors are laid out by dtype size (largest first) then name, and
 * the header is padded with spaces to a multiple of 8 bytes.
 */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, SafetensorsTensor> | Record<string, SafetensorsTensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  for (const [name, t] of list) {
    if (name === '__metadata__')
      throw new XltFormatError("'__metadata__' is reserved and cannot name a tensor", { tensor: name });
    if (!isDType(t.dtype))
      throw new XltFormatError(`unknown dtype ${JSON.stringify(t.dtype)}`, { tensor: name });
    const numel = t.shape.reduce((a, d) => a * d, 1);
    const want = expectedArray(t.dtype);
    if (t.data.constructor.name !== want) {
      throw new XltFormatError(`dtype ${t.dtype} needs a ${want}, got a ${t.data.constructor.name}`, {
        tensor: name,
      });
    }
    if (t.data.length !== numel) {
      throw new XltFormatError(
        `shape [${t.shape.join(', ')}] has ${numel} elements but data has ${t.data.length}`,
        { tensor: name },
      );
    }
  }
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string')
      throw new XltFormatError(`metadata value for '${k}' must be a string`, { field: k });
  }
  list.sort(
    (a, b) => DTYPE_SIZE[b[1].dtype] - DTYPE_SIZE[a[1].dtype] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0),
  );
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of list) {
    const n = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad > 0) headerBytes = Buffer.concat([headerBytes, Buffer.alloc(pad, 0x20)]);
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(headerBytes.length));
  writeFileAtomic(path, [
    lenBuf,
    headerBytes,
    ...list.map(([, t]) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
  ]);
}

/** Converts an IEEE half-precision word to a float. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Number.POSITIVE_INFINITY;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** Converts a float to the nearest IEEE half-precision word (round to nearest even). */
export function f32ToF16(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0] as number;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half >>> 10;
  return sign | half;
}

/** Converts a bfloat16 word to a float. */
export function bf16ToF32(h: number): number {
  u32Scratch[0] = (h & 0xffff) << 16;
  return f32Scratch[0] as number;
}

/** Converts a float to the nearest bfloat16 word (round to nearest even, as PyTorch does). */
export function f32ToBf16(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0] as number;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  const rounding = 0x7fff + ((x >>> 16) & 1);
  return ((x + rounding) >>> 16) & 0xffff;
}

/** The tensor's values as float32 (converting F16, BF16, F64 and integer types). */
export function toFloat32(t: SafetensorsTensor): Float32Array {
  const d = t.data;
  if (t.dtype === 'F32') return d as Float32Array;
  const out = new Float32Array(d.length);
  if (t.dtype === 'F16') for (let i = 0; i < d.length; i++) out[i] = f16ToF32(d[i] as number);
  else if (t.dtype === 'BF16') for (let i = 0; i < d.length; i++) out[i] = bf16ToF32(d[i] as number);
  else if (d instanceof BigInt64Array || d instanceof BigUint64Array)
    for (let i = 0; i < d.length; i++) out[i] = Number(d[i]);
  else for (let i = 0; i < d.length; i++) out[i] = d[i] as number;
  return out;
}
