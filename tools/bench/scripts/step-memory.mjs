// Peak RSS of the compiled training step's first steps, in a fresh process, for one reduced or full
// XLM-R-base config: `nice -n 10 node tools/bench/scripts/step-memory.mjs` with
//   V (vocabulary, default 250002), H (768), L (layers, 12), B (8), S (128), STEPS (2),
//   TRAIN=full|frozen-embeddings (default full), THREADS (2),
//   ACC=K (gradient accumulation, K micro-batches of the same batch),
//   KERNEL=native|wasm|onnxruntime (the sliced update's kernel; default: the step's),
//   HEAD=token-classification|masked-lm (default token-classification; masked LM labels 1 position
//   in 7), MLM=labelled|dense (the masked-LM head on the labelled positions or on every one).
// Prints one JSON line: the estimate and the peak RSS (MiB) after the weights, the session and each step.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const onnx = await import(pathToFileURL(path.join(root, 'packages/onnx/dist/index.js')).href);
const { normalizeConfig } = await import(pathToFileURL(path.join(root, 'packages/core/dist/index.js')).href);
const env = (k, d) => (process.env[k] === undefined ? d : Number(process.env[k]));
const H = env('H', 768);
const config = normalizeConfig({
  model_type: 'xlm-roberta',
  vocab_size: env('V', 250002),
  hidden_size: H,
  num_hidden_layers: env('L', 12),
  num_attention_heads: H / 64,
  intermediate_size: 4 * H,
  max_position_embeddings: 514,
  type_vocab_size: 1,
  layer_norm_eps: 1e-5,
  pad_token_id: 1,
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
  num_labels: 7,
});
const B = env('B', 8);
const S = env('S', 128);
const head = process.env.HEAD ?? 'token-classification';
const mlm = head === 'masked-lm';
const mib = () => Math.round(process.resourceUsage().maxRSS / 1024);
const weights = onnx.randomWeights(config, head, 0);
const all = [...onnx.weightShapes(config, head).keys()];
for (const n of all) weights.get(n);
const frozenEmb = process.env.TRAIN === 'frozen-embeddings';
const names = all.filter((n) => !frozenEmb || !/embeddings\.(word|position|token_type)_embeddings/.test(n));
const rss = { weights: mib() };
let estimate;
const t0 = performance.now();
const step = await onnx.CompiledTrainStep.create({
  config,
  weights,
  head,
  trainable: names,
  adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
  threads: env('THREADS', 2),
  dropoutSeed: 0,
  updateWeightsInPlace: true,
  frozenAsInputs: true,
  gradAccumulation: env('ACC', 1),
  ...(process.env.KERNEL ? { updateKernel: process.env.KERNEL } : {}),
  ...(mlm && process.env.MLM ? { maskedLmHead: process.env.MLM } : {}),
  batchShape: { batchSize: B, sequenceLength: S },
  onMemoryEstimate: (e) => {
    estimate = e;
  },
});
rss.session = mib();
const sessionSeconds = (performance.now() - t0) / 1000;
const ids = Array.from({ length: B }, (_, i) =>
  Array.from({ length: S }, (_, j) => (j === 0 ? 0 : 4 + ((i * 31 + j * 7) % (config.vocab_size - 5)))),
);
const labels = ids.map((r, i) =>
  r.map((v, j) => (j === 0 ? -100 : mlm ? (j % 7 === 3 ? v : -100) : (i + j) % 7)),
);
const batch = { inputIds: ids, labels };
const acc = env('ACC', 1);
const losses = [];
const stepSeconds = [];
for (let k = 0; k < env('STEPS', 2); k++) {
  const t = performance.now();
  losses.push((await step.run(acc > 1 ? Array(acc).fill(batch) : batch, 1e-5)).loss);
  stepSeconds.push(Math.round((performance.now() - t) / 100) / 10);
  rss[`step${k + 1}`] = mib();
}
await step.release();
const GiB = 1024 ** 3;
console.log(
  JSON.stringify({
    config: `V${config.vocab_size} H${H} L${config.num_hidden_layers} b${B} s${S} ${frozenEmb ? 'frozen-embeddings' : 'full'}${mlm ? ` masked-lm ${process.env.MLM ?? 'labelled'}` : ''}`,
    params: estimate.parameters,
    trainable: estimate.trainableParameters,
    estimateGiB: +(estimate.totalBytes / GiB).toFixed(2),
    parts: Object.fromEntries(estimate.parts.map((p) => [p.name, +(p.bytes / GiB).toFixed(2)])),
    rssMiB: rss,
    sessionSeconds: +sessionSeconds.toFixed(1),
    stepSeconds,
    losses,
  }),
);
