export {
  argumentSpans,
  type DecodeInput,
  type DecodeOptions,
  decodeTuples,
  predicateSpans,
} from './decode.js';
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
