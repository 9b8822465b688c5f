import { existsSync } from 'node:fs';
import path from 'node:path';
import { XltNotFoundError } from '@xlt/core';
import {
  type BenchieSentence,
  type CarbSentence,
  type ReOieSentence,
  readBenchie,
  readCarb,
  readReOie,
} from '@xlt/data';
import { benchieScore, carbGold, carbScore } from '@xlt/evaluator';
import { XltTokenizer } from '@xlt/tokenizer';
import { baselineExtract } from './baseline.js';
import { type Conversion, type ConversionReport, fromCarb, fromReOie } from './convert.js';
import { type ExtractOptions, extract, type OieExtraction } from './extract.js';
import { type TrainOieOptions, trainOie } from './train.js';

/** One scored system on one test set. */
export interface OieBenchmarkRow {
  /** `CaRB`, `Re-OIE2016`, `BenchIE`. */
  benchmark: string;
  lang: string;
  /** `model`, `baseline:verb-like`, `baseline:second-word`. */
  system: string;
  sentences: number;
  predictions: number;
  precision: number;
  recall: number;
  f1: number;
  /** CaRB's area under the P/R curve (CaRB-scored sets only). */
  auc?: number;
}

/** Options of {@link runOieBenchmark}. */
export interface OieBenchmarkOptions {
  /** Folder with the CaRB / Re-OIE2016 / BenchIE files (shared/data/oie). */
  dataDir: string;
  /** An XLM-R-style tokenizer.json. */
  tokenizerFile: string;
  /** Training data: CaRB dev gold (default) or the English Re-OIE2016 n-ary file. */
  train?: 'carb-dev' | 'reoie-en';
  /** Use only the first N training sentences. */
  trainLimit?: number;
  /** Score only the first N sentences of each test set. */
  evalLimit?: number;
  /** Training settings (tokenizer and examples are filled in). */
  training?: Omit<TrainOieOptions, 'tokenizer' | 'examples'>;
  extract?: ExtractOptions;
  /** Test sets to run (default all): `carb`, `reoie-en`, `reoie-es`, `reoie-pt`, `benchie-en`, `benchie-de`, `benchie-zh`. */
  sets?: string[];
  log?: (message: string) => void;
}

/** What {@link runOieBenchmark} measured. */
export interface OieBenchmarkResult {
  rows: OieBenchmarkRow[];
  conversion: ConversionReport;
  trainRows: number;
  trainSeconds: number;
  losses: number[];
  /** Every system's extractions on every scored set (CaRB-scored sets: for paired comparisons). */
  extractions: OieSetExtractions[];
}

/** The extractions of one system on one test set, in the order of the set's sentences. */
export interface OieSetExtractions {
  benchmark: string;
  lang: string;
  system: string;
  /** The set's sentences (gold order). */
  sentences: number;
  extractions: OieExtraction[];
}

async function all<T>(it: AsyncIterable<T>, limit = Number.POSITIVE_INFINITY): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) {
    if (out.length >= limit) break;
    out.push(x);
  }
  return out;
}

const REOIE: Record<string, string> = {
  en: 'm2oie-Re-OIE2016-Binary.json',
  es: 'm2oie-Re-OIE2016-Spanish-Binary.json',
  pt: 'm2oie-Re-OIE2016-Portuguese-Binary.json',
};

/** The test sets scored with the CaRB scorer: CaRB test (en) and Re-OIE2016 binary (en, es, pt). */
export const CARB_SCORED_SETS = ['carb', 'reoie-en', 'reoie-es', 'reoie-pt'] as const;

/** One CaRB-scored test set's gold, as {@link carbScore} takes it. */
export interface CarbScoredGold {
  /** `CaRB` or `Re-OIE2016`. */
  benchmark: string;
  lang: string;
  gold: Map<string, Array<{ relation: string; args: string[] }>>;
}

/**
 * Reads the gold of one of {@link CARB_SCORED_SETS} from `dataDir` (shared/data/oie), the first
 * `evalLimit` sentences when given: what {@link runOieBenchmark} scores the systems against.
 */
export async function carbScoredGold(
  dataDir: string,
  set: (typeof CARB_SCORED_SETS)[number],
  evalLimit?: number,
): Promise<CarbScoredGold> {
  const file = (name: string) => {
    const f = path.join(dataDir, name);
    if (!existsSync(f)) throw new XltNotFoundError('OIE data file not found', { file: f });
    return f;
  };
  if (set === 'carb') {
    const s: CarbSentence[] = await all(readCarb(file('carb-data_gold_test.tsv')), evalLimit);
    return { benchmark: 'CaRB', lang: 'en', gold: carbGold(s) };
  }
  const lang = set.slice('reoie-'.length);
  const s: ReOieSentence[] = await all(readReOie(file(REOIE[lang] as string)), evalLimit);
  const gold = carbGold(
    s.map((x) => ({
      sentence: x.sentence,
      tuples: x.tuples.map((t) => ({ relation: t.pred, args: [...t.args] })),
    })),
  );
  return { benchmark: 'Re-OIE2016', lang, gold };
}

/**
 * The end-to-end recipe: converts the training gold, trains a model with {@link trainOie}, and
 * scores it with the CaRB scorer on CaRB test (en) and Re-OIE2016 binary (en, es, pt: CaRB matching
 * against the binary gold) and with the BenchIE scorer on BenchIE (en, de, zh; subject = arg0,
 * object = the other arguments joined), next to the two baselines of {@link baselineExtract}.
 */
export async function runOieBenchmark(options: OieBenchmarkOptions): Promise<OieBenchmarkResult> {
  const log = options.log ?? (() => {});
  const file = (name: string) => {
    const f = path.join(options.dataDir, name);
    if (!existsSync(f)) throw new XltNotFoundError('OIE data file not found', { file: f });
    return f;
  };
  const tokenizer = await XltTokenizer.fromFile(options.tokenizerFile);
  let conv: Conversion;
  let pretrainText: string[];
  if ((options.train ?? 'carb-dev') === 'carb-dev') {
    const s: CarbSentence[] = await all(readCarb(file('carb-data_gold_dev.tsv')), options.trainLimit);
    conv = fromCarb(s);
    pretrainText = s.map((x) => x.sentence);
  } else {
    const s: ReOieSentence[] = await all(readReOie(file('m2oie-Re-OIE2016.json')), options.trainLimit);
    conv = fromReOie(s, { lang: 'en' });
    pretrainText = s.map((x) => x.sentence);
  }
  const r = conv.report;
  log(
    `training data: ${r.sentences} sentences, ${r.tuples} tuples, ${r.kept} tagged, ${r.skipped.length} skipped ${JSON.stringify(r.byReason)}`,
  );
  const training = { ...options.training };
  // masked-LM pre-training text: what was given (e.g. multilingual raw text) plus the training sentences
  if (training.pretrain !== undefined)
    training.pretrain = {
      ...training.pretrain,
      sentences: [...training.pretrain.sentences, ...pretrainText],
    };
  const t0 = Date.now();
  // the trainer's lines: the engine of each run, progress every 10 steps, a summary per stage
  const trained = await trainOie({ log, ...training, tokenizer, examples: conv.examples });
  const trainSeconds = (Date.now() - t0) / 1000;
  log(`trained in ${trainSeconds.toFixed(0)} s on ${trained.rows} rows`);
  const rows: OieBenchmarkRow[] = [];
  const extractions: OieSetExtractions[] = [];
  const want = (k: string) => options.sets === undefined || options.sets.includes(k);
  // X-Mod models: each test language through its own modules where it has them, else the default
  const modelLangs = trained.config.languages ?? [];
  const systems = async (sentences: string[], lang: string): Promise<Array<[string, OieExtraction[]]>> => [
    [
      'model',
      await extract(trained.model, sentences, {
        ...options.extract,
        ...(modelLangs.includes(lang) ? { language: lang } : {}),
      }),
    ],
    ['baseline:verb-like', baselineExtract(sentences, 'verb-like')],
    ['baseline:second-word', baselineExtract(sentences, 'second-word')],
  ];
  const carbRows = async (
    benchmark: string,
    lang: string,
    gold: Map<string, Array<{ relation: string; args: string[] }>>,
  ) => {
    const sentences = [...gold.keys()];
    for (const [system, preds] of await systems(sentences, lang)) {
      extractions.push({ benchmark, lang, system, sentences: sentences.length, extractions: preds });
      const s = carbScore(gold, preds);
      rows.push({
        benchmark,
        lang,
        system,
        sentences: sentences.length,
        predictions: preds.length,
        precision: s.precision,
        recall: s.recall,
        f1: s.f1,
        auc: s.auc,
      });
    }
    log(`${benchmark} ${lang}: model F1 ${(rows.at(-3)?.f1 ?? 0).toFixed(3)}`);
  };
  for (const set of CARB_SCORED_SETS) {
    if (!want(set)) continue;
    const g = await carbScoredGold(options.dataDir, set, options.evalLimit);
    await carbRows(g.benchmark, g.lang, g.gold);
  }
  for (const lang of ['en', 'de', 'zh']) {
    if (!want(`benchie-${lang}`)) continue;
    const gold: BenchieSentence[] = await all(
      readBenchie(file(`benchie-benchie_gold_annotations_${lang}.txt`)),
      options.evalLimit,
    );
    const sentences = gold.map((g) => g.sentence);
    const idOf = new Map(gold.map((g) => [g.sentence, g.sentId]));
    for (const [system, preds] of await systems(sentences, lang)) {
      const triples = preds.map((p) => ({
        sentenceId: idOf.get(p.sentence) as number,
        subject: p.args[0] ?? '',
        relation: p.relation,
        object: p.args
          .slice(1)
          .filter((a) => a !== '')
          .join(' '),
      }));
      const s = benchieScore(gold, triples);
      rows.push({
        benchmark: 'BenchIE',
        lang,
        system,
        sentences: sentences.length,
        predictions: preds.length,
        precision: s.precision,
        recall: s.recall,
        f1: s.f1,
      });
    }
    log(`BenchIE ${lang}: model F1 ${(rows.at(-3)?.f1 ?? 0).toFixed(3)}`);
  }
  await trained.model.release();
  return {
    rows,
    conversion: r,
    trainRows: trained.rows,
    trainSeconds,
    losses: trained.losses,
    extractions,
  };
}

/** The rows as a Markdown table (P / R / F1 / AUC in percent). */
export function benchmarkMarkdown(rows: readonly OieBenchmarkRow[]): string {
  const pct = (x: number | undefined) => (x === undefined ? '–' : (100 * x).toFixed(1));
  const lines = [
    '| benchmark | lang | system | sentences | extractions | P | R | F1 | AUC |',
    '|---|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows)
    lines.push(
      `| ${r.benchmark} | ${r.lang} | ${r.system} | ${r.sentences} | ${r.predictions} | ${pct(r.precision)} | ${pct(r.recall)} | ${pct(r.f1)} | ${pct(r.auc)} |`,
    );
  return `${lines.join('\n')}\n`;
}
