// Test helper (not exported from the package): runs the CLI in-process and captures its output.
import { COMMANDS } from './cli/commands.js';
import { runCli } from './cli/main.js';

/** Runs `xlt <argv>` with every command; returns the exit code and what it printed. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, COMMANDS, { out: (s) => (out += s), err: (s) => (err += s) });
  return { code, out, err };
}
