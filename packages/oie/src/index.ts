export { type BaselineKind, baselineExtract } from './baseline.js';
export {
  benchmarkMarkdown,
  CARB_SCORED_SETS,
  type CarbScoredGold,
  carbScoredGold,
  type OieBenchmarkOptions,
  type OieBenchmarkResult,
  type OieBenchmarkRow,
  type OieSetExtractions,
  runOieBenchmark,
} from './benchmark.js';
export { type OieModelSize, oieConfig } from './config.js';
export {
  type AnnotatedRecord,
  annotationSources,
  type CarbLikeSentence,
  type Conversion,
  type ConversionReport,
  fromAnnotations,
  fromCarb,
  fromReOie,
  mergeConversions,
  type OieExample,
  parseAnnotationJsonl,
  type ReOieLikeSentence,
  type SkippedTuple,
  type SkipReason,
} from './convert.js';
export {
  argumentSpans,
  type DecodeInput,
  type DecodeOptions,
  decodeTuples,
  predicateSpans,
} from './decode.js';
export { type ExtractOptions, extract, type OieExtraction } from './extract.js';
export {
  type CollateLanguages,
  collateRows,
  type EncodedWords,
  encodeWords,
  examplesToRows,
  type OieBatch,
  type OieRow,
} from './features.js';
export { type OieHeadSizes, type OpenIEInputs, type OpenIEOutput, XmodForOpenIE } from './head.js';
export { OieModel } from './model.js';
export type { OiePretraining } from './pretrain.js';
export {
  ARGUMENT_TAGS,
  type ArgumentTag,
  assertTags,
  locate,
  MAX_ARGS,
  type OieTags,
  type OieTuple,
  PREDICATE_TAGS,
  type PredicateTag,
  tuplesToTags,
} from './tags.js';
export {
  MT4CROSSIE_STAGES,
  type OieStage,
  type TrainOieOptions,
  type TrainOieResult,
  type TrainProgress,
  trainOie,
} from './train.js';
export { overlayWeights } from './weights.js';
export { hasCjk, splitWords, type WordSpan } from './words.js';
