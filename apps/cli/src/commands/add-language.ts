import path from 'node:path';
import { writeFileAtomic, XltConfigError } from '@xlt/core';
import type { XltTokenizer } from '@xlt/tokenizer';
import { modelLoss, preset } from '@xlt/trainer';
import { XmodForMaskedLM } from '@xlt/xmod';
import { z } from 'zod';
import type { Command } from '../cli/main.js';
import { dataPath, requireFile, setupBackend } from '../tasks/common.js';
import { loadTokenizer } from '../tasks/model.js';
import {
  batchTokens,
  loadMlmCorpus,
  mlmBatches,
  mlmOptions,
  readText,
  trainFields,
  trainStage,
} from '../tasks/train.js';

const addLanguageSchema = z.strictObject({
  model: z.string(),
  tokenizer: z.string().optional(),
  language: z.string().regex(/^[A-Za-z0-9_]+$/, 'a module key such as sw or sw_KE'),
  initFrom: z.string().optional(),
  text: z.union([z.string(), z.array(z.string()).min(1)]),
  maxSentences: z.number().int().positive().default(100_000),
  maskProbability: z.number().positive().max(1).default(0.15),
  newEmbeddings: z.boolean().default(false),
  keepRowsOf: z.union([z.string(), z.array(z.string()).min(1)]).optional(),
  out: z.string().optional(),
  ...trainFields,
  steps: z.number().int().positive().default(500),
  lr: z.number().positive().default(1e-3),
});

export const addLanguageCommand: Command<typeof addLanguageSchema> = {
  name: 'add-language',
  summary: "Add a language module to an X-Mod model and train only it with MLM (preset 'xmod-add-language')",
  help: `Copies an existing language module (--init-from, default the model's default language) into a
new one for --language in every layer, then trains with masked LM on the new language's text while
everything else stays frozen (the trainer's 'xmod-add-language' preset; --new-embeddings also trains
the word embeddings; with --keep-rows-of, only the rows of the pieces that those texts never use,
so the languages of those texts keep every input vector). Writes the model with the new module (Hugging Face folder, tokenizer.json
included) to <run dir>/model or --out.

Options (or config keys):
  --model DIR          an X-Mod model folder (MLM head)
  --language CODE      the new module's key (e.g. sw)
  --init-from CODE     module to copy (default: the model's default_language)
  --text PATH          text of the new language (one sentence a line, or a PAN-X .tsv); a list in configs
  --tokenizer PATH     default: the model folder
  --data-root DIR      data paths are relative to it (default ../shared/data beside the repo)
  --max-sentences 100000 --mask-probability 0.15 --new-embeddings
  --keep-rows-of PATH  with --new-embeddings: text (one sentence a line, or tagged .tsv) whose pieces'
                       embedding rows stay frozen, e.g. the earlier languages' pre-training text (a
                       list in configs); special tokens always stay. The rows that train get no
                       weight decay; onnxruntime engine only. The tied MLM decoder shares the rows,
                       so the other languages' MLM logits change in the trained pieces' columns only
  --steps 500 --batch-size 16 --lr 1e-3 --warmup-ratio 0.06 --max-length 128 --seed 0 --backend auto
  --engine auto|tfjs|onnxruntime (auto: compiled onnxruntime step when possible) --threads N
  --max-memory-gib N   refuse an onnxruntime run whose estimate (printed first) is larger (default: RAM)

Example:
  xlt add-language --model runs/ner/pretrain-xmod/model --language sw --text panx/train-sw.tsv --steps 300`,
  schema: addLanguageSchema,
  async run(cfg, ctx) {
    await setupBackend(cfg.backend, ctx.log);
    const tok = await loadTokenizer(cfg.tokenizer, cfg.model);
    const model = await XmodForMaskedLM.fromPretrained(cfg.model);
    if (model.config.model_type !== 'xmod')
      throw new XltConfigError('add-language needs an X-Mod model (model_type xmod); this one is shared', {
        file: path.join(cfg.model, 'config.json'),
        field: 'model_type',
      });
    const from = cfg.initFrom ?? model.config.default_language ?? model.config.languages[0];
    if (model.config.languages.includes(cfg.language))
      ctx.log(`the model already has a module '${cfg.language}': training it further`);
    else {
      model.addLanguage(cfg.language, from !== undefined ? { initFrom: from } : { seed: cfg.seed });
      ctx.log(`added module '${cfg.language}'${from !== undefined ? ` (copy of '${from}')` : ''}`);
    }
    const maxLength = Math.min(
      cfg.maxLength,
      model.config.max_position_embeddings - model.config.pad_token_id - 1,
    );
    const corpus = await loadMlmCorpus(
      tok,
      { [cfg.language]: cfg.text },
      { dataRoot: cfg.dataRoot, maxSentences: cfg.maxSentences, maxLength, log: ctx.log },
    );
    const langId = model.config.languages.indexOf(cfg.language);
    const { data } = mlmBatches(corpus, {
      alpha: 1,
      seed: cfg.seed,
      batchSize: cfg.batchSize,
      langIndex: () => langId,
      mask: mlmOptions(tok, model.config.vocab_size, cfg.maskProbability),
    });
    const [plan] = preset('xmod-add-language', { language: cfg.language, newEmbeddings: cfg.newEmbeddings });
    if (plan === undefined) throw new XltConfigError('empty preset', { field: 'preset' });
    let trainableRows: number[] | undefined;
    let keptTokenShare: number | undefined;
    if (cfg.keepRowsOf !== undefined) {
      if (!cfg.newEmbeddings)
        throw new XltConfigError(
          '--keep-rows-of chooses which embedding rows train: it needs --new-embeddings',
          {
            field: 'keepRowsOf',
          },
        );
      const keep = Array.isArray(cfg.keepRowsOf) ? cfg.keepRowsOf : [cfg.keepRowsOf];
      const used = await rowsUsedBy(tok, keep, cfg.dataRoot, model.config.vocab_size);
      trainableRows = [];
      for (let r = 0; r < used.length; r++) if (used[r] === 0) trainableRows.push(r);
      // how much of the new language's text still reads (and predicts) frozen rows
      let pieces = 0;
      let kept = 0;
      for (const ids of corpus.get(cfg.language) ?? [])
        for (const id of ids.slice(1, -1)) {
          pieces++;
          kept += used[id] ?? 0;
        }
      keptTokenShare = pieces > 0 ? kept / pieces : 0;
      ctx.log(
        `word embeddings: ${trainableRows.length} of ${used.length} rows train (the pieces ${keep.map((f) => path.basename(f)).join(', ')} never use); the other ${used.length - trainableRows.length} stay, and ${(100 * keptTokenShare).toFixed(1)}% of the ${cfg.language} training tokens are pieces with a kept row`,
      );
    }
    const summary = await trainStage(model, modelLoss(model), data, cfg, {
      trainable: plan.trainable,
      runDir: path.join(ctx.runDir, 'train'),
      stage: plan.name,
      log: ctx.log,
      tokens: batchTokens,
      ...(trainableRows !== undefined ? { trainableRows: { [WORD_EMBEDDINGS]: trainableRows } } : {}),
    });
    const out = path.resolve(cfg.out ?? path.join(ctx.runDir, 'model'));
    model.eval();
    await model.savePretrained(out);
    await tok.save(path.join(out, 'tokenizer.json'));
    writeFileAtomic(
      path.join(ctx.runDir, 'results.json'),
      `${JSON.stringify({ model: out, language: cfg.language, initFrom: from, trainable: summary.trainableParameters, ...(trainableRows !== undefined ? { trainableEmbeddingRows: trainableRows.length, keptTokenShare } : {}), finalLoss: summary.finalLoss }, null, 2)}\n`,
    );
    ctx.log(`model with module '${cfg.language}' written to ${out}`);
    model.dispose();
  },
};

const WORD_EMBEDDINGS = 'roberta.embeddings.word_embeddings.weight';

/**
 * 1 for every row of the vocabulary that a piece of `files` (all their lines, with `<s>` and `</s>`)
 * or a special token uses, 0 for the others.
 */
async function rowsUsedBy(
  tok: XltTokenizer,
  files: readonly string[],
  dataRoot: string | undefined,
  vocabSize: number,
): Promise<Uint8Array> {
  const used = new Uint8Array(vocabSize);
  const mark = (id: number) => {
    if (id >= 0 && id < vocabSize) used[id] = 1;
  };
  for (const t of ['<s>', '</s>', '<pad>', '<unk>', '<mask>']) {
    const id = tok.tokenToId(t);
    if (id !== undefined) mark(id);
  }
  for (const f of files) {
    const full = requireFile(dataPath(dataRoot, f), 'keepRowsOf');
    const lines = await readText(full, '', Number.POSITIVE_INFINITY);
    for (let i = 0; i < lines.length; i += 512)
      for (const e of await tok.encodeBatch(lines.slice(i, i + 512))) for (const id of e.ids) mark(id);
  }
  return used;
}
