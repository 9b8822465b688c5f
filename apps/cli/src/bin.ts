#!/usr/bin/env node
import { runDemo } from './demo/run.js';

async function main(argv: string[]): Promise<number> {
  const [cmd] = argv;
  if (cmd === 'demo') {
    const r = await runDemo({ log: (l) => process.stdout.write(`${l}\n`) });
    process.stdout.write(`done in ${r.seconds.toFixed(1)} s\n`);
    return 0;
  }
  process.stdout.write('usage: xlt demo\n');
  return cmd === undefined || cmd === '--help' ? 0 : 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`xlt: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
