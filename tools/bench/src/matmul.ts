import * as tf from '@tensorflow/tfjs-core';
import { type BackendName, initBackend } from '@xlt/core';
import { median, timeRuns } from './stats.js';

/** fp32 matmul GFLOP/s of a tfjs backend at size n x n x n (median of `reps`). */
export async function matmulGflops(backend: BackendName, n: number, reps = 5): Promise<number> {
  await initBackend({ backend, log: false });
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  const times = await timeRuns(async () => {
    const c = tf.matMul(a, b);
    await c.data();
    c.dispose();
  }, reps);
  a.dispose();
  b.dispose();
  return (2 * n * n * n) / median(times) / 1e9;
}
