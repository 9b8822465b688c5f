import { readSync } from 'node:fs';
import { XltFormatError } from './errors.js';

/** @internal One file of a zip archive, from its central directory entry. */
export interface ZipEntry {
  name: string;
  /** Compression method: 0 = stored, 8 = deflate, ... */
  method: number;
  flags: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

export const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
export const CENTRAL_SIG = 0x02014b50;
export const LOCAL_SIG = 0x04034b50;
const EOCD_SIZE = 22;
const ZIP64_LOCATOR_SIZE = 20;
const ZIP64_EOCD_SIZE = 56;
const MAX_COMMENT = 0xffff;
const U32_SENTINEL = 0xffffffff;

/** @internal Reads exactly `length` bytes at `position` (an `XltFormatError` if the file ends first). */
export function readAt(fd: number, file: string, position: number, length: number, what: string): Buffer {
  const buf = Buffer.alloc(length);
  readInto(fd, file, buf, position, what);
  return buf;
}

/** @internal Fills `bytes` from the file at `position`, in chunks of at most 1 GiB. */
export function readInto(fd: number, file: string, bytes: Uint8Array, position: number, what: string): void {
  let done = 0;
  while (done < bytes.length) {
    const chunk = Math.min(bytes.length - done, 1 << 30);
    const got = readSync(fd, bytes, done, chunk, position + done);
    if (got <= 0) throw new XltFormatError(`file ended while reading ${what}`, { file });
    done += got;
  }
}

function u64(buf: Buffer, at: number, file: string, what: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new XltFormatError(`${what} ${v} is too large to address`, { file });
  return Number(v);
}

/**
 * @internal Reads the central directory of a zip archive (with ZIP64 end records and extra fields,
 * for archives over 4 GiB). Entries are in directory order.
 */
export function readZipDirectory(fd: number, file: string, size: number): ZipEntry[] {
  if (size < EOCD_SIZE)
    throw new XltFormatError(`file is ${size} bytes, too short for a zip archive`, { file });
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT + ZIP64_LOCATOR_SIZE);
  const tailStart = size - tailLen;
  const tail = readAt(fd, file, tailStart, tailLen, 'the zip end record');
  let eocd = -1;
  for (let p = tail.length - EOCD_SIZE; p >= 0; p--) {
    if (tail.readUInt32LE(p) === EOCD_SIG && p + EOCD_SIZE + tail.readUInt16LE(p + 20) <= tail.length) {
      eocd = p;
      break;
    }
  }
  if (eocd < 0)
    throw new XltFormatError('no zip end-of-central-directory record: not a zip archive, or truncated', {
      file,
    });
  const disk = tail.readUInt16LE(eocd + 4);
  const cdDisk = tail.readUInt16LE(eocd + 6);
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  const eocdAbs = tailStart + eocd;
  let zip64 = false;
  if (eocd >= ZIP64_LOCATOR_SIZE && tail.readUInt32LE(eocd - ZIP64_LOCATOR_SIZE) === ZIP64_LOCATOR_SIG) {
    const loc = eocd - ZIP64_LOCATOR_SIZE;
    const recOffset = u64(tail, loc + 8, file, 'ZIP64 end record offset');
    if (recOffset + ZIP64_EOCD_SIZE > eocdAbs)
      throw new XltFormatError(`ZIP64 end record offset ${recOffset} lies outside the archive`, { file });
    const rec = readAt(fd, file, recOffset, ZIP64_EOCD_SIZE, 'the ZIP64 end record');
    if (rec.readUInt32LE(0) !== ZIP64_EOCD_SIG)
      throw new XltFormatError(`no ZIP64 end record at offset ${recOffset}, where its locator points`, {
        file,
      });
    if (rec.readUInt32LE(16) !== 0 || rec.readUInt32LE(20) !== 0)
      throw new XltFormatError('multi-disk (split) zip archives are not supported', { file });
    count = u64(rec, 32, file, 'entry count');
    cdSize = u64(rec, 40, file, 'central directory size');
    cdOffset = u64(rec, 48, file, 'central directory offset');
    zip64 = true;
  } else {
    if (disk !== 0 || cdDisk !== 0)
      throw new XltFormatError('multi-disk (split) zip archives are not supported', { file });
    if (cdOffset === U32_SENTINEL || cdSize === U32_SENTINEL)
      throw new XltFormatError(
        'the end record defers to a ZIP64 end record (0xFFFFFFFF) but there is no ZIP64 locator',
        { file },
      );
  }
  const cdEnd = zip64 ? eocdAbs - ZIP64_LOCATOR_SIZE : eocdAbs;
  if (cdOffset + cdSize > cdEnd)
    throw new XltFormatError(
      `central directory [${cdOffset}, ${cdOffset + cdSize}) runs past the end records at ${cdEnd}`,
      { file },
    );
  const cd = readAt(fd, file, cdOffset, cdSize, 'the zip central directory');
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG)
      throw new XltFormatError(`central directory entry ${i} of ${count} is missing or corrupt`, { file });
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    let compressedSize = cd.readUInt32LE(p + 20);
    let entrySize = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cd.length)
      throw new XltFormatError(`central directory entry ${i} runs past the directory`, { file });
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // ZIP64 extended information: the 64-bit values of exactly the fields that read 0xFFFFFFFF
    let q = p + 46 + nameLen;
    const extraEnd = q + extraLen;
    while (q + 4 <= extraEnd) {
      const id = cd.readUInt16LE(q);
      const len = cd.readUInt16LE(q + 2);
      if (q + 4 + len > extraEnd)
        throw new XltFormatError(`extra field of entry '${name}' runs past its end`, { file });
      if (id === 0x0001) {
        let r = q + 4;
        const take = (what: string): number => {
          if (r + 8 > q + 4 + len)
            throw new XltFormatError(`ZIP64 extra field of entry '${name}' lacks the ${what}`, { file });
          const v = u64(cd, r, file, what);
          r += 8;
          return v;
        };
        if (entrySize === U32_SENTINEL) entrySize = take('size');
        if (compressedSize === U32_SENTINEL) compressedSize = take('compressed size');
        if (localHeaderOffset === U32_SENTINEL) localHeaderOffset = take('local header offset');
      }
      q += 4 + len;
    }
    entries.push({ name, method, flags, compressedSize, size: entrySize, localHeaderOffset });
    p = end;
  }
  return entries;
}

/**
 * @internal Where an entry's data starts: after its local header, whose extra field (torch pads it to
 * align the data to 64 bytes; ZIP64 adds its sizes there) may differ from the central directory's.
 */
export function zipEntryDataOffset(fd: number, file: string, size: number, e: ZipEntry): number {
  const nameBytes = Buffer.byteLength(e.name, 'utf8');
  if (e.localHeaderOffset + 30 + nameBytes > size)
    throw new XltFormatError(`local header of zip entry '${e.name}' lies outside the file`, { file });
  const h = readAt(fd, file, e.localHeaderOffset, 30 + nameBytes, `the local header of '${e.name}'`);
  if (h.readUInt32LE(0) !== LOCAL_SIG)
    throw new XltFormatError(`no local header at offset ${e.localHeaderOffset} for zip entry '${e.name}'`, {
      file,
    });
  const nameLen = h.readUInt16LE(26);
  const extraLen = h.readUInt16LE(28);
  if (nameLen !== nameBytes || h.toString('utf8', 30, 30 + nameLen) !== e.name)
    throw new XltFormatError(`local header of zip entry '${e.name}' names another file`, { file });
  const start = e.localHeaderOffset + 30 + nameLen + extraLen;
  if (start + e.compressedSize > size)
    throw new XltFormatError(`data of zip entry '${e.name}' runs past the end of the file`, { file });
  return start;
}
