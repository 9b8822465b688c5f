import { XltConfigError } from '@xlt/core';
import type { AdamwKernel, AdamwScalars } from './adamw-kernel.js';
import type { SparseRows } from './row-gradients.js';
import type { ParamBuffers } from './sliced-update.js';

/**
 * Clipping and AdamW in one pass over each parameter's elements, in a small WebAssembly SIMD kernel
 * (4 float32 lanes): the update the sliced step's onnxruntime graphs compute
 * (`buildChunkUpdateGraph`), with the same float32 operations in the same order, but without 15
 * separate elementwise passes (onnxruntime's update is memory-bound: ~3 s a step at XLM-R-base).
 * The kernel works on a fixed window of its own memory (`chunk` elements of each of parameter,
 * gradient and moments), which {@link WasmAdamw.run} fills from and copies back to the step's buffers.
 */

/** Elements per window (64K: 1 MiB of kernel memory for the four arrays). */
export const WASM_UPDATE_CHUNK = 1 << 16;

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 (small non-negative constants). */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const name = (s: string) => [...uleb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

// instructions
const [BLOCK, LOOP, END, BR, BR_IF, VOID] = [0x02, 0x03, 0x0b, 0x0c, 0x0d, 0x40];
const [I32_CONST, I32_GE_U, I32_ADD, I32_MUL] = [0x41, 0x4f, 0x6a, 0x6c];
const get = (i: number) => [0x20, ...uleb(i)];
const set = (i: number) => [0x21, ...uleb(i)];
const tee = (i: number) => [0x22, ...uleb(i)];
const i32 = (n: number) => [I32_CONST, ...sleb(n)];
const simd = (op: number) => [0xfd, ...uleb(op)];
const load = [...simd(0x00), 4, 0];
const store = [...simd(0x0b), 4, 0];
const [SPLAT, SQRT, ADD, SUB, MUL, DIV] = [0x13, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7].map(simd) as [
  number[],
  number[],
  number[],
  number[],
  number[],
  number[],
];

/** Parameters of the kernel function, in order (after `groups` and `stride`, both i32). */
const SCALARS = [
  'coef',
  'decay',
  'beta1',
  'mFactor',
  'beta2',
  'vFactor',
  'sqrtBc2',
  'eps',
  'stepSize',
] as const;

/**
 * The kernel module: `adamw(groups, stride, ...SCALARS)` updates `groups` x 4 elements of the
 * windows at byte offsets 0 (parameter), stride (gradient), 2 stride (m) and 3 stride (v):
 * g = grad coef; m = m beta1 + g mFactor; v = v beta2 + g g vFactor;
 * p = p decay - stepSize (m / (sqrt(v) / sqrtBc2 + eps)).
 */
function kernelBytes(pages: number): Uint8Array {
  const nScalars = SCALARS.length;
  // locals after the parameters: i, end, addr (i32); one v128 per scalar; g, m, v (v128)
  const i = 2 + nScalars;
  const end = i + 1;
  const addr = i + 2;
  const splat = (k: number) => i + 3 + k;
  const [g, m, v] = [i + 3 + nScalars, i + 4 + nScalars, i + 5 + nScalars];
  const S = (s: (typeof SCALARS)[number]) => get(splat(SCALARS.indexOf(s)));
  // byte address of element i in window k: i + k stride
  const at = (k: number) => [...get(i), ...get(1), ...(k > 1 ? [...i32(k), I32_MUL] : []), I32_ADD];
  const body = [
    ...SCALARS.flatMap((_, k) => [...get(2 + k), ...SPLAT, ...set(splat(k))]),
    ...[...get(0), ...i32(16), I32_MUL, ...set(end)],
    ...[BLOCK, VOID, LOOP, VOID],
    ...[...get(i), ...get(end), I32_GE_U, BR_IF, ...uleb(1)],
    // g = grad coef
    ...[...at(1), ...load, ...S('coef'), ...MUL, ...set(g)],
    // m = m beta1 + g mFactor, stored
    ...[...at(2), ...set(addr), ...get(addr), ...get(addr), ...load, ...S('beta1'), ...MUL],
    ...[...get(g), ...S('mFactor'), ...MUL, ...ADD, ...tee(m), ...store],
    // v = v beta2 + g g vFactor, stored
    ...[...at(3), ...set(addr), ...get(addr), ...get(addr), ...load, ...S('beta2'), ...MUL],
    ...[...get(g), ...get(g), ...MUL, ...S('vFactor'), ...MUL, ...ADD, ...tee(v), ...store],
    // p = p decay - stepSize (m / (sqrt(v) / sqrtBc2 + eps)), stored
    ...[...get(i), ...get(i), ...load, ...S('decay'), ...MUL, ...S('stepSize')],
    ...[...get(m), ...get(v), ...SQRT, ...S('sqrtBc2'), ...DIV, ...S('eps'), ...ADD, ...DIV, ...MUL, ...SUB],
    ...store,
    ...[...get(i), ...i32(16), I32_ADD, ...set(i), BR, ...uleb(0)],
    ...[END, END, END],
  ];
  const locals = [
    [...uleb(3), I32],
    [...uleb(nScalars + 3), V128],
  ];
  const fn = [...vec(locals), ...body];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([[0x60, ...vec([[I32], [I32], ...SCALARS.map(() => [F32])]), ...vec([])]])),
    ...section(3, vec([[0]])),
    // shared (flag 3, fixed size): V8 copies out of a non-shared wasm memory ~5x slower
    ...section(5, vec([[0x03, ...uleb(pages), ...uleb(pages)]])),
    ...section(
      7,
      vec([
        [...name('adamw'), 0x00, 0],
        [...name('memory'), 0x02, 0],
      ]),
    ),
    ...section(10, vec([[...uleb(fn.length), ...fn]])),
  ];
  return Uint8Array.from(bytes);
}

type Kernel = (groups: number, stride: number, ...scalars: number[]) => void;

/** The part of the WebAssembly JS API used here (the tsconfig has no DOM library). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** Whether this runtime runs WebAssembly SIMD (Node 16.4+). */
export function wasmSimdAvailable(): boolean {
  try {
    return wasm?.validate(kernelBytes(1)) === true;
  } catch {
    return false;
  }
}

/**
 * The WebAssembly kernel as an {@link AdamwKernel}: each parameter in windows of `chunk` elements
 * of the kernel's own (shared, fixed-size) memory, filled from and copied back to the step's buffers.
 */
export class WasmAdamw implements AdamwKernel {
  readonly name = 'wasm';

  private constructor(
    private readonly kernel: Kernel,
    private readonly window: Float32Array,
    private readonly chunk: number,
  ) {}

  static create(chunk = WASM_UPDATE_CHUNK): WasmAdamw {
    if (!Number.isInteger(chunk) || chunk < 4 || chunk % 4 !== 0)
      throw new XltConfigError(`the update window must be a positive multiple of 4 elements, got ${chunk}`, {
        field: 'updateChunk',
      });
    const pages = Math.ceil((4 * chunk * 4) / 65536);
    if (wasm === undefined) throw new XltConfigError('this runtime has no WebAssembly', { field: 'update' });
    const instance = new wasm.Instance(new wasm.Module(kernelBytes(pages)));
    const memory = instance.exports.memory as { buffer: SharedArrayBuffer };
    return new WasmAdamw(
      instance.exports.adamw as Kernel,
      new Float32Array(memory.buffer, 0, 4 * chunk),
      chunk,
    );
  }

  run(b: ParamBuffers, grad: Float32Array | undefined, rows: SparseRows | undefined, s: AdamwScalars): void {
    const c = this.chunk;
    const w = this.window;
    const [P, G, M, V] = [0, c, 2 * c, 3 * c];
    let next = 0;
    const n = b.p.length;
    for (let from = 0; from < n; from += c) {
      const to = Math.min(n, from + c);
      w.set(b.p.subarray(from, to), P);
      if (grad !== undefined) w.set(grad.subarray(from, to), G);
      else {
        // zeros, then the rows that overlap [from, to) (a row may span two windows)
        w.fill(0, G, G + to - from);
        if (rows !== undefined) next = copyRows(rows, next, from, to, w, G);
      }
      w.set(b.m.subarray(from, to), M);
      w.set(b.v.subarray(from, to), V);
      this.kernel(
        Math.ceil((to - from) / 4),
        4 * c,
        s.coef,
        s.decay,
        s.beta1,
        s.mFactor,
        s.beta2,
        s.vFactor,
        s.sqrtBc2,
        s.eps,
        s.stepSize,
      );
      b.p.set(w.subarray(P, P + to - from), from);
      b.m.set(w.subarray(M, M + to - from), from);
      b.v.set(w.subarray(V, V + to - from), from);
    }
  }
}

/**
 * Copies the parts of `rows` that fall in elements [from, to) of the table into `w` at `at` (element
 * `from` at `at`), starting at row index `next`; returns the first row index not finished.
 */
function copyRows(
  rows: SparseRows,
  next: number,
  from: number,
  to: number,
  w: Float32Array,
  at: number,
): number {
  const width = rows.width;
  let i = next;
  while (i < rows.rows.length) {
    const start = (rows.rows[i] as number) * width;
    if (start >= to) break;
    const a = Math.max(start, from);
    const b = Math.min(start + width, to);
    if (b > a) w.set(rows.data.subarray(i * width + (a - start), i * width + (b - start)), at + (a - from));
    if (start + width > to) break; // the rest of this row is in the next window
    i++;
  }
  return i;
}
