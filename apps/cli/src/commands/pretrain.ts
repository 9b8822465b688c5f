import path from 'node:path';
import { writeFileAtomic, XltConfigError } from '@xlt/core';
import type { XltTokenizer } from '@xlt/tokenizer';
import { modelLoss, preset } from '@xlt/trainer';
import { XmodForMaskedLM } from '@xlt/xmod';
import { z } from 'zod';
import type { Command } from '../cli/main.js';
import { langFiles, SIZES, seededInit, setupBackend } from '../tasks/common.js';
import { heldOutMlmLoss, unigramCounts } from '../tasks/mlm-eval.js';
import { loadTokenizer } from '../tasks/model.js';
import {
  batchSlots,
  batchTokens,
  loadMlmCorpus,
  loadPackedMlmCorpus,
  mlmBatches,
  mlmOptions,
  trainFields,
  trainStage,
} from '../tasks/train.js';

/**
 * A new, seeded, randomly initialised masked-LM model of a named size (tiny h64 L2, small h256 L4,
 * base h768 L12; hidden size and layers can be overridden) over `tok`'s vocabulary: XLM-R layout
 * (`shared`) or X-Mod with one module per language.
 */
export function newMaskedLm(
  tok: XltTokenizer,
  o: {
    init: keyof typeof SIZES;
    architecture: 'xmod' | 'shared';
    languages: readonly string[];
    maxLength: number;
    dropout: number;
    seed: number;
    hiddenSize?: number;
    layers?: number;
  },
): XmodForMaskedLM {
  const size: Record<keyof (typeof SIZES)['tiny'], number> = { ...SIZES[o.init] };
  if (o.hiddenSize !== undefined) size.hidden_size = o.hiddenSize;
  if (o.layers !== undefined) size.num_hidden_layers = o.layers;
  const heads = size.hidden_size % size.num_attention_heads === 0 ? size.num_attention_heads : 1;
  const xmod = o.architecture === 'xmod';
  const langs = o.languages;
  const model = new XmodForMaskedLM({
    model_type: xmod ? 'xmod' : 'xlm-roberta',
    vocab_size: tok.vocabSize,
    ...size,
    num_attention_heads: heads,
    intermediate_size: o.hiddenSize !== undefined ? 4 * o.hiddenSize : size.intermediate_size,
    max_position_embeddings: Math.max(size.max_position_embeddings, o.maxLength + 2),
    hidden_dropout_prob: o.dropout,
    attention_probs_dropout_prob: o.dropout,
    pad_token_id: tok.tokenToId('<pad>') ?? 1,
    bos_token_id: tok.tokenToId('<s>') ?? 0,
    eos_token_id: tok.tokenToId('</s>') ?? 2,
    initializer_range: 0.02,
    ...(xmod
      ? { languages: [...langs], default_language: langs.includes('en') ? 'en' : (langs[0] as string) }
      : {}),
  });
  seededInit(model, 'all', o.seed);
  return model;
}

/** Masking rate of the held-out masked-LM loss (fixed, so that runs with other training rates compare). */
const HELD_OUT_MASK_PROBABILITY = 0.15;

const pretrainSchema = z
  .strictObject({
    model: z.string().optional().describe('Hugging Face model folder to continue from'),
    init: z.enum(['tiny', 'small', 'base']).optional(),
    tokenizer: z.string().optional(),
    architecture: z.enum(['xmod', 'shared']).default('xmod'),
    text: langFiles,
    heldOut: langFiles.optional().describe('held-out text per language: masked-LM loss after training'),
    packing: z.boolean().default(true),
    maxSentencesPerLanguage: z.number().int().positive().default(100_000),
    alpha: z.number().min(0).max(1).default(0.3),
    maskProbability: z.number().positive().max(1).default(0.15),
    hiddenSize: z.number().int().positive().optional(),
    layers: z.number().int().positive().optional(),
    dropout: z.number().min(0).max(1).default(0.1),
    out: z.string().optional(),
    ...trainFields,
    steps: z.number().int().positive().default(1000),
    lr: z.number().positive().default(5e-4),
  })
  .refine((c) => (c.model === undefined) !== (c.init === undefined), {
    message: 'give exactly one of model (a model folder) or init (tiny, small or base)',
    path: ['model'],
  })
  .refine((c) => c.model !== undefined || c.tokenizer !== undefined, {
    message: 'a new model (init) needs a tokenizer (tokenizer.json or its folder)',
    path: ['tokenizer'],
  });

export const pretrainCommand: Command<typeof pretrainSchema> = {
  name: 'pretrain',
  summary: 'Masked-LM pre-training on raw text per language: shared (XLM-R) or X-Mod (per-language modules)',
  help: `Trains with @xlt/trainer fit on batches from the multilingual sampler (language l drawn with
probability ∝ n_l^alpha, as XLM-R), 15% of tokens masked (80/10/10). X-Mod models get one module per
text language (keyed by the language code; a loaded model gets missing modules copied from its
default language); the shared architecture is XLM-R (no modules). Writes a Hugging Face folder
(config.json + model.safetensors + tokenizer.json) to <run dir>/model (or --out), and the trainer's
metrics.jsonl / summary.json / checkpoints under <run dir>/train.

Options (or config keys):
  --model DIR               continue from a Hugging Face model folder (XLM-R or X-Mod, MLM head)
  --init tiny|small|base    or a new model: tiny (h64 L2), small (h256 L4), base (h768 L12);
                            --hidden-size / --layers override; vocabulary from --tokenizer
  --tokenizer PATH          tokenizer.json or its folder (default: the model folder)
  --architecture xmod|shared   for --init (default xmod)
  --text LANG=PATH          repeatable; or a config map  text: { en: panx/train-en.tsv, de: [a.txt, b.txt] }
                            one sentence a line, or PAN-X/CoNLL .tsv (first column, tags dropped)
  --data-root DIR           data paths are relative to it (default ../shared/data beside the repo)
  --held-out LANG=PATH      repeatable: held-out text; masked-LM loss per language after training (15% masked)
  --packing true|false     pack sentences into full blocks of --max-length tokens (default on:
                            no padding; </s> after every sentence, one language per block)
  --max-sentences-per-language 100000 --alpha 0.3 --mask-probability 0.15
  --steps 1000 --batch-size 16 --grad-accumulation 1 --lr 5e-4 --warmup-ratio 0.06 --weight-decay 0.01 --adam-beta2 0.999
  --max-length 128 --dropout 0.1 --seed 0 --checkpoint-every N --resume --backend auto|cpu|wasm|tensorflow
  --engine auto|tfjs|onnxruntime (auto: compiled onnxruntime step when possible) --threads N
  --max-memory-gib N        refuse an onnxruntime run whose estimate (printed first) is larger (default: RAM)
  --out DIR                 default <run dir>/model

Examples:
  xlt pretrain --init tiny --tokenizer ../shared/fixtures/tokenizer \\
      --text en=panx/train-en.tsv --text de=panx/train-de.tsv --steps 200 --run-dir runs/pt
  xlt pretrain --config examples/ner/pretrain-xmod.yaml`,
  schema: pretrainSchema,
  async run(cfg, ctx) {
    await setupBackend(cfg.backend, ctx.log);
    const tok = await loadTokenizer(cfg.tokenizer, cfg.model);
    const langs = Object.keys(cfg.text);
    let model: XmodForMaskedLM;
    if (cfg.model !== undefined) {
      model = await XmodForMaskedLM.fromPretrained(cfg.model);
      if (tok.vocabSize > model.config.vocab_size)
        throw new XltConfigError(
          `the tokenizer has ${tok.vocabSize} pieces but the model's vocabulary is ${model.config.vocab_size}`,
          { field: 'tokenizer' },
        );
      if (model.config.model_type === 'xmod') {
        const from = model.config.default_language ?? model.config.languages[0];
        for (const l of langs) {
          if (model.config.languages.some((m) => m === l || m.split(/[_-]/)[0] === l)) continue;
          model.addLanguage(l, from !== undefined ? { initFrom: from } : { seed: cfg.seed });
          ctx.log(`added a language module '${l}'${from !== undefined ? ` (copy of ${from})` : ''}`);
        }
      }
    } else {
      model = newMaskedLm(tok, {
        init: cfg.init as keyof typeof SIZES,
        architecture: cfg.architecture,
        languages: langs,
        maxLength: cfg.maxLength,
        dropout: cfg.dropout,
        seed: cfg.seed,
        ...(cfg.hiddenSize !== undefined ? { hiddenSize: cfg.hiddenSize } : {}),
        ...(cfg.layers !== undefined ? { layers: cfg.layers } : {}),
      });
      const xmod = cfg.architecture === 'xmod';
      ctx.log(
        `new ${xmod ? 'X-Mod' : 'XLM-R (shared)'} model: hidden ${model.config.hidden_size}, ${model.config.num_hidden_layers} layers, vocabulary ${tok.vocabSize}${xmod ? `, modules ${langs.join(' ')}` : ''}`,
      );
    }
    const maxLength = Math.min(
      cfg.maxLength,
      model.config.max_position_embeddings - model.config.pad_token_id - 1,
    );
    const corpus = cfg.packing
      ? await loadPackedMlmCorpus(tok, cfg.text, {
          dataRoot: cfg.dataRoot,
          maxSentences: cfg.maxSentencesPerLanguage,
          blockSize: maxLength,
          log: ctx.log,
        })
      : await loadMlmCorpus(tok, cfg.text, {
          dataRoot: cfg.dataRoot,
          maxSentences: cfg.maxSentencesPerLanguage,
          maxLength,
          log: ctx.log,
        });
    const isXmod = model.config.model_type === 'xmod';
    const langIndex = (lang: string) => {
      if (!isXmod) return undefined;
      const ls = model.config.languages;
      const i = ls.findIndex((m) => m === lang || m.split(/[_-]/)[0] === lang);
      return i >= 0 ? i : undefined;
    };
    const { data, probs } = mlmBatches(corpus, {
      alpha: cfg.alpha,
      seed: cfg.seed,
      batchSize: cfg.batchSize,
      langIndex,
      mask: mlmOptions(tok, model.config.vocab_size, cfg.maskProbability),
    });
    ctx.log(
      `sampling (alpha ${cfg.alpha}): ${Object.entries(probs)
        .map(([l, p]) => `${l} ${(100 * p).toFixed(1)}%`)
        .join(', ')}`,
    );
    const [plan] = preset('xmod-pretrain');
    const summary = await trainStage(model, modelLoss(model), data, cfg, {
      trainable: plan?.trainable ?? {},
      runDir: path.join(ctx.runDir, 'train'),
      stage: 'pretrain',
      log: ctx.log,
      tokens: batchTokens,
      slots: batchSlots,
    });
    let heldOut: Awaited<ReturnType<typeof heldOutMlmLoss>> | undefined;
    if (cfg.heldOut !== undefined) {
      const blocks = await loadPackedMlmCorpus(tok, cfg.heldOut, {
        dataRoot: cfg.dataRoot,
        maxSentences: cfg.maxSentencesPerLanguage,
        blockSize: maxLength,
        log: () => {},
      });
      // always at BERT's 15%, whatever the training rate: held-out losses of runs compare
      const mask = mlmOptions(tok, model.config.vocab_size, HELD_OUT_MASK_PROBABILITY);
      // the unigram baseline (what a model that ignores context scores on the same masked tokens),
      // counted over the tokens masking can pick
      const unigram = unigramCounts(corpus, model.config.vocab_size, new Set(mask.specialIds));
      heldOut = await heldOutMlmLoss(model, blocks, {
        mask,
        seed: 1234,
        unigram,
        ...(cfg.threads !== undefined ? { threads: cfg.threads } : {}),
      });
      ctx.log(
        `held-out masked-LM loss (unigram of the training text on the same tokens): ${Object.entries(heldOut)
          .map(([l, r]) => `${l} ${r.loss.toFixed(3)} (${r.unigramLoss?.toFixed(3) ?? '-'})`)
          .join(', ')}`,
      );
    }
    const out = path.resolve(cfg.out ?? path.join(ctx.runDir, 'model'));
    model.eval();
    await model.savePretrained(out);
    await tok.save(path.join(out, 'tokenizer.json'));
    writeFileAtomic(
      path.join(ctx.runDir, 'results.json'),
      `${JSON.stringify({ model: out, finalLoss: summary.finalLoss, steps: summary.steps, seconds: summary.seconds, sampling: probs, packing: cfg.packing, ...(heldOut !== undefined ? { heldOut } : {}) }, null, 2)}\n`,
    );
    ctx.log(`model written to ${out}`);
    model.dispose();
  },
};
