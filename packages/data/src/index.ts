/**
 * @xlt/data: streaming readers for multilingual benchmark formats and a language-balanced sampler.
 * @packageDocumentation
 */

export {
  type BenchieCluster,
  type BenchieSentence,
  type BenchieSlot,
  type CarbSentence,
  type CarbTuple,
  type ReOieSentence,
  type ReOieTuple,
  readBenchie,
  readCarb,
  readReOie,
} from './oie.js';
export {
  type ConlluMultiword,
  type ConlluSentence,
  type NerSentence,
  type NumberedLine,
  type PawsxRecord,
  type ReadOptions,
  readConllu,
  readLines,
  readMuseDictionary,
  readNer,
  readNumberedLines,
  readPawsx,
  readSquad,
  readXnli,
  type SquadAnswer,
  type SquadRecord,
  type XnliLabel,
  type XnliRecord,
} from './readers.js';
export {
  LanguageSampler,
  type LanguageSamplerOptions,
  type LanguageSamplerState,
  type SampledItem,
} from './sampler.js';
