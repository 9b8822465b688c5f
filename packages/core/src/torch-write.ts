import { basename, extname } from 'node:path';
import { writeFileAtomic } from './files.js';
import { dtypeSize } from './safetensors.js';
import type { SafetensorsDType, SafetensorsTensor } from './tensor-data.js';
import { CENTRAL_SIG, EOCD_SIG, LOCAL_SIG } from './zip.js';

/**
 * Writes tensors as `torch.save(state_dict, file)` does (a `pytorch_model.bin`), without PyTorch:
 * for tests and benchmarks of the loaders, and for tools that only read PyTorch files (xlt's own
 * model folders are safetensors). The layout is torch's: a
 * zip of stored entries `<prefix>/data.pkl`, `<prefix>/byteorder`, `<prefix>/data/<key>`,
 * `<prefix>/version`, each entry's data aligned to 64 bytes by padding in its local header's extra
 * field; the pickle (protocol 2) is an OrderedDict with `_metadata` (set by BUILD) whose values are
 * `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` with
 * persistent ids `('storage', torch.<Type>Storage, key, 'cpu', numel)`.
 */
export function writeTorchCheckpoint(
  file: string,
  tensors: Map<string, SafetensorsTensor>,
  options: {
    /** name → name of an earlier tensor whose storage it shares (tied weights, same dtype and size). */
    ties?: Record<string, string>;
    /** The archive's top folder; torch uses the file's base name. */
    prefix?: string;
    /**
     * name → the shape and stride written for it instead of its own shape and row-major stride, over
     * a storage of its data (for tests of views and of hostile files).
     */
    views?: Record<string, { shape: number[]; stride: number[] }>;
  } = {},
): void {
  const prefix = options.prefix ?? basename(file, extname(file));
  const ties = options.ties ?? {};
  const storages: Array<[string, Uint8Array]> = [];
  const keyOf = new Map<string, { key: string; numel: number }>();
  const p = new PickleWriter();
  p.raw(0x80, 2);
  p.ordereddict();
  p.op(0x28); // MARK
  for (const [name, t] of tensors) {
    const view = options.views?.[name];
    const numel =
      view !== undefined ? t.data.byteLength / dtypeSize(t.dtype) : t.shape.reduce((a, d) => a * d, 1);
    let storage = ties[name] !== undefined ? keyOf.get(ties[name] as string) : undefined;
    if (ties[name] !== undefined && storage === undefined)
      throw new Error(`${name} is tied to ${ties[name]}, which is not written before it`);
    if (storage === undefined) {
      storage = { key: String(storages.length), numel };
      storages.push([storage.key, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)]);
    }
    keyOf.set(name, storage);
    p.unicode(name);
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28);
    // persistent id
    p.op(0x28);
    p.unicode('storage');
    p.global('torch', STORAGE_CLASS[t.dtype]);
    p.unicode(storage.key);
    p.unicode('cpu');
    p.int(storage.numel);
    p.op(0x74); // TUPLE
    p.op(0x51); // BINPERSID
    p.int(0);
    const shape = view?.shape ?? t.shape;
    p.tuple(shape);
    p.tuple(view?.stride ?? shape.map((_, i) => shape.slice(i + 1).reduce((a, d) => a * d, 1)));
    p.op(0x89); // NEWFALSE
    p.ordereddict();
    p.op(0x74); // TUPLE
    p.op(0x52); // REDUCE
  }
  p.op(0x75); // SETITEMS
  // state: {'_metadata': OrderedDict()}, as nn.Module.state_dict() leaves on its result
  p.op(0x7d); // EMPTY_DICT
  p.unicode('_metadata');
  p.ordereddict();
  p.op(0x73); // SETITEM
  p.op(0x62); // BUILD
  p.op(0x2e); // STOP
  const records: Array<[string, Uint8Array]> = [
    ['data.pkl', p.bytes()],
    ['byteorder', Buffer.from('little')],
    ...storages
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([k, d]): [string, Uint8Array] => [`data/${k}`, d]),
    ['version', Buffer.from('3\n')],
  ];
  writeFileAtomic(file, zipStored(records.map(([n, d]) => [`${prefix}/${n}`, d])));
}

const STORAGE_CLASS: Record<SafetensorsDType, string> = {
  F64: 'DoubleStorage',
  F32: 'FloatStorage',
  F16: 'HalfStorage',
  BF16: 'BFloat16Storage',
  I64: 'LongStorage',
  I32: 'IntStorage',
  I16: 'ShortStorage',
  I8: 'CharStorage',
  U8: 'ByteStorage',
  BOOL: 'BoolStorage',
  U64: 'unsupported',
  U32: 'unsupported',
  U16: 'unsupported',
};

class PickleWriter {
  private readonly parts: number[] = [];
  raw(...b: number[]): void {
    this.parts.push(...b);
  }
  op(code: number): void {
    this.parts.push(code);
  }
  unicode(s: string): void {
    const b = Buffer.from(s, 'utf8');
    const n = Buffer.alloc(4);
    n.writeUInt32LE(b.length);
    this.parts.push(0x58, ...n, ...b); // BINUNICODE
  }
  global(module: string, name: string): void {
    this.parts.push(0x63, ...Buffer.from(`${module}\n${name}\n`, 'utf8')); // GLOBAL
  }
  int(v: number): void {
    if (v < 256)
      this.parts.push(0x4b, v); // BININT1
    else if (v < 2 ** 31) {
      const b = Buffer.alloc(4);
      b.writeInt32LE(v);
      this.parts.push(0x4a, ...b); // BININT
    } else {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(BigInt(v));
      this.parts.push(0x8a, 8, ...b); // LONG1
    }
  }
  tuple(items: number[]): void {
    this.op(0x28);
    for (const i of items) this.int(i);
    this.op(0x74);
  }
  ordereddict(): void {
    this.global('collections', 'OrderedDict');
    this.op(0x29); // EMPTY_TUPLE
    this.op(0x52); // REDUCE
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of data) c = (CRC_TABLE[(c ^ b) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A zip of stored entries, each one's data 64-byte aligned through its local extra field (as torch pads). */
function zipStored(entries: Array<[string, Uint8Array]>): Buffer {
  const out: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBuf = Buffer.from(name, 'utf8');
    const crc = crc32(data);
    const base = offset + 30 + nameBuf.length + 4;
    const pad = (64 - (base % 64)) % 64;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(LOCAL_SIG, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(4 + pad, 28);
    const extra = Buffer.alloc(4 + pad, 'Z');
    extra.write('FB', 0, 'latin1');
    extra.writeUInt16LE(pad, 2);
    out.push(local, nameBuf, extra, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    const c = Buffer.alloc(46);
    c.writeUInt32LE(CENTRAL_SIG, 0);
    c.writeUInt16LE(20, 4);
    c.writeUInt16LE(20, 6);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(data.length, 20);
    c.writeUInt32LE(data.length, 24);
    c.writeUInt16LE(nameBuf.length, 28);
    c.writeUInt32LE(offset, 42);
    central.push(c, nameBuf);
    offset += 30 + nameBuf.length + extra.length + data.length;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(EOCD_SIG, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...out, cd, end]);
}

/** Bytes of a tensor's elements (for comparisons). */
export function tensorBytes(t: SafetensorsTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.length * dtypeSize(t.dtype));
}
