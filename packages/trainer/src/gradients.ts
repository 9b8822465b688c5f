// tfjs-core's Node (CJS) bundle registers no gradient functions; the @tensorflow/tfjs union bundle
// registers all of them (in a global registry shared by every tfjs-core copy) when it loads.
import * as tfjsUnion from '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import { XltError } from '@xlt/core';

interface WasmBackendLike {
  readSync(dataId: object): ArrayLike<number>;
  makeOutput(
    shape: number[],
    dtype: tf.DataType,
    memoryOffset?: number,
    values?: Float32Array | Int32Array,
  ): tf.TensorInfo;
}

/**
 * The wasm backend has no `UnsortedSegmentSum`, which the gradient of `gather` (embeddings) needs.
 * This registers a JS implementation for it (sums in float32, in index order) when it is missing.
 */
function registerWasmSegmentSum(): void {
  if (tf.getKernel('UnsortedSegmentSum', 'wasm') !== undefined) return;
  tf.registerKernel({
    kernelName: 'UnsortedSegmentSum',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, segmentIds } = inputs as { x: tf.TensorInfo; segmentIds: tf.TensorInfo };
      const numSegments = (attrs as { numSegments: number }).numSegments;
      const b = backend as unknown as WasmBackendLike;
      const xs = b.readSync(x.dataId);
      const ids = b.readSync(segmentIds.dataId);
      const segRank = segmentIds.shape.length;
      const innerShape = x.shape.slice(segRank);
      const inner = innerShape.reduce((a, d) => a * d, 1);
      const out =
        x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i] as number;
        if (id < 0 || id >= numSegments) continue;
        const src = i * inner;
        const dst = id * inner;
        for (let j = 0; j < inner; j++) out[dst + j] = (out[dst + j] as number) + (xs[src + j] as number);
      }
      return b.makeOutput([numSegments, ...innerShape], x.dtype, undefined, out);
    },
  });
}

let done = false;

/**
 * Makes sure gradient functions are registered (by loading @tensorflow/tfjs) and that the wasm
 * backend can differentiate `gather`. Called by every Trainer; cheap after the first call.
 */
export function ensureGradients(): void {
  if (done) return;
  // referencing the union keeps its import (and the registration it does on load) in bundles
  if (tfjsUnion.version === undefined || tf.getGradient('Add') === undefined)
    throw new XltError(
      'BACKEND',
      'no tfjs gradient functions are registered (@tensorflow/tfjs did not load)',
    );
  registerWasmSegmentSum();
  done = true;
}
