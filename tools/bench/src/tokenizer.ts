import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { sharedPath } from '@xlt/core';
import { readTaggedSentences, trainUnigram, XltTokenizer } from '@xlt/tokenizer';
import { median, timeRuns } from './stats.js';

/** Batch-encoding tokens/s of the fixture tokenizer on FLORES (medians of 5); undefined without shared/. */
export async function tokenizerEncode(batchSize = 256): Promise<string | undefined> {
  const dir = sharedPath('data', 'text');
  const file = sharedPath('fixtures', 'tokenizer', 'tokenizer.json');
  if (!existsSync(dir) || !existsSync(file)) return undefined;
  const sentences = readdirSync(dir)
    .filter((f) => f.endsWith('.devtest'))
    .flatMap((f) =>
      readFileSync(path.join(dir, f), 'utf8')
        .split('\n')
        .filter((l) => l.trim() !== ''),
    );
  const tok = await XltTokenizer.fromFile(file);
  let tokens = 0;
  const times = await timeRuns(async () => {
    tokens = 0;
    for (let i = 0; i < sentences.length; i += batchSize) {
      for (const e of await tok.encodeBatch(sentences.slice(i, i + batchSize))) tokens += e.ids.length;
    }
  }, 5);
  return `tokenizer encodeBatch (fixture vocab, ${sentences.length} FLORES sentences, batch ${batchSize}): ${(tokens / median(times)).toFixed(0)} tokens/s (median of 5)`;
}

/** Unigram training time on PAN-X text of 4 languages (8k vocabulary); undefined without shared/. */
export async function tokenizerTrain(): Promise<string | undefined> {
  const dir = sharedPath('data', 'panx');
  if (!existsSync(dir)) return undefined;
  const langs = ['en', 'de', 'ru', 'zh'];
  const texts: Record<string, string[]> = {};
  for (const l of langs) texts[l] = await readTaggedSentences(path.join(dir, `train-${l}.tsv`), l);
  const t0 = performance.now();
  const r = await trainUnigram({ texts, vocabSize: 8000 });
  return `tokenizer trainUnigram (8k vocab, PAN-X train ${langs.join('/')}, ${r.distinctWords} distinct words): ${((performance.now() - t0) / 1000).toFixed(1)} s`;
}
