import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { XltError, XltFormatError, XltNotFoundError } from './errors.js';
import { unpickle } from './pickle.js';
import { toFloat32 } from './safetensors.js';
import type { SafetensorsTensor } from './tensor-data.js';
import { TorchCheckpointReader } from './torch.js';
import { tensorBytes, writeTorchCheckpoint } from './torch-write.js';

/** Written by test-fixtures/make_torch_fixtures.py (torch.save's layout and pickle, without torch). */
const fixture = (name: string) => fileURLToPath(new URL(`../test-fixtures/${name}`, import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'xlt-torch-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function withReader<T>(file: string, fn: (r: TorchCheckpointReader) => T): T {
  const r = TorchCheckpointReader.open(file);
  try {
    return fn(r);
  } finally {
    r.close();
  }
}

function openError(file: string): XltError {
  try {
    TorchCheckpointReader.open(file).close();
  } catch (e) {
    expect(e).toBeInstanceOf(XltError);
    return e as XltError;
  }
  throw new Error(`expected ${file} to be refused`);
}

/** A copy of `name` with `from` replaced by `to` (same length) once, in a temp file. */
function patched(name: string, from: Buffer, to: Buffer): string {
  const buf = readFileSync(fixture(name));
  const at = buf.indexOf(from);
  expect(at).toBeGreaterThan(0);
  to.copy(buf, at);
  const out = path.join(tmp, `patched-${name}`);
  writeFileSync(out, buf);
  return out;
}

describe('TorchCheckpointReader', () => {
  it('reads a torch.save state dict: names in order, F32 and I64 values, every storage dtype', () => {
    withReader(fixture('basic.bin'), (r) => {
      expect(r.prefix).toBe('archive');
      expect(r.names()).toEqual([
        'f32',
        'i64',
        'tied.a',
        'tied.b',
        'scalar',
        'transposed',
        'column',
        'expanded',
        'f16',
        'bf16',
        'f64',
        'i32',
        'i16',
        'i8',
        'u8',
        'bool',
        'empty',
        'permuted',
      ]);
      expect(r.info('f32')).toMatchObject({ dtype: 'F32', shape: [2, 3], stride: [3, 1], storageOffset: 0 });
      const f32 = r.get('f32');
      expect(f32.data).toBeInstanceOf(Float32Array);
      expect([...f32.data]).toEqual([0.5, -1.25, 2, 3.75, 100.5, -7]);
      const i64 = r.get('i64');
      expect(i64.dtype).toBe('I64');
      expect([...(i64.data as BigInt64Array)]).toEqual([0n, -1n, 2n ** 40n + 3n, -(2n ** 62n)]);
      expect(r.get('f64').data).toEqual(new Float64Array([1 / 3, -1e300]));
      expect(r.get('i32').data).toEqual(new Int32Array([-5, 2 ** 31 - 1]));
      expect(r.get('i16').data).toEqual(new Int16Array([-300, 32767]));
      expect(r.get('i8').data).toEqual(new Int8Array([-128, 127]));
      expect(r.get('u8').data).toEqual(new Uint8Array([0, 255]));
      expect(r.get('bool')).toEqual({ dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) });
      expect(r.get('empty')).toEqual({ dtype: 'F32', shape: [0, 4], data: new Float32Array(0) });
    });
  });

  it('tied tensors share one storage at different offsets; a scalar is a view into it', () => {
    withReader(fixture('basic.bin'), (r) => {
      const a = r.info('tied.a');
      const b = r.info('tied.b');
      expect(a.storage).toBe(b.storage);
      expect(b.storageOffset).toBe(4);
      expect([...r.get('tied.a').data]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
      expect(r.get('tied.b')).toEqual({
        dtype: 'F32',
        shape: [2, 4],
        data: new Float32Array([4, 5, 6, 7, 8, 9, 10, 11]),
      });
      expect(r.info('scalar')).toMatchObject({ shape: [], stride: [], storageOffset: 7, storage: a.storage });
      expect(r.get('scalar')).toEqual({ dtype: 'F32', shape: [], data: new Float32Array([7]) });
    });
  });

  it('gathers non-contiguous views (transposed, strided column, expanded) into row-major order', () => {
    withReader(fixture('basic.bin'), (r) => {
      // the storage is the [2, 3] matrix 0..5
      expect(r.info('transposed')).toMatchObject({ shape: [3, 2], stride: [1, 3] });
      expect([...r.get('transposed').data]).toEqual([0, 3, 1, 4, 2, 5]);
      expect(r.get('column')).toEqual({ dtype: 'F32', shape: [2], data: new Float32Array([1, 4]) });
      expect([...r.get('expanded').data]).toEqual([0, 1, 2, 0, 1, 2]);
      // a [2, 3, 4] array (0..23) permuted to [4, 2, 3]: element [i, j, k] is i + 12 j + 4 k
      expect(r.info('permuted')).toMatchObject({ shape: [4, 2, 3], stride: [1, 12, 4] });
      const want: number[] = [];
      for (let i = 0; i < 4; i++)
        for (let j = 0; j < 2; j++) for (let k = 0; k < 3; k++) want.push(i + 12 * j + 4 * k);
      expect([...r.get('permuted').data]).toEqual(want);
    });
  });

  it('keeps F16 and BF16 as raw 16-bit words that toFloat32 converts', () => {
    withReader(fixture('basic.bin'), (r) => {
      const f16 = r.get('f16');
      expect(f16.dtype).toBe('F16');
      expect(f16.data).toEqual(new Uint16Array([0x3c00, 0xc100, 0x7bff]));
      expect([...toFloat32(f16)]).toEqual([1, -2.5, 65504]);
      const bf16 = r.get('bf16');
      expect(bf16).toMatchObject({ dtype: 'BF16', shape: [2, 2] });
      expect([...toFloat32(bf16)]).toEqual([1, -2.5, 3.140625, 0]);
    });
  });

  it("uses the state dict under 'state_dict' of a training checkpoint, whatever the archive's folder name", () => {
    withReader(fixture('nested.bin'), (r) => {
      expect(r.prefix).toBe('pytorch_model');
      expect(r.names()).toEqual(['encoder.weight', 'encoder.bias']);
      expect([...r.get('encoder.weight').data]).toEqual([1, 2, 3, 4]);
    });
  });

  it('reads protocol-4 pickles (FRAME, MEMOIZE, STACK_GLOBAL) and nn.Parameter entries', () => {
    withReader(fixture('proto4.bin'), (r) => {
      expect(r.prefix).toBe('some.model-name');
      expect(r.names()).toEqual(['weight', 'tail', 'ids']);
      expect([...r.get('weight').data]).toEqual([1.5, 2.5, 3.5]);
      expect([...r.get('tail').data]).toEqual([2.5, 3.5]);
      expect([...(r.get('ids').data as BigInt64Array)]).toEqual([2n ** 53n + 1n, 7n]);
    });
  });

  it('reads ZIP64 archives: ZIP64 end record (classic one saturated) and ZIP64 extra fields', () => {
    const raw = readFileSync(fixture('zip64.bin'));
    const eocd = raw.lastIndexOf(Buffer.from('PK\x05\x06', 'latin1'));
    expect(raw.readUInt32LE(eocd + 16)).toBe(0xffffffff); // the central directory offset is only in ZIP64
    const central = raw.indexOf(Buffer.from('PK\x01\x02', 'latin1'));
    expect(raw.readUInt32LE(central + 20)).toBe(0xffffffff); // sizes only in the entry's ZIP64 extra field
    withReader(fixture('zip64.bin'), (r) => {
      expect(r.prefix).toBe('xmod-large');
      expect([...r.get('a').data]).toEqual([1, 2, 3]);
      expect([...(r.get('b').data as BigInt64Array)]).toEqual([-4n, 5n]);
    });
  });

  it('refuses a pickle that names a global outside the allow-list, naming it (nothing is run)', () => {
    const e = openError(fixture('evil.bin'));
    expect(e).toBeInstanceOf(XltFormatError);
    expect(e.message).toContain("global 'os.system'");
    expect(e.message).toContain('not allowed');
    expect(e.file).toBe(fixture('evil.bin'));
    expect(e.field).toBe('archive/data.pkl');
  });

  it('refuses a compressed entry, naming it', () => {
    const e = openError(fixture('compressed.bin'));
    expect(e).toBeInstanceOf(XltFormatError);
    expect(e.message).toContain("'archive/data/0' is compressed (method 8)");
    expect(e.field).toBe('archive/data/0');
  });

  it('refuses big-endian checkpoints, legacy bare pickles, other files and truncated archives', () => {
    expect(openError(fixture('bigendian.bin')).message).toContain("byte order 'big'");
    const legacy = path.join(tmp, 'legacy.pt');
    writeFileSync(
      legacy,
      Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8]),
    );
    expect(openError(legacy).message).toContain('legacy format before PyTorch 1.6');
    const text = path.join(tmp, 'text.bin');
    writeFileSync(text, 'hello, not a checkpoint');
    expect(openError(text).message).toContain('not a zip archive');
    const cut = path.join(tmp, 'cut.bin');
    writeFileSync(cut, readFileSync(fixture('basic.bin')).subarray(0, 1500));
    expect(openError(cut).message).toContain('no zip end-of-central-directory record');
    const missing = openError(path.join(tmp, 'nope.bin'));
    expect(missing).toBeInstanceOf(XltNotFoundError);
  });

  it('says so when the file is a Git LFS pointer instead of the checkpoint', () => {
    const lfs = path.join(tmp, 'lfs.bin');
    writeFileSync(lfs, 'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 3411233645\n');
    expect(openError(lfs).message).toContain('Git LFS pointer');
  });

  it('refuses huge LONG4 integers instead of decoding them (a hostile pickle cannot stall it)', () => {
    const n = 50_000_000;
    const data = new Uint8Array([0x80, 0x02, 0x8b, n & 255, (n >> 8) & 255, (n >> 16) & 255, n >>> 24]);
    const fail = (m: string) => new XltFormatError(m);
    const no = () => {
      throw new Error('not reached');
    };
    expect(() =>
      unpickle(data, { findGlobal: no, reduce: no, newObj: no, build: no, persistentLoad: no, error: fail }),
    ).toThrow(/LONG4 of 50000000 bytes/);
  });

  it('refuses a tensor that reaches past its storage, naming the tensor', () => {
    // the first storage's numel in the pickle: ('storage', FloatStorage, '0', 'cpu', 6) -> 2
    const file = patched(
      'basic.bin',
      Buffer.from('cpuq\x07K\x06t', 'latin1'),
      Buffer.from('cpuq\x07K\x02t', 'latin1'),
    );
    const e = openError(file);
    expect(e).toBeInstanceOf(XltFormatError);
    expect(e.tensor).toBe('f32');
    expect(e.message).toContain('reaches element 5 of a storage of 2');
  });

  it('refuses a stride-0 view over a huge shape instead of allocating what the file does not hold', () => {
    // one F32 on disk, viewed as [8192, 8192] with stride [0, 0]: 256 MiB out of 4 bytes
    const file = path.join(tmp, 'stride0.bin');
    writeTorchCheckpoint(
      file,
      new Map([['w', { dtype: 'F32', shape: [1], data: new Float32Array([1]) } as SafetensorsTensor]]),
      { views: { w: { shape: [8192, 8192], stride: [0, 0] } } },
    );
    expect(readFileSync(file).length).toBeLessThan(1024);
    const before = process.memoryUsage().arrayBuffers;
    const e = openError(file);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(2 ** 20);
    expect(e).toBeInstanceOf(XltFormatError);
    expect(e.tensor).toBe('w');
    expect(e.file).toBe(file);
    expect(e.message).toContain(
      'tensor [8192, 8192] with stride [0, 0] has 67108864 elements but its storage holds 1',
    );
  });

  it('refuses a tensor over an explicit maxTensorBytes at open', () => {
    const file = path.join(tmp, 'big.bin');
    writeTorchCheckpoint(
      file,
      new Map([['w', { dtype: 'F32', shape: [64], data: new Float32Array(64) } as SafetensorsTensor]]),
    );
    expect(() => TorchCheckpointReader.open(file, { maxTensorBytes: 255 }).close()).toThrow(
      /tensor \[64\] of F32 needs 256 bytes, more than the limit of 255/,
    );
    withReader(file, (r) => expect(r.get('w').shape).toEqual([64]));
  });

  it('unknown tensors are XltNotFoundError, reading after close an XltError', () => {
    const r = TorchCheckpointReader.open(fixture('basic.bin'));
    expect(r.has('f32')).toBe(true);
    expect(r.has('nope')).toBe(false);
    expect(() => r.info('nope')).toThrow(XltNotFoundError);
    expect(() => r.get('nope')).toThrow(XltNotFoundError);
    r.close();
    expect(() => r.get('f32')).toThrow(/closed/);
    r.close();
  });
});

describe('writeTorchCheckpoint', () => {
  it('writes what TorchCheckpointReader reads back byte for byte, tied tensors sharing one storage', () => {
    const file = path.join(tmp, 'written.bin');
    const emb: SafetensorsTensor = { dtype: 'F32', shape: [3, 2], data: Float32Array.of(1, 2, 3, 4, 5, 6) };
    const tensors = new Map<string, SafetensorsTensor>([
      ['emb.weight', emb],
      ['ids', { dtype: 'I64', shape: [3], data: BigInt64Array.of(0n, 1n, 2n) }],
      ['decoder.weight', emb],
    ]);
    writeTorchCheckpoint(file, tensors, { ties: { 'decoder.weight': 'emb.weight' } });
    withReader(file, (r) => {
      expect(r.names()).toEqual(['emb.weight', 'ids', 'decoder.weight']);
      expect(r.info('decoder.weight').storage).toBe(r.info('emb.weight').storage);
      for (const [name, t] of tensors) {
        const got = r.get(name);
        expect(got.dtype).toBe(t.dtype);
        expect(got.shape).toEqual(t.shape);
        expect(Buffer.from(tensorBytes(got)).equals(Buffer.from(tensorBytes(t)))).toBe(true);
      }
    });
  });
});
