// Op counts of the fused small X-Mod masked-LM training step (h256 l4, every parameter trainable,
// AdamW in the graph) of one or more builds of xlt, as built and after onnxruntime's level-'all'
// graph optimisation: `node tools/bench/scripts/graph-ops.mjs CHECKOUT [CHECKOUT ...]`, each a
// checkout whose packages/onnx and tools/bench are built. Used for issue 21 (commit 7396c7f, the
// hand-written TrainBuilder, against the traced graphs): where a step's extra time could come from.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dirs = process.argv.slice(2);
if (dirs.length === 0) {
  console.error('usage: node tools/bench/scripts/graph-ops.mjs CHECKOUT [CHECKOUT ...]');
  process.exit(2);
}

/** The fields of a protobuf message in bytes [start, end): [field number, wire type, value]. */
function* fields(b, start = 0, end = b.length) {
  let i = start;
  const varint = () => {
    let r = 0;
    let mul = 1;
    for (;;) {
      const x = b[i++];
      r += (x & 127) * mul;
      mul *= 128;
      if (x < 128) return r;
    }
  };
  while (i < end) {
    const key = varint();
    const [f, w] = [Math.floor(key / 8), key % 8];
    if (w === 0) yield [f, w, varint()];
    else if (w === 2) {
      const l = varint();
      yield [f, w, [i, i + l]];
      i += l;
    } else if (w === 5) i += 4;
    else if (w === 1) i += 8;
    else throw new Error(`unexpected protobuf wire type ${w}`);
  }
}

/** ModelProto bytes -> op type -> count (graph field 7, node field 1, op_type field 4). */
function opCounts(bytes) {
  const counts = new Map();
  for (const [f, , g] of fields(bytes)) {
    if (f !== 7) continue;
    for (const [nf, , node] of fields(bytes, g[0], g[1])) {
      if (nf !== 1) continue;
      for (const [af, , v] of fields(bytes, node[0], node[1]))
        if (af === 4) {
          const op = Buffer.from(bytes.subarray(v[0], v[1])).toString();
          counts.set(op, (counts.get(op) ?? 0) + 1);
        }
    }
  }
  return counts;
}

const rows = [];
for (const dir of dirs) {
  const root = path.resolve(dir);
  const imp = (p) => import(pathToFileURL(path.join(root, p)).href);
  const [bench, onnx] = [await imp('tools/bench/dist/index.js'), await imp('packages/onnx/dist/index.js')];
  const ort = createRequire(path.join(root, 'packages/onnx/package.json'))('onnxruntime-node');
  const config = bench.SMALL_XMOD;
  const { model } = onnx.buildTrainGraph({
    config,
    weights: onnx.randomWeights(config, 'masked-lm', 0),
    head: 'masked-lm',
    trainable: [...onnx.weightShapes(config, 'masked-lm').keys()],
    mode: 'adamw',
    adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
    recompute: false,
  });
  const tmp = mkdtempSync(path.join(tmpdir(), 'xlt-graph-ops-'));
  try {
    const optimizedModelFilePath = path.join(tmp, 'optimized.onnx');
    const session = await ort.InferenceSession.create(model, {
      graphOptimizationLevel: 'all',
      optimizedModelFilePath,
      intraOpNumThreads: 1,
      logSeverityLevel: 3,
    });
    await session.release();
    rows.push({ dir, built: opCounts(model), optimized: opCounts(readFileSync(optimizedModelFilePath)) });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
const total = (m) => [...m.values()].reduce((a, b) => a + b, 0);
for (const kind of ['built', 'optimized']) {
  const ops = [...new Set(rows.flatMap((r) => [...r[kind].keys()]))].sort(
    (a, b) =>
      Math.max(...rows.map((r) => r[kind].get(b) ?? 0)) - Math.max(...rows.map((r) => r[kind].get(a) ?? 0)),
  );
  console.log(`\n${kind}: ${rows.map((r) => `${r.dir} ${total(r[kind])} nodes`).join(', ')}`);
  for (const op of ops) {
    const n = rows.map((r) => r[kind].get(op) ?? 0);
    if (n.some((v) => v !== n[0]))
      console.log(`  ${op.padEnd(20)} ${n.map((v) => String(v).padStart(6)).join(' ')}`);
  }
}
