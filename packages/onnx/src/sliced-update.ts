import { XltConfigError } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { buildChunkUpdateGraph, CHUNK_UPDATE_NORM } from './autodiff/train-graph.js';
import { type AdamWSettings, defaultNoDecay, type TrainGraphSignature } from './train-types.js';

/**
 * Default elements per update run (256K: 1 MiB a buffer); see `CompiledTrainStepOptions.updateChunk`.
 * Measured at XLM-R-base, b8 s128: peak RSS 5,121 MiB against 5,287 MiB with 4M, the step no
 * slower (about 1,060 runs a step).
 */
export const UPDATE_CHUNK = 1 << 18;

/** Most slices one update run takes (small parameters are packed together up to this many). */
const MAX_SLOTS = 32;

/** A parameter's buffers, updated in place: the values and the two AdamW moments. */
export interface ParamBuffers {
  p: Float32Array;
  m: Float32Array;
  v: Float32Array;
}

/** Elements `from`..`to` of parameter `param`. */
interface Slice {
  param: number;
  from: number;
  to: number;
}

/** One session run: its graph's per-slot names and the slices it updates. */
interface UpdateRun {
  session: ort.InferenceSession;
  slots: TrainGraphSignature['params'];
  slices: Slice[];
}

/**
 * Clipping and AdamW after a gradients graph, run in slices so that the update's temporaries stay a
 * few slices whatever the parameters' sizes: parameters larger than `chunk` elements are cut into
 * slices of `chunk`, smaller ones are packed (up to `chunk` elements and {@link MAX_SLOTS} slices a
 * run, each run with parameters of one weight-decay setting) so that a small model's update is a
 * few session runs, not one per tensor. Every slice's parameter and moments are written back into
 * the buffers they are read from. Holds one gradient buffer per parameter (the gradients graph's
 * outputs).
 */
export class SlicedUpdate {
  private constructor(
    /** Per parameter: its gradient, written by the gradients graph (allocated once). */
    readonly grads: Float32Array[],
    private readonly runs: UpdateRun[],
    private readonly sessions: ort.InferenceSession[],
  ) {}

  /** Plans the runs for `signature`'s parameters and builds one update graph per (decay, slices) pair. */
  static async create(
    signature: TrainGraphSignature,
    adamw: AdamWSettings,
    build: (bytes: Uint8Array) => Promise<{ session: ort.InferenceSession }>,
    chunk = UPDATE_CHUNK,
  ): Promise<SlicedUpdate> {
    if (!Number.isInteger(chunk) || chunk < 1)
      throw new XltConfigError(`updateChunk must be a positive integer, got ${chunk}`, {
        field: 'updateChunk',
      });
    const sizes = signature.params.map((p) => p.shape.reduce((a, d) => a * d, 1));
    const noDecay = adamw.noDecay ?? defaultNoDecay;
    const decays = signature.params.map((p) => adamw.weightDecay > 0 && !noDecay(p.name));
    const plans: Array<{ decay: boolean; slices: Slice[] }> = [];
    for (const decay of [true, false]) {
      let slices: Slice[] = [];
      let filled = 0;
      const flush = () => {
        if (slices.length > 0) plans.push({ decay, slices });
        slices = [];
        filled = 0;
      };
      sizes.forEach((n, param) => {
        if (decays[param] !== decay) return;
        for (let from = 0; from < n; from += chunk) {
          const to = Math.min(n, from + chunk);
          if (filled + (to - from) > chunk || slices.length === MAX_SLOTS) flush();
          slices.push({ param, from, to });
          filled += to - from;
        }
      });
      flush();
    }
    const graphs = new Map<string, Omit<UpdateRun, 'slices'>>();
    try {
      for (const { decay, slices } of plans) {
        const key = `${decay}:${slices.length}`;
        if (graphs.has(key)) continue;
        const graph = buildChunkUpdateGraph(adamw, decay, slices.length);
        graphs.set(key, { session: (await build(graph.model)).session, slots: graph.signature.params });
      }
    } catch (e) {
      for (const g of graphs.values()) await g.session.release();
      throw e;
    }
    const runs = plans.map(({ decay, slices }) => ({
      ...(graphs.get(`${decay}:${slices.length}`) as Omit<UpdateRun, 'slices'>),
      slices,
    }));
    return new SlicedUpdate(
      sizes.map((n) => new Float32Array(n)),
      runs,
      [...graphs.values()].map((g) => g.session),
    );
  }

  /** Session runs per step. */
  get runCount(): number {
    return this.runs.length;
  }

  /** Clips (by `gradNorm`, the unclipped global norm) and applies AdamW step `step` to `bufs` in place. */
  async apply(bufs: readonly ParamBuffers[], lr: number, step: number, gradNorm: number): Promise<void> {
    const scalars = {
      lr: new ort.Tensor('float32', Float32Array.of(lr), []),
      step: new ort.Tensor('float32', Float32Array.of(step), []),
      [CHUNK_UPDATE_NORM]: new ort.Tensor('float32', Float32Array.of(gradNorm), []),
    };
    for (const run of this.runs) {
      const feeds: Record<string, ort.Tensor> = { ...scalars };
      const fetches: Record<string, ort.Tensor> = {};
      run.slices.forEach(({ param, from, to }, k) => {
        const slot = run.slots[k] as TrainGraphSignature['params'][number];
        const b = bufs[param] as ParamBuffers;
        const slice = (a: Float32Array) => new ort.Tensor('float32', a.subarray(from, to), [to - from]);
        const [p, m, v] = [slice(b.p), slice(b.m), slice(b.v)];
        feeds[slot.input] = p;
        feeds[slot.grad as string] = slice(this.grads[param] as Float32Array);
        feeds[slot.m as string] = m;
        feeds[slot.v as string] = v;
        fetches[slot.newParam as string] = p;
        fetches[slot.newM as string] = m;
        fetches[slot.newV as string] = v;
      });
      await run.session.run(feeds, fetches);
    }
  }

  async release(): Promise<void> {
    for (const session of this.sessions) await session.release();
  }
}
