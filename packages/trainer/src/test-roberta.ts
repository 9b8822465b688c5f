// Test helper (not exported): a minimal XLM-R / X-Mod (post-norm) masked LM written from the
// transformers modelling code (modeling_xmod.py / modeling_xlm_roberta.py), used to check the
// trainer against the PyTorch training fixtures until @xlt/xmod ships its model classes.
import * as tf from '@tensorflow/tfjs-core';
import { readSafetensors, toFloat32 } from '@xlt/core';
import { gelu, LayerNorm, Linear, type Module, ModuleDict } from '@xlt/xmod';
import { Node } from './test-model.js';

const H = 32;
const HEADS = 4;
const FFN = 64;
const VOCAB = 2002;
const MAXPOS = 28;
const PAD = 1;

interface LayerParts {
  q: Linear;
  k: Linear;
  v: Linear;
  lora: Map<'q' | 'v', { a: Linear; b: Linear }>;
  attnOut: Linear;
  attnLn: LayerNorm;
  inter: Linear;
  out: Linear;
  outLn: LayerNorm;
  adapters: ModuleDict<Node> | null;
}

export interface RobertaInputs {
  inputIds: number[][];
  attentionMask: number[][];
  langIds?: number[];
  labels: number[][];
}

/** XmodForMaskedLM (languages given) or XLMRobertaForMaskedLM, optionally with PEFT LoRA on query/value. */
export class TestMaskedLM extends Node {
  readonly languages: string[];
  readonly loraScale: number;
  private readonly word: tf.Variable;
  private readonly pos: tf.Variable;
  private readonly type: tf.Variable;
  private readonly embLn: LayerNorm;
  private readonly layers: LayerParts[] = [];
  private readonly headDense: Linear;
  private readonly headLn: LayerNorm;
  private readonly headBias: tf.Variable;

  constructor(options: { languages?: string[]; loraRank?: number; loraAlpha?: number } = {}) {
    super();
    this.languages = options.languages ?? [];
    const r = options.loraRank ?? 0;
    this.loraScale = r > 0 ? (options.loraAlpha ?? r) / r : 0;
    const top: Node = r > 0 ? this.add('base_model', new Node()).add('model', new Node()) : this;
    const roberta = top.add('roberta', new Node());
    const emb = roberta.add('embeddings', new Node());
    this.word = emb.add('word_embeddings', new Node()).param('weight', tf.zeros([VOCAB, H]));
    this.pos = emb.add('position_embeddings', new Node()).param('weight', tf.zeros([MAXPOS, H]));
    this.type = emb.add('token_type_embeddings', new Node()).param('weight', tf.zeros([1, H]));
    this.embLn = emb.add('LayerNorm', new LayerNorm(H));
    const layerList = roberta.add('encoder', new Node()).add('layer', new Node());
    for (let i = 0; i < 2; i++) {
      const layer = layerList.add(String(i), new Node());
      const att = layer.add('attention', new Node());
      const self = att.add('self', new Node());
      const lora = new Map<'q' | 'v', { a: Linear; b: Linear }>();
      const proj = (name: string, key: 'q' | 'v' | null): Linear => {
        if (r === 0 || key === null) return self.add(name, new Linear(H, H));
        const wrap = self.add(name, new Node());
        const base = wrap.add('base_layer', new Linear(H, H));
        const a = wrap.add('lora_A', new Node()).add('default', new Linear(H, r, { bias: false }));
        const b = wrap.add('lora_B', new Node()).add('default', new Linear(r, H, { bias: false }));
        lora.set(key, { a, b });
        return base;
      };
      const q = proj('query', 'q');
      const k = proj('key', null);
      const v = proj('value', 'v');
      const ao = att.add('output', new Node());
      const attnOut = ao.add('dense', new Linear(H, H));
      const attnLn = ao.add('LayerNorm', new LayerNorm(H));
      const inter = layer.add('intermediate', new Node()).add('dense', new Linear(H, FFN));
      const o = layer.add('output', new Node());
      const out = o.add('dense', new Linear(FFN, H));
      const outLn = o.add('LayerNorm', new LayerNorm(H));
      let adapters: ModuleDict<Node> | null = null;
      if (this.languages.length > 0) {
        adapters = o.add('adapter_modules', new ModuleDict<Node>());
        for (const lang of this.languages) {
          const a = new Node();
          a.add('dense1', new Linear(H, H / 2));
          a.add('dense2', new Linear(H / 2, H));
          adapters.set(lang, a);
        }
      }
      this.layers.push({ q, k, v, lora, attnOut, attnLn, inter, out, outLn, adapters });
    }
    const head = top.add('lm_head', new Node());
    this.headDense = head.add('dense', new Linear(H, H));
    this.headLn = head.add('layer_norm', new LayerNorm(H));
    this.headBias = head.param('bias', tf.zeros([VOCAB]));
  }

  /** Loads `model.safetensors` (and a PEFT adapter file) by name; every parameter must be found. */
  async load(weights: string, adapter?: string): Promise<void> {
    const base = (await readSafetensors(weights)).tensors;
    const extra = adapter !== undefined ? (await readSafetensors(adapter)).tensors : new Map();
    for (const [name, v] of this.namedParameters()) {
      const plain = name.replace(/^base_model\.model\./, '').replace('.base_layer.', '.');
      const t = base.get(plain) ?? extra.get(name.replace('.default.', '.'));
      if (t === undefined) throw new Error(`missing ${name}`);
      v.assign(tf.tensor(toFloat32(t), v.shape, 'float32'));
    }
  }

  private proj(p: LayerParts, which: 'q' | 'k' | 'v', x: tf.Tensor): tf.Tensor {
    const lin = which === 'q' ? p.q : which === 'k' ? p.k : p.v;
    let y = lin.apply(x);
    const l = which !== 'k' ? p.lora.get(which) : undefined;
    if (l !== undefined) y = tf.add(y, tf.mul(l.b.apply(l.a.apply(x)), this.loraScale));
    return y;
  }

  /** Mean cross-entropy over labels != -100 (the MLM loss of the HF model). */
  loss(batch: RobertaInputs): tf.Scalar {
    const B = batch.inputIds.length;
    const T = (batch.inputIds[0] as number[]).length;
    const ids = tf.tensor2d(batch.inputIds, [B, T], 'int32');
    // create_position_ids_from_input_ids: cumsum over non-pad tokens, + padding_idx
    const posIds = batch.inputIds.map((row) => {
      let c = 0;
      return row.map((id) => (id !== PAD ? ++c + PAD : PAD));
    });
    const flat = (t: tf.Tensor) => tf.reshape(t, [-1]);
    let h = tf.add(
      tf.add(
        tf.reshape(tf.gather(this.word, flat(ids)), [B, T, H]),
        tf.reshape(tf.gather(this.pos, flat(tf.tensor2d(posIds, [B, T], 'int32'))), [B, T, H]),
      ),
      tf.reshape(this.type, [1, 1, H]),
    );
    h = this.embLn.apply(h);
    const maskAdd = tf.reshape(
      tf.mul(tf.sub(1, tf.tensor2d(batch.attentionMask, [B, T], 'float32')), -3.4028234663852886e38),
      [B, 1, 1, T],
    );
    const dh = H / HEADS;
    const heads = (x: tf.Tensor) => tf.transpose(tf.reshape(x, [B, T, HEADS, dh]), [0, 2, 1, 3]);
    for (const p of this.layers) {
      const q = heads(this.proj(p, 'q', h));
      const k = heads(this.proj(p, 'k', h));
      const v = heads(this.proj(p, 'v', h));
      const scores = tf.add(tf.div(tf.matMul(q, k, false, true), Math.sqrt(dh)), maskAdd);
      const ctx = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v), [0, 2, 1, 3]), [B, T, H]);
      const att = p.attnLn.apply(tf.add(p.attnOut.apply(ctx), h));
      let o = tf.add(p.out.apply(gelu(p.inter.apply(att))), att);
      if (p.adapters !== null) {
        // lang_adapter with ln_before_adapter and adapter_reuse_layer_norm: LN, adapter, + residual
        o = p.outLn.apply(o);
        const langs = batch.langIds ?? batch.inputIds.map(() => 0);
        const rows: tf.Tensor[] = [];
        for (let b = 0; b < B; b++) {
          const a = p.adapters.get(this.languages[langs[b] as number] as string) as Module;
          const x = tf.slice(o, [b, 0, 0], [1, T, H]);
          const d1 = a.getModule('dense1') as Linear;
          const d2 = a.getModule('dense2') as Linear;
          rows.push(tf.add(d2.apply(gelu(d1.apply(x))), x));
        }
        o = tf.concat(rows, 0);
      }
      h = p.outLn.apply(o);
    }
    const z = this.headLn.apply(gelu(this.headDense.apply(h)));
    const logits = tf.add(tf.matMul(tf.reshape(z, [B * T, H]), this.word, false, true), this.headBias);
    const labels = batch.labels.flat();
    const valid = tf.tensor1d(
      labels.map((l) => (l === -100 ? 1 : 0) ^ 1),
      'float32',
    );
    const safe = tf.tensor1d(
      labels.map((l) => (l === -100 ? 0 : l)),
      'int32',
    );
    const logp = tf.sum(tf.mul(tf.logSoftmax(logits), tf.oneHot(safe, VOCAB)), 1);
    return tf.div(tf.neg(tf.sum(tf.mul(logp, valid))), tf.sum(valid)) as tf.Scalar;
  }
}
