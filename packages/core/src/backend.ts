import * as tf from '@tensorflow/tfjs-core';
import { XltError } from './errors.js';

/** Backends xlt can run tfjs models on, in order of preference. */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export const BACKEND_ORDER: readonly BackendName[] = ['tensorflow', 'wasm', 'cpu'];

export interface InitBackendOptions {
  /** Force one backend (overrides `XLT_BACKEND`); fails if it is unavailable. */
  backend?: BackendName;
  /** Where to report the choice; default writes one line to stderr. `false` silences it. */
  log?: ((message: string) => void) | false;
  /** Threads for the wasm backend (default: 1 in Node, where the multi-threaded build is unavailable). */
  wasmThreads?: number;
}

/** The outcome of {@link initBackend}: the chosen backend and why each preferred one was skipped. */
export interface BackendReport {
  name: BackendName;
  /** For each backend tried before the chosen one, why it was not used. */
  unavailable: Partial<Record<BackendName, string>>;
  /** 'forced' when given by option or XLT_BACKEND, else 'auto'. */
  mode: 'forced' | 'auto';
  /** Which package provided the `tensorflow` backend, when chosen. */
  provider?: string;
}

let lastReport: BackendReport | undefined;

/** The report of the last successful {@link initBackend}, if any. */
export function backendReport(): BackendReport | undefined {
  return lastReport;
}

type Importer = (specifier: string) => Promise<unknown>;
// Kept in a variable so bundlers do not try to resolve the optional native packages at build time.
const dynamicImport: Importer = (s) => import(/* @vite-ignore */ s);

function message(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0] ?? m;
}

async function tryTensorflow(): Promise<{ ok: true; provider: string } | { ok: false; reason: string }> {
  const reasons: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await dynamicImport(pkg);
      if (tf.findBackend('tensorflow') === null && tf.findBackendFactory('tensorflow') === null) {
        reasons.push(
          `${pkg} loaded but registered no 'tensorflow' backend with this copy of @tensorflow/tfjs-core`,
        );
        continue;
      }
      const ok = await tf.setBackend('tensorflow');
      if (ok) return { ok: true, provider: pkg };
      reasons.push(`${pkg}: the 'tensorflow' backend failed to initialise`);
    } catch (e) {
      reasons.push(`${pkg} unavailable (${message(e)})`);
    }
  }
  return { ok: false, reason: reasons.join('; ') };
}

async function tryWasm(threads: number): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    const wasm = (await dynamicImport('@tensorflow/tfjs-backend-wasm')) as {
      setThreadsCount?: (n: number) => void;
    };
    if (threads > 1 && wasm.setThreadsCount) wasm.setThreadsCount(threads);
    const ok = await tf.setBackend('wasm');
    return ok ? { ok: true } : { ok: false, reason: 'the wasm backend failed to initialise' };
  } catch (e) {
    return { ok: false, reason: `@tensorflow/tfjs-backend-wasm unavailable (${message(e)})` };
  }
}

async function tryCpu(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    await dynamicImport('@tensorflow/tfjs-backend-cpu');
    const ok = await tf.setBackend('cpu');
    return ok ? { ok: true } : { ok: false, reason: 'the cpu backend failed to initialise' };
  } catch (e) {
    return { ok: false, reason: `@tensorflow/tfjs-backend-cpu unavailable (${message(e)})` };
  }
}

function isBackendName(s: string): s is BackendName {
  return (BACKEND_ORDER as readonly string[]).includes(s);
}

/**
 * Selects the tfjs backend at run time: `tensorflow` (from the optional `@tensorflow/tfjs-node-gpu`,
 * else `@tensorflow/tfjs-node`), then `wasm`, then `cpu`. `options.backend` or the `XLT_BACKEND`
 * environment variable forces one. Logs the choice and why the preferred backends were unavailable,
 * and resolves to the chosen backend's name. Details: {@link backendReport}.
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendName> {
  const envChoice = process.env.XLT_BACKEND?.trim();
  const forced = options.backend ?? (envChoice ? envChoice : undefined);
  if (forced !== undefined && !isBackendName(forced)) {
    throw new XltError('CONFIG', `unknown backend '${forced}'; expected one of ${BACKEND_ORDER.join(', ')}`, {
      field: options.backend !== undefined ? 'backend' : 'XLT_BACKEND',
    });
  }
  const log =
    options.log === false ? undefined : (options.log ?? ((m: string) => process.stderr.write(`${m}\n`)));
  const candidates: BackendName[] = forced !== undefined ? [forced] : [...BACKEND_ORDER];
  const unavailable: Partial<Record<BackendName, string>> = {};
  for (const name of candidates) {
    let result: { ok: true; provider?: string } | { ok: false; reason: string };
    if (name === 'tensorflow') result = await tryTensorflow();
    else if (name === 'wasm') result = await tryWasm(options.wasmThreads ?? 1);
    else result = await tryCpu();
    if (result.ok) {
      await tf.ready();
      // xlt chose this backend on purpose: no third-party "install our node backend" notices
      // (tfjs prints its warnings only outside PROD); XLT_TFJS_WARNINGS=1 keeps them
      if (process.env.XLT_TFJS_WARNINGS !== '1') tf.env().set('PROD', true);
      const report: BackendReport = { name, unavailable, mode: forced !== undefined ? 'forced' : 'auto' };
      if (result.provider !== undefined) report.provider = result.provider;
      lastReport = report;
      if (log) {
        const why = Object.entries(unavailable)
          .map(([b, r]) => `${b}: ${r}`)
          .join('; ');
        log(
          `[xlt] tfjs backend: ${name}${report.provider ? ` (from ${report.provider})` : ''}${
            report.mode === 'forced' ? ' (forced)' : ''
          }${why ? `; not used: ${why}` : ''}`,
        );
      }
      return name;
    }
    unavailable[name] = result.reason;
  }
  const why = Object.entries(unavailable)
    .map(([b, r]) => `${b}: ${r}`)
    .join('; ');
  throw new XltError('BACKEND', `no tfjs backend could be initialised (${why})`);
}
