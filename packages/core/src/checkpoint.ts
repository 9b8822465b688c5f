import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { XltFormatError, XltNotFoundError } from './errors.js';
import type { TensorInfo, TensorReader } from './reader.js';
import { SafetensorsReader } from './safetensors.js';
import type { SafetensorsTensor } from './tensor-data.js';
import { TorchCheckpointReader } from './torch.js';

/**
 * The weight files a Hugging Face model folder may hold, in the order {@link openCheckpoint} tries
 * them (as transformers does): safetensors, sharded safetensors, `torch.save`, sharded `torch.save`.
 */
export const CHECKPOINT_FILES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
] as const;

/** The path of the first of {@link CHECKPOINT_FILES} present in `dir`, or undefined if none is. */
export function findCheckpoint(dir: string): string | undefined {
  for (const f of CHECKPOINT_FILES) {
    const p = path.join(dir, f);
    if (existsSync(p) && statSync(p).isFile()) return p;
  }
  return undefined;
}

/**
 * The files that hold a model folder's weights: the file {@link findCheckpoint} picks and, for a
 * sharded checkpoint, the shards its index names (each once, in the index's order). Empty when the
 * folder has no weights.
 */
export function checkpointFiles(dir: string): string[] {
  const file = findCheckpoint(dir);
  if (file === undefined) return [];
  return file.endsWith('.index.json') ? [file, ...readShardIndex(file).shards] : [file];
}

/**
 * Opens the weights of a Hugging Face model folder: the first of `model.safetensors`,
 * `model.safetensors.index.json` (sharded), `pytorch_model.bin` (`torch.save` zip format),
 * `pytorch_model.bin.index.json` (sharded) that exists, as one {@link TensorReader} (shards are
 * presented as one checkpoint). Legacy LayerNorm names are renamed as transformers does on load
 * (see {@link legacyKeyName}). An `XltNotFoundError` lists the files looked for when there is none.
 */
export function openCheckpoint(dir: string): TensorReader {
  const file = findCheckpoint(dir);
  if (file === undefined)
    throw new XltNotFoundError(`no model weights in the folder: looked for ${CHECKPOINT_FILES.join(', ')}`, {
      file: dir,
    });
  return openCheckpointFile(file);
}

/**
 * Opens one weight file by its name: `*.index.json` as a sharded checkpoint, `*.safetensors` with
 * {@link SafetensorsReader}, anything else (`.bin`, `.pt`, `.pth`) with {@link TorchCheckpointReader};
 * legacy LayerNorm names renamed as in {@link openCheckpoint}.
 */
export function openCheckpointFile(file: string): TensorReader {
  const reader = file.endsWith('.index.json') ? ShardedCheckpointReader.open(file) : openSingle(file);
  return withLegacyKeyNames(reader);
}

function openSingle(file: string): TensorReader {
  return file.endsWith('.safetensors') ? SafetensorsReader.open(file) : TorchCheckpointReader.open(file);
}

/**
 * The name transformers loads a legacy (TF-era) tensor name as: a final `LayerNorm.gamma` becomes
 * `LayerNorm.weight` and `LayerNorm.beta` becomes `LayerNorm.bias`, as its
 * `_fix_state_dict_key_on_load` does; other names are unchanged.
 */
export function legacyKeyName(name: string): string {
  if (name.endsWith('LayerNorm.gamma')) return `${name.slice(0, -'.gamma'.length)}.weight`;
  if (name.endsWith('LayerNorm.beta')) return `${name.slice(0, -'.beta'.length)}.bias`;
  return name;
}

/**
 * `reader` with its legacy names renamed by {@link legacyKeyName} (a name whose new form is already in
 * the checkpoint is kept as it is). Returns `reader` itself when nothing needs renaming.
 */
export function withLegacyKeyNames(reader: TensorReader): TensorReader {
  const names = reader.names();
  const present = new Set(names);
  const map = new Map<string, string>();
  let renamed = false;
  for (const n of names) {
    const m = legacyKeyName(n);
    if (m !== n && !present.has(m)) {
      map.set(m, n);
      renamed = true;
    } else map.set(n, n);
  }
  return renamed ? new RenamedTensorReader(reader, map) : reader;
}

/** A reader whose names are mapped (new name → name in `inner`). */
class RenamedTensorReader implements TensorReader {
  readonly path: string;
  constructor(
    private readonly inner: TensorReader,
    private readonly map: Map<string, string>,
  ) {
    this.path = inner.path;
  }
  private source(name: string): string {
    const n = this.map.get(name);
    if (n === undefined)
      throw new XltNotFoundError('no such tensor in the checkpoint', { file: this.path, tensor: name });
    return n;
  }
  names(): string[] {
    return [...this.map.keys()];
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  info(name: string): TensorInfo {
    return this.inner.info(this.source(name));
  }
  get(name: string): SafetensorsTensor {
    return this.inner.get(this.source(name));
  }
  close(): void {
    this.inner.close();
  }
}

/**
 * A checkpoint split over several files, described by a transformers `*.index.json` (its
 * `weight_map` maps each tensor name to the shard file, in the index's folder, that holds it).
 * Shards are `.safetensors` or `torch.save` files; all are opened (and checked) up front, and tensors
 * are read lazily. `path` is the index file.
 */
export class ShardedCheckpointReader implements TensorReader {
  readonly path: string;
  /** Shard file paths, in the order the index first names them. */
  readonly shards: string[];
  private readonly readers: Map<string, TensorReader>;
  private readonly weightMap: Map<string, string>;

  private constructor(
    path: string,
    shards: string[],
    readers: Map<string, TensorReader>,
    weightMap: Map<string, string>,
  ) {
    this.path = path;
    this.shards = shards;
    this.readers = readers;
    this.weightMap = weightMap;
  }

  /** Opens an index file and every shard it names; every mapped tensor must be in its shard. */
  static open(indexFile: string): ShardedCheckpointReader {
    const { weightMap, shards } = readShardIndex(indexFile);
    const readers = new Map<string, TensorReader>();
    try {
      for (const p of shards) readers.set(p, openSingle(p));
      for (const [name, p] of weightMap) {
        if (!(readers.get(p) as TensorReader).has(name))
          throw new XltFormatError(`the index puts this tensor in ${path.basename(p)}, which lacks it`, {
            file: p,
            tensor: name,
          });
      }
    } catch (e) {
      for (const r of readers.values()) r.close();
      throw e;
    }
    return new ShardedCheckpointReader(indexFile, shards, readers, weightMap);
  }

  private reader(name: string): TensorReader {
    const p = this.weightMap.get(name);
    if (p === undefined)
      throw new XltNotFoundError('no such tensor in the checkpoint', { file: this.path, tensor: name });
    return this.readers.get(p) as TensorReader;
  }

  /** Tensor names in the index's order. */
  names(): string[] {
    return [...this.weightMap.keys()];
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  info(name: string): TensorInfo {
    return this.reader(name).info(name);
  }

  get(name: string): SafetensorsTensor {
    return this.reader(name).get(name);
  }

  close(): void {
    for (const r of this.readers.values()) r.close();
  }
}

/**
 * A sharded checkpoint's index: tensor name -> shard path, and the shard paths (each once, in the
 * index's order). Shards must be plain file names in the index's folder.
 */
function readShardIndex(indexFile: string): { weightMap: Map<string, string>; shards: string[] } {
  let index: unknown;
  try {
    index = JSON.parse(readFileSync(indexFile, 'utf8'));
  } catch (cause) {
    const missing = (cause as NodeJS.ErrnoException).code === 'ENOENT';
    const Err = missing ? XltNotFoundError : XltFormatError;
    throw new Err(`cannot read checkpoint index: ${(cause as Error).message}`, { file: indexFile, cause });
  }
  const wm = (index as { weight_map?: unknown } | null)?.weight_map;
  if (wm === null || typeof wm !== 'object' || Array.isArray(wm))
    throw new XltFormatError('expected an object "weight_map" of tensor name to shard file', {
      file: indexFile,
      field: 'weight_map',
    });
  const dir = path.dirname(indexFile);
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [name, shard] of Object.entries(wm as Record<string, unknown>)) {
    if (
      typeof shard !== 'string' ||
      shard === '' ||
      path.basename(shard) !== shard ||
      shard === '.' ||
      shard === '..'
    )
      throw new XltFormatError(
        `weight_map entry must be a file name in the index's folder, got ${JSON.stringify(shard)}`,
        { file: indexFile, field: 'weight_map', tensor: name },
      );
    const p = path.join(dir, shard);
    if (!shards.includes(p)) shards.push(p);
    weightMap.set(name, p);
  }
  return { weightMap, shards };
}
