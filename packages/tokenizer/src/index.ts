export { type AlignedLabels, type AlignOptions, alignLabels, wordPredictions } from './align.js';
export { NO_SPACE_LANGUAGES, readTaggedSentences } from './corpus.js';
export { type ExtendVocabularyResult, extendVocabulary } from './extend.js';
export { type TokenStats, tokenStats } from './stats.js';
export {
  type TokenizerJson,
  type TruncationStrategy,
  toWellFormed,
  type XltEncodeInput,
  type XltEncodeOptions,
  type XltEncoding,
  XltTokenizer,
} from './tokenizer.js';
export {
  type TrainProgress,
  type TrainUnigramOptions,
  type TrainUnigramResult,
  trainUnigram,
} from './train.js';
export { buildTokenizerJson, normalizeText, SPACE_MARK } from './unigram-json.js';
