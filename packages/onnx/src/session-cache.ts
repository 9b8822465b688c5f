import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';

/**
 * An onnxruntime session for `model`, whose optimised graph is kept on disk: the first build saves
 * onnxruntime's optimised graph in `dir` under the SHA-256 of the model bytes, the onnxruntime
 * version, the execution providers and the optimisation level; later builds of the same bytes load
 * it with the optimisations off. Only for graphs without weights (a training graph with
 * `frozenAsInputs`): the file then stays small. A cached file onnxruntime cannot load is rebuilt.
 */
export async function cachedSession(
  model: Uint8Array,
  options: ort.InferenceSession.SessionOptions,
  dir: string,
): Promise<{ session: ort.InferenceSession; hit: boolean }> {
  const key = createHash('sha256')
    .update(model)
    .update(
      JSON.stringify({
        ort: ort.env.versions,
        providers: options.executionProviders,
        level: options.graphOptimizationLevel,
      }),
    )
    .digest('hex')
    .slice(0, 40);
  const file = path.join(dir, `${key}.onnx`);
  if (existsSync(file)) {
    try {
      const session = await ort.InferenceSession.create(file, {
        ...options,
        graphOptimizationLevel: 'disabled',
      });
      return { session, hit: true };
    } catch {
      rmSync(file, { force: true });
    }
  }
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const session = await ort.InferenceSession.create(model, { ...options, optimizedModelFilePath: tmp });
  if (existsSync(tmp)) renameSync(tmp, file);
  return { session, hit: false };
}
