import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { XltError, XltFormatError } from './errors.js';
import {
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  readSafetensors,
  SafetensorsReader,
  toFloat32,
  writeSafetensors,
} from './safetensors.js';
import { sharedPath, sharedSkipReason } from './shared.js';
import type { SafetensorsTensor } from './tensor-data.js';

const tmp = mkdtempSync(path.join(tmpdir(), 'xlt-st-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function findSafetensors(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...findSafetensors(p));
    else if (e.name.endsWith('.safetensors')) out.push(p);
  }
  return out.sort();
}

/** Parses the header by hand (independently of the reader) to know what each file must contain. */
function rawHeader(
  file: string,
): Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  delete h.__metadata__;
  return h;
}

function sameTensors(a: Map<string, SafetensorsTensor>, b: Map<string, SafetensorsTensor>): void {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [k, t] of a) {
    const u = b.get(k)!;
    expect(u.dtype, k).toBe(t.dtype);
    expect(u.shape, k).toEqual(t.shape);
    expect(
      Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength).equals(
        Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      ),
      k,
    ).toBe(true);
  }
}

describe.skipIf(sharedSkipReason('fixtures') !== undefined)('safetensors on the shared fixtures', () => {
  const files = sharedSkipReason('fixtures') === undefined ? findSafetensors(sharedPath('fixtures')) : [];

  it('finds the fixture files', () => {
    // fixtures/README.md: xmod-postnorm {mlm,seqcls,tokcls,qa}, xlmr-lora base + 2 adapters
    expect(files.length).toBe(7);
  });

  it.each(files.map((f) => [path.relative(sharedPath('fixtures'), f), f]))(
    'reads %s with the header names, dtypes, shapes and byte-exact values',
    async (_rel, file) => {
      const header = rawHeader(file);
      const { tensors } = await readSafetensors(file);
      expect([...tensors.keys()].sort()).toEqual(Object.keys(header).sort());
      const bytes = readFileSync(file);
      const start = 8 + Number(bytes.readBigUInt64LE(0));
      for (const [name, h] of Object.entries(header)) {
        const t = tensors.get(name)!;
        expect(t.dtype).toBe(h.dtype);
        expect(t.shape).toEqual(h.shape);
        expect(t.data.length).toBe(h.shape.reduce((a, d) => a * d, 1));
        const raw = bytes.subarray(start + h.data_offsets[0], start + h.data_offsets[1]);
        expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(raw)).toBe(true);
      }
    },
  );

  it.each(files.map((f) => [path.relative(sharedPath('fixtures'), f), f]))(
    'read(write(read(%s))) equals read(f)',
    async (rel, file) => {
      const first = await readSafetensors(file);
      const out = path.join(tmp, rel.replaceAll('/', '_'));
      await writeSafetensors(out, first.tensors, first.metadata);
      const second = await readSafetensors(out);
      sameTensors(first.tensors, second.tensors);
      expect(second.metadata).toEqual(first.metadata);
      // header padded to 8 bytes as the reference implementation writes it
      expect(Number(readFileSync(out).readBigUInt64LE(0)) % 8).toBe(0);
    },
  );

  it('reads float values that match a known weight (LayerNorm bias perturbed away from 0)', async () => {
    const { tensors } = await readSafetensors(
      sharedPath('fixtures', 'xmod-postnorm', 'mlm', 'model.safetensors'),
    );
    const ln = tensors.get('roberta.embeddings.LayerNorm.bias')!;
    expect(ln.dtype).toBe('F32');
    expect(ln.shape).toEqual([32]);
    const v = toFloat32(ln);
    expect(v.some((x) => x !== 0)).toBe(true);
    expect(v.every((x) => Number.isFinite(x))).toBe(true);
  });
});

describe('safetensors dtypes', () => {
  it('round-trips F32, F16, BF16, I64, I32, U8 and BOOL with metadata', async () => {
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001]); // 1, -2, 65504, smallest subnormal
    const bf16 = new Uint16Array([0x3f80, 0xc040, 0x7f80]); // 1, -3, +inf
    const tensors: Record<string, SafetensorsTensor> = {
      a: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      h: { dtype: 'F16', shape: [4], data: f16 },
      b: { dtype: 'BF16', shape: [3], data: bf16 },
      i: { dtype: 'I64', shape: [3], data: new BigInt64Array([1n, -2n, 9007199254740993n]) },
      j: { dtype: 'I32', shape: [1, 2], data: new Int32Array([-7, 7]) },
      u: { dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) },
      z: { dtype: 'BOOL', shape: [2], data: new Uint8Array([1, 0]) },
      e: { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
    };
    const file = path.join(tmp, 'dtypes.safetensors');
    await writeSafetensors(file, tensors, { format: 'pt', note: 'ünïcode' });
    const back = await readSafetensors(file);
    sameTensors(new Map(Object.entries(tensors)), back.tensors);
    expect(back.metadata).toEqual({ format: 'pt', note: 'ünïcode' });
    expect([...toFloat32(back.tensors.get('h')!)]).toEqual([1, -2, 65504, 2 ** -24]);
    expect([...toFloat32(back.tensors.get('b')!)]).toEqual([1, -3, Number.POSITIVE_INFINITY]);
    expect((back.tensors.get('i')!.data as BigInt64Array)[2]).toBe(9007199254740993n);
  });

  it('lays out data by dtype size then name, as the reference implementation', async () => {
    const file = path.join(tmp, 'order.safetensors');
    await writeSafetensors(file, {
      small: { dtype: 'U8', shape: [1], data: new Uint8Array([1]) },
      b: { dtype: 'F32', shape: [1], data: new Float32Array([1]) },
      a: { dtype: 'F32', shape: [1], data: new Float32Array([1]) },
      big: { dtype: 'I64', shape: [1], data: new BigInt64Array([1n]) },
    });
    const h = rawHeader(file);
    const order = Object.entries(h)
      .sort((x, y) => x[1].data_offsets[0] - y[1].data_offsets[0])
      .map(([k]) => k);
    expect(order).toEqual(['big', 'a', 'b', 'small']);
  });

  it('converts f16 and bf16 with round-to-nearest-even', () => {
    expect(f32ToF16(1)).toBe(0x3c00);
    expect(f32ToF16(65504)).toBe(0x7bff);
    expect(f32ToF16(1e6)).toBe(0x7c00);
    expect(f16ToF32(f32ToF16(0.1))).toBeCloseTo(0.0999755859375, 12);
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(bf16ToF32(f32ToBf16(3.140625))).toBe(3.140625);
    // 1 + 2^-8 lies halfway between two bf16 values; ties go to even (1.0)
    expect(f32ToBf16(1 + 2 ** -8)).toBe(0x3f80);
  });

  it('reads tensors lazily one at a time', async () => {
    const file = path.join(tmp, 'lazy.safetensors');
    await writeSafetensors(file, {
      x: { dtype: 'F32', shape: [3], data: new Float32Array([1, 2, 3]) },
      y: { dtype: 'F32', shape: [1], data: new Float32Array([9]) },
    });
    const r = SafetensorsReader.open(file);
    expect(r.names().sort()).toEqual(['x', 'y']);
    expect(r.info('x').shape).toEqual([3]);
    expect([...(r.get('y').data as Float32Array)]).toEqual([9]);
    expect(() => r.get('nope')).toThrow(/nope/);
    r.close();
    expect(() => r.get('x')).toThrow(/closed/);
  });
});

describe('safetensors errors', () => {
  function writeRaw(
    name: string,
    header: string | Buffer,
    data: Buffer = Buffer.alloc(0),
    lenOverride?: bigint,
  ): string {
    const h = typeof header === 'string' ? Buffer.from(header) : header;
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
    const p = path.join(tmp, name);
    writeFileSync(p, Buffer.concat([len, h, data]));
    return p;
  }
  const ok = (dtype = 'F32', offsets = [0, 8], shape = [2]) =>
    JSON.stringify({ w: { dtype, shape, data_offsets: offsets } });

  it('names a missing file', async () => {
    await expect(readSafetensors(path.join(tmp, 'missing.safetensors'))).rejects.toThrow(
      /missing\.safetensors/,
    );
  });

  it('rejects a file shorter than the length prefix', async () => {
    const p = path.join(tmp, 'short.safetensors');
    writeFileSync(p, Buffer.from([1, 2, 3]));
    await expect(readSafetensors(p)).rejects.toSatisfy(
      (e: unknown) =>
        e instanceof XltFormatError && /shorter than the 8-byte header/.test(e.message) && e.file === p,
    );
  });

  it('rejects a header length past the end of the file', async () => {
    const p = writeRaw('badlen.safetensors', ok(), Buffer.alloc(8), 10_000n);
    await expect(readSafetensors(p)).rejects.toThrow(/header length 10000 runs past the end/);
  });

  it('rejects an absurd header length', async () => {
    const p = writeRaw('hugelen.safetensors', ok(), Buffer.alloc(8), 2n ** 62n);
    await expect(readSafetensors(p)).rejects.toThrow(/exceeds the format's limit/);
  });

  it('rejects a header that is not JSON', async () => {
    const p = writeRaw('notjson.safetensors', '{"w": {dtype', Buffer.alloc(8));
    await expect(readSafetensors(p)).rejects.toThrow(/header is not valid JSON/);
  });

  it('rejects offsets outside the file', async () => {
    const p = writeRaw('outside.safetensors', ok('F32', [0, 16], [4]), Buffer.alloc(8));
    await expect(readSafetensors(p)).rejects.toSatisfy(
      (e: unknown) => e instanceof XltError && e.tensor === 'w' && /outside the data section/.test(e.message),
    );
  });

  it('rejects an unknown dtype, naming the tensor', async () => {
    const p = writeRaw('dtype.safetensors', ok('F8_E9M9'), Buffer.alloc(8));
    await expect(readSafetensors(p)).rejects.toThrow(/unknown dtype "F8_E9M9".*tensor 'w'/);
  });

  it('rejects a byte range that does not fit the shape', async () => {
    const p = writeRaw('size.safetensors', ok('F32', [0, 8], [3]), Buffer.alloc(8));
    await expect(readSafetensors(p)).rejects.toThrow(/cover 8 bytes but F32 \[3\] needs 12/);
  });

  it('rejects trailing bytes not covered by any tensor', async () => {
    const p = writeRaw('trail.safetensors', ok(), Buffer.alloc(12));
    await expect(readSafetensors(p)).rejects.toThrow(/data section has 12 bytes but the tensors cover 8/);
  });

  it('rejects overlapping tensors', async () => {
    const h = JSON.stringify({
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
    });
    const p = writeRaw('overlap.safetensors', h, Buffer.alloc(8));
    await expect(readSafetensors(p)).rejects.toThrow(/overlaps/);
  });

  it('refuses data that does not match the dtype and leaves no file behind', async () => {
    const out = path.join(tmp, 'never.safetensors');
    await expect(
      writeSafetensors(out, { w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }),
    ).rejects.toThrow(/shape \[3\] has 3 elements but data has 2.*tensor 'w'/);
    await expect(
      writeSafetensors(out, { w: { dtype: 'F16', shape: [1], data: new Float32Array(1) } }),
    ).rejects.toThrow(/F16 needs a Uint16Array/);
    expect(readdirSync(tmp).filter((f) => f.startsWith('never'))).toEqual([]);
  });

  it('replaces an existing file atomically', async () => {
    const out = path.join(tmp, 'replace.safetensors');
    await writeSafetensors(out, { a: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
    await writeSafetensors(out, { b: { dtype: 'F32', shape: [2], data: new Float32Array([2, 3]) } });
    const back = await readSafetensors(out);
    expect([...back.tensors.keys()]).toEqual(['b']);
    expect(statSync(out).size).toBeGreaterThan(8);
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});
