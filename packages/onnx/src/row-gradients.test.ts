import { normalizeConfig } from '@xlt/core';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { buildTracedTrainGraph } from './autodiff/train-graph.js';
import { randomWeights, weightShapes } from './random.js';
import { addRows, rowScatter, scatterRows, sumRows } from './row-gradients.js';

const config = normalizeConfig({
  model_type: 'xlm-roberta',
  vocab_size: 30,
  hidden_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  intermediate_size: 12,
  num_labels: 3,
  hidden_dropout_prob: 0,
  attention_probs_dropout_prob: 0,
  max_position_embeddings: 12,
});
const word = 'roberta.embeddings.word_embeddings.weight';
const i64 = (rows: number[][]) =>
  new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0]?.length ?? 0]);
// token 7 three times, token 5 twice: duplicate rows must sum
const ids = [
  [0, 7, 5, 7, 2],
  [0, 5, 7, 9, 2],
];
const labels = [
  [-100, 1, 2, 0, -100],
  [-100, 2, 0, 1, -100],
];

async function gradients(
  head: 'token-classification' | 'masked-lm',
  rowGradients?: string[],
  gradBlockElements?: number,
) {
  const weights = randomWeights(config, head, 4);
  const trainable = [...weightShapes(config, head).keys()];
  const { model, signature } = buildTracedTrainGraph({
    config,
    weights,
    head,
    trainable,
    mode: 'grads',
    dropout: false,
    ...(rowGradients !== undefined ? { rowGradients } : {}),
    ...(gradBlockElements !== undefined ? { gradBlockElements } : {}),
  });
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  const feeds: Record<string, ort.Tensor> = {
    input_ids: i64(ids),
    attention_mask: i64(ids.map((r) => r.map(() => 1))),
    labels: i64(head === 'masked-lm' ? ids.map((r) => r.map((v, j) => (j === 2 ? v : -100))) : labels),
  };
  for (const p of signature.params)
    feeds[p.input] = new ort.Tensor('float32', weights.get(p.name).data, p.shape);
  const out = await session.run(feeds);
  await session.release();
  return { out, signature };
}

describe('word embedding gradient as rows', () => {
  it('scatters to exactly the dense gradient, and the norms join to the dense graph norm', async () => {
    const dense = await gradients('token-classification');
    const rows = await gradients('token-classification', [word]);
    const p = rows.signature.params.find((q) => q.name === word);
    expect(p?.grad).toBeUndefined();
    expect(p?.gradRows).toBe(`grad_rows:${word}`);
    const shape = p?.shape as number[];
    const grad = new Float32Array((shape[0] as number) * (shape[1] as number));
    const sq = scatterRows(
      grad,
      rowScatter(shape),
      rows.out[p?.gradIds as string]?.data as BigInt64Array,
      rows.out[p?.gradRows as string]?.data as Float32Array,
    );
    expect(Array.from(grad)).toEqual(Array.from(dense.out[`grad:${word}`]?.data as Float32Array));
    // the rows graph's norm leaves out the word embeddings
    const denseNorm = dense.out.grad_norm?.data[0] as number;
    const otherNorm = rows.out.grad_norm?.data[0] as number;
    expect(otherNorm).toBeLessThan(denseNorm);
    expect(Math.sqrt(otherNorm ** 2 + sq)).toBeCloseTo(denseNorm, 5);
    // every other gradient is the same
    for (const q of rows.signature.params)
      if (q.grad !== undefined)
        expect(Array.from(rows.out[q.grad]?.data as Float32Array), q.name).toEqual(
          Array.from(dense.out[q.grad]?.data as Float32Array),
        );
  });

  it("gives a tied table (the masked-lm decoder) its other use's gradient and the rows: their sum is the dense gradient", async () => {
    const dense = await gradients('masked-lm');
    const tied = await gradients('masked-lm', [word]);
    const p = tied.signature.params.find((q) => q.name === word);
    expect(p?.grad).toBe(`grad:${word}`);
    expect(p?.gradRows).toBe(`grad_rows:${word}`);
    const grad = Float32Array.from(tied.out[`grad:${word}`]?.data as Float32Array);
    const full = dense.out[`grad:${word}`]?.data as Float32Array;
    // the decoder's part alone differs from the whole gradient on the gathered rows
    expect(Array.from(grad)).not.toEqual(Array.from(full));
    const delta = addRows(
      grad,
      p?.shape[1] ?? 0,
      tied.out[p?.gradIds as string]?.data as BigInt64Array,
      tied.out[p?.gradRows as string]?.data as Float32Array,
    );
    // the same float32 sums as the dense graph's Sum of the decoder's gradient and the scatter
    expect(Array.from(grad)).toEqual(Array.from(full));
    const denseNorm = dense.out.grad_norm?.data[0] as number;
    const otherNorm = tied.out.grad_norm?.data[0] as number;
    expect(Math.sqrt(otherNorm ** 2 + delta)).toBeCloseTo(denseNorm, 5);
    for (const q of tied.signature.params)
      if (q.name !== word && q.grad !== undefined)
        expect(Array.from(tied.out[q.grad]?.data as Float32Array), q.name).toEqual(
          Array.from(dense.out[q.grad]?.data as Float32Array),
        );
  });
});

describe('gradient row blocks', () => {
  it('gives a large dense gradient as row blocks that join to the single output', async () => {
    const whole = await gradients('token-classification');
    // 30 x 8 table: blocks of 7 rows (56 elements), the last of 2; smaller tensors stay whole
    const blocked = await gradients('token-classification', undefined, 60);
    const p = blocked.signature.params.find((q) => q.name === word);
    expect(p?.grad).toBeUndefined();
    expect(p?.gradBlocks?.map((b) => b.rows)).toEqual([7, 7, 7, 7, 2]);
    const joined = (p?.gradBlocks ?? []).flatMap((b) =>
      Array.from(blocked.out[b.output]?.data as Float32Array),
    );
    expect(joined).toEqual(Array.from(whole.out[`grad:${word}`]?.data as Float32Array));
    const small = blocked.signature.params.find((q) => q.name === 'classifier.bias');
    expect(small?.grad).toBe('grad:classifier.bias');
    expect(blocked.out.grad_norm?.data[0]).toBe(whole.out.grad_norm?.data[0]);
  });
});

describe('scatterRows', () => {
  it('sums repeated rows, zeroes the rows of the previous call and returns the sum of squares', () => {
    const grad = new Float32Array(4 * 2);
    const s = rowScatter([4, 2]);
    const sq1 = scatterRows(grad, s, BigInt64Array.of(1n, 3n, 1n), Float32Array.of(1, 2, 3, 4, 5, 6));
    expect(Array.from(grad)).toEqual([0, 0, 6, 8, 0, 0, 3, 4]);
    expect(sq1).toBe(36 + 64 + 9 + 16);
    // row 3 given as -1 (counted from the end, as Gather and ScatterND do); row 1 is cleared
    const sq2 = scatterRows(grad, s, BigInt64Array.of(-1n, 0n), Float32Array.of(1, 1, 2, 2));
    expect(Array.from(grad)).toEqual([2, 2, 0, 0, 0, 0, 1, 1]);
    expect(sq2).toBe(10);
    expect(() => scatterRows(grad, s, BigInt64Array.of(4n), Float32Array.of(1, 1))).toThrow(/outside/);
  });
});

describe('sumRows', () => {
  it('gives the rows scatterRows writes (the same float32 sums), sorted, and the same sum of squares', () => {
    let seed = 3;
    const rand = () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647 - 0.5;
    };
    const [tableRows, width] = [50, 6];
    const ids = BigInt64Array.from({ length: 40 }, () => BigInt(Math.floor((rand() + 0.5) * 12) * 4 - 1));
    const rows = Float32Array.from({ length: 40 * width }, rand);
    const dense = new Float32Array(tableRows * width);
    const sqDense = scatterRows(dense, rowScatter([tableRows, width]), ids, rows);
    const { sparse, sq } = sumRows(tableRows, width, ids, rows);
    expect(sq).toBe(sqDense);
    expect(Array.from(sparse.rows)).toEqual([...sparse.rows].sort((a, b) => a - b));
    const rebuilt = new Float32Array(tableRows * width);
    sparse.rows.forEach((r, i) => {
      rebuilt.set(sparse.data.subarray(i * width, (i + 1) * width), r * width);
    });
    expect(Array.from(rebuilt)).toEqual(Array.from(dense));
    // -1 is the last row, as in scatterRows; out of the table is an error
    expect(Array.from(sumRows(4, 1, BigInt64Array.of(-1n), Float32Array.of(2)).sparse.rows)).toEqual([3]);
    expect(() => sumRows(4, 1, BigInt64Array.of(4n), Float32Array.of(1))).toThrow(/outside/);
  });
});
