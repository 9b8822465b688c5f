// Test helper (not exported from the package): `xlt worker` processes of the built CLI.
import { type ChildProcess, spawn } from 'node:child_process';

/** A worker process and the lines it printed so far (stdout and stderr). */
export interface WorkerProcess {
  child: ChildProcess;
  out: string[];
}

/** Starts `node <bin> worker --queue <url> ...args`, adding it to `started` (to be killed after the tests). */
export function startWorkerProcess(
  bin: string,
  url: string,
  args: string[],
  started: WorkerProcess[],
): WorkerProcess {
  const child = spawn(process.execPath, [bin, 'worker', '--queue', url, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const w = { child, out: [] as string[] };
  let buf = '';
  const take = (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    w.out.push(...lines);
  };
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  started.push(w);
  return w;
}
