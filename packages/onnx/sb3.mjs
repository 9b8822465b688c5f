import * as ort from 'onnxruntime-node';
import { buildTrainGraph, randomWeights } from '@xlt/onnx';
const [V, B, S, head] = [16000, 32, 32, process.argv[2] ?? 'token-classification'];
const config = { model_type: 'xlm-roberta', vocab_size: V, hidden_size: 256, num_hidden_layers: 4, num_attention_heads: 4, intermediate_size: 1024, max_position_embeddings: 514, pad_token_id: 1, hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.1, num_labels: 7 };
const w = randomWeights(config, head, 0, 0.02, 'hf');
const adamw = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 };
const { model, signature } = buildTrainGraph({ config, weights: w, head, trainable: w.names(), adamw, mode: 'adamw' });
const sess = await ort.InferenceSession.create(model, { enableProfiling: true, profileFilePrefix: '/tmp/ortprof', intraOpNumThreads: 2, graphOptimizationLevel: 'all', logSeverityLevel: 3 });
const i64 = (a, d) => new ort.Tensor('int64', BigInt64Array.from(a.flat().map(BigInt)), d);
const ids = Array.from({ length: B }, (_, i) => Array.from({ length: S }, (_, j) => 5 + ((i * 131 + j * 7) % (V - 10))));
const feeds = { input_ids: i64(ids, [B, S]), attention_mask: i64(ids.map(r => r.map(() => 1)), [B, S]), labels: i64(ids.map(r => r.map(v => head === 'masked-lm' ? (v % 7 === 0 ? v : -100) : v % 7)), [B, S]), lr: new ort.Tensor('float32', Float32Array.of(1e-4), []), step: new ort.Tensor('float32', Float32Array.of(1), []) };
if (signature.batch.includes('dropout_seed')) feeds.dropout_seed = new ort.Tensor('int64', BigInt64Array.of(1n), []);
for (const p of signature.params) { const d = w.get(p.name).data; feeds[p.input] = new ort.Tensor('float32', d, p.shape); feeds[p.m] = new ort.Tensor('float32', new Float32Array(d.length), p.shape); feeds[p.v] = new ort.Tensor('float32', new Float32Array(d.length), p.shape); }
for (let t = 0; t < 4; t++) { const t0 = performance.now(); await sess.run(feeds); console.log('step ms', (performance.now() - t0).toFixed(0)); }
const f = sess.endProfiling();
console.log(f);
