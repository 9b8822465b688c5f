import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng, XltConfigError } from '@xlt/core';
import { Linear, Module } from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  addLanguageExpert,
  applyLoraMixture,
  formatParameterTable,
  type LoraMixtureLinear,
  loadBalancingLoss,
  loadLanguageExpert,
  type MixtureOptions,
  parameterTable,
  saveLanguageExpert,
  setRoutingContext,
} from './index.js';

class Net extends Module {
  query: Linear;
  constructor() {
    super();
    this.query = this.registerModule('query', new Linear(6, 5, { rng: new Rng(11), std: 0.5 }));
  }
  get mix(): LoraMixtureLinear {
    return this.query as unknown as LoraMixtureLinear;
  }
}

const LANGS = ['en', 'de', 'sw'];

function mixtureNet(opts: Partial<MixtureOptions> & { mode: MixtureOptions['mode'] }, seed = 1): Net {
  const net = new Net();
  applyLoraMixture(net, { r: 2, alpha: 4, languages: LANGS, targetModules: ['query'], ...opts });
  const rng = new Rng(seed);
  for (const [name, p] of net.namedParameters())
    if (name.includes('lora_B'))
      p.assign(
        tf.tensor(
          new Float32Array(p.size).map(() => rng.normal(0, 1)),
          p.shape,
        ),
      );
  return net;
}

/** base(x) + x A^T B^T * scaling with one expert, computed directly from its weights. */
function withExpert(net: Net, lang: string, x: tf.Tensor): tf.Tensor {
  const m = net.mix;
  const e = m.experts.get(lang);
  if (e === undefined) throw new Error(lang);
  const base = m.base_layer.apply(x);
  const d = tf.matMul(
    tf.matMul(tf.reshape(x, [-1, 6]), e.lora_A.weight, false, true),
    e.lora_B.weight,
    false,
    true,
  );
  return tf.add(base, tf.mul(tf.reshape(d, [...x.shape.slice(0, -1), 5]), m.scaling));
}

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
let x: tf.Tensor;

beforeAll(async () => {
  await initBackend();
  x = tf.randomNormal([3, 4, 6], 0, 1, 'float32', 3);
});

describe('language routing', () => {
  it('equals running each example with its own language expert', () => {
    const net = mixtureNet({ mode: 'language' });
    const langIds = [2, 0, 1];
    setRoutingContext(net, { langIds });
    const y = net.mix.apply(x);
    for (let b = 0; b < 3; b++) {
      const xb = tf.slice(x, [b, 0, 0], [1, -1, -1]);
      const ref = withExpert(net, LANGS[langIds[b]], xb);
      expect(maxDiff(tf.slice(y, [b, 0, 0], [1, -1, -1]), ref)).toBeLessThan(1e-5);
    }
    // Experts differ, so routing matters.
    expect(maxDiff(withExpert(net, 'en', x), withExpert(net, 'de', x))).toBeGreaterThan(1e-2);
  });
  it('missing or out-of-range langIds are config errors naming langIds', () => {
    const net = mixtureNet({ mode: 'language' });
    setRoutingContext(net, {});
    expect(() => net.mix.apply(x)).toThrow(XltConfigError);
    setRoutingContext(net, { langIds: [0, 1, 7] });
    expect(() => net.mix.apply(x)).toThrow(/langId/);
  });
});

describe('top-k routing', () => {
  it('k=1 equals using the top expert alone (from the first-token router logits)', () => {
    const net = mixtureNet({ mode: 'topk', k: 1 });
    const y = net.mix.apply(x);
    const logits = tf.matMul(
      tf.squeeze(tf.slice(x, [0, 0, 0], [-1, 1, -1]), [1]),
      (net.mix.router as { weight: tf.Variable }).weight,
      false,
      true,
    );
    const top = Array.from(tf.argMax(logits, -1).dataSync());
    for (let b = 0; b < 3; b++) {
      const ref = withExpert(net, LANGS[top[b]], tf.slice(x, [b, 0, 0], [1, -1, -1]));
      expect(maxDiff(tf.slice(y, [b, 0, 0], [1, -1, -1]), ref)).toBeLessThan(1e-5);
    }
  });
  it('k=2 gives the dropped expert exactly zero weight and the rest sum to 1', () => {
    const net = mixtureNet({ mode: 'topk', k: 2 });
    const w = net.mix.routingWeights(x).arraySync() as number[][];
    for (const row of w) {
      expect(row.filter((v) => v === 0).length).toBe(1);
      expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
    }
  });
});

describe('router and static weights', () => {
  const loss = (net: Net) => () => {
    const y = net.mix.apply(x);
    return tf.add(tf.sum(tf.square(y)), loadBalancingLoss(net)) as tf.Scalar;
  };
  it('router gradients are non-zero when trainable', () => {
    const net = mixtureNet({ mode: 'router', trainRouter: true });
    const r = (net.mix.router as { weight: tf.Variable }).weight;
    const { grads } = tf.variableGrads(loss(net));
    expect(grads[r.name]).toBeDefined();
    expect(tf.max(tf.abs(grads[r.name])).dataSync()[0]).toBeGreaterThan(0);
    expect(Object.keys(grads).length).toBe(7); // 3 x (A, B) + router; the base is frozen
  });
  it('a frozen router gets no gradient', () => {
    const net = mixtureNet({ mode: 'router', trainRouter: false });
    const r = (net.mix.router as { weight: tf.Variable }).weight;
    const { grads } = tf.variableGrads(loss(net));
    expect(grads[r.name]).toBeUndefined();
    expect(Object.keys(grads).length).toBe(6);
  });
  it('mean pooling routes on the token mean rather than the first token', () => {
    const a = mixtureNet({ mode: 'router', pooling: 'first' }).mix.routingWeights(x);
    const b = mixtureNet({ mode: 'router', pooling: 'mean' }).mix.routingWeights(x);
    expect(maxDiff(a, b)).toBeGreaterThan(1e-4);
  });
  it('static weights are one softmax vector shared by every example (uniform at init)', () => {
    const net = mixtureNet({ mode: 'static' });
    const w = net.mix.routingWeights(x).arraySync() as number[][];
    for (const row of w) for (const v of row) expect(v).toBeCloseTo(1 / 3, 6);
    expect(net.trainableParameters().map(([n]) => n)).toContain('query.mix_logits');
  });
  it('load-balancing loss is n * sum_i f_i P_i', () => {
    const net = mixtureNet({ mode: 'router' });
    net.mix.lastWeights = tf.keep(
      tf.tensor2d([
        [0.7, 0.2, 0.1],
        [0.1, 0.6, 0.3],
      ]),
    );
    // Hand computation: f = [0.5, 0.5, 0], P = [0.4, 0.4, 0.2], 3 * (0.2 + 0.2) = 1.2.
    expect(loadBalancingLoss(net).dataSync()[0]).toBeCloseTo(1.2, 5);
  });
});

describe('plug-in-and-play experts', () => {
  it('a mixture saved per language and re-assembled gives identical outputs', async () => {
    const net = mixtureNet({ mode: 'language' }, 5);
    const dir = mkdtempSync(join(tmpdir(), 'xlt-mix-'));
    for (const l of LANGS) await saveLanguageExpert(net, l, join(dir, l));
    const other = new Net();
    applyLoraMixture(other, {
      r: 2,
      alpha: 4,
      languages: ['sw'],
      targetModules: ['query'],
      mode: 'language',
    });
    // Assemble in another order from the files; ids follow the new order.
    for (const l of ['sw', 'en', 'de']) await loadLanguageExpert(other, l, join(dir, l));
    expect(other.mix.languages).toEqual(['sw', 'en', 'de']);
    setRoutingContext(net, { langIds: [0, 1, 2] });
    setRoutingContext(other, { langIds: [1, 2, 0] });
    expect(maxDiff(net.mix.apply(x), other.mix.apply(x))).toBe(0);
  });
  it('adding a new language leaves the other experts and router rows unchanged', () => {
    const net = mixtureNet({ mode: 'router' });
    const r0 = (net.mix.router as { weight: tf.Variable }).weight.arraySync() as number[][];
    const en0 = withExpert(net, 'en', x);
    addLanguageExpert(net, 'fr', new Rng(9));
    const r1 = (net.mix.router as { weight: tf.Variable }).weight.arraySync() as number[][];
    expect(r1.slice(0, 3)).toEqual(r0);
    expect(r1.length).toBe(4);
    expect(maxDiff(withExpert(net, 'en', x), en0)).toBe(0);
    expect(net.mix.routingWeights(x).shape).toEqual([3, 4]);
    expect(net.trainableParameters().map(([n]) => n)).toContain('query.experts.fr.lora_A.weight');
  });
  it('loading an expert of another rank is a config error naming r', async () => {
    const a = new Net();
    applyLoraMixture(a, { r: 3, languages: ['en'], targetModules: ['query'], mode: 'language' });
    const dir = mkdtempSync(join(tmpdir(), 'xlt-mix-'));
    await saveLanguageExpert(a, 'en', dir);
    await expect(loadLanguageExpert(mixtureNet({ mode: 'language' }), 'fr', dir)).rejects.toThrow(
      /field 'r'/,
    );
  });
});

describe('parameter accounting', () => {
  it('counts trainable and total parameters per module and per language', () => {
    const net = mixtureNet({ mode: 'router' });
    const rows = parameterTable(net);
    const byName = new Map(rows.map((r) => [r.name, r]));
    // Hand counts: one expert = A [2,6] + B [5,2] = 22; router [3,6] = 18; base 6*5 + 5 = 35.
    expect(byName.get('query')).toEqual({ name: 'query', trainable: 3 * 22 + 18, total: 3 * 22 + 18 });
    expect(byName.get('language:de')).toEqual({ name: 'language:de', trainable: 22, total: 22 });
    expect(byName.get('total')).toEqual({ name: 'total', trainable: 84, total: 84 + 35 });
    expect(formatParameterTable(rows)).toMatch(/language:sw\s+22\s+22\s+100\.00/);
  });
});
