import { closeSync, fstatSync, openSync } from 'node:fs';
import { XltError, XltFormatError, XltNotFoundError } from './errors.js';
import { PyDict, PyGlobal, PyTuple, type PyValue, unpickle } from './pickle.js';
import type { TensorInfo, TensorReader } from './reader.js';
import { dtypeSize, viewAs } from './safetensors.js';
import type { SafetensorsDType, SafetensorsTensor } from './tensor-data.js';
import { LOCAL_SIG, readAt, readInto, readZipDirectory, type ZipEntry, zipEntryDataOffset } from './zip.js';

/** The largest tensor `get` returns by default (one ArrayBuffer holds at most this). */
const MAX_TENSOR_BYTES = 2 ** 32;

/** Options of {@link TorchCheckpointReader.open}. */
export interface TorchReadOptions {
  /**
   * The largest tensor (in bytes) the reader will allocate; a checkpoint that declares a larger one is
   * refused at open. Default and upper bound 4 GiB.
   */
  maxTensorBytes?: number;
}

/** PyTorch storage classes (`torch.FloatStorage`, ...) and the dtype of their elements. */
const STORAGE_DTYPES: Record<string, SafetensorsDType> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** Functions a state dict pickle may call, and the inert classes it may name. */
const REBUILD_FUNCTIONS = new Set([
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_tensor',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2',
]);
const TENSOR_TYPES = new Set(['torch.Tensor', 'torch.nn.parameter.Parameter']);
const ALLOWED_GLOBALS = [
  'collections.OrderedDict',
  ...REBUILD_FUNCTIONS,
  ...TENSOR_TYPES,
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
];
const ALLOWED = new Set(ALLOWED_GLOBALS);

/** A storage named by a persistent id: `data/<key>` in the archive. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly dtype: SafetensorsDType,
    readonly numel: number,
  ) {}
}

/** A tensor as `_rebuild_tensor_v2` describes it: a strided view of a storage. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}

/** What {@link TorchCheckpointReader.info} tells about a tensor. */
export interface TorchTensorInfo extends TensorInfo {
  /** Elements to step in the storage per index of each dimension (PyTorch's `stride()`). */
  stride: number[];
  /** First element's index in the storage. */
  storageOffset: number;
  /** Key of the storage (`<prefix>/data/<key>` in the archive); tied tensors share one. */
  storage: string;
}

interface StorageData {
  dtype: SafetensorsDType;
  numel: number;
  /** Absolute byte offset of the storage's first element in the file. */
  start: number;
  /** Bytes stored for it. */
  bytes: number;
}

function describe(v: PyValue): string {
  if (v === null) return 'None';
  if (v instanceof PyDict) return v.type;
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PyGlobal) return v.qualified;
  if (v instanceof TensorRef) return 'tensor';
  if (v instanceof StorageRef) return 'storage';
  if (Array.isArray(v)) return 'list';
  if (v instanceof Uint8Array) return 'bytes';
  return typeof v === 'object' ? 'object' : typeof v;
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i] as number;
    if (d !== 1 && stride[i] !== expected) return false;
    expected *= d;
  }
  return true;
}

/**
 * A PyTorch checkpoint written by `torch.save` (the zip format of PyTorch ≥ 1.6, e.g. Hugging Face's
 * `pytorch_model.bin`), read without PyTorch and without running its pickle: only the globals a
 * state dict needs (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`,
 * `torch._utils._rebuild_parameter`, `torch.<Type>Storage`, ...) are accepted, anything else is an
 * `XltFormatError` naming it. Opening parses the pickle; each tensor's bytes are read from disk only
 * by {@link TorchCheckpointReader.get}, so multi-GB files load tensor by tensor. Tensors sharing a
 * storage (tied weights), storage offsets and non-contiguous strides are handled. The top level must
 * be a (Ordered)dict of tensors, or hold exactly one under `state_dict` or `model`.
 */
export class TorchCheckpointReader implements TensorReader {
  readonly path: string;
  /** The archive's top folder (`archive`, `pytorch_model`, ... : torch uses the file's base name). */
  readonly prefix: string;
  private readonly tensors: Map<string, TensorRef>;
  private readonly storages: Map<string, StorageData>;
  private fd: number | null;

  private constructor(
    path: string,
    fd: number,
    prefix: string,
    tensors: Map<string, TensorRef>,
    storages: Map<string, StorageData>,
  ) {
    this.path = path;
    this.fd = fd;
    this.prefix = prefix;
    this.tensors = tensors;
    this.storages = storages;
  }

  /**
   * Opens a `torch.save` file, parses its pickle and checks every tensor against its storage: a
   * tensor may not reach past its storage nor hold more elements than its storage (a view that
   * repeats elements, such as stride 0, would make the reader allocate more than the file holds), and
   * no tensor may be larger than `maxTensorBytes`.
   */
  static open(path: string, options: TorchReadOptions = {}): TorchCheckpointReader {
    const maxTensorBytes = Math.min(options.maxTensorBytes ?? MAX_TENSOR_BYTES, MAX_TENSOR_BYTES);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (cause) {
      throw new XltNotFoundError(`cannot open PyTorch checkpoint: ${(cause as Error).message}`, {
        file: path,
        cause,
      });
    }
    try {
      const size = fstatSync(fd).size;
      const head = readAt(fd, path, 0, Math.min(size, 40), 'the file start');
      if (head.length < 4 || head.readUInt32LE(0) !== LOCAL_SIG) {
        throw new XltFormatError(
          head.toString('latin1').startsWith('version https://git-lfs')
            ? 'a Git LFS pointer, not the checkpoint: fetch the file (git lfs pull) or download it again'
            : head[0] === 0x80
              ? "a bare pickle (torch.save's legacy format before PyTorch 1.6) is not supported: expected torch.save's zip format; re-save it with a newer PyTorch or convert it to safetensors"
              : "not a zip archive: expected torch.save's zip format (PyTorch >= 1.6)",
          { file: path },
        );
      }
      const entries = readZipDirectory(fd, path, size);
      const byName = new Map(entries.map((e) => [e.name, e]));
      const prefix = findPrefix(path, entries, byName);
      const entryData = (name: string): { entry: ZipEntry; start: number } => {
        const entry = byName.get(name);
        if (entry === undefined)
          throw new XltFormatError(`the archive has no entry '${name}'`, { file: path, field: name });
        if (entry.method !== 0)
          throw new XltFormatError(
            `zip entry '${name}' is compressed (method ${entry.method}); torch.save stores entries uncompressed and only those are supported`,
            { file: path, field: name },
          );
        if (entry.flags & 1)
          throw new XltFormatError(`zip entry '${name}' is encrypted`, { file: path, field: name });
        if (entry.compressedSize !== entry.size)
          throw new XltFormatError(
            `stored zip entry '${name}' has ${entry.compressedSize} bytes but a size of ${entry.size}`,
            { file: path, field: name },
          );
        return { entry, start: zipEntryDataOffset(fd, path, size, entry) };
      };

      if (byName.has(`${prefix}/byteorder`)) {
        const { entry, start } = entryData(`${prefix}/byteorder`);
        const order = readAt(fd, path, start, Math.min(entry.size, 16), 'the byte order record')
          .toString('utf8')
          .trim();
        if (order !== 'little')
          throw new XltFormatError(
            `byte order '${order}': only little-endian checkpoints are supported (expected 'little')`,
            { file: path, field: `${prefix}/byteorder` },
          );
      }

      const pklName = `${prefix}/data.pkl`;
      const pkl = entryData(pklName);
      const pklBytes = new Uint8Array(pkl.entry.size);
      readInto(fd, path, pklBytes, pkl.start, pklName);
      const root = unpickleStateDict(path, pklName, pklBytes);
      const stateDict = selectStateDict(path, root);

      const storages = new Map<string, StorageData>();
      const tensors = new Map<string, TensorRef>();
      for (const [name, t] of stateDict) {
        const ref = t.storage;
        let s = storages.get(ref.key);
        if (s === undefined) {
          const { entry, start } = entryData(`${prefix}/data/${ref.key}`);
          s = { dtype: ref.dtype, numel: ref.numel, start, bytes: entry.size };
          const need = ref.numel * dtypeSize(ref.dtype);
          if (entry.size < need)
            throw new XltFormatError(
              `storage '${ref.key}' holds ${entry.size} bytes but ${ref.numel} ${ref.dtype} elements need ${need}`,
              { file: path, tensor: name },
            );
          storages.set(ref.key, s);
        } else if (s.dtype !== ref.dtype) {
          throw new XltFormatError(
            `storage '${ref.key}' is read as ${s.dtype} by one tensor and as ${ref.dtype} by this one`,
            { file: path, tensor: name },
          );
        } else if (s.numel !== ref.numel) {
          throw new XltFormatError(
            `storage '${ref.key}' is declared with ${s.numel} elements by one tensor and ${ref.numel} by this one`,
            { file: path, tensor: name },
          );
        }
        const numel = t.shape.reduce((a, d) => a * d, 1);
        const bytes = numel * dtypeSize(ref.dtype);
        if (!Number.isSafeInteger(bytes) || bytes > maxTensorBytes)
          throw new XltFormatError(
            `tensor [${t.shape.join(', ')}] of ${ref.dtype} needs ${bytes} bytes, more than the limit of ${maxTensorBytes}`,
            { file: path, tensor: name },
          );
        if (numel > 0) {
          const last = t.shape.reduce((a, d, i) => a + (d - 1) * (t.stride[i] as number), t.offset);
          if (last >= ref.numel)
            throw new XltFormatError(
              `tensor [${t.shape.join(', ')}] with stride [${t.stride.join(', ')}] at offset ${t.offset} reaches element ${last} of a storage of ${ref.numel}`,
              { file: path, tensor: name },
            );
        }
        // the output is bounded by what the file holds: a view may not repeat storage elements
        // beyond the storage's size (stride 0 over a huge shape would allocate from 4 bytes on disk)
        if (numel > ref.numel)
          throw new XltFormatError(
            `tensor [${t.shape.join(', ')}] with stride [${t.stride.join(', ')}] has ${numel} elements but its storage holds ${ref.numel}: a view that repeats elements is not read (save it with .contiguous())`,
            { file: path, tensor: name },
          );
        tensors.set(name, t);
      }
      return new TorchCheckpointReader(path, fd, prefix, tensors, storages);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Tensor names in the state dict's order. */
  names(): string[] {
    return [...this.tensors.keys()];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** dtype and shape (plus stride, storage offset and storage key) of a tensor, without reading it. */
  info(name: string): TorchTensorInfo {
    const t = this.tensors.get(name);
    if (t === undefined)
      throw new XltNotFoundError('no such tensor in the checkpoint', { file: this.path, tensor: name });
    return {
      dtype: t.storage.dtype,
      shape: [...t.shape],
      stride: [...t.stride],
      storageOffset: t.offset,
      storage: t.storage.key,
    };
  }

  /**
   * Reads one tensor from disk into a fresh typed array in row-major order (a strided view is
   * gathered), as {@link SafetensorsReader.get} returns it.
   */
  get(name: string): SafetensorsTensor {
    if (this.fd === null) throw new XltError('STATE', 'reader is closed', { file: this.path });
    const t = this.tensors.get(name);
    if (t === undefined)
      throw new XltNotFoundError('no such tensor in the checkpoint', { file: this.path, tensor: name });
    const dtype = t.storage.dtype;
    const s = this.storages.get(t.storage.key) as StorageData;
    const es = dtypeSize(dtype);
    const numel = t.shape.reduce((a, d) => a * d, 1);
    const out = new ArrayBuffer(numel * es);
    if (numel > 0) {
      const bytes = new Uint8Array(out);
      const what = `tensor '${name}'`;
      if (isContiguous(t.shape, t.stride)) {
        readInto(this.fd, this.path, bytes, s.start + t.offset * es, what);
      } else {
        const span = t.shape.reduce((a, d, i) => a + (d - 1) * (t.stride[i] as number), 0) + 1;
        const src = new Uint8Array(span * es);
        readInto(this.fd, this.path, src, s.start + t.offset * es, what);
        gather(src, bytes, t.shape, t.stride, es);
      }
    }
    return { dtype, shape: [...t.shape], data: viewAs(dtype, out) };
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

/** Copies the elements of a strided view (`src` starts at its first element) to `dst` in row-major order. */
function gather(src: Uint8Array, dst: Uint8Array, shape: number[], stride: number[], es: number): void {
  const nd = shape.length;
  const idx = new Array<number>(nd).fill(0);
  const inner = shape[nd - 1] as number;
  const innerStride = (stride[nd - 1] as number) * es;
  const rows = dst.length / es / inner;
  let rowStart = 0;
  let o = 0;
  for (let r = 0; r < rows; r++) {
    let p = rowStart;
    for (let j = 0; j < inner; j++) {
      for (let b = 0; b < es; b++) dst[o + b] = src[p + b] as number;
      o += es;
      p += innerStride;
    }
    // next row: increment the multi-index over the outer dimensions
    for (let d = nd - 2; d >= 0; d--) {
      const st = (stride[d] as number) * es;
      if ((idx[d] as number) + 1 < (shape[d] as number)) {
        idx[d] = (idx[d] as number) + 1;
        rowStart += st;
        break;
      }
      rowStart -= (idx[d] as number) * st;
      idx[d] = 0;
    }
  }
}

/** The archive's top folder: the one holding `data.pkl` (the first entry's folder if several do). */
function findPrefix(file: string, entries: ZipEntry[], byName: Map<string, ZipEntry>): string {
  const candidates = entries
    .map((e) => e.name)
    .filter((n) => n.endsWith('/data.pkl') && n.indexOf('/') === n.length - '/data.pkl'.length)
    .map((n) => n.slice(0, -'/data.pkl'.length));
  if (candidates.length === 1) return candidates[0] as string;
  const first = entries[0]?.name.split('/')[0];
  if (candidates.length > 1 && first !== undefined && byName.has(`${first}/data.pkl`)) return first;
  const hint = byName.has('constants.pkl') || entries.some((e) => e.name.endsWith('/constants.pkl'));
  throw new XltFormatError(
    candidates.length === 0
      ? `no '<folder>/data.pkl' in the archive: not a torch.save checkpoint${hint ? ' (this looks like a TorchScript archive)' : ''}`
      : `several folders hold a data.pkl (${candidates.join(', ')}); expected one`,
    { file },
  );
}

function asIndex(v: PyValue, file: string, pklName: string, what: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw new XltFormatError(`${what} must be a non-negative integer, got ${describe(v)} ${String(v)}`, {
    file,
    field: pklName,
  });
}

function asIndexTuple(v: PyValue, file: string, pklName: string, what: string): number[] {
  if (!(v instanceof PyTuple) && !Array.isArray(v))
    throw new XltFormatError(`${what} must be a tuple of integers, got ${describe(v)}`, {
      file,
      field: pklName,
    });
  const items = v instanceof PyTuple ? v.items : v;
  return items.map((d) => asIndex(d, file, pklName, `each entry of ${what}`));
}

/** Runs the restricted unpickler over `data.pkl` with torch's storages and rebuild functions. */
function unpickleStateDict(file: string, pklName: string, data: Uint8Array): PyValue {
  const err = (message: string): XltFormatError => new XltFormatError(message, { file, field: pklName });
  const makeTensor = (args: PyValue[], fn: string): TensorRef => {
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof StorageRef))
      throw err(`${fn} expects a storage as its first argument, got ${describe(storage ?? null)}`);
    const shape = asIndexTuple(size ?? null, file, pklName, `${fn} size`);
    const strides = asIndexTuple(stride ?? null, file, pklName, `${fn} stride`);
    if (strides.length !== shape.length)
      throw err(`${fn} has ${shape.length} sizes but ${strides.length} strides`);
    return new TensorRef(
      storage,
      asIndex(offset ?? null, file, pklName, `${fn} storage offset`),
      shape,
      strides,
    );
  };
  const call = (callable: PyValue, args: PyValue[]): PyValue => {
    if (!(callable instanceof PyGlobal)) throw err(`REDUCE calls a ${describe(callable)}, not a function`);
    const fn = callable.qualified;
    switch (fn) {
      case 'collections.OrderedDict': {
        const d = new PyDict('OrderedDict');
        if (args.length === 0) return d;
        const pairs = args[0];
        if (args.length === 1 && Array.isArray(pairs)) {
          for (const p of pairs) {
            const kv = p instanceof PyTuple ? p.items : Array.isArray(p) ? p : [];
            const k = kv[0];
            if (kv.length !== 2 || (typeof k !== 'string' && typeof k !== 'number'))
              throw err('OrderedDict(...) expects a list of (key, value) pairs');
            d.map.set(k, kv[1] as PyValue);
          }
          return d;
        }
        throw err('OrderedDict(...) expects no argument or a list of (key, value) pairs');
      }
      case 'torch._utils._rebuild_tensor_v2':
        if (args.length !== 6 && args.length !== 7)
          throw err(`_rebuild_tensor_v2 expects 6 or 7 arguments, got ${args.length}`);
        return makeTensor(args, '_rebuild_tensor_v2');
      case 'torch._utils._rebuild_tensor':
        if (args.length !== 4) throw err(`_rebuild_tensor expects 4 arguments, got ${args.length}`);
        return makeTensor(args, '_rebuild_tensor');
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state': {
        const t = args[0];
        if (!(t instanceof TensorRef))
          throw err(`${callable.name} expects a tensor, got ${describe(t ?? null)}`);
        return t;
      }
      case 'torch._tensor._rebuild_from_type_v2': {
        const [func, type, inner] = args;
        if (!(type instanceof PyGlobal) || !TENSOR_TYPES.has(type.qualified))
          throw err(
            `_rebuild_from_type_v2 rebuilds a ${describe(type ?? null)}; only torch.Tensor and torch.nn.parameter.Parameter are supported`,
          );
        if (
          !(func instanceof PyGlobal) ||
          !REBUILD_FUNCTIONS.has(func.qualified) ||
          !(inner instanceof PyTuple)
        )
          throw err('_rebuild_from_type_v2 expects a tensor rebuild function and its arguments');
        return call(func, inner.items);
      }
      default:
        throw err(`${fn} cannot be called while reading a state dict`);
    }
  };
  return unpickle(data, {
    findGlobal(module, name) {
      const q = `${module}.${name}`;
      if (!ALLOWED.has(q))
        throw err(
          `the pickle refers to global '${q}', which is not allowed: a state dict needs only ${ALLOWED_GLOBALS.slice(0, 4).join(', ')} and torch.<Type>Storage (this file may run code when loaded with torch.load)`,
        );
      return new PyGlobal(module, name);
    },
    reduce: call,
    newObj(cls, args) {
      if (cls instanceof PyGlobal && cls.qualified === 'collections.OrderedDict' && args.length === 0)
        return new PyDict('OrderedDict');
      throw err(`NEWOBJ of ${describe(cls)} is not supported`);
    },
    build(obj, state) {
      // an OrderedDict's attributes: state_dict()'s `_metadata` (module versions), not needed here
      if (obj instanceof PyDict && (state instanceof PyDict || state === null)) return;
      if (obj instanceof PyDict && state instanceof PyTuple) return;
      throw err(`BUILD (setting the state) of a ${describe(obj)} is not supported`);
    },
    persistentLoad(pid) {
      const items = pid instanceof PyTuple ? pid.items : [];
      const [tag, type, key, , numel] = items;
      if (items.length !== 5 || tag !== 'storage')
        throw err(
          "persistent id must be ('storage', storage_type, key, location, numel), as torch.save writes it",
        );
      if (!(type instanceof PyGlobal) || type.module !== 'torch' || !Object.hasOwn(STORAGE_DTYPES, type.name))
        throw err(`unsupported storage type ${describe(type ?? null)}`);
      if (typeof key !== 'string' || key.length === 0 || key.includes('/') || key.includes('..'))
        throw err(`storage key must be a plain string, got ${describe(key ?? null)} ${String(key)}`);
      return new StorageRef(
        key,
        STORAGE_DTYPES[type.name] as SafetensorsDType,
        asIndex(numel ?? null, file, pklName, 'storage numel'),
      );
    },
    error(message, at) {
      return err(`${message} (at byte ${at} of the pickle)`);
    },
  });
}

function tensorEntries(d: PyDict): Array<[string, TensorRef]> | undefined {
  const out: Array<[string, TensorRef]> = [];
  for (const [k, v] of d.map) {
    if (typeof k !== 'string' || !(v instanceof TensorRef)) return undefined;
    out.push([k, v]);
  }
  return out;
}

/** The dict of tensors: the top level, or its single `state_dict` / `model` entry. */
function selectStateDict(file: string, root: PyValue): Array<[string, TensorRef]> {
  if (!(root instanceof PyDict))
    throw new XltFormatError(
      `expected a state dict (a dict of tensors) at the top level, got a ${describe(root)}`,
      {
        file,
      },
    );
  const direct = tensorEntries(root);
  if (direct !== undefined) return direct;
  const nested = ['state_dict', 'model']
    .map((k) => [k, root.map.get(k)] as const)
    .filter(([, v]) => v instanceof PyDict && tensorEntries(v) !== undefined);
  if (nested.length === 1) return tensorEntries((nested[0] as readonly [string, PyDict])[1]) ?? [];
  if (nested.length > 1)
    throw new XltFormatError(
      "the checkpoint holds tensors under both 'state_dict' and 'model'; expected one state dict",
      { file },
    );
  for (const [k, v] of root.map) {
    if (typeof k !== 'string')
      throw new XltFormatError(`state dict key ${String(k)} is a ${typeof k}, not a string`, { file });
    if (!(v instanceof TensorRef))
      throw new XltFormatError(
        `expected a state dict of tensors (or one under 'state_dict' or 'model'), but this entry is a ${describe(v)}`,
        { file, tensor: k },
      );
  }
  return [];
}
