#!/usr/bin/env node
// Trains an 8k Unigram vocabulary on PAN-X training text of 10 languages and compares it with the
// fixture sentencepiece tokenizer on held-out FLORES sentences (lines 900..1011 of each devtest file,
// which the fixture did not train on). Usage (after `pnpm build`):
//   node scripts/train-panx.mjs [outDir] [vocabSize]
// Env: XLT_SHARED_DIR (default ../shared of the repo), LANGS (comma list), INCLUDE_DEV=1 (also train on
// the dev-xx.tsv files, for a larger corpus).
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { sharedPath } from '@xlt/core';
import { normalizeText, readTaggedSentences, tokenStats, trainUnigram, XltTokenizer } from '@xlt/tokenizer';

const FLORES = {
  en: 'eng_Latn',
  de: 'deu_Latn',
  fr: 'fra_Latn',
  es: 'spa_Latn',
  zh: 'zho_Hans',
  ar: 'arb_Arab',
  hi: 'hin_Deva',
  ru: 'rus_Cyrl',
  sw: 'swh_Latn',
  tr: 'tur_Latn',
  ja: 'jpn_Jpan',
  ko: 'kor_Hang',
};
const langs = (process.env.LANGS ?? 'en,de,fr,es,zh,ar,hi,ru,sw,tr').split(',');
const outDir = process.argv[2] ?? '/tmp/xlt-panx-unigram';
const vocabSize = Number(process.argv[3] ?? 8000);
mkdirSync(outDir, { recursive: true });

const texts = {};
let bytes = 0;
for (const l of langs) {
  texts[l] = await readTaggedSentences(sharedPath('data', 'panx', `train-${l}.tsv`), l);
  if (process.env.INCLUDE_DEV === '1')
    texts[l].push(...(await readTaggedSentences(sharedPath('data', 'panx', `dev-${l}.tsv`), l)));
  bytes += texts[l].reduce((s, x) => s + Buffer.byteLength(x) + 1, 0);
}
console.log(`corpus: ${langs.length} languages, ${(bytes / 1e6).toFixed(1)} MB of text`);
const t0 = Date.now();
const res = await trainUnigram({
  texts,
  vocabSize,
  verbose: true,
  output: path.join(outDir, 'tokenizer.json'),
});
const trainS = (Date.now() - t0) / 1000;
console.log(
  `trained ${res.json.model.vocab.length} ids in ${trainS.toFixed(1)} s; alphabet ${res.alphabetSize}; ${res.distinctWords} distinct words`,
);
for (const l of res.languages)
  console.log(`  ${l.lang}: ${l.sentences} sentences, sampling share ${(l.share * 100).toFixed(1)}%`);

const ours = await XltTokenizer.fromFile(outDir);
const fixture = await XltTokenizer.fromFile(sharedPath('fixtures', 'tokenizer', 'tokenizer.json'));
console.log('lang  ours_tpw  fixture_tpw  ratio  ours_unk  roundtrip');
const rows = [];
for (const l of langs) {
  const lines = readFileSync(sharedPath('data', 'text', `flores200-${FLORES[l]}.devtest`), 'utf8')
    .split('\n')
    .filter((x) => x.trim() !== '')
    .slice(900);
  const a = await tokenStats(ours, lines);
  const b = await tokenStats(fixture, lines);
  let ok = 0;
  for (const s of lines) if ((await ours.decode((await ours.encode(s)).ids)) === normalizeText(s)) ok++;
  const ratio = a.tokensPerWord / b.tokensPerWord;
  rows.push({
    lang: l,
    ours: a.tokensPerWord,
    fixture: b.tokensPerWord,
    ratio,
    unk: a.unkRate,
    roundTrip: ok / lines.length,
  });
  console.log(
    `${l.padEnd(4)}  ${a.tokensPerWord.toFixed(3).padStart(8)}  ${b.tokensPerWord.toFixed(3).padStart(11)}  ${ratio.toFixed(2).padStart(5)}  ${(a.unkRate * 100).toFixed(2).padStart(7)}%  ${ok}/${lines.length}`,
  );
}
console.log(JSON.stringify({ trainSeconds: trainS, vocabSize, rows }));
