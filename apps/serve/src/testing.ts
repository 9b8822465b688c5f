import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { normalizeConfig, type SafetensorsTensor, writeSafetensors, type XmodConfig } from '@xlt/core';
import { type HeadKind, randomWeights } from '@xlt/onnx';
import type { Encoded, ServeTokenizer } from './tasks.js';

/** Writes a random X-Mod model folder (config.json + model.safetensors): tiny by default, for tests and benchmarks. */
export async function writeTinyModel(
  dir: string,
  head: HeadKind,
  languages = ['en_XX', 'de_DE', 'fr_XX'],
  seed = 0,
  overrides: Partial<XmodConfig> = {},
): Promise<XmodConfig> {
  const arch = {
    'masked-lm': 'XmodForMaskedLM',
    'sequence-classification': 'XmodForSequenceClassification',
    'token-classification': 'XmodForTokenClassification',
    'question-answering': 'XmodForQuestionAnswering',
    base: 'XmodModel',
    'open-ie': 'XmodForOpenIE',
  }[head];
  const config = normalizeConfig({
    model_type: 'xmod',
    architectures: [arch],
    vocab_size: 64,
    hidden_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    intermediate_size: 32,
    max_position_embeddings: 66,
    pad_token_id: 1,
    languages,
    default_language: languages[0] ?? null,
    adapter_reduction_factor: 2,
    adapter_layer_norm: false,
    adapter_reuse_layer_norm: true,
    ln_before_adapter: true,
    pre_norm: false,
    id2label: (head === 'token-classification'
      ? { 0: 'O', 1: 'B-PER', 2: 'I-PER' }
      : { 0: 'neg', 1: 'pos' }) as Record<string, string>,
    ...overrides,
  });
  const w = randomWeights(config, head, seed, overrides.hidden_size !== undefined ? 0.02 : 0.5);
  const tensors: Record<string, SafetensorsTensor> = {};
  for (const n of w.names()) {
    const t = w.get(n);
    tensors[n] = { dtype: 'F32', shape: t.shape, data: t.data };
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
  return config;
}

/**
 * Writes a random language module for `code` that fits a model of {@link writeTinyModel}'s default
 * size (every layer's `adapter_modules.<code>` weights), as `POST /admin/languages` loads it.
 */
export async function writeTinyModule(file: string, code: string, seed = 9): Promise<void> {
  const w = randomWeights(
    normalizeConfig({
      vocab_size: 64,
      hidden_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      intermediate_size: 32,
      languages: [code],
      adapter_reduction_factor: 2,
    }),
    'sequence-classification',
    seed,
    0.5,
  );
  const tensors: Record<string, SafetensorsTensor> = {};
  for (const n of w.names().filter((x) => x.includes('adapter_modules'))) {
    const t = w.get(n);
    tensors[n] = { dtype: 'F32', shape: t.shape, data: t.data };
  }
  await writeSafetensors(file, tensors);
}

/**
 * A whitespace tokenizer over a 64-token vocabulary (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3,
 * `<mask>`=63, words hashed into 4..62), for server tests that need no tokenizer file.
 */
export function whitespaceTokenizer(): ServeTokenizer {
  const idOf = (w: string) => {
    if (w === '<mask>') return 63;
    let h = 7;
    for (const c of w) h = (h * 31 + (c.codePointAt(0) as number)) % 59;
    return 4 + h;
  };
  const words = (t: string, base: number, seq: number, wordBase: number) => {
    const out: Array<{ id: number; off: [number, number]; word: number; seq: number }> = [];
    let wi = wordBase;
    for (const m of t.matchAll(/\S+/g)) {
      out.push({
        id: idOf(m[0]),
        off: [base + (m.index as number), base + (m.index as number) + m[0].length],
        word: wi++,
        seq,
      });
    }
    return out;
  };
  return {
    maskTokenId: 63,
    padTokenId: 1,
    idToToken: (id) => (id === 63 ? '<mask>' : id === 0 ? '<s>' : id === 2 ? '</s>' : `tok${id}`),
    async encode(text: string, pair?: string): Promise<Encoded> {
      const a = words(text, 0, 0, 0);
      const b = pair !== undefined ? words(pair, 0, 1, 0) : [];
      const ids = [0, ...a.map((x) => x.id), 2, ...(pair !== undefined ? [2, ...b.map((x) => x.id), 2] : [])];
      const offsets: Array<[number, number]> = [
        [0, 0],
        ...a.map((x) => x.off),
        [0, 0],
        ...(pair !== undefined
          ? [[0, 0] as [number, number], ...b.map((x) => x.off), [0, 0] as [number, number]]
          : []),
      ];
      const wordIds = [
        null,
        ...a.map((x) => x.word),
        null,
        ...(pair !== undefined ? [null, ...b.map((x) => x.word), null] : []),
      ];
      const sequenceIds = [
        null,
        ...a.map(() => 0),
        null,
        ...(pair !== undefined ? [null, ...b.map(() => 1), null] : []),
      ];
      return { ids, offsets, wordIds, sequenceIds };
    },
  };
}
