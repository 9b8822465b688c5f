// Test helper (not exported from the package): builds the xlt-serve bin and runs it as a process.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { build } from 'tsup';

const here = path.dirname(new URL(import.meta.url).pathname);

/**
 * Builds `bin.ts` into `node_modules/.cache/<name>` (next to the package's node_modules, so that
 * its imports resolve as the published bin's do); resolves the path of the built `bin.js`.
 */
export async function buildBin(name: string): Promise<string> {
  const outDir = path.join(here, '..', 'node_modules', '.cache', name);
  await build({
    entry: { bin: path.join(here, 'bin.ts') },
    outDir,
    format: ['esm'],
    target: 'node20',
    dts: false,
    silent: true,
    config: false,
  });
  return path.join(outDir, 'bin.js');
}

/** A running xlt-serve: the process, what it wrote to stderr so far, and its exit. */
export interface BinProcess {
  child: ChildProcess;
  stderr: () => string;
  done: Promise<{ code: number | null; err: string }>;
}

/** Runs the built bin with `args` (and `env` added to this process's environment). */
export function runBin(bin: string, args: string[], env: Record<string, string> = {}): BinProcess {
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const done = new Promise<{ code: number | null; err: string }>((resolve) =>
    child.once('exit', (code) => resolve({ code, err })),
  );
  return { child, stderr: () => err, done };
}

/** The port an xlt-serve started with `--port 0` listens on, once it says so (0 after `ms`). */
export async function listeningPort(p: BinProcess, ms = 60_000): Promise<number> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(p.stderr())?.[1] ?? 0);
    if (port > 0 || p.child.exitCode !== null) return port;
    await new Promise((r) => setTimeout(r, 100));
  }
  return 0;
}
