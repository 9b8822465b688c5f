// The tokenizer.json that trainUnigram writes: XLM-R layout (special tokens, Metaspace
// pre-tokenizer, post-processor) around the trained pieces, and the text normalisation it applies.
import type { TokenizerJson } from './tokenizer.js';

/** The word-boundary marker of SentencePiece / Metaspace. */
export const SPACE_MARK = '\u2581';
/** Special tokens at ids 0 to 3 (`<mask>` comes last, after the pieces). */
export const SPECIALS = ['<s>', '<pad>', '</s>', '<unk>'] as const;

/** NFKC + whitespace collapsing + trim: the normalisation trained tokenizers apply (`decode(encode(x))` gives this). */
export function normalizeText(text: string): string {
  return text
    .normalize('NFKC')
    .trim()
    .split(/\s+/u)
    .filter((w) => w.length > 0)
    .join(' ');
}

/** tokenizer.json skeleton in the XLM-R layout around the given pieces. */
export function buildTokenizerJson(
  pieces: readonly [string, number][],
  normalizer: unknown = { type: 'NFKC' },
): TokenizerJson {
  const vocab: [string, number][] = [
    ...SPECIALS.map((s): [string, number] => [s, 0]),
    ...pieces,
    ['<mask>', 0],
  ];
  const added = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: content === '<mask>',
    rstrip: false,
    normalized: false,
    special: true,
  });
  const meta = { type: 'Metaspace', replacement: SPACE_MARK, prepend_scheme: 'always', split: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [...SPECIALS.map((s, i) => added(i, s)), added(vocab.length - 1, '<mask>')],
    normalizer,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, meta] },
    post_processor: {
      type: 'TemplateProcessing',
      single: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: '</s>', type_id: 0 } },
      ],
      special_tokens: {
        '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] },
        '<s>': { id: '<s>', ids: [0], tokens: ['<s>'] },
      },
    },
    decoder: meta,
    model: { type: 'Unigram', unk_id: 3, vocab, byte_fallback: false },
  };
}
