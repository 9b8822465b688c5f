/** The three files every `xlt experiment` writes, written atomically and named in the log. */
import path from 'node:path';
import { writeFileAtomic } from '@xlt/core';
import type { CommandContext } from '../cli/main.js';

/**
 * Writes `results.json` (the object, indented), `report.md` and `chart.svg` to the run directory,
 * each through a temporary file, logs the report's lines and the files' paths.
 */
export function writeExperimentOutputs(
  ctx: CommandContext,
  o: { results: unknown; report: string; chart: string },
): void {
  writeFileAtomic(path.join(ctx.runDir, 'results.json'), `${JSON.stringify(o.results, null, 2)}\n`);
  writeFileAtomic(path.join(ctx.runDir, 'report.md'), o.report);
  writeFileAtomic(path.join(ctx.runDir, 'chart.svg'), o.chart);
  for (const l of o.report.trimEnd().split('\n')) ctx.log(l);
  ctx.log(
    `written: ${['results.json', 'report.md', 'chart.svg'].map((f) => path.join(ctx.runDir, f)).join(', ')}`,
  );
}
