import path from 'node:path';
import { readXmodConfig, writeFileAtomic } from '@xlt/core';
import { type ExportOptions, type ExportResult, exportToOnnx, type HeadKind } from './export.js';
import { checkpointWeights } from './runner.js';

/** Writes an export result: the model, and its external weight file beside it when there is one. */
export function writeOnnxModel(file: string, result: ExportResult): void {
  if (result.external !== undefined)
    writeFileAtomic(path.join(path.dirname(file), result.external.location), result.external.chunks);
  writeFileAtomic(file, [result.model]);
}

/** Default size above which weights go to an external file: protobuf cannot hold 2 GB. */
const EXTERNAL_ABOVE_BYTES = 1_800_000_000;

/**
 * Exports a Hugging Face model folder (`config.json` + `model.safetensors` or `pytorch_model.bin`,
 * sharded or not) to `out` (an `.onnx` path). Models whose weights exceed ~1.8 GB store
 * initializers in `<out>.data`.
 */
export function exportModelDir(
  dir: string,
  out: string,
  options: Partial<Omit<ExportOptions, 'config' | 'weights'>> & { head?: HeadKind } = {},
): ExportResult {
  const config = readXmodConfig(dir);
  const weights = checkpointWeights(dir);
  try {
    const params =
      config.vocab_size * config.hidden_size +
      config.num_hidden_layers *
        (4 * config.hidden_size ** 2 + 2 * config.hidden_size * config.intermediate_size);
    const big = params * 4 > EXTERNAL_ABOVE_BYTES;
    const result = exportToOnnx({
      config,
      weights,
      ...options,
      ...(big && options.externalThreshold === undefined ? { externalThreshold: 1024 } : {}),
      externalLocation: `${path.basename(out)}.data`,
    });
    writeOnnxModel(out, result);
    return result;
  } finally {
    weights.close();
  }
}
