// The compiled training step of two builds of xlt side by side in one process (interleaved pairs,
// so that the machine's drift hits both): `node tools/bench/scripts/compare-step.mjs BEFORE AFTER`,
// each a checkout whose tools/bench is built (`pnpm build`); PAIRS=n pairs per model (default 3).
// Used for issue 21: commit 7396c7f (hand-written TrainBuilder) against the traced graphs.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [before, after] = process.argv.slice(2);
if (before === undefined || after === undefined) {
  console.error('usage: node tools/bench/scripts/compare-step.mjs BEFORE_CHECKOUT AFTER_CHECKOUT');
  process.exit(2);
}
const bench = (dir) => import(pathToFileURL(path.resolve(dir, 'tools/bench/dist/index.js')).href);
const [oldB, newB] = await Promise.all([bench(before), bench(after)]);
const { SMALL_XMOD, FIXTURE_XMOD, onnxMatmulGflops } = newB;
const rows = [];
const lim0 = await onnxMatmulGflops(1024, 2);
console.log(`matmul onnxruntime 1024^3 2 threads: ${lim0.toFixed(1)} GFLOP/s`);
for (const [name, cfg, b, s] of [
  ['small-xmod h256 l4 b16 s128', SMALL_XMOD, 16, 128],
  ['fixture-xmod h32 l2 b16 s24', FIXTURE_XMOD, 16, 24],
]) {
  for (let pair = 0; pair < Number(process.env.PAIRS ?? 3); pair++) {
    for (const [label, mod] of pair % 2 === 0
      ? [
          ['before', oldB],
          ['after', newB],
        ]
      : [
          ['after', newB],
          ['before', oldB],
        ]) {
      const r = await mod.onnxTrainTokensPerSecond(cfg, b, s, 2, 7);
      rows.push({ name, label, pair, tps: r.tokensPerSecond, gflops: r.gflops });
      console.log(
        `${name} ${label} pair ${pair}: ${r.tokensPerSecond.toFixed(0)} tokens/s, ${r.gflops.toFixed(1)} GFLOP/s, ${((100 * r.gflops) / lim0).toFixed(1)}% of matmul limit`,
      );
    }
  }
}
const lim1 = await onnxMatmulGflops(1024, 2);
console.log(`matmul onnxruntime 1024^3 2 threads (after): ${lim1.toFixed(1)} GFLOP/s`);
const med = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s[(s.length - 1) >> 1];
};
for (const name of new Set(rows.map((r) => r.name)))
  for (const label of ['before', 'after']) {
    const xs = rows.filter((r) => r.name === name && r.label === label);
    console.log(
      `SUMMARY ${name} ${label}: median ${med(xs.map((r) => r.tps)).toFixed(0)} tokens/s (${xs.map((r) => r.tps.toFixed(0)).join(', ')}), ${((100 * med(xs.map((r) => r.gflops))) / ((lim0 + lim1) / 2)).toFixed(1)}% of matmul limit`,
    );
  }
