// Sums the vitest JSON reports of every package into one closing line: "N passed, N failed, N skipped",
// and names every failed test (package, file, title, the first lines of its message), so that the tail
// of a CI log says what failed even when the vitest output above it is cut.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

let passed = 0;
let failed = 0;
let skipped = 0;
const rows = [];
const failures = [];
for (const group of ['packages', 'apps', 'tools']) {
  if (!existsSync(group)) continue;
  for (const name of readdirSync(group)) {
    const dir = path.join(group, name);
    const file = path.join(dir, 'test-results', 'vitest.json');
    if (!existsSync(file)) continue;
    const r = JSON.parse(readFileSync(file, 'utf8'));
    const p = r.numPassedTests ?? 0;
    const f = r.numFailedTests ?? 0;
    const s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    passed += p;
    failed += f;
    skipped += s;
    rows.push(
      `${dir.padEnd(22)} ${String(p).padStart(5)} passed ${String(f).padStart(4)} failed ${String(s).padStart(4)} skipped`,
    );
    for (const suite of r.testResults ?? []) {
      const where = path.relative(path.resolve(dir), suite.name ?? '');
      const tests = (suite.assertionResults ?? []).filter((t) => t.status === 'failed');
      for (const t of tests)
        failures.push({ dir, where, title: t.fullName ?? t.title, messages: t.failureMessages ?? [] });
      // a file that failed to load or crashed has a message and no failed test of its own
      if (tests.length === 0 && suite.status === 'failed')
        failures.push({ dir, where, title: '(the file itself)', messages: [suite.message ?? ''] });
    }
  }
}
console.log(rows.join('\n'));
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
for (const f of failures) {
  console.log(`\nFAILED ${f.dir}/${f.where} > ${f.title}`);
  // the message and the project's own stack frames, not vitest's or node's
  const text = f.messages
    .join('\n')
    .split('\n')
    .filter((l) => !/node_modules|node:internal|<anonymous>/.test(l))
    .slice(0, 10);
  for (const line of text) console.log(`  ${line}`);
}
