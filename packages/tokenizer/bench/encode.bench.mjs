#!/usr/bin/env node
// Batch-encoding throughput of XltTokenizer (tokens/s), on FLORES devtest sentences of all languages.
// Usage (after `pnpm build`): node bench/encode.bench.mjs [tokenizer.json or folder] [batchSize]
// Default tokenizer: shared/fixtures/tokenizer/tokenizer.json. Prints one JSON line at the end.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { sharedPath } from '@xlt/core';
import { XltTokenizer } from '@xlt/tokenizer';

const file = process.argv[2] ?? sharedPath('fixtures', 'tokenizer', 'tokenizer.json');
const batchSize = Number(process.argv[3] ?? 256);
const dir = sharedPath('data', 'text');
const sentences = readdirSync(dir)
  .filter((f) => f.endsWith('.devtest'))
  .flatMap((f) =>
    readFileSync(path.join(dir, f), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== ''),
  );
const tok = await XltTokenizer.fromFile(file);

async function run(options) {
  let tokens = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < sentences.length; i += batchSize) {
    const encs = await tok.encodeBatch(sentences.slice(i, i + batchSize), options);
    for (const e of encs) for (const m of e.attentionMask) tokens += m; // real tokens, padding not counted
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return { tokens, seconds: s, tokensPerSecond: tokens / s };
}

await run({}); // warm-up
const results = {};
for (const [name, opts] of [
  ['plain', {}],
  ['pad_longest_max512', { padding: 'longest', maxLength: 512 }],
]) {
  const runs = [];
  for (let r = 0; r < 3; r++) runs.push(await run(opts));
  const best = runs.reduce((a, b) => (a.tokensPerSecond > b.tokensPerSecond ? a : b));
  results[name] = Math.round(best.tokensPerSecond);
  console.log(
    `${name}: ${sentences.length} sentences, ${best.tokens} tokens, ${best.seconds.toFixed(3)} s -> ${Math.round(best.tokensPerSecond)} tokens/s (best of 3, batch ${batchSize})`,
  );
}
console.log(
  JSON.stringify({
    bench: 'tokenizer.encodeBatch',
    file,
    batchSize,
    sentences: sentences.length,
    tokensPerSecond: results,
  }),
);
