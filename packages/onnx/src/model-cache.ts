import { createHash, type Hash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
} from 'node:fs';
import { cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { OnnxModel, type OnnxModelOptions, sessionOptions } from './runner.js';

/** The graph of a cache entry; its weights are in {@link DATA_FILE} beside it (memory-mapped on load). */
const MODEL_FILE = 'model.onnx';
const DATA_FILE = 'model.onnx.data';
/** Unfinished entries (a process that died while writing) older than this are removed. */
const STALE_TMP_MS = 60 * 60 * 1000;

/** Options of {@link loadCachedModel}. */
export interface ModelCacheOptions extends OnnxModelOptions {
  /** Entries kept in the folder, most recently used first; older ones are deleted. Default 4. */
  maxEntries?: number;
}

/** What {@link loadCachedModel} returns. */
export interface CachedModel {
  model: OnnxModel;
  /** True when the model came from the cache (no export, no graph optimisation). */
  hit: boolean;
  /** The entry's folder. */
  entry: string;
}

/**
 * A key for {@link loadCachedModel}: JSON values, byte arrays and files (read in chunks, so a file
 * of any size is hashed in bounded memory) into one SHA-256.
 */
export class ModelCacheKey {
  private readonly hash: Hash = createHash('sha256');

  /** Adds a JSON-serialisable value (a config, a setting). */
  json(value: unknown): this {
    this.hash.update(`j${JSON.stringify(value)}\n`);
    return this;
  }

  /** Adds bytes (e.g. a weight's data). */
  bytes(data: ArrayBufferView): this {
    this.hash.update(`b${data.byteLength}\n`);
    this.hash.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return this;
  }

  /** Adds a file's name (its base name) and contents. */
  file(file: string): this {
    this.hash.update(`f${path.basename(file)}\n`);
    const fd = openSync(file, 'r');
    try {
      const chunk = Buffer.allocUnsafe(16 << 20);
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, null);
        if (n === 0) break;
        this.hash.update(chunk.subarray(0, n));
      }
    } finally {
      closeSync(fd);
    }
    return this;
  }

  /** The key, as hex. */
  digest(): string {
    return this.hash.digest('hex');
  }
}

let codeIdentity: string | undefined;

/**
 * The SHA-256 of the code that exports graphs (this package's built file): a cache entry written by
 * another build of xlt is never loaded.
 */
function codeId(): string {
  if (codeIdentity === undefined) {
    let file: string | undefined;
    try {
      file = typeof __filename === 'string' ? __filename : fileURLToPath(import.meta.url);
    } catch {
      file = undefined;
    }
    codeIdentity =
      file !== undefined && existsSync(file)
        ? createHash('sha256').update(readFileSync(file)).digest('hex')
        : 'unknown';
  }
  return codeIdentity;
}

/**
 * An exported model loaded through a cache of optimised graphs in `dir`. On a miss, `build()` gives
 * the ONNX bytes, onnxruntime optimises them and saves the optimised graph with its weights in a
 * separate file (`<dir>/<entry>/model.onnx` + `model.onnx.data`, written under a temporary name and
 * renamed when complete). On a hit the entry loads with the optimisations off and its weights
 * memory-mapped, so nothing is exported or optimised again: at base size ~1 s instead of ~20.
 *
 * The entry is named by `key` (what the graph is made of: {@link ModelCacheKey}) together with the
 * onnxruntime version, the CPU model, the execution providers and the build of xlt, so an entry is
 * only loaded where it was made. An entry onnxruntime cannot load is deleted and rebuilt. After a
 * write, entries beyond `maxEntries` (least recently used first) are deleted.
 */
export async function loadCachedModel(
  key: string,
  build: () => Uint8Array,
  dir: string,
  options: ModelCacheOptions = {},
): Promise<CachedModel> {
  const so = sessionOptions(options);
  const id = createHash('sha256')
    .update(key)
    .update(
      JSON.stringify({
        ort: ort.env.versions,
        cpu: cpus()[0]?.model ?? '',
        providers: so.executionProviders,
        level: so.graphOptimizationLevel,
        code: codeId(),
      }),
    )
    .digest('hex')
    .slice(0, 40);
  const entry = path.join(dir, id);
  const file = path.join(entry, MODEL_FILE);
  if (existsSync(file)) {
    try {
      const model = await OnnxModel.open(file, { ...so, graphOptimizationLevel: 'disabled' });
      const now = new Date();
      utimesSync(entry, now, now);
      return { model, hit: true, entry };
    } catch {
      rmSync(entry, { recursive: true, force: true });
    }
  }
  mkdirSync(dir, { recursive: true });
  const tmp = path.join(dir, `${id}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  mkdirSync(tmp);
  let model: OnnxModel;
  try {
    model = await OnnxModel.open(build(), {
      ...so,
      optimizedModelFilePath: path.join(tmp, MODEL_FILE),
      extra: {
        session: {
          optimized_model_external_initializers_file_name: DATA_FILE,
          optimized_model_external_initializers_min_size_in_bytes: '1024',
        },
      },
    });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  try {
    if (!existsSync(path.join(tmp, MODEL_FILE))) throw new Error('onnxruntime saved no graph');
    renameSync(tmp, entry);
  } catch {
    // another process wrote the same entry first (or nothing was saved): keep theirs
    rmSync(tmp, { recursive: true, force: true });
  }
  prune(dir, options.maxEntries ?? 4, entry);
  return { model, hit: false, entry };
}

/** Deletes entries beyond `keep` (least recently used first, never `current`) and stale unfinished ones. */
function prune(dir: string, keep: number, current: string): void {
  const now = Date.now();
  const entries: Array<{ p: string; t: number }> = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    let t: number;
    try {
      const st = statSync(p);
      if (!st.isDirectory()) continue;
      t = st.mtimeMs;
    } catch {
      continue;
    }
    if (name.endsWith('.tmp')) {
      if (now - t > STALE_TMP_MS) rmSync(p, { recursive: true, force: true });
    } else if (/^[0-9a-f]{40}$/.test(name) && p !== current) entries.push({ p, t });
  }
  entries.sort((a, b) => b.t - a.t);
  for (const { p } of entries.slice(Math.max(0, keep - 1))) rmSync(p, { recursive: true, force: true });
}
