export {
  type BilingualDictionary,
  type DictionarySwitchOptions,
  dictionaryCodeSwitch,
  type SwitchedExample,
  type WordExample,
} from './codeswitch/dictionary.js';
export {
  type AnnotatedExample,
  type AnnotateOptions,
  type AnnotateReport,
  annotate,
  DEFAULT_TEMPLATES,
  fillTemplate,
  type PromptTemplates,
  parseJsonObject,
  type RejectReason,
  type SourceExample,
  type SpanAnnotation,
  type TargetLanguage,
} from './llm/annotate.js';
export {
  ChatClient,
  type ChatCounters,
  type ChatEndpoint,
  ChatError,
  type ChatMessage,
  mapLimit,
} from './llm/client.js';
export {
  type AugmentedExample,
  type MaskedLmPredictor,
  onnxMaskedLm,
  type SelfAugmentOptions,
  selfAugment,
  type TokenExample,
} from './self/augment.js';
export { TokenLanguageProfile } from './self/profile.js';
