#!/usr/bin/env node
import { COMMANDS } from './cli/commands.js';
import { runCli } from './cli/main.js';

runCli(process.argv.slice(2), COMMANDS, {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  ...(process.argv[1] !== undefined ? { self: process.argv[1] } : {}),
}).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`xlt: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
