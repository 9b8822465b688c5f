import path from 'node:path';
import { z } from 'zod';
import type { Command } from '../cli/main.js';
import { defaultDataRoot } from '../tasks/common.js';
import { buildCorpus, EVALUATED_FILES } from '../tasks/corpus.js';
import { museDictionaries } from '../tasks/corpus-switch.js';

const corpusSchema = z.strictObject({
  languages: z.array(z.string().regex(/^[a-z]{2,3}$/, 'a language code such as en')).min(1),
  dataRoot: z.string().optional(),
  heldOutFraction: z.number().positive().max(0.5).default(0.02),
  maxHeldOut: z.number().int().positive().default(1000),
  seed: z.number().int().nonnegative().default(0),
  /** Extra files to leave out (regular expressions on paths relative to the data root). */
  exclude: z.array(z.string()).default([]),
  /** Mix dictionary code-switched copies into the training text at this ratio (MUSE dictionaries of the data root). */
  codeSwitchRatio: z.number().gt(0).max(1).optional(),
  codeSwitchSource: z.string().default('en'),
  out: z.string().optional(),
});

export const corpusBuildCommand: Command<typeof corpusSchema> = {
  name: 'corpus build',
  summary: 'Build a de-duplicated pre-training corpus per language from every raw text in the data root',
  help: `Collects all raw text of each language under the data root (laid out as ../shared/data):
PAN-X training sentences (tags dropped), FLORES-200, UD sentences, QA contexts (XQuAD, MLQA, TyDi QA);
whitespace-normalised, de-duplicated, shuffled, with a held-out slice per language for masked-LM loss.
Files that xlt's reports evaluate on are never included: ${EVALUATED_FILES.map((r) => r.source).join(' ')}
(plus --exclude patterns). Writes <out>/<lang>.txt, <out>/<lang>.heldout.txt (one unit a line) and
<out>/manifest.json (every source file and its count, every excluded file).

With --code-switch-ratio R, every training unit also gets a dictionary code-switched copy (CoSDA-ML
style, MUSE dictionaries dict/muse-<source>-<l>.tsv): the source language's units with a share R of
their translatable words switched into the other languages, the other languages' units switched into
the source language by the reversed dictionary; the copies are mixed into the training text (never
into the held-out text) and counted in the manifest. Cross-lingual anchors for pre-training.

Options (or config keys):
  --languages '["en","de"]'  --data-root DIR  --held-out-fraction 0.02 --max-held-out 1000
  --seed 0  --exclude '["^qa/"]'  --out DIR (default <run dir>)
  --code-switch-ratio 0.3  --code-switch-source en

Example:
  xlt corpus build --languages '["en","de","fr"]' --run-dir runs/corpus`,
  schema: corpusSchema,
  async run(cfg, ctx) {
    const out = path.resolve(cfg.out ?? ctx.runDir);
    const dataRoot = cfg.dataRoot ?? defaultDataRoot();
    const m = await buildCorpus({
      dataRoot,
      languages: cfg.languages,
      out,
      heldOutFraction: cfg.heldOutFraction,
      maxHeldOut: cfg.maxHeldOut,
      seed: cfg.seed,
      exclude: [...EVALUATED_FILES, ...cfg.exclude.map((p) => new RegExp(p))],
      ...(cfg.codeSwitchRatio !== undefined
        ? {
            codeSwitch: {
              source: cfg.codeSwitchSource,
              ratio: cfg.codeSwitchRatio,
              dictionaries: museDictionaries(dataRoot, cfg.codeSwitchSource, cfg.languages),
            },
          }
        : {}),
      log: ctx.log,
    });
    const units = Object.values(m.languages).reduce((a, l) => a + l.trainUnits, 0);
    ctx.log(`corpus of ${units} units in ${cfg.languages.length} languages written to ${out}`);
  },
};
