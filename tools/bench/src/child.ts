import { spawn } from 'node:child_process';

/** The environment variable that makes the bench process run one child measurement and exit. */
export const BENCH_CHILD_ENV = 'XLT_BENCH_CHILD';

/**
 * Runs one measurement in a fresh bench process (`XLT_BENCH_CHILD=<spec>`), so that its peak RSS is
 * its own; resolves the JSON the child prints last.
 */
export function benchChild<T>(spec: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const script = process.argv[1] ?? '';
    const c = spawn(process.execPath, [script], {
      env: { ...process.env, [BENCH_CHILD_ENV]: spec },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    c.once('exit', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0) reject(new Error(`bench child ${spec} exited ${code}: ${out.slice(-300)}`));
      else resolve(JSON.parse(last) as T);
    });
  });
}
