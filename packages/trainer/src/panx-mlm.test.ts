import * as tf from '@tensorflow/tfjs-core';
import { initBackend, Rng, sharedPath, sharedSkipReason } from '@xlt/core';
import { readNer } from '@xlt/data';
import type { XmodForMaskedLM } from '@xlt/xmod';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluateLoss } from './data.js';
import { multilingualMlmBatches } from './multilingual.js';
import { collateMlm, type MlmOptions, modelLoss, type TokenBatch } from './objectives.js';
import { preset, runStages } from './stages.js';
import { seededXmod, tinyXmodConfig } from './test-xmod.js';

// A tiny X-Mod pre-trained with MLM on real PAN-X (WikiANN) sentences of 4 languages, then a 5th
// language added with the `xmod-add-language` preset. Character-level vocabulary: the most frequent
// characters of each language's training sentences (@xlt/trainer does not depend on
// @xlt/tokenizer), so the new language (fr) shares most of its tokens with the pre-training
// languages, as a new X-Mod language shares the pre-trained subword vocabulary.

const OLD = { en: 'en_XX', de: 'de_DE', ru: 'ru_RU', zh: 'zh_CN' } as const;
const NEW = ['fr', 'fr_XX'] as const;
const TRAIN_SENTENCES = 600;
const HELD_OUT = 48;
const CHARS_PER_LANG = 60;
const MAX_TOKENS = 32;
const SPECIAL = { bos: 0, pad: 1, eos: 2, unk: 3, mask: 4 };

const skip = sharedSkipReason('data', 'panx');

async function sentences(file: string, n: number): Promise<string[][]> {
  const out: string[][] = [];
  for await (const s of readNer(file)) {
    out.push([...s.tokens.join(' ').toLowerCase()]);
    if (out.length >= n) break;
  }
  return out;
}

interface Lang {
  code: string;
  train: number[][];
  heldOut: number[][];
}

describe.skipIf(skip !== undefined)(`MLM on PAN-X text in 5 languages (${skip ?? 'available'})`, () => {
  const langs = new Map<string, Lang>();
  let mlm: MlmOptions;
  let model: XmodForMaskedLM;
  /** Held-out batches per language with fixed masks. */
  const evalBatches = new Map<string, TokenBatch[]>();
  const heldOutLoss = (code: string) => {
    model.eval();
    return evaluateLoss(modelLoss(model), evalBatches.get(code) as TokenBatch[]);
  };

  beforeAll(async () => {
    await initBackend({ backend: 'cpu', log: false });
    const raw = new Map<string, { train: string[][]; heldOut: string[][] }>();
    for (const [iso, code] of [...Object.entries(OLD), NEW]) {
      raw.set(code, {
        train: await sentences(sharedPath('data', 'panx', `train-${iso}.tsv`), TRAIN_SENTENCES),
        heldOut: await sentences(sharedPath('data', 'panx', `dev-${iso}.tsv`), HELD_OUT),
      });
    }
    // vocabulary: specials, then each language's most frequent training characters
    const vocab = new Map<string, number>();
    for (const { train } of raw.values()) {
      const freq = new Map<string, number>();
      for (const s of train) for (const w of s) freq.set(w, (freq.get(w) ?? 0) + 1);
      const top = [...freq].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, CHARS_PER_LANG);
      for (const [w] of top) if (!vocab.has(w)) vocab.set(w, 5 + vocab.size);
    }
    const encode = (s: string[]) => [
      SPECIAL.bos,
      ...s.slice(0, MAX_TOKENS - 2).map((w) => vocab.get(w) ?? SPECIAL.unk),
      SPECIAL.eos,
    ];
    for (const [code, r] of raw)
      langs.set(code, { code, train: r.train.map(encode), heldOut: r.heldOut.map(encode) });
    mlm = {
      maskTokenId: SPECIAL.mask,
      padTokenId: SPECIAL.pad,
      vocabSize: 5 + vocab.size,
      specialIds: [SPECIAL.bos, SPECIAL.eos],
    };
    for (const [code, l] of langs) {
      const rng = new Rng(12345).fork(code);
      const batches: TokenBatch[] = [];
      for (let i = 0; i < l.heldOut.length; i += 16)
        batches.push(
          collateMlm(
            l.heldOut.slice(i, i + 16).map((inputIds) => ({ inputIds })),
            mlm,
            rng,
          ),
        );
      evalBatches.set(code, batches);
    }
    model = seededXmod(
      tinyXmodConfig({
        vocab_size: mlm.vocabSize,
        hidden_size: 32,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: MAX_TOKENS + 2,
        languages: Object.values(OLD),
        default_language: 'en_XX',
      }),
      5,
    );
  });

  const withLang = (batch: TokenBatch, id: number): TokenBatch => ({
    ...batch,
    langIds: batch.inputIds.map(() => id),
  });

  it('pre-training on 4 languages lowers the held-out MLM loss of each', async () => {
    const codes = Object.values(OLD);
    for (const [i, code] of codes.entries())
      evalBatches.set(
        code,
        (evalBatches.get(code) as TokenBatch[]).map((b) => withLang(b, i)),
      );
    const before = codes.map(heldOutLoss);
    const corpora = Object.fromEntries(codes.map((c) => [c, (langs.get(c) as Lang).train]));
    const data = multilingualMlmBatches({
      corpora,
      batchSize: 8,
      mlm,
      alpha: 0.3,
      seed: 1,
      groupByLanguage: 'single',
      languages: model.config.languages,
    });
    const [r] = await runStages(
      model,
      preset('xmod-pretrain').map((s) => ({ ...s, lr: 5e-3, steps: 40 })),
      { loss: modelLoss(model), data: data.data, weightDecay: 0.01, seed: 2, engine: 'tfjs' },
    );
    const after = codes.map(heldOutLoss);
    console.log(
      `pre-training (${r?.steps} steps, ${r?.seconds.toFixed(1)} s): held-out MLM loss ${codes
        .map((c, i) => `${c} ${before[i]?.toFixed(3)} -> ${after[i]?.toFixed(3)}`)
        .join(', ')}`,
    );
    for (const [i, c] of codes.entries())
      expect(after[i] as number, c).toBeLessThan((before[i] as number) - 0.5);
  });

  it('xmod-add-language: the new language’s loss falls, the other 4 languages’ logits stay bit-identical', async () => {
    const [iso, code] = NEW;
    const codes = Object.values(OLD);
    // fixed inputs of each old language (its first held-out batch) and their logits now
    const probe = codes.map((c) => (evalBatches.get(c) as TokenBatch[])[0] as TokenBatch);
    const logitsOf = (b: TokenBatch): Float32Array => {
      const { logits } = model.forward({
        inputIds: b.inputIds,
        attentionMask: b.attentionMask,
        langIds: b.langIds as number[],
      });
      const values = logits.dataSync() as Float32Array;
      tf.dispose(logits);
      return values;
    };
    model.eval();
    const logitsBefore = probe.map(logitsOf);

    model.addLanguage(code, { seed: 3 }); // a fresh module, N(0, initializer_range)
    const newId = model.config.languages.indexOf(code);
    evalBatches.set(
      code,
      (evalBatches.get(code) as TokenBatch[]).map((b) => withLang(b, newId)),
    );
    const before = heldOutLoss(code);
    const plan = preset('xmod-add-language', { language: code });
    const data = multilingualMlmBatches({
      corpora: { [code]: (langs.get(code) as Lang).train },
      batchSize: 8,
      mlm,
      seed: 4,
      languages: model.config.languages,
    });
    const [r] = await runStages(
      model,
      plan.map((s) => ({ ...s, lr: 1e-2, steps: 40 })),
      { loss: modelLoss(model), data: data.data, weightDecay: 0.01, seed: 5, engine: 'tfjs' },
    );
    // only the new language's modules trained
    expect(r?.trainableParameters.length).toBeGreaterThan(0);
    for (const n of r?.trainableParameters ?? []) expect(n).toContain(`.adapter_modules.${code}.`);
    const after = heldOutLoss(code);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(
      `add ${iso} (${r?.steps} steps, ${r?.seconds.toFixed(1)} s): held-out MLM loss ${before.toFixed(3)} -> ${after.toFixed(3)}; train loss ${mean(r?.losses.slice(0, 8) ?? []).toFixed(3)} -> ${mean(r?.losses.slice(-8) ?? []).toFixed(3)}`,
    );
    expect(after).toBeLessThan(before - 0.02);

    model.eval();
    const logitsAfter = probe.map(logitsOf);
    for (const [i, c] of codes.entries()) {
      const a = logitsBefore[i] as Float32Array;
      const b = logitsAfter[i] as Float32Array;
      expect(b.length, c).toBe(a.length);
      expect(
        Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(
          Buffer.from(a.buffer, a.byteOffset, a.byteLength),
        ),
        c,
      ).toBe(true);
    }
    model.dispose();
  });
});
