export {
  type BenchieGoldSentence,
  type BenchieGoldSlot,
  type BenchieOptions,
  type BenchiePrediction,
  type BenchieResult,
  type BenchieSentenceScore,
  benchieScore,
  benchieVariants,
} from './benchie.js';
export {
  type CarbMatch,
  type CarbOptions,
  type CarbPoint,
  type CarbResult,
  carbGold,
  carbScore,
  carbSentenceKey,
  type OieExtraction,
  type OieGoldTuple,
} from './carb.js';
export { accuracy, macroF1, tokenAccuracy } from './classification.js';
export {
  type PairedBootstrapOptions,
  type PairedDifference,
  type PairedReport,
  pairedBootstrap,
  type SeedMean,
  seedMean,
} from './paired.js';
export {
  heatmapSvg,
  type LanguageRow,
  type LineSeries,
  lineChartSvg,
  type ReportOptions,
  reportCsv,
  reportMarkdown,
  reportSvg,
  writeReport,
  type ZeroShotReport,
  zeroShotReport,
} from './report.js';
export {
  type Entity,
  type EntityReport,
  type EntityScores,
  entityF1,
  entityReport,
  lenientEntities,
  type Scheme,
  strictEntities,
} from './seqeval.js';
export { normalizeMlqa, normalizeSquad, squadCorpus, squadScores } from './squad.js';
