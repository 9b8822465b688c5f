// Test helper (not exported from the package): a tiny model with Hugging Face-like parameter names
// built from @xlt/xmod's nn layers, whose loss touches every parameter.
import * as tf from '@tensorflow/tfjs-core';
import { Rng } from '@xlt/core';
import { Embedding, LayerNorm, Linear, Module, ModuleDict, ModuleList } from '@xlt/xmod';
import type { ForwardInputs } from './objectives.js';

/** A module holding named children (for building test trees). */
export class Node extends Module {
  add<M extends Module>(name: string, m: M): M {
    return this.registerModule(name, m);
  }
  param(name: string, t: tf.Tensor): tf.Variable {
    return this.registerParameter(name, t);
  }
}

export const LANGS = ['en_XX', 'de_DE'];

/**
 * roberta.embeddings.{word_embeddings, LayerNorm}, roberta.encoder.layer.{0,1}.{dense (with
 * lora_A/lora_B), output.adapter_modules.{en_XX,de_DE}.{dense1,dense2}}, classifier (3 labels).
 */
export class TinyModel extends Module {
  readonly emb: Embedding;
  readonly ln: LayerNorm;
  readonly layers: Array<{
    dense: Linear;
    loraA: tf.Variable;
    loraB: tf.Variable;
    adapters: ModuleDict<Node>;
  }> = [];
  readonly classifier: Linear;

  constructor(seed = 1, vocab = 20, dim = 8) {
    super();
    const rng = new Rng(seed);
    const roberta = this.registerModule('roberta', new Node());
    const embeddings = roberta.add('embeddings', new Node());
    this.emb = embeddings.add('word_embeddings', new Embedding(vocab, dim, { rng, std: 0.5 }));
    this.ln = embeddings.add('LayerNorm', new LayerNorm(dim));
    const encoder = roberta.add('encoder', new Node());
    const list = encoder.add('layer', new ModuleList<Node>());
    for (let l = 0; l < 2; l++) {
      const layer = new Node();
      list.push(layer);
      const dense = layer.add('dense', new Linear(dim, dim, { rng, std: 0.3 }));
      const lora = layer.add('lora', new Node());
      const loraA = lora.param('lora_A', tf.randomNormal([2, dim], 0, 0.3, 'float32', seed + l));
      const loraB = lora.param('lora_B', tf.randomNormal([dim, 2], 0, 0.3, 'float32', seed + 10 + l));
      const output = layer.add('output', new Node());
      const adapters = output.add('adapter_modules', new ModuleDict<Node>());
      for (const lang of LANGS) {
        const a = new Node();
        a.add('dense1', new Linear(dim, dim / 2, { rng, std: 0.3 }));
        a.add('dense2', new Linear(dim / 2, dim, { rng, std: 0.3 }));
        adapters.set(lang, a);
      }
      this.layers.push({ dense, loraA, loraB, adapters });
    }
    this.classifier = this.registerModule('classifier', new Linear(dim, 3, { rng, std: 0.3 }));
  }

  /** Mean-pooled sequence classification; every example goes through its language's adapter. */
  forward(inputs: ForwardInputs): { logits: tf.Tensor; loss: tf.Tensor | null } {
    let h = this.ln.apply(this.emb.apply(inputs.inputIds)); // [B, T, D]
    const langs =
      inputs.langIds !== undefined
        ? Array.from(inputs.langIds.dataSync())
        : new Array<number>(h.shape[0] as number).fill(0);
    for (const layer of this.layers) {
      const lora = tf.matMul(
        tf.matMul(tf.reshape(h, [-1, h.shape[2] as number]), layer.loraA, false, true),
        layer.loraB,
        false,
        true,
      );
      h = tf.tanh(tf.add(layer.dense.apply(h), tf.reshape(lora, h.shape)));
      const rows: tf.Tensor[] = [];
      for (let b = 0; b < (h.shape[0] as number); b++) {
        const a = layer.adapters.get(LANGS[langs[b] ?? 0] as string) as Node;
        const x = tf.slice(h, [b, 0, 0], [1, -1, -1]);
        const d1 = a.getModule('dense1') as Linear;
        const d2 = a.getModule('dense2') as Linear;
        rows.push(tf.add(x, d2.apply(tf.relu(d1.apply(x)))));
      }
      h = tf.concat(rows, 0);
    }
    const logits = this.classifier.apply(tf.mean(h, 1));
    let loss: tf.Tensor | null = null;
    if (inputs.labels !== undefined) {
      const onehot = tf.oneHot(tf.cast(inputs.labels, 'int32'), 3);
      loss = tf.losses.softmaxCrossEntropy(onehot, logits);
    }
    return { logits, loss };
  }
}

/** A deterministic classification batch (token ids, labels, language per example) from a seed. */
export function tinyBatch(rng: Rng, batch = 4, len = 5, vocab = 20) {
  const inputIds: number[][] = [];
  const attentionMask: number[][] = [];
  const labels: number[] = [];
  const langIds: number[] = [];
  for (let b = 0; b < batch; b++) {
    inputIds.push(Array.from({ length: len }, () => rng.int(vocab)));
    attentionMask.push(new Array<number>(len).fill(1));
    labels.push(rng.int(3));
    langIds.push(b % 2);
  }
  return { inputIds, attentionMask, labels, langIds };
}

/** Copies of every parameter's values by name. */
export function snapshot(m: Module): Map<string, Float32Array> {
  return new Map(m.namedParameters().map(([n, v]) => [n, v.dataSync().slice() as Float32Array]));
}
