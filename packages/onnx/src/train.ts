import { XltConfigError, XltNotFoundError, XltShapeError } from '@xlt/core';
import { GraphBuilder } from './graph.js';
import type { EncoderConfig, HeadKind, LoraMixtureSpec, WeightSource } from './model-types.js';
import {
  defaultNoDecay,
  type TrainGraph,
  type TrainGraphOptions,
  type TrainGraphSignature,
} from './train-types.js';

/** A value in the training graph and whether a gradient must flow back to it. */
interface T {
  v: string;
  rg: boolean;
}

/**
 * Builds one ONNX graph for a training step of an X-Mod / XLM-R model with a head: forward, loss,
 * backward written per module (linear, LayerNorm, exact GELU, attention with mask, softmax, gathered
 * language modules, embedding scatter-add, cross-entropy with ignore index, tied decoder), global
 * gradient norm and clipping, and AdamW, with standard ONNX ops (opset 18) that the CPU build of
 * onnxruntime runs. Frozen parameters are initializers and get no weight gradients.
 */
class TrainBuilder {
  readonly g = new GraphBuilder('train_step');
  private readonly cfg: EncoderConfig;
  private readonly w: WeightSource;
  private readonly trainable: Set<string>;
  private readonly prefix: string;
  private readonly H: number;
  private readonly eps: number;
  private readonly tape: Array<() => void> = [];
  private readonly grads = new Map<string, string[]>();
  readonly paramInputs = new Map<string, { input: string; shape: number[] }>();
  readonly paramGrads = new Map<string, string[]>();
  private readonly frozenCache = new Map<string, string>();
  shapeBS = '';
  N = ''; // scalar-ish [1] int64 value: number of tokens

  private readonly lora: Map<string, number>;
  private readonly mixtures: Map<string, LoraMixtureSpec>;
  private langIds: string | undefined;

  private readonly mixup: boolean;
  private readonly salt: { augWeight: number; klWeight: number } | undefined;
  /** Dropout probabilities when the graph trains with dropout (masks from the `dropout_seed` input). */
  private readonly drop: { hidden: number; attention: number; classifier: number } | undefined;
  private dropSeed: string | undefined;
  private readonly dropOn: boolean;
  private dropSite = 0;

  constructor(
    cfg: EncoderConfig,
    w: WeightSource,
    trainable: string[],
    lora: Map<string, number> = new Map(),
    extras: {
      embeddingMixup?: boolean;
      salt?: { augWeight?: number; klWeight?: number };
      dropout?: boolean;
      loraMixtures?: Map<string, LoraMixtureSpec>;
    } = {},
  ) {
    this.cfg = cfg;
    this.lora = lora;
    this.mixtures = extras.loraMixtures ?? new Map();
    this.dropOn = extras.dropout === true;
    this.mixup = extras.embeddingMixup === true;
    this.salt = extras.salt
      ? { augWeight: extras.salt.augWeight ?? 1, klWeight: extras.salt.klWeight ?? 1 }
      : undefined;
    const hidden = cfg.hidden_dropout_prob ?? 0;
    const drop = {
      hidden,
      attention: cfg.attention_probs_dropout_prob ?? 0,
      classifier: cfg.classifier_dropout ?? hidden,
    };
    for (const [k, v] of Object.entries(drop))
      if (!(v >= 0 && v < 1))
        throw new XltConfigError(`${k} dropout probability must be in [0, 1), got ${v}`, {
          field: 'dropout',
        });
    this.drop =
      extras.dropout === true && (drop.hidden > 0 || drop.attention > 0 || drop.classifier > 0)
        ? drop
        : undefined;
    this.w = w;
    this.trainable = new Set(trainable);
    this.H = cfg.hidden_size;
    this.eps = cfg.layer_norm_eps ?? 1e-5;
    this.prefix = w.has('roberta.embeddings.word_embeddings.weight') ? 'roberta.' : '';
    for (const n of trainable)
      if (!w.has(n)) throw new XltNotFoundError('trainable parameter not in the model', { tensor: n });
  }

  // ---- parameters --------------------------------------------------------------------------
  param(name: string, shape?: number[]): T {
    if (!this.w.has(name)) throw new XltNotFoundError('missing weight', { tensor: name });
    const t = this.w.get(name);
    if (shape !== undefined && t.shape.join(',') !== shape.join(',')) {
      throw new XltShapeError('weight has the wrong shape', { tensor: name, expected: shape, got: t.shape });
    }
    if (this.trainable.has(name)) {
      let p = this.paramInputs.get(name);
      if (p === undefined) {
        p = { input: this.g.input(`param:${name}`, 'float32', t.shape), shape: t.shape };
        this.paramInputs.set(name, p);
      }
      return { v: p.input, rg: true };
    }
    let c = this.frozenCache.get(name);
    if (c === undefined) {
      c = this.g.initializer(name, t.data, t.shape);
      this.frozenCache.set(name, c);
    }
    return { v: c, rg: false };
  }

  private paramNameOf(v: string): string | undefined {
    for (const [n, p] of this.paramInputs) if (p.input === v) return n;
    return undefined;
  }

  // ---- gradient bookkeeping ------------------------------------------------------------------
  /** Adds `grad` to the gradient of `t` (a parameter input or an activation). */
  acc(t: T, grad: string): void {
    if (!t.rg) return;
    const pname = this.paramNameOf(t.v);
    const m = pname !== undefined ? this.paramGrads : this.grads;
    const key = pname ?? t.v;
    const list = m.get(key) ?? [];
    list.push(grad);
    m.set(key, list);
  }

  /** The summed gradient of an activation (undefined when nothing flowed back to it). */
  gradOf(t: T): string | undefined {
    const list = this.grads.get(t.v);
    if (list === undefined || list.length === 0) return undefined;
    return list.length === 1 ? list[0] : this.g.node('Sum', list);
  }

  private push(out: T, backward: (dy: string) => void): void {
    if (!out.rg) return;
    this.tape.push(() => {
      const dy = this.gradOf(out);
      if (dy !== undefined) backward(dy);
    });
  }

  runBackward(): void {
    for (let i = this.tape.length - 1; i >= 0; i--) (this.tape[i] as () => void)();
  }

  // ---- ops with backward -------------------------------------------------------------------
  c(v: number): string {
    return this.g.constFloat(v);
  }

  /** The `dropout_seed` input, once a dropout site used it. */
  get dropoutSeedInput(): string | undefined {
    return this.dropSeed;
  }

  /**
   * An inverted-dropout mask shaped like `like`: 1/(1-rate) where kept, 0 where dropped. Uniform
   * numbers come from a counter-based integer hash of (element index, `dropout_seed`, site), so a
   * step's masks depend only on its seed (resume-safe) and forward and backward use the same mask.
   */
  dropMask(like: string, rate: number): string {
    const g = this.g;
    if (this.dropSeed === undefined) this.dropSeed = g.input('dropout_seed', 'int64', []);
    const site = this.dropSite++;
    const i64 = (v: number) => g.constInt64(v);
    const shape = g.node('Shape', [like]);
    const n = g.node('ReduceProd', [shape], { keepdims: 0 });
    const idx = g.node('Range', [i64(0), n, i64(1)]);
    // Three rounds of x <- x^2 + c (mod a prime < 2^31; x^2 < 2^62 fits int64): squaring makes the
    // hash non-linear, so neighbouring elements, sites and seeds give uncorrelated masks (tested).
    const P = [2147483647, 2147483629, 2147483587];
    const C = [12345, 1013904223, 987654321];
    const p0 = i64(P[0] as number);
    const s = g.node('Mod', [
      g.node('Add', [
        g.node('Mul', [g.node('Mod', [this.dropSeed, p0]), i64(48271)]),
        i64((site * 2654435761) % 2147483647),
      ]),
      p0,
    ]);
    const s2 = g.node('Mod', [
      g.node('Add', [
        g.node('Mul', [g.node('Mod', [this.dropSeed, i64(P[1] as number)]), i64(69621)]),
        i64(site * 7 + 11),
      ]),
      i64(P[1] as number),
    ]);
    let x = g.node('Mod', [g.node('Add', [g.node('Mul', [idx, i64(16807)]), s]), p0]);
    for (let r = 0; r < 3; r++) {
      const pr = i64(P[r] as number);
      x = g.node('Mod', [g.node('Add', [g.node('Mul', [x, x]), i64(C[r] as number)]), pr]);
      if (r === 0) x = g.node('Mod', [g.node('Add', [x, s2]), pr]);
    }
    const u = g.node('Mul', [g.node('Cast', [x], { to: 1 }), this.c(2 ** -31)]);
    const keep = g.node('Cast', [g.node('Less', [u, this.c(1 - rate)])], { to: 1 });
    return g.node('Reshape', [g.node('Mul', [keep, this.c(1 / (1 - rate))]), shape]);
  }

  /** Inverted dropout with rate `rate` (identity without dropout or at rate 0). */
  dropout(x: T, rate: number): T {
    if (!this.dropOn || !(rate > 0)) return x;
    const mask = this.dropMask(x.v, rate);
    const out = { v: this.g.node('Mul', [x.v, mask]), rg: x.rg };
    this.push(out, (dy) => this.acc(x, this.g.node('Mul', [dy, mask])));
    return out;
  }

  /** x [N, in] -> x W^T + b, plus a live LoRA branch when the module has one. */
  linear(x: T, name: string, inF: number, outF: number, bias = true): T {
    const g = this.g;
    // a module wrapped by LoRA (PEFT / @xlt/lora) keeps its own weights under `base_layer`
    const base = this.w.has(`${name}.base_layer.weight`) ? `${name}.base_layer` : name;
    const W = this.param(`${base}.weight`, [outF, inF]);
    const b = bias ? this.param(`${base}.bias`, [outF]) : undefined;
    const y = g.node('Gemm', b ? [x.v, W.v, b.v] : [x.v, W.v], { transB: 1 }, name);
    const out = { v: y, rg: x.rg || W.rg || (b?.rg ?? false) };
    this.push(out, (dy) => {
      if (x.rg) this.acc(x, g.node('MatMul', [dy, W.v]));
      if (W.rg) this.acc(W, g.node('Gemm', [dy, x.v], { transA: 1 }));
      if (b?.rg) this.acc(b, g.node('ReduceSum', [dy, g.constInt64([0])], { keepdims: 0 }));
    });
    const mix = this.mixtures.get(name);
    if (mix !== undefined) return this.mixture(out, x, name, inF, outF, mix);
    const scaling = this.lora.get(name);
    if (scaling === undefined) return out;
    const A = this.param(`${name}.lora_A.weight`);
    const B = this.param(`${name}.lora_B.weight`);
    const r = this.w.get(`${name}.lora_A.weight`).shape[0] as number;
    if (
      this.w.get(`${name}.lora_A.weight`).shape[1] !== inF ||
      this.w.get(`${name}.lora_B.weight`).shape.join(',') !== `${outF},${r}`
    ) {
      throw new XltShapeError('LoRA weights do not fit the module', { tensor: `${name}.lora_A.weight` });
    }
    return this.add(out, this.scale(this.matmulT(this.matmulT(x, A), B), scaling));
  }

  /** Softmax over the last axis, with its backward. */
  softmax(x: T): T {
    const g = this.g;
    const p = g.node('Softmax', [x.v], { axis: -1 });
    const out = { v: p, rg: x.rg };
    this.push(out, (dy) => {
      const dot = g.node('ReduceSum', [g.node('Mul', [dy, p]), g.constInt64([-1])], { keepdims: 1 });
      this.acc(x, g.node('Mul', [p, g.node('Sub', [dy, dot])]));
    });
    return out;
  }

  /** The batch's language indices (`lang_ids` input, created on first use). */
  langInput(): string {
    if (this.langIds === undefined) this.langIds = this.g.input('lang_ids', 'int64', ['batch']);
    return this.langIds;
  }

  /** Routing weights [B, n] of a mixture from the module input x [N, in]. */
  private routing(x: T, name: string, inF: number, mix: LoraMixtureSpec): T {
    const g = this.g;
    const n = mix.languages.length;
    const B = g.node('Slice', [this.shapeBS, g.constInt64([0]), g.constInt64([1])]);
    const S = g.node('Slice', [this.shapeBS, g.constInt64([1]), g.constInt64([2])]);
    if (mix.mode === 'language') {
      const oh = g.node('OneHot', [this.langInput(), g.constInt64([n]), g.constFloat([0, 1])], { axis: -1 });
      return { v: oh, rg: false };
    }
    if (mix.mode === 'static') {
      const sm = this.softmax(this.param(`${name}.mix_logits`, [n]));
      const out = {
        v: g.node('Expand', [
          g.node('Unsqueeze', [sm.v, g.constInt64([0])]),
          g.node('Concat', [B, g.constInt64([n])], { axis: 0 }),
        ]),
        rg: sm.rg,
      };
      this.push(out, (dy) => this.acc(sm, g.node('ReduceSum', [dy, g.constInt64([0])], { keepdims: 0 })));
      return out;
    }
    // router / topk on the first token or the mean over tokens (padding included, as @xlt/lora)
    const shape3 = g.node('Concat', [B, S, g.constInt64([inF])], { axis: 0 });
    const x3 = g.node('Reshape', [x.v, shape3]);
    const first = mix.pooling !== 'mean';
    const h = {
      v: first
        ? g.node('Squeeze', [
            g.node('Slice', [x3, g.constInt64([0]), g.constInt64([1]), g.constInt64([1])]),
            g.constInt64([1]),
          ])
        : // ReduceSum / S (ReduceMean takes axes as an input only from opset 18; exports use 17)
          g.node('Div', [
            g.node('ReduceSum', [x3, g.constInt64([1])], { keepdims: 0 }),
            g.node('Cast', [S], { to: 1 }),
          ]),
      rg: x.rg,
    };
    this.push(h, (dy) => {
      const d3 = g.node('Unsqueeze', [dy, g.constInt64([1])]); // [B, 1, in]
      let dx3: string;
      if (first) {
        const pads = g.node(
          'Concat',
          [g.constInt64([0, 0, 0, 0]), g.node('Sub', [S, g.constInt64([1])]), g.constInt64([0])],
          {
            axis: 0,
          },
        );
        dx3 = g.node('Pad', [d3, pads]);
      } else {
        dx3 = g.node('Div', [g.node('Expand', [d3, shape3]), g.node('Cast', [S], { to: 1 })]);
      }
      this.acc(x, g.node('Reshape', [dx3, g.constInt64([-1, inF])]));
    });
    const logits = this.matmulT(h, this.param(`${name}.router.weight`, [n, inF]));
    if (mix.mode === 'router') return this.softmax(logits);
    const k = mix.k ?? 1;
    if (!Number.isInteger(k) || k < 1 || k > n)
      throw new XltConfigError(`k must be an integer in [1, ${n}], got ${k}`, { field: 'k', tensor: name });
    const [vals] = g.nodeN('TopK', [logits.v, g.constInt64([k])], 2, { axis: -1 }) as [string, string];
    // TopK's values are sorted, largest first: the k-th is the threshold
    const kth = g.node('Slice', [vals, g.constInt64([k - 1]), g.constInt64([k]), g.constInt64([-1])]);
    const keep = g.node('GreaterOrEqual', [logits.v, kth]);
    const masked = { v: g.node('Where', [keep, logits.v, this.c(-1e30)]), rg: logits.rg };
    this.push(masked, (dy) => this.acc(logits, g.node('Where', [keep, dy, this.c(0)])));
    return this.softmax(masked);
  }

  /** A live LoRA mixture on top of the base output `out` (see {@link LoraMixtureSpec}). */
  private mixture(out: T, x: T, name: string, inF: number, outF: number, mix: LoraMixtureSpec): T {
    const g = this.g;
    const n = mix.languages.length;
    if (n === 0) throw new XltConfigError('a LoRA mixture needs at least one expert', { tensor: name });
    const w = this.routing(x, name, inF, mix); // [B, n]
    // per token: [B, n] -> [B, S, n] -> [N, n]
    const S = g.node('Slice', [this.shapeBS, g.constInt64([1]), g.constInt64([2])]);
    const B = g.node('Slice', [this.shapeBS, g.constInt64([0]), g.constInt64([1])]);
    const wt = {
      v: g.node('Reshape', [
        g.node('Expand', [
          g.node('Unsqueeze', [w.v, g.constInt64([1])]),
          g.node('Concat', [B, S, g.constInt64([n])], { axis: 0 }),
        ]),
        g.constInt64([-1, n]),
      ]),
      rg: w.rg,
    };
    this.push(wt, (dy) =>
      this.acc(
        w,
        g.node(
          'ReduceSum',
          [
            g.node('Reshape', [dy, g.node('Concat', [B, S, g.constInt64([n])], { axis: 0 })]),
            g.constInt64([1]),
          ],
          {
            keepdims: 0,
          },
        ),
      ),
    );
    const xd = this.dropout(x, mix.dropout ?? 0);
    let y = out;
    mix.languages.forEach((lang, i) => {
      const pre = `${name}.experts.${lang}`;
      const A = this.param(`${pre}.lora_A.weight`);
      const Bw = this.param(`${pre}.lora_B.weight`);
      const r = this.w.get(`${pre}.lora_A.weight`).shape[0] as number;
      if (
        this.w.get(`${pre}.lora_A.weight`).shape[1] !== inF ||
        this.w.get(`${pre}.lora_B.weight`).shape.join(',') !== `${outF},${r}`
      )
        throw new XltShapeError('LoRA expert weights do not fit the module', {
          tensor: `${pre}.lora_A.weight`,
        });
      const d = this.matmulT(this.matmulT(xd, A), Bw); // [N, out]
      const col = g.node('Slice', [wt.v, g.constInt64([i]), g.constInt64([i + 1]), g.constInt64([1])]); // [N, 1]
      const coef = g.node('Mul', [col, this.c(mix.scaling)]);
      const term = { v: g.node('Mul', [d.v, coef]), rg: d.rg || wt.rg };
      const onehot = g.constFloat(
        mix.languages.map((_, j) => (j === i ? 1 : 0)),
        [1, n],
      );
      this.push(term, (dy) => {
        if (d.rg) this.acc(d, g.node('Mul', [dy, coef]));
        if (wt.rg) {
          const dcol = g.node('Mul', [
            g.node('ReduceSum', [g.node('Mul', [dy, d.v]), g.constInt64([-1])], { keepdims: 1 }),
            this.c(mix.scaling),
          ]);
          this.acc(wt, g.node('Mul', [dcol, onehot]));
        }
      });
      y = this.add(y, term);
    });
    return y;
  }

  /** x [N, in] @ W^T with W [out, in] (no bias). */
  matmulT(x: T, W: T): T {
    const g = this.g;
    const out = { v: g.node('Gemm', [x.v, W.v], { transB: 1 }), rg: x.rg || W.rg };
    this.push(out, (dy) => {
      if (x.rg) this.acc(x, g.node('MatMul', [dy, W.v]));
      if (W.rg) this.acc(W, g.node('Gemm', [dy, x.v], { transA: 1 }));
    });
    return out;
  }

  scale(x: T, s: number): T {
    const out = { v: this.g.node('Mul', [x.v, this.c(s)]), rg: x.rg };
    this.push(out, (dy) => this.acc(x, this.g.node('Mul', [dy, this.c(s)])));
    return out;
  }

  /** a + b; `bReduce` lists the axes along which b was broadcast (its gradient is summed over them). */
  add(a: T, b: T, bReduce?: number[]): T {
    const out = { v: this.g.node('Add', [a.v, b.v]), rg: a.rg || b.rg };
    this.push(out, (dy) => {
      this.acc(a, dy);
      this.acc(b, bReduce ? this.g.node('ReduceSum', [dy, this.g.constInt64(bReduce)], { keepdims: 1 }) : dy);
    });
    return out;
  }

  /** LayerNorm over the last axis of [N, H]. */
  layerNorm(x: T, name: string, dim = this.H): T {
    const g = this.g;
    const gamma = this.param(`${name}.weight`, [dim]);
    const beta = this.param(`${name}.bias`, [dim]);
    const [y, mean, inv] = g.nodeN(
      'LayerNormalization',
      [x.v, gamma.v, beta.v],
      3,
      { axis: -1, epsilon: { float: this.eps } },
      name,
    ) as [string, string, string];
    const out = { v: y, rg: x.rg || gamma.rg || beta.rg };
    this.push(out, (dy) => {
      const xhat = g.node('Mul', [g.node('Sub', [x.v, mean]), inv]);
      if (gamma.rg)
        this.acc(gamma, g.node('ReduceSum', [g.node('Mul', [dy, xhat]), g.constInt64([0])], { keepdims: 0 }));
      if (beta.rg) this.acc(beta, g.node('ReduceSum', [dy, g.constInt64([0])], { keepdims: 0 }));
      if (x.rg) {
        const dxhat = g.node('Mul', [dy, gamma.v]);
        const m1 = g.node('ReduceMean', [dxhat, g.constInt64([-1])], { keepdims: 1 });
        const m2 = g.node('ReduceMean', [g.node('Mul', [dxhat, xhat]), g.constInt64([-1])], { keepdims: 1 });
        this.acc(
          x,
          g.node('Mul', [inv, g.node('Sub', [g.node('Sub', [dxhat, m1]), g.node('Mul', [xhat, m2])])]),
        );
      }
    });
    return out;
  }

  /** Exact GELU: x Phi(x); derivative Phi(x) + x phi(x). */
  gelu(x: T): T {
    const g = this.g;
    const cdf = g.node('Mul', [
      g.node('Add', [g.node('Erf', [g.node('Mul', [x.v, this.c(Math.SQRT1_2)])]), this.c(1)]),
      this.c(0.5),
    ]);
    const out = { v: g.node('Mul', [x.v, cdf], {}, 'gelu'), rg: x.rg };
    this.push(out, (dy) => {
      const pdf = g.node('Mul', [
        g.node('Exp', [g.node('Mul', [g.node('Mul', [x.v, x.v]), this.c(-0.5)])]),
        this.c(1 / Math.sqrt(2 * Math.PI)),
      ]);
      this.acc(x, g.node('Mul', [dy, g.node('Add', [cdf, g.node('Mul', [x.v, pdf])])]));
    });
    return out;
  }

  tanh(x: T): T {
    const g = this.g;
    const y = g.node('Tanh', [x.v]);
    const out = { v: y, rg: x.rg };
    this.push(out, (dy) =>
      this.acc(x, g.node('Mul', [dy, g.node('Sub', [this.c(1), g.node('Mul', [y, y])])])),
    );
    return out;
  }

  /** [N, H] -> [B, nh, S, dh] (perm 0213) or [B, nh, dh, S] (perm 0231). */
  private heads(v: string, perm: number[], nh = this.cfg.num_attention_heads, dim = this.H): string {
    const g = this.g;
    const shape = g.node('Concat', [this.shapeBS, g.constInt64([nh, dim / nh])], { axis: 0 });
    return g.node('Transpose', [g.node('Reshape', [v, shape])], { perm });
  }

  /** Inverse of heads(perm 0213): [B, nh, S, dh] -> [N, H]. */
  private unheads(v: string, dim = this.H): string {
    const g = this.g;
    return g.node('Reshape', [g.node('Transpose', [v], { perm: [0, 2, 1, 3] }), g.constInt64([-1, dim])]);
  }

  /** Scaled dot-product attention with an additive mask [B, 1, 1, S]; q, k, v and the result are [N, H]. */
  attention(q: T, k: T, v: T, ext4: string, nh = this.cfg.num_attention_heads, dim = this.H): T {
    const g = this.g;
    const dh = dim / nh;
    const q4 = this.heads(q.v, [0, 2, 1, 3], nh, dim);
    const k4 = this.heads(k.v, [0, 2, 1, 3], nh, dim);
    const v4 = this.heads(v.v, [0, 2, 1, 3], nh, dim);
    const kT = g.node('Transpose', [k4], { perm: [0, 1, 3, 2] });
    const scores = g.node('Add', [g.node('Div', [g.node('MatMul', [q4, kT]), this.c(Math.sqrt(dh))]), ext4]);
    const p = g.node('Softmax', [scores], { axis: -1 });
    const rate = dim === this.H && this.drop !== undefined ? this.drop.attention : 0;
    const pmask = rate > 0 ? this.dropMask(p, rate) : undefined;
    const pd = pmask !== undefined ? g.node('Mul', [p, pmask]) : p;
    const ctx = g.node('MatMul', [pd, v4]);
    const out = { v: this.unheads(ctx, dim), rg: q.rg || k.rg || v.rg };
    this.push(out, (dy) => {
      const dctx = this.heads(dy, [0, 2, 1, 3], nh, dim);
      if (v.rg)
        this.acc(
          v,
          this.unheads(g.node('MatMul', [g.node('Transpose', [pd], { perm: [0, 1, 3, 2] }), dctx]), dim),
        );
      const dpd = g.node('MatMul', [dctx, g.node('Transpose', [v4], { perm: [0, 1, 3, 2] })]);
      const dp = pmask !== undefined ? g.node('Mul', [dpd, pmask]) : dpd;
      const ds = g.node('Mul', [
        p,
        g.node('Sub', [
          dp,
          g.node('ReduceSum', [g.node('Mul', [dp, p]), g.constInt64([-1])], { keepdims: 1 }),
        ]),
      ]);
      const dss = g.node('Mul', [ds, this.c(1 / Math.sqrt(dh))]);
      if (q.rg) this.acc(q, this.unheads(g.node('MatMul', [dss, k4]), dim));
      if (k.rg)
        this.acc(
          k,
          this.unheads(g.node('MatMul', [g.node('Transpose', [dss], { perm: [0, 1, 3, 2] }), q4]), dim),
        );
    });
    return out;
  }

  /** Rows of an embedding table gathered by int64 indices of any shape, flattened to [N, H]. */
  gatherRows(table: T, idx: string, rows: number, width = this.H): T {
    const g = this.g;
    const flatIdx = g.node('Reshape', [idx, g.constInt64([-1])]);
    const out = { v: g.node('Gather', [table.v, flatIdx], { axis: 0 }), rg: table.rg };
    this.push(out, (dy) => {
      const zeros = g.node('ConstantOfShape', [g.constInt64([rows, width])]);
      this.acc(
        table,
        g.node('ScatterND', [zeros, g.node('Unsqueeze', [flatIdx, g.constInt64([1])]), dy], {
          reduction: 'add',
        }),
      );
    });
    return out;
  }

  /** One row (index 0) of the token-type table broadcast over [N, H]. */
  firstRow(table: T, rows: number): T {
    const g = this.g;
    const out = { v: g.node('Gather', [table.v, g.constInt64(0)], { axis: 0 }), rg: table.rg };
    this.push(out, (dy) => {
      const row = g.node('ReduceSum', [dy, g.constInt64([0])], { keepdims: 1 });
      const pad = g.node('ConstantOfShape', [g.constInt64([rows - 1, this.H])]);
      this.acc(table, rows > 1 ? g.node('Concat', [row, pad], { axis: 0 }) : row);
    });
    return out;
  }

  /** X-Mod language modules: each example through its own language's bottleneck; weights gathered by lang_ids. */
  adapter(x: T, name: string, langIds: string): T {
    const g = this.g;
    const H = this.H;
    const langs = this.cfg.languages ?? [];
    const b = Math.floor(H / (this.cfg.adapter_reduction_factor ?? 2));
    const stackT = (suffix: string, shape: number[]): T => {
      const parts = langs.map((l) => this.param(`${name}.output.adapter_modules.${l}.${suffix}`, shape));
      const rg = parts.some((p) => p.rg);
      // [L, in, out] (weights transposed) or [L, 1, out] (biases)
      const items = parts.map((p) =>
        g.node('Unsqueeze', [
          shape.length === 2
            ? g.node('Transpose', [p.v], { perm: [1, 0] })
            : g.node('Unsqueeze', [p.v, g.constInt64([0])]),
          g.constInt64([0]),
        ]),
      );
      const stacked = {
        v: items.length === 1 ? (items[0] as string) : g.node('Concat', items, { axis: 0 }),
        rg,
      };
      this.push(stacked, (dy) => {
        parts.forEach((p, li) => {
          if (!p.rg) return;
          const sl = g.node('Gather', [dy, g.constInt64(li)], { axis: 0 });
          this.acc(
            p,
            shape.length === 2
              ? g.node('Transpose', [sl], { perm: [1, 0] })
              : g.node('Reshape', [sl, g.constInt64([-1])]),
          );
        });
      });
      return stacked;
    };
    const gathered = (s: T, last: number, rows: number): T => {
      const out = { v: g.node('Gather', [s.v, langIds], { axis: 0 }), rg: s.rg };
      this.push(out, (dy) => {
        const zeros = g.node('ConstantOfShape', [g.constInt64([langs.length, rows, last])]);
        this.acc(
          s,
          g.node('ScatterND', [zeros, g.node('Unsqueeze', [langIds, g.constInt64([1])]), dy], {
            reduction: 'add',
          }),
        );
      });
      return out;
    };
    const W1 = gathered(stackT('dense1.weight', [b, H]), b, H);
    const B1 = gathered(stackT('dense1.bias', [b]), b, 1);
    const W2 = gathered(stackT('dense2.weight', [H, b]), H, b);
    const B2 = gathered(stackT('dense2.bias', [H]), H, 1);
    const x3 = this.to3d(x, H);
    const a1 = this.add(this.bmm(x3, W1), B1, [1]);
    const a2 = this.add(this.bmm(this.gelu(a1), W2), B2, [1]);
    return this.to2d(a2, H);
  }

  /**
   * Embedding mixup: (1 - l) * base + l * sum_k p_k E[mix_k] per token, with gradients into the
   * embedding table through both the token's own row and the candidates' rows.
   */
  mixEmbedding(table: T, base: T, mixIds: string, mixProbs: string, lambda: string, rows: number): T {
    const g = this.g;
    const H = this.H;
    const lam = g.node('Reshape', [lambda, g.constInt64([-1, 1])]); // [N, 1]
    const probs3 = g.node('Unsqueeze', [
      g.node('Reshape', [mixProbs, g.node('Concat', [this.N, g.constInt64([-1])], { axis: 0 })]),
      g.constInt64([2]),
    ]); // [N, K, 1]
    const flatMix = g.node('Reshape', [mixIds, g.constInt64([-1])]);
    const cand = g.node('Gather', [table.v, flatMix], { axis: 0 }); // [N*K, H]
    const cand3 = g.node('Reshape', [cand, g.node('Concat', [this.N, g.constInt64([-1, H])], { axis: 0 })]); // [N, K, H]
    const wsum = g.node('ReduceSum', [g.node('Mul', [cand3, probs3]), g.constInt64([1])], { keepdims: 0 }); // [N, H]
    const oneMinus = g.node('Sub', [this.c(1), lam]);
    const out = {
      v: g.node('Add', [g.node('Mul', [base.v, oneMinus]), g.node('Mul', [wsum, lam])]),
      rg: base.rg || table.rg,
    };
    this.push(out, (dy) => {
      this.acc(base, g.node('Mul', [dy, oneMinus]));
      if (table.rg) {
        const dc = g.node('Reshape', [
          g.node('Mul', [g.node('Unsqueeze', [g.node('Mul', [dy, lam]), g.constInt64([1])]), probs3]),
          g.constInt64([-1, H]),
        ]);
        const zeros = g.node('ConstantOfShape', [g.constInt64([rows, H])]);
        this.acc(
          table,
          g.node('ScatterND', [zeros, g.node('Unsqueeze', [flatMix, g.constInt64([1])]), dc], {
            reduction: 'add',
          }),
        );
      }
    });
    return out;
  }

  /** Rows [start, end) of x [M, C] (start/end: int64 [1] values); the gradient is padded back with zeros. */
  rowRange(x: T, start: string, end: string, total: string): T {
    const g = this.g;
    const out = { v: g.node('Slice', [x.v, start, end, g.constInt64([0])]), rg: x.rg };
    this.push(out, (dy) => {
      const after = g.node('Sub', [total, end]);
      const pads = g.node('Concat', [start, g.constInt64([0]), after, g.constInt64([0])], { axis: 0 });
      this.acc(x, g.node('Pad', [dy, pads]));
    });
    return out;
  }

  /**
   * weight x mean over rows with `rowMask` (float [M]) of KL(softmax(a) || softmax(b)); seeds the
   * gradients of a and b.
   */
  klDiv(a: T, b: T, rowMask: string, weight: number): string {
    const g = this.g;
    const logp = g.node('LogSoftmax', [a.v], { axis: -1 });
    const logq = g.node('LogSoftmax', [b.v], { axis: -1 });
    const p = g.node('Exp', [logp]);
    const diff = g.node('Sub', [logp, logq]);
    const row = g.node('ReduceSum', [g.node('Mul', [p, diff]), g.constInt64([-1])], { keepdims: 1 }); // [M, 1]
    const cnt = g.node('Max', [g.node('ReduceSum', [rowMask], { keepdims: 0 }), this.c(1)]);
    const m1 = g.node('Unsqueeze', [rowMask, g.constInt64([1])]);
    const loss = g.node('Mul', [
      g.node('Div', [g.node('ReduceSum', [g.node('Mul', [row, m1])], { keepdims: 0 }), cnt]),
      this.c(weight),
    ]);
    const scale = g.node('Mul', [g.node('Div', [m1, cnt]), this.c(weight)]);
    if (a.rg) this.acc(a, g.node('Mul', [g.node('Mul', [p, g.node('Sub', [diff, row])]), scale]));
    if (b.rg) this.acc(b, g.node('Mul', [g.node('Sub', [g.node('Exp', [logq]), p]), scale]));
    return loss;
  }

  /** SALT loss on logits [M, C] whose first half of rows are originals and second half augmented. */
  saltLoss(logits: T, labels: string, depth: string): string {
    const g = this.g;
    const s = this.salt as { augWeight: number; klWeight: number };
    const M = g.node('Shape', [logits.v]);
    const total = g.node('Slice', [M, g.constInt64([0]), g.constInt64([1]), g.constInt64([0])]); // [1]
    const half = g.node('Div', [total, g.constInt64([2])]);
    const rowIdx = g.node('Range', [
      g.constInt64(0),
      g.node('Squeeze', [total, g.constInt64([0])]),
      g.constInt64(1),
    ]);
    const isOrig = g.node('Less', [rowIdx, half]);
    const origLabels = g.node('Where', [isOrig, labels, g.constInt64(-100)]);
    const augLabels = g.node('Where', [isOrig, g.constInt64(-100), labels]);
    const lo = this.crossEntropy(logits, origLabels, depth);
    const la = this.crossEntropy(logits, augLabels, depth, s.augWeight);
    let loss = g.node('Add', [lo, g.node('Mul', [la, this.c(s.augWeight)])]);
    if (s.klWeight > 0) {
      const first = this.rowRange(logits, g.constInt64([0]), half, total);
      const second = this.rowRange(logits, half, total, total);
      const firstLabels = g.node('Slice', [labels, g.constInt64([0]), half, g.constInt64([0])]);
      const valid = g.node('Cast', [g.node('Not', [g.node('Equal', [firstLabels, g.constInt64(-100)])])], {
        to: 1,
      });
      loss = g.node('Add', [loss, this.klDiv(first, second, valid, s.klWeight)]);
    }
    return loss;
  }

  /** x [N, d] + bias [d]. */
  addBias(x: T, bias: T): T {
    const g = this.g;
    const out = { v: g.node('Add', [x.v, bias.v]), rg: x.rg || bias.rg };
    this.push(out, (dy) => {
      this.acc(x, dy);
      this.acc(bias, g.node('ReduceSum', [dy, g.constInt64([0])], { keepdims: 0 }));
    });
    return out;
  }

  relu(x: T): T {
    const g = this.g;
    const out = { v: g.node('Relu', [x.v]), rg: x.rg };
    this.push(out, (dy) =>
      this.acc(x, g.node('Mul', [dy, g.node('Cast', [g.node('Greater', [x.v, this.c(0)])], { to: 1 })])),
    );
    return out;
  }

  /** Concatenates [N, d_i] parts along the last axis; the gradient is sliced back. */
  concatLast(parts: Array<{ t: T; dim: number }>): T {
    const g = this.g;
    const out = {
      v: g.node(
        'Concat',
        parts.map((p) => p.t.v),
        { axis: -1 },
      ),
      rg: parts.some((p) => p.t.rg),
    };
    this.push(out, (dy) => {
      let off = 0;
      for (const p of parts) {
        if (p.t.rg)
          this.acc(
            p.t,
            g.node('Slice', [dy, g.constInt64([off]), g.constInt64([off + p.dim]), g.constInt64([1])]),
          );
        off += p.dim;
      }
    });
    return out;
  }

  /** Rows [start, end) of a 1-D or 2-D parameter (e.g. the q/k/v parts of a packed in_proj_weight). */
  sliceRows(w: T, start: number, end: number, total: number, rank: 1 | 2): T {
    const g = this.g;
    const out = {
      v: g.node('Slice', [w.v, g.constInt64([start]), g.constInt64([end]), g.constInt64([0])]),
      rg: w.rg,
    };
    this.push(out, (dy) => {
      const pads = rank === 1 ? [start, total - end] : [start, 0, total - end, 0];
      this.acc(w, g.node('Pad', [dy, g.constInt64(pads)]));
    });
    return out;
  }

  /**
   * Mean of x [N, H] over the positions where `mask` (float [B, S]) is 1, per example, broadcast back
   * to every position: Multi2OIE's predicate feature.
   */
  maskedMeanBroadcast(x: T, mask: string, dim: number): T {
    const g = this.g;
    const x3 = this.to3d(x, dim);
    const m3 = g.node('Unsqueeze', [mask, g.constInt64([2])]);
    const cnt = g.node('Max', [g.node('ReduceSum', [m3, g.constInt64([1])], { keepdims: 1 }), this.c(1)]);
    const mean = g.node('Div', [
      g.node('ReduceSum', [g.node('Mul', [x3.v, m3]), g.constInt64([1])], { keepdims: 1 }),
      cnt,
    ]);
    const out3 = { v: g.node('Expand', [mean, g.node('Shape', [x3.v])]), rg: x3.rg };
    this.push(out3, (dy) => {
      const dmean = g.node('ReduceSum', [dy, g.constInt64([1])], { keepdims: 1 });
      this.acc(x3, g.node('Mul', [m3, g.node('Div', [dmean, cnt])]));
    });
    return this.to2d(out3, dim);
  }

  /** A Multi2OIE argument-extractor layer: cross-attention (keys restricted by `keyMask4`), FFN, post-norms. */
  argLayer(target: T, source: T, name: string, d: number, nh: number, ff: number, keyMask4: string): T {
    const W = this.param(`${name}.multihead_attn.in_proj_weight`, [3 * d, d]);
    const b = this.param(`${name}.multihead_attn.in_proj_bias`, [3 * d]);
    const proj = (x: T, k: number) =>
      this.addBias(
        this.matmulT(x, this.sliceRows(W, k * d, (k + 1) * d, 3 * d, 2)),
        this.sliceRows(b, k * d, (k + 1) * d, 3 * d, 1),
      );
    const ctx = this.attention(proj(target, 0), proj(source, 1), proj(source, 2), keyMask4, nh, d);
    const attended = this.linear(ctx, `${name}.multihead_attn.out_proj`, d, d);
    const normed = this.layerNorm(this.add(target, attended), `${name}.norm1`, d);
    const projected = this.linear(
      this.relu(this.linear(normed, `${name}.linear1`, d, ff)),
      `${name}.linear2`,
      ff,
      d,
    );
    return this.layerNorm(this.add(normed, projected), `${name}.norm2`, d);
  }

  /** [B, S, i] @ [B, i, o] -> [B, S, o]. */
  bmm(a: T, w: T): T {
    const g = this.g;
    const out = { v: g.node('MatMul', [a.v, w.v]), rg: a.rg || w.rg };
    this.push(out, (dy) => {
      if (a.rg) this.acc(a, g.node('MatMul', [dy, g.node('Transpose', [w.v], { perm: [0, 2, 1] })]));
      if (w.rg) this.acc(w, g.node('MatMul', [g.node('Transpose', [a.v], { perm: [0, 2, 1] }), dy]));
    });
    return out;
  }

  to3d(x: T, last: number): T {
    const g = this.g;
    const out = {
      v: g.node('Reshape', [x.v, g.node('Concat', [this.shapeBS, g.constInt64([last])], { axis: 0 })]),
      rg: x.rg,
    };
    this.push(out, (dy) => this.acc(x, g.node('Reshape', [dy, g.constInt64([-1, last])])));
    return out;
  }

  to2d(x: T, last: number): T {
    const g = this.g;
    const out = { v: g.node('Reshape', [x.v, g.constInt64([-1, last])]), rg: x.rg };
    this.push(out, (dy) =>
      this.acc(
        x,
        g.node('Reshape', [dy, g.node('Concat', [this.shapeBS, g.constInt64([last])], { axis: 0 })]),
      ),
    );
    return out;
  }

  /** Rows `idx` (int64 [M]) of x [N, H]; gradient scattered back (indices are distinct). */
  rows(x: T, idx: string, last: number): T {
    const g = this.g;
    const out = { v: g.node('Gather', [x.v, idx], { axis: 0 }), rg: x.rg };
    this.push(out, (dy) => {
      const zeros = g.node('ConstantOfShape', [
        g.node('Concat', [this.N, g.constInt64([last])], { axis: 0 }),
      ]);
      this.acc(x, g.node('ScatterND', [zeros, g.node('Unsqueeze', [idx, g.constInt64([1])]), dy]));
    });
    return out;
  }

  /**
   * Mean cross-entropy of logits [M, C] against int64 labels [M], ignoring -100 (as torch's
   * CrossEntropyLoss). Seeds the backward pass with d loss / d logits times `weight`.
   */
  crossEntropy(logits: T, labels: string, depth: string, weight = 1): string {
    const g = this.g;
    const valid = g.node('Not', [g.node('Equal', [labels, g.constInt64(-100)])]);
    const validF = g.node('Cast', [valid], { to: 1 });
    const safe = g.node('Where', [valid, labels, g.constInt64(0)]);
    const logp = g.node('LogSoftmax', [logits.v], { axis: -1 });
    const onehot = g.node('OneHot', [safe, depth, g.constFloat([0, 1])], { axis: -1 });
    const nll = g.node('Neg', [
      g.node('ReduceSum', [g.node('Mul', [logp, onehot]), g.constInt64([-1])], { keepdims: 0 }),
    ]);
    const count = g.node('Max', [g.node('ReduceSum', [validF], { keepdims: 0 }), this.c(1)]);
    const loss = g.node('Div', [g.node('ReduceSum', [g.node('Mul', [nll, validF])], { keepdims: 0 }), count]);
    if (logits.rg) {
      const scale = g.node('Div', [g.node('Unsqueeze', [validF, g.constInt64([1])]), count]);
      const dlogits = g.node('Mul', [g.node('Sub', [g.node('Exp', [logp]), onehot]), scale]);
      this.acc(logits, weight === 1 ? dlogits : g.node('Mul', [dlogits, this.c(weight)]));
    }
    return loss;
  }

  // ---- the model ---------------------------------------------------------------------------
  /**
   * Builds the forward pass and then either the loss (`train`) or the head's outputs (`infer`:
   * `logits`, or `start_logits`/`end_logits`, plus `last_hidden_state` and optionally every layer's
   * hidden state), which is how inference graphs are exported.
   */
  build(
    head: HeadKind,
    mode: 'train' | 'infer' = 'train',
    outputHiddenStates = false,
  ): { loss: string; batch: string[] } {
    const { g, cfg, H } = this;
    const p = this.prefix;
    const langs = cfg.languages ?? [];
    if (cfg.num_hidden_layers === undefined || H % cfg.num_attention_heads !== 0) {
      throw new XltConfigError(
        `hidden_size ${H} is not a multiple of num_attention_heads ${cfg.num_attention_heads}`,
      );
    }
    const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
    const mask = g.input('attention_mask', 'int64', ['batch', 'sequence']);
    const batch = [ids, mask];
    const needLang = langs.length > 0 || [...this.mixtures.values()].some((m) => m.mode === 'language');
    const langIds = langs.length > 0 ? this.langInput() : undefined;
    if (needLang) batch.push(this.langInput());
    this.shapeBS = g.node('Shape', [ids]);
    this.N = g.node('ReduceProd', [this.shapeBS], { keepdims: 1 });
    const pad = cfg.pad_token_id ?? 1;

    const notPad = g.node('Cast', [g.node('Not', [g.node('Equal', [ids, g.constInt64(pad)])])], { to: 7 });
    const pos = g.node('Add', [
      g.node('Mul', [g.node('CumSum', [notPad, g.constInt64(1)]), notPad]),
      g.constInt64(pad),
    ]);
    const we = this.param(`${p}embeddings.word_embeddings.weight`, [cfg.vocab_size, H]);
    const pe = this.param(`${p}embeddings.position_embeddings.weight`);
    const te = this.param(`${p}embeddings.token_type_embeddings.weight`);
    const peRows = (this.w.get(`${p}embeddings.position_embeddings.weight`).shape[0] as number) ?? 0;
    const teRows = (this.w.get(`${p}embeddings.token_type_embeddings.weight`).shape[0] as number) ?? 1;
    let words = this.gatherRows(we, ids, cfg.vocab_size);
    if (this.mixup) {
      const mixIds = g.input('mix_ids', 'int64', ['batch', 'sequence', 'candidates']);
      const mixProbs = g.input('mix_probs', 'float32', ['batch', 'sequence', 'candidates']);
      const mixLambda = g.input('mix_lambda', 'float32', ['batch', 'sequence']);
      batch.push(mixIds, mixProbs, mixLambda);
      words = this.mixEmbedding(we, words, mixIds, mixProbs, mixLambda, cfg.vocab_size);
    }
    let x = this.add(this.add(words, this.gatherRows(pe, pos, peRows)), this.firstRow(te, teRows));
    x = this.layerNorm(x, `${p}embeddings.LayerNorm`);
    if (mode === 'train') x = this.dropout(x, this.drop?.hidden ?? 0);
    const hidden: T[] = [x];

    const maskF = g.node('Cast', [mask], { to: 1 });
    const ext = g.node('Mul', [g.node('Sub', [this.c(1), maskF]), this.c(-3.4028234663852886e38)]);
    const ext4 = g.node('Unsqueeze', [ext, g.constInt64([1, 2])]);
    for (let i = 0; i < cfg.num_hidden_layers; i++) {
      x = this.layer(x, `${p}encoder.layer.${i}`, ext4, langIds);
      hidden.push(x);
    }
    if (cfg.pre_norm) {
      x = this.layerNorm(x, `${p}encoder.LayerNorm`);
      hidden[hidden.length - 1] = x;
    }

    const nLabels = cfg.num_labels ?? (cfg.id2label ? Object.keys(cfg.id2label).length : 2);
    if (mode === 'infer') {
      this.inferenceOutputs(head, x, hidden, outputHiddenStates, nLabels);
      return { loss: '', batch };
    }
    let loss: string;
    if (head === 'masked-lm') {
      const labels = g.input('labels', 'int64', ['batch', 'sequence']);
      batch.push(labels);
      // the head runs on the labelled positions only (~15%): the same loss and gradients as the
      // dense head (unlabelled positions contribute nothing), at a fraction of the decoder's cost
      const flatLabels = g.node('Reshape', [labels, g.constInt64([-1])]);
      const labelled = g.node('Reshape', [
        g.node('NonZero', [g.node('Not', [g.node('Equal', [flatLabels, g.constInt64(-100)])])]),
        g.constInt64([-1]),
      ]);
      const xm = this.rows(x, labelled, H);
      let h = this.gelu(this.linear(xm, 'lm_head.dense', H, H));
      h = this.layerNorm(h, 'lm_head.layer_norm');
      const decName =
        this.w.has('lm_head.decoder.weight') && !this.trainable.has(`${p}embeddings.word_embeddings.weight`)
          ? 'lm_head.decoder.weight'
          : `${p}embeddings.word_embeddings.weight`;
      const E = this.param(decName, [cfg.vocab_size, H]);
      const bias = this.param('lm_head.bias', [cfg.vocab_size]);
      const logitsV = g.node('Gemm', [h.v, E.v, bias.v], { transB: 1 }, 'lm_head.decoder');
      const logits = { v: logitsV, rg: h.rg || E.rg || bias.rg };
      this.push(logits, (dy) => {
        if (h.rg) this.acc(h, g.node('MatMul', [dy, E.v]));
        if (E.rg) this.acc(E, g.node('Gemm', [dy, h.v], { transA: 1 }));
        if (bias.rg) this.acc(bias, g.node('ReduceSum', [dy, g.constInt64([0])], { keepdims: 0 }));
      });
      loss = this.crossEntropy(
        logits,
        g.node('Gather', [flatLabels, labelled], { axis: 0 }),
        g.constInt64(cfg.vocab_size),
      );
    } else if (head === 'token-classification') {
      const labels = g.input('labels', 'int64', ['batch', 'sequence']);
      batch.push(labels);
      const logits = this.linear(this.dropout(x, this.drop?.classifier ?? 0), 'classifier', H, nLabels);
      const flatLabels = g.node('Reshape', [labels, g.constInt64([-1])]);
      loss = this.salt
        ? this.saltLoss(logits, flatLabels, g.constInt64(nLabels))
        : this.crossEntropy(logits, flatLabels, g.constInt64(nLabels));
    } else if (head === 'sequence-classification') {
      const labels = g.input('labels', 'int64', ['batch']);
      batch.push(labels);
      const B = g.node('Gather', [this.shapeBS, g.constInt64(0)], { axis: 0 });
      const S = g.node('Gather', [this.shapeBS, g.constInt64(1)], { axis: 0 });
      const firstIdx = g.node('Range', [g.constInt64(0), g.node('Mul', [B, S]), S]);
      const cd = this.drop?.classifier ?? 0;
      const first = this.dropout(this.rows(x, firstIdx, H), cd);
      const h = this.dropout(this.tanh(this.linear(first, 'classifier.dense', H, H)), cd);
      const logits = this.linear(h, 'classifier.out_proj', H, nLabels);
      loss = this.salt
        ? this.saltLoss(logits, labels, g.constInt64(nLabels))
        : this.crossEntropy(logits, labels, g.constInt64(nLabels));
    } else if (head === 'question-answering') {
      const sp = g.input('start_positions', 'int64', ['batch']);
      const ep = g.input('end_positions', 'int64', ['batch']);
      batch.push(sp, ep);
      const se = this.to3d(this.linear(x, 'qa_outputs', H, 2), 2); // [B, S, 2]
      const S = g.node('Gather', [this.shapeBS, g.constInt64(1)], { axis: 0 });
      // transformers clamps positions to [0, S] and ignores index S
      const clamp = (t: string) => {
        const c = g.node('Min', [g.node('Max', [t, g.constInt64(0)]), S]);
        return g.node('Where', [g.node('Equal', [c, S]), g.constInt64(-100), c]);
      };
      const part = (k: number): T => {
        const out = {
          v: g.node('Squeeze', [
            g.node('Slice', [se.v, g.constInt64([k]), g.constInt64([k + 1]), g.constInt64([2])]),
            g.constInt64([2]),
          ]),
          rg: se.rg,
        };
        this.push(out, (dy) => {
          const z = g.node('Mul', [dy, this.c(0)]);
          const parts = k === 0 ? [dy, z] : [z, dy];
          this.acc(
            se,
            g.node(
              'Concat',
              parts.map((q) => g.node('Unsqueeze', [q, g.constInt64([2])])),
              { axis: 2 },
            ),
          );
        });
        return out;
      };
      const sl = this.crossEntropy(part(0), clamp(sp), S, 0.5);
      const el = this.crossEntropy(part(1), clamp(ep), S, 0.5);
      loss = g.node('Div', [g.node('Add', [sl, el]), this.c(2)]);
    } else if (head === 'open-ie') {
      const predLabels = g.input('pred_labels', 'int64', ['batch', 'sequence']);
      const argLabels = g.input('arg_labels', 'int64', ['batch', 'sequence']);
      const { predLogits, argLogits, inputs } = this.oieHead(x);
      batch.push(...inputs, predLabels, argLabels);
      const flat = (t: string) => g.node('Reshape', [t, g.constInt64([-1])]);
      // Multi2OIE: loss = predicate cross-entropy + argument cross-entropy
      const pl = this.crossEntropy(predLogits, flat(predLabels), g.constInt64(3));
      const al = this.crossEntropy(argLogits, flat(argLabels), g.constInt64(9));
      loss = g.node('Add', [pl, al]);
    } else {
      throw new XltConfigError(`head '${head}' cannot be trained (no loss)`, { field: 'head' });
    }
    return { loss, batch };
  }

  private inferenceOutputs(
    head: HeadKind,
    x: T,
    hidden: T[],
    outputHiddenStates: boolean,
    nLabels: number,
  ): void {
    const { g, cfg, H } = this;
    const p = this.prefix;
    const dims3 = (last: number) => ['batch', 'sequence', last];
    g.output(this.to3d(x, H).v, 'last_hidden_state', 'float32', dims3(H));
    if (outputHiddenStates) {
      for (const [k, h] of hidden.entries())
        g.output(this.to3d(h, H).v, `hidden_states_${k}`, 'float32', dims3(H));
    }
    if (head === 'base') return;
    if (head === 'masked-lm') {
      let h = this.gelu(this.linear(x, 'lm_head.dense', H, H));
      h = this.layerNorm(h, 'lm_head.layer_norm');
      const E = this.param(
        this.w.has('lm_head.decoder.weight')
          ? 'lm_head.decoder.weight'
          : `${p}embeddings.word_embeddings.weight`,
        [cfg.vocab_size, H],
      );
      const bias = this.param('lm_head.bias', [cfg.vocab_size]);
      const logits = g.node('Gemm', [h.v, E.v, bias.v], { transB: 1 }, 'lm_head.decoder');
      g.output(
        this.to3d({ v: logits, rg: false }, cfg.vocab_size).v,
        'logits',
        'float32',
        dims3(cfg.vocab_size),
      );
    } else if (head === 'token-classification') {
      g.output(
        this.to3d(this.linear(x, 'classifier', H, nLabels), nLabels).v,
        'logits',
        'float32',
        dims3(nLabels),
      );
    } else if (head === 'sequence-classification') {
      const first = g.node('Gather', [this.to3d(x, H).v, g.constInt64(0)], { axis: 1 });
      const h = this.tanh(this.linear({ v: first, rg: false }, 'classifier.dense', H, H));
      g.output(this.linear(h, 'classifier.out_proj', H, nLabels).v, 'logits', 'float32', ['batch', nLabels]);
    } else if (head === 'question-answering') {
      const se = this.to3d(this.linear(x, 'qa_outputs', H, 2), 2).v;
      const [s, e] = g.nodeN('Split', [se, g.constInt64([1, 1])], 2, { axis: -1 }) as [string, string];
      g.output(g.node('Squeeze', [s, g.constInt64([-1])]), 'start_logits', 'float32', ['batch', 'sequence']);
      g.output(g.node('Squeeze', [e, g.constInt64([-1])]), 'end_logits', 'float32', ['batch', 'sequence']);
    } else if (head === 'open-ie') {
      const { predLogits, argLogits } = this.oieHead(x);
      g.output(this.to3d(predLogits, 3).v, 'pred_logits', 'float32', dims3(3));
      g.output(this.to3d(argLogits, 9).v, 'arg_logits', 'float32', dims3(9));
    } else {
      throw new XltConfigError(`head '${head}' cannot be exported`, { field: 'head' });
    }
  }

  /**
   * Multi2OIE's head: predicate logits from the encoder states; then, for the predicate given by the
   * `pred_mask` input (1 on its tokens), the states concatenated with the predicate's mean state and
   * a position embedding (`pred_position`: 0 padding, 1 inside the predicate span, 2 elsewhere) go
   * through argument-extractor layers whose keys are restricted to the predicate's tokens.
   */
  oieHead(x: T): { predLogits: T; argLogits: T; inputs: string[] } {
    const { g, H } = this;
    const o = this.cfg.oie ?? {};
    const P = o.pos_emb_dim ?? 64;
    const layers = o.n_arg_layers ?? 4;
    const nh = o.n_arg_heads ?? 8;
    const ff = o.d_feedforward ?? 2048;
    const d = 2 * H + P;
    if (d % nh !== 0)
      throw new XltConfigError(
        `2 x hidden_size + pos_emb_dim = ${d} is not a multiple of n_arg_heads ${nh}`,
        { field: 'oie' },
      );
    const predMask = g.input('pred_mask', 'int64', ['batch', 'sequence']);
    const predPos = g.input('pred_position', 'int64', ['batch', 'sequence']);
    const predLogits = this.linear(x, 'oie.pred_classifier', H, 3);
    const pm = g.node('Cast', [predMask], { to: 1 });
    const feat = this.maskedMeanBroadcast(x, pm, H);
    const posEmb = this.param('oie.position_emb.weight', [3, P]);
    const pos = this.gatherRows(posEmb, predPos, 3, P);
    const argIn = this.concatLast([
      { t: x, dim: H },
      { t: feat, dim: H },
      { t: pos, dim: P },
    ]);
    const keyMask4 = g.node('Unsqueeze', [
      g.node('Mul', [g.node('Sub', [this.c(1), pm]), this.c(-3.4028234663852886e38)]),
      g.constInt64([1, 2]),
    ]);
    let h = argIn;
    for (let i = 0; i < layers; i++)
      h = this.argLayer(h, argIn, `oie.arg_module.layers.${i}`, d, nh, ff, keyMask4);
    return { predLogits, argLogits: this.linear(h, 'oie.arg_classifier', d, 9), inputs: [predMask, predPos] };
  }

  private layer(x: T, name: string, ext4: string, langIds: string | undefined): T {
    const { cfg, H } = this;
    const pre = cfg.pre_norm === true;
    const attLN = `${name}.attention.output.LayerNorm`;
    const outLN = `${name}.output.LayerNorm`;
    let residual = x;
    const h = pre ? this.layerNorm(x, attLN) : x;
    const q = this.linear(h, `${name}.attention.self.query`, H, H);
    const k = this.linear(h, `${name}.attention.self.key`, H, H);
    const v = this.linear(h, `${name}.attention.self.value`, H, H);
    const ctx = this.attention(q, k, v, ext4);
    const hd = this.drop?.hidden ?? 0;
    let att = this.add(this.dropout(this.linear(ctx, `${name}.attention.output.dense`, H, H), hd), residual);
    if (!pre) att = this.layerNorm(att, attLN);
    residual = att;
    const h2 = pre ? this.layerNorm(att, outLN) : att;
    const inter = this.gelu(this.linear(h2, `${name}.intermediate.dense`, H, cfg.intermediate_size));
    let out = this.add(
      this.dropout(this.linear(inter, `${name}.output.dense`, cfg.intermediate_size, H), hd),
      residual,
    );
    if (langIds !== undefined) {
      const lnBefore = cfg.ln_before_adapter !== false;
      let res2 = out;
      let a = out;
      if (cfg.adapter_layer_norm) a = this.layerNorm(out, `${name}.output.adapter_layer_norm`);
      else if (cfg.adapter_reuse_layer_norm !== false) a = this.layerNorm(out, outLN);
      if (lnBefore) res2 = a;
      out = this.add(this.dropout(this.adapter(a, name, langIds), hd), res2);
    }
    if (!pre) out = this.layerNorm(out, outLN);
    return out;
  }
}

/** The graph builder itself, for tests of single ops (not exported from the package). */
export { TrainBuilder as TrainBuilderForTests };

/** Compiles a training step (see {@link TrainBuilder}) to an ONNX model. */
export function buildTrainGraph(options: TrainGraphOptions): TrainGraph {
  const b = new TrainBuilder(options.config, options.weights, options.trainable, options.lora, {
    ...(options.embeddingMixup !== undefined ? { embeddingMixup: options.embeddingMixup } : {}),
    ...(options.salt !== undefined ? { salt: options.salt } : {}),
    dropout: options.dropout !== false,
    ...(options.loraMixtures !== undefined ? { loraMixtures: options.loraMixtures } : {}),
  });
  const g = b.g;
  const { loss, batch } = b.build(options.head);
  if (b.dropoutSeedInput !== undefined) batch.push(b.dropoutSeedInput);
  g.output(loss, 'loss', 'float32', []);
  // seed: d loss / d loss = 1 is folded into crossEntropy; run the tape
  b.runBackward();
  const params: TrainGraphSignature['params'] = [];
  const gradOf = new Map<string, string>();
  for (const name of options.trainable) {
    const p = b.paramInputs.get(name);
    if (p === undefined) {
      throw new XltConfigError(`trainable parameter '${name}' is not used by the ${options.head} graph`, {
        tensor: name,
      });
    }
    const list = b.paramGrads.get(name) ?? [];
    const grad =
      list.length === 0
        ? g.node('Mul', [p.input, g.constFloat(0)])
        : list.length === 1
          ? (list[0] as string)
          : g.node('Sum', list);
    gradOf.set(name, grad);
  }
  // global gradient norm (before clipping)
  const sq = options.trainable.map((n) =>
    g.node('ReduceSum', [g.node('Mul', [gradOf.get(n) as string, gradOf.get(n) as string])], { keepdims: 0 }),
  );
  const norm = g.node('Sqrt', [sq.length === 1 ? (sq[0] as string) : g.node('Sum', sq)]);
  g.output(norm, 'grad_norm', 'float32', []);
  if (options.mode === 'grads') {
    for (const name of options.trainable) {
      const p = b.paramInputs.get(name) as { input: string; shape: number[] };
      const out = g.output(gradOf.get(name) as string, `grad:${name}`, 'float32', p.shape);
      params.push({ name, shape: p.shape, input: p.input, grad: out });
    }
    return { model: g.toBytes({ opset: 18 }), signature: { batch, params } };
  }
  const s = options.adamw;
  if (s === undefined) throw new XltConfigError("mode 'adamw' needs adamw settings", { field: 'adamw' });
  const lr = g.input('lr', 'float32', []);
  const step = g.input('step', 'float32', []);
  let coef: string | undefined;
  if (s.maxGradNorm !== undefined) {
    // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1
    coef = g.node('Min', [
      g.node('Div', [g.constFloat(s.maxGradNorm), g.node('Add', [norm, g.constFloat(1e-6)])]),
      g.constFloat(1),
    ]);
  }
  const bc1 = g.node('Sub', [g.constFloat(1), g.node('Pow', [g.constFloat(s.beta1), step])]);
  const bc2 = g.node('Sub', [g.constFloat(1), g.node('Pow', [g.constFloat(s.beta2), step])]);
  const stepSize = g.node('Div', [lr, bc1]);
  const sqrtBc2 = g.node('Sqrt', [bc2]);
  const noDecay = s.noDecay ?? defaultNoDecay;
  for (const name of options.trainable) {
    const p = b.paramInputs.get(name) as { input: string; shape: number[] };
    const m = g.input(`m:${name}`, 'float32', p.shape);
    const v = g.input(`v:${name}`, 'float32', p.shape);
    let grad = gradOf.get(name) as string;
    if (coef !== undefined) grad = g.node('Mul', [grad, coef]);
    let param = p.input;
    if (s.weightDecay > 0 && !noDecay(name)) {
      param = g.node('Mul', [
        param,
        g.node('Sub', [g.constFloat(1), g.node('Mul', [lr, g.constFloat(s.weightDecay)])]),
      ]);
    }
    const m2 = g.node('Add', [
      g.node('Mul', [m, g.constFloat(s.beta1)]),
      g.node('Mul', [grad, g.constFloat(1 - s.beta1)]),
    ]);
    const v2 = g.node('Add', [
      g.node('Mul', [v, g.constFloat(s.beta2)]),
      g.node('Mul', [g.node('Mul', [grad, grad]), g.constFloat(1 - s.beta2)]),
    ]);
    const denom = g.node('Add', [g.node('Div', [g.node('Sqrt', [v2]), sqrtBc2]), g.constFloat(s.eps)]);
    const p2 = g.node('Sub', [param, g.node('Mul', [stepSize, g.node('Div', [m2, denom])])]);
    params.push({
      name,
      shape: p.shape,
      input: p.input,
      m,
      v,
      newParam: g.output(p2, `new:${name}`, 'float32', p.shape),
      newM: g.output(m2, `new_m:${name}`, 'float32', p.shape),
      newV: g.output(v2, `new_v:${name}`, 'float32', p.shape),
    });
  }
  return { model: g.toBytes({ opset: 18 }), signature: { batch: [...batch, lr, step], params } };
}

/**
 * The forward graph of a model with a head, for inference: the same module code as the training
 * step, with every parameter frozen (no backward). Used by `exportToOnnx`.
 */
export function buildInferenceGraph(
  config: EncoderConfig,
  weights: WeightSource,
  head: HeadKind,
  outputHiddenStates = false,
  live: { lora?: Map<string, number>; loraMixtures?: Map<string, LoraMixtureSpec> } = {},
): GraphBuilder {
  const b = new TrainBuilder(config, weights, [], live.lora, {
    ...(live.loraMixtures !== undefined ? { loraMixtures: live.loraMixtures } : {}),
  });
  b.build(head, 'infer', outputHiddenStates);
  return b.g;
}
