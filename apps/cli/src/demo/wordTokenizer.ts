/**
 * A word-level tokenizer with the XLM-R special-token layout (`<s>`=0, `<pad>`=1, `</s>`=2,
 * `<unk>`=3, words..., `<mask>` last), for the demo's artificial languages, whose words are
 * whitespace-separated and few.
 */
export class WordTokenizer {
  readonly vocab: string[];
  private readonly index: Map<string, number>;
  static readonly BOS = 0;
  static readonly PAD = 1;
  static readonly EOS = 2;
  static readonly UNK = 3;

  constructor(texts: Iterable<string>) {
    const words = new Set<string>();
    for (const t of texts) for (const w of t.split(/\s+/)) if (w !== '') words.add(w);
    this.vocab = ['<s>', '<pad>', '</s>', '<unk>', ...[...words].sort(), '<mask>'];
    this.index = new Map(this.vocab.map((w, i) => [w, i]));
  }

  get size(): number {
    return this.vocab.length;
  }

  get maskId(): number {
    return this.vocab.length - 1;
  }

  encode(text: string): number[] {
    return [
      0,
      ...text
        .split(/\s+/)
        .filter((w) => w !== '')
        .map((w) => this.index.get(w) ?? WordTokenizer.UNK),
      2,
    ];
  }
}
