import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XltConfigError } from '@xlt/core';
import type { AdamwKernel, AdamwScalars } from './adamw-kernel.js';
import type { SparseRows } from './row-gradients.js';
import type { ParamBuffers } from './sliced-update.js';

/**
 * Clipping and AdamW in native code, compiled on this machine the first time it is needed (as
 * PyTorch's `cpp_extension.load` does) and cached: the same per-element float32 operations as the
 * WebAssembly kernel ({@link kernelBytes} in `adamw-wasm.ts`), in the same order and without FMA
 * contraction, so the results are bit-identical; but in place on the step's own buffers (no window
 * copies), vectorised for this CPU (`-march=native`) and on several threads, which a WebAssembly
 * kernel cannot be (a worker thread can only write `SharedArrayBuffer`s, and onnxruntime-node
 * refuses those as feeds). Needs a C++ compiler (`CXX`, else `g++` or `c++`) and Node's headers
 * (`node_api.h`); without them {@link loadNativeAdamw} says why and the step uses the WebAssembly kernel.
 */

/** The C++ source (N-API, no other dependency). */
export const NATIVE_ADAMW_SOURCE = `
#include <node_api.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

struct Scalars { float coef, decay, beta1, mFactor, beta2, vFactor, sqrtBc2, eps, stepSize; };

// g = grad coef; m = m beta1 + g mFactor; v = v beta2 + g g vFactor;
// p = p decay - stepSize (m / (sqrt(v) / sqrtBc2 + eps)); a missing gradient reads as zeros
template <bool HasGrad>
static void span(float* p, const float* g, float* m, float* v, size_t n, const Scalars s) {
  for (size_t i = 0; i < n; i++) {
    const float gi = (HasGrad ? g[i] : 0.0f) * s.coef;
    const float mi = m[i] * s.beta1 + gi * s.mFactor;
    const float vi = v[i] * s.beta2 + (gi * gi) * s.vFactor;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * s.decay - s.stepSize * (mi / (std::sqrt(vi) / s.sqrtBc2 + s.eps));
  }
}

struct Job {
  float *p, *m, *v;
  const float* g;        // dense gradient, or null
  const int32_t* rows;   // ascending table rows of a row gradient (g null), or null
  const float* rowData;  // their gradients, row after row
  size_t nRows, width;
  Scalars s;
};

// elements [from, to) of the parameter
static void range(const Job& j, size_t from, size_t to) {
  if (j.g != nullptr) {
    span<true>(j.p + from, j.g + from, j.m + from, j.v + from, to - from, j.s);
    return;
  }
  size_t r = 0;
  if (j.rows != nullptr) {
    // the first row that ends after from
    size_t lo = 0, hi = j.nRows;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if ((size_t)j.rows[mid] * j.width + j.width <= from) lo = mid + 1; else hi = mid;
    }
    r = lo;
  }
  size_t at = from;
  while (at < to) {
    const size_t start = r < j.nRows ? (size_t)j.rows[r] * j.width : to;
    if (start > at) {
      const size_t end = std::min(start, to);
      span<false>(j.p + at, nullptr, j.m + at, j.v + at, end - at, j.s);
      at = end;
    } else {
      const size_t end = std::min(start + j.width, to);
      span<true>(j.p + at, j.rowData + r * j.width + (at - start), j.m + at, j.v + at, end - at, j.s);
      at = end;
      r++;
    }
  }
}

static bool f32(napi_env env, napi_value val, float** data, size_t* len) {
  bool is = false;
  if (napi_is_typedarray(env, val, &is) != napi_ok || !is) return false;
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  void* d;
  if (napi_get_typedarray_info(env, val, &t, len, &d, &ab, &off) != napi_ok || t != napi_float32_array) return false;
  *data = (float*)d;
  return true;
}

static napi_value fail(napi_env env, const char* msg) {
  napi_throw_type_error(env, nullptr, msg);
  return nullptr;
}

// adamw(p, g | null, m, v, scalars[9], threads, rows: Int32Array | null, rowData | null, width)
static napi_value Adamw(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value a[9];
  napi_get_cb_info(env, info, &argc, a, nullptr, nullptr);
  if (argc != 9) return fail(env, "adamw takes 9 arguments");
  Job j{};
  float* sc;
  size_t n, gn = 0, mn, vn, sn;
  if (!f32(env, a[0], &j.p, &n) || !f32(env, a[2], &j.m, &mn) || !f32(env, a[3], &j.v, &vn))
    return fail(env, "p, m and v must be Float32Arrays");
  if (mn != n || vn != n) return fail(env, "m and v must have p's length");
  napi_valuetype gt;
  napi_typeof(env, a[1], &gt);
  float* g = nullptr;
  if (gt != napi_null && (!f32(env, a[1], &g, &gn) || gn != n)) return fail(env, "g must be null or a Float32Array of p's length");
  j.g = g;
  if (!f32(env, a[4], &sc, &sn) || sn != 9) return fail(env, "scalars must be a Float32Array of 9");
  j.s = Scalars{sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7], sc[8]};
  uint32_t threads = 1, width = 0;
  if (napi_get_value_uint32(env, a[5], &threads) != napi_ok || threads < 1) return fail(env, "threads must be >= 1");
  if (napi_get_value_uint32(env, a[8], &width) != napi_ok) return fail(env, "width must be a number");
  napi_valuetype rt;
  napi_typeof(env, a[6], &rt);
  if (rt != napi_null) {
    if (g != nullptr) return fail(env, "rows need g null");
    bool is = false;
    napi_typedarray_type t;
    napi_value ab;
    size_t off, rn, dn;
    void* d;
    if (napi_is_typedarray(env, a[6], &is) != napi_ok || !is) return fail(env, "rows must be an Int32Array");
    napi_get_typedarray_info(env, a[6], &t, &rn, &d, &ab, &off);
    if (t != napi_int32_array) return fail(env, "rows must be an Int32Array");
    float* rd;
    if (!f32(env, a[7], &rd, &dn)) return fail(env, "rowData must be a Float32Array");
    if (width == 0 || dn != rn * width || n % width != 0) return fail(env, "rowData must hold rows x width elements of a table of width columns");
    const int32_t* rows = (const int32_t*)d;
    for (size_t k = 0; k < rn; k++)
      if (rows[k] < 0 || (size_t)rows[k] * width >= n || (k > 0 && rows[k] <= rows[k - 1]))
        return fail(env, "rows must be ascending, distinct rows of the table");
    j.rows = rows;
    j.rowData = rd;
    j.nRows = rn;
    j.width = width;
  }
  // at least 64K elements a thread: below that a thread costs more than it saves
  const size_t parts = std::max<size_t>(1, std::min<size_t>(threads, n / 65536));
  if (parts == 1) {
    range(j, 0, n);
    return nullptr;
  }
  size_t per = (n + parts - 1) / parts;
  per = (per + 15) & ~(size_t)15;
  std::vector<std::thread> pool;
  for (size_t t = 1; t < parts; t++) {
    const size_t from = t * per, to = std::min(n, from + per);
    if (from >= to) continue;
    try {
      pool.emplace_back(range, std::cref(j), from, to);
    } catch (...) {
      range(j, from, to);  // no thread to be had: this part on the calling thread
    }
  }
  range(j, 0, std::min(n, per));
  for (auto& t : pool) t.join();
  return nullptr;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "adamw", NAPI_AUTO_LENGTH, Adamw, nullptr, &fn);
  napi_set_named_property(env, exports, "adamw", fn);
  return exports;
}
`;

/** The compiler flags: no FMA contraction (bit-identical to the WebAssembly kernel); sqrt without errno (vectorised). */
export const NATIVE_ADAMW_FLAGS = [
  '-O3',
  '-march=native',
  '-ffp-contract=off',
  '-fno-math-errno',
  '-shared',
  '-fPIC',
  '-pthread',
];

/** The addon's function: see the C++ source's comment. */
export type NativeAdamwFn = (
  p: Float32Array,
  g: Float32Array | null,
  m: Float32Array,
  v: Float32Array,
  scalars: Float32Array,
  threads: number,
  rows: Int32Array | null,
  rowData: Float32Array | null,
  width: number,
) => void;

/** {@link loadNativeAdamw}'s answer: the kernel and where it lives, or why there is none. */
export type NativeAdamwStatus =
  | { ok: true; adamw: NativeAdamwFn; file: string; compiled: boolean }
  | { ok: false; reason: string };

/** Where to look for and how to build the kernel. */
export interface NativeAdamwOptions {
  /** Cache folder (default `$XLT_CACHE_DIR/native`, else `$XDG_CACHE_HOME/xlt/native`, else `~/.cache/xlt/native`). */
  cacheDir?: string;
  /** The C++ compiler (default `$CXX`, else `g++`, else `c++`). */
  compiler?: string;
  /** A folder holding `node_api.h` (default: Node's own `include/node` beside its binary, `$npm_config_nodedir`, /usr/include/node). */
  includeDir?: string;
}

function defaultCacheDir(): string {
  const env = process.env;
  if (env.XLT_CACHE_DIR) return path.join(env.XLT_CACHE_DIR, 'native');
  return path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'xlt', 'native');
}

function findIncludeDir(): string | undefined {
  const candidates = [
    path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
    ...(process.env.npm_config_nodedir ? [path.join(process.env.npm_config_nodedir, 'include', 'node')] : []),
    '/usr/include/node',
    '/usr/local/include/node',
  ];
  return candidates.find((d) => existsSync(path.join(d, 'node_api.h')));
}

function compilerVersion(cxx: string): string | undefined {
  try {
    return execFileSync(cxx, ['--version'], {
      encoding: 'utf8',
      timeout: 10_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')[0]
      ?.trim();
  } catch {
    return undefined;
  }
}

const loaded = new Map<string, NativeAdamwStatus>();

/**
 * The native AdamW kernel: loaded from the cache, or compiled into it first (a few seconds, once
 * per machine, compiler and source; written to a temporary file and renamed, so a cache never holds
 * half a library). `XLT_NATIVE=0` turns it off. Never throws: a missing compiler or header, or a
 * failed build, is a `reason`.
 */
export function loadNativeAdamw(options: NativeAdamwOptions = {}): NativeAdamwStatus {
  if (process.env.XLT_NATIVE === '0') return { ok: false, reason: 'XLT_NATIVE=0' };
  const memo = JSON.stringify(options);
  const seen = loaded.get(memo);
  if (seen !== undefined) return seen;
  const status = load(options);
  loaded.set(memo, status);
  return status;
}

function load(options: NativeAdamwOptions): NativeAdamwStatus {
  const candidates = options.compiler ? [options.compiler] : [process.env.CXX || 'g++', 'c++'];
  let cxx: string | undefined;
  let version: string | undefined;
  for (const c of candidates) {
    version = compilerVersion(c);
    if (version !== undefined) {
      cxx = c;
      break;
    }
  }
  if (cxx === undefined || version === undefined)
    return { ok: false, reason: `no C++ compiler (tried ${candidates.join(', ')})` };
  const include = options.includeDir ?? findIncludeDir();
  if (include === undefined || !existsSync(path.join(include, 'node_api.h')))
    return { ok: false, reason: `no node_api.h (Node's headers) in ${include ?? 'the usual folders'}` };
  const key = createHash('sha256')
    .update(
      JSON.stringify([
        NATIVE_ADAMW_SOURCE,
        NATIVE_ADAMW_FLAGS,
        version,
        process.arch,
        process.platform,
        os.cpus()[0]?.model ?? '',
        process.versions.napi,
      ]),
    )
    .digest('hex')
    .slice(0, 16);
  const dir = options.cacheDir ?? defaultCacheDir();
  const file = path.join(dir, `adamw-${key}.node`);
  let compiled = false;
  if (!existsSync(file)) {
    const tmp = path.join(dir, `.adamw-${key}-${process.pid}-${Date.now()}`);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      writeFileSync(`${tmp}.cc`, NATIVE_ADAMW_SOURCE);
      execFileSync(cxx, [...NATIVE_ADAMW_FLAGS, `-I${include}`, '-o', `${tmp}.node`, `${tmp}.cc`], {
        timeout: 120_000,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      renameSync(`${tmp}.node`, file);
      compiled = true;
    } catch (e) {
      const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim().slice(0, 400);
      return { ok: false, reason: `${cxx} failed in ${dir}: ${stderr || (e as Error).message}` };
    } finally {
      rmSync(`${tmp}.cc`, { force: true });
      rmSync(`${tmp}.node`, { force: true });
    }
  }
  try {
    const mod = { exports: {} as { adamw?: NativeAdamwFn } };
    process.dlopen(mod, file);
    if (typeof mod.exports.adamw !== 'function')
      return { ok: false, reason: `${file} has no adamw function` };
    return { ok: true, adamw: mod.exports.adamw, file, compiled };
  } catch (e) {
    return { ok: false, reason: `could not load ${file}: ${(e as Error).message}` };
  }
}

/** The native kernel as an {@link AdamwKernel}: in place on the step's buffers, on `threads` threads. */
export class NativeAdamw implements AdamwKernel {
  readonly name = 'native';
  private readonly scalars = new Float32Array(9);

  private constructor(
    private readonly adamw: NativeAdamwFn,
    /** Threads per parameter (parameters under 64K elements a thread use fewer). */
    readonly threads: number,
    /** The compiled library. */
    readonly file: string,
  ) {}

  /** The kernel, compiled or loaded by {@link loadNativeAdamw}; throws (with its reason) where there is none. */
  static create(threads: number, options: NativeAdamwOptions = {}): NativeAdamw {
    if (!Number.isInteger(threads) || threads < 1)
      throw new XltConfigError(`threads must be a positive integer, got ${threads}`, { field: 'threads' });
    const status = loadNativeAdamw(options);
    if (!status.ok)
      throw new XltConfigError(`the native AdamW kernel is not available: ${status.reason}`, {
        field: 'updateKernel',
      });
    return new NativeAdamw(status.adamw, threads, status.file);
  }

  run(b: ParamBuffers, grad: Float32Array | undefined, rows: SparseRows | undefined, s: AdamwScalars): void {
    const k = this.scalars;
    k[0] = s.coef;
    k[1] = s.decay;
    k[2] = s.beta1;
    k[3] = s.mFactor;
    k[4] = s.beta2;
    k[5] = s.vFactor;
    k[6] = s.sqrtBc2;
    k[7] = s.eps;
    k[8] = s.stepSize;
    if (grad !== undefined) this.adamw(b.p, grad, b.m, b.v, k, this.threads, null, null, 0);
    else if (rows !== undefined && rows.rows.length > 0)
      this.adamw(b.p, null, b.m, b.v, k, this.threads, rows.rows, rows.data, rows.width);
    else this.adamw(b.p, null, b.m, b.v, k, this.threads, null, null, 0);
  }
}
