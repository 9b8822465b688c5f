// Masked-LM losses of the dense and the labelled-positions head over the same steps, each variant
// in its own process (issue 22: "same losses within 1e-4 over 10 steps"):
//   node tools/bench/scripts/mlm-losses.mjs
// with V (vocabulary, default 250002), H (768), L (layers, 12), STEPS (10), THREADS (2), LR (1e-5),
// DROP (dropout, 0.1). Batch 8 x 128, every 7th position labelled (as the bench's mlm lines), AdamW
// with clipping at 1, dropout seed 0. Prints each variant's losses and gradient norms per step and
// the largest loss difference.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const self = fileURLToPath(import.meta.url);
const root = path.resolve(path.dirname(self), '../../..');
const env = (k, d) => (process.env[k] === undefined ? d : Number(process.env[k]));

if (process.env.MLM_VARIANT === undefined) {
  const runs = ['dense', 'labelled'].map((variant) => {
    const t = performance.now();
    const out = execFileSync(process.execPath, [self], {
      env: { ...process.env, MLM_VARIANT: variant },
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    });
    const r = JSON.parse(out.trim().split('\n').pop());
    console.log(`${variant}: losses ${r.losses.map((l) => l.toFixed(7)).join(' ')}`);
    console.log(`${variant}: gradient norms ${r.gradNorms.map((g) => g.toPrecision(8)).join(' ')}`);
    console.log(
      `${variant}: ${((performance.now() - t) / 1000).toFixed(0)} s in all, peak RSS ${r.peakMiB} MiB`,
    );
    return r;
  });
  const diff = runs[0].losses.map((l, i) => Math.abs(l - runs[1].losses[i]));
  const worst = Math.max(...diff);
  console.log(
    `largest |dense - labelled| loss difference over ${diff.length} steps: ${worst.toExponential(2)} (step ${diff.indexOf(worst) + 1})`,
  );
} else {
  const onnx = await import(pathToFileURL(path.join(root, 'packages/onnx/dist/index.js')).href);
  const { normalizeConfig } = await import(
    pathToFileURL(path.join(root, 'packages/core/dist/index.js')).href
  );
  const H = env('H', 768);
  const drop = env('DROP', 0.1);
  const config = normalizeConfig({
    architectures: ['XLMRobertaForMaskedLM'],
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
    hidden_dropout_prob: drop,
    attention_probs_dropout_prob: drop,
  });
  const head = 'masked-lm';
  const step = await onnx.CompiledTrainStep.create({
    config,
    weights: onnx.randomWeights(config, head, 0),
    head,
    trainable: [...onnx.weightShapes(config, head).keys()],
    adamw: { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 },
    threads: env('THREADS', 2),
    dropoutSeed: 0,
    updateWeightsInPlace: true,
    frozenAsInputs: true,
    maskedLmHead: process.env.MLM_VARIANT,
  });
  const V = config.vocab_size;
  const ids = Array.from({ length: 8 }, (_, i) =>
    Array.from({ length: 128 }, (_, j) => (j === 0 ? 0 : 4 + ((i * 31 + j * 7) % (V - 5)))),
  );
  const batch = {
    inputIds: ids,
    attentionMask: ids.map((r) => r.map(() => 1)),
    labels: ids.map((r) => r.map((v, j) => (j % 7 === 3 ? v : -100))),
  };
  const losses = [];
  const gradNorms = [];
  for (let s = 0; s < env('STEPS', 10); s++) {
    const r = await step.run(batch, env('LR', 1e-5));
    losses.push(r.loss);
    gradNorms.push(r.gradNorm);
  }
  await step.release();
  const peakMiB = Math.round(process.resourceUsage().maxRSS / 1024);
  console.log(JSON.stringify({ losses, gradNorms, peakMiB }));
}
