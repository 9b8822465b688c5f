// Timing of forward and forward+backward per token (not a test).
// Usage: pnpm build && node bench/forward.mjs [cpu|wasm] [iterations]
import * as tf from '@tensorflow/tfjs-core';
import { hasSharedDir, initBackend, sharedPath } from '@xlt/core';
import { XmodForMaskedLM } from '../dist/index.js';

const backend = process.argv[2] ?? 'cpu';
const iters = Number(process.argv[3] ?? 3);
await initBackend({ backend, log: false });

function batch(cfg, b, t) {
  const inputIds = [];
  const labels = [];
  for (let i = 0; i < b; i++) {
    const row = [0];
    for (let j = 1; j < t - 1; j++) row.push(4 + ((i * 31 + j * 7) % (cfg.vocab_size - 5)));
    row.push(2);
    inputIds.push(row);
    labels.push(row.map((v, j) => (j % 7 === 3 ? v : -100)));
  }
  const langIds = inputIds.map((_, i) => i % Math.max(1, cfg.languages.length));
  return { inputIds, labels, langIds: cfg.model_type === 'xmod' ? langIds : undefined };
}

function time(fn) {
  fn(); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) fn();
  return (performance.now() - t0) / iters;
}

async function run(name, model, b, t) {
  const x = batch(model.config, b, t);
  const fwd = time(() => tf.dispose(model.forward(x).logits));
  model.train();
  const fb = time(() => {
    const { value, grads } = tf.variableGrads(() => model.forward(x).loss);
    value.dispose();
    tf.dispose(grads);
  });
  model.eval();
  const tok = b * t;
  console.log(
    `${backend}\t${name}\tbatch ${b}x${t}\tforward ${fwd.toFixed(1)} ms (${((fwd / tok) * 1000).toFixed(1)} us/token)\tforward+backward ${fb.toFixed(1)} ms (${((fb / tok) * 1000).toFixed(1)} us/token)`,
  );
}

if (hasSharedDir('fixtures')) {
  const m = await XmodForMaskedLM.fromPretrained(sharedPath('fixtures', 'xmod-postnorm', 'mlm'));
  await run('fixture (h32 L2 A4 F64, V2002)', m, 4, 24);
  m.dispose();
}
const small = new XmodForMaskedLM({
  model_type: 'xmod',
  vocab_size: 2002,
  hidden_size: 256,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  intermediate_size: 1024,
  max_position_embeddings: 130,
  languages: ['en_XX', 'de_DE'],
  default_language: 'en_XX',
  hidden_dropout_prob: 0.1,
  attention_probs_dropout_prob: 0.1,
});
await run('h256 L4 A4 F1024, V2002', small, 2, 128);
small.dispose();
