import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic, XltConfigError, XltError, XltFormatError, XltNotFoundError } from '@xlt/core';
import { Tokenizer } from 'tokenizers';

/** One encoded input (a sentence or a sentence pair). All arrays have the same length. */
export interface XltEncoding {
  /** Token ids, with special tokens and padding when asked for. */
  ids: number[];
  /** Token strings (`<unk>` for unknown pieces, as `convert_ids_to_tokens` gives). */
  tokens: string[];
  /**
   * `[start, end)` of each token in the input string, in **UTF-16 code units** of the JS string
   * (so `text.slice(start, end)` is the token's source text). Special and padding tokens get `[0, 0]`.
   * For a pair, offsets of second-sequence tokens index into the second string.
   */
  offsets: [number, number][];
  /** Index of the word (whitespace-separated unit of the pre-tokenizer) per token, per sequence; null for specials and padding. */
  wordIds: (number | null)[];
  /** 1 for real tokens (including specials), 0 for padding. */
  attentionMask: number[];
  /** 0 for tokens of the first sequence, 1 for the second, null for specials and padding. */
  sequenceIds: (number | null)[];
  /** 1 for special and padding tokens, 0 otherwise. */
  specialTokensMask: number[];
}

/** How to truncate when the encoding is longer than `maxLength`. */
export type TruncationStrategy = 'longest_first' | 'only_first' | 'only_second';

/** Options of {@link XltTokenizer.encode} and {@link XltTokenizer.encodeBatch}. */
export interface XltEncodeOptions {
  /** Add `<s>`, `</s>` (per the post-processor template). Default true. */
  addSpecialTokens?: boolean;
  /**
   * Maximum total length, special tokens included. With `truncation` not false (the default when
   * `maxLength` is set), longer inputs are truncated on the right.
   */
  maxLength?: number;
  /** `true` = `'longest_first'` (default when maxLength is set), or false to never truncate. */
  truncation?: boolean | TruncationStrategy;
  /** `'longest'`: pad a batch to its longest member; `'max_length'`: pad to `maxLength`. Default: no padding. */
  padding?: false | 'longest' | 'max_length';
  /** Round padded lengths up to a multiple of this. */
  padToMultipleOf?: number;
}

/** An input of {@link XltTokenizer.encodeBatch}: a text or a `[first, second]` pair. */
export type XltEncodeInput = string | readonly [string, string];

type TemplateItem = { kind: 'special'; id: number; token: string } | { kind: 'seq'; seq: 0 | 1 };

interface RawEncoding {
  ids: number[];
  offsets: [number, number][];
  wordIds: (number | null)[];
}

const SURROGATE = /[\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Replaces lone UTF-16 surrogates by U+FFFD (the same length in code units, so offsets still index
 * the original string). The tokenizer does this to every input.
 */
export function toWellFormed(text: string): string {
  return SURROGATE.test(text) ? text.replace(LONE_SURROGATE, '\uFFFD') : text;
}

/** Maps code-point offsets (what the native tokenizer returns) to UTF-16 offsets of `text`. */
function codePointToUtf16(text: string): Int32Array | undefined {
  if (!SURROGATE.test(text)) return undefined;
  const map = new Int32Array(text.length + 1);
  let cp = 0;
  let i = 0;
  while (i < text.length) {
    map[cp] = i;
    const c = text.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < text.length ? 2 : 1;
    cp++;
  }
  map[cp] = i;
  return map.subarray(0, cp + 1);
}

function jsonErrorLine(text: string, err: unknown): number | undefined {
  const m = /position (\d+)/.exec(String((err as Error)?.message ?? ''));
  if (m === null) return undefined;
  const pos = Number(m[1]);
  let line = 1;
  for (let i = 0; i < pos && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** The subset of a Hugging Face `tokenizer.json` this package reads or writes. */
export interface TokenizerJson {
  version?: string;
  truncation?: unknown;
  padding?: unknown;
  added_tokens: Array<{
    id: number;
    content: string;
    single_word: boolean;
    lstrip: boolean;
    rstrip: boolean;
    normalized: boolean;
    special: boolean;
  }>;
  normalizer: unknown;
  pre_tokenizer: unknown;
  post_processor: unknown;
  decoder: unknown;
  model: { type: 'Unigram'; unk_id: number | null; vocab: [string, number][]; byte_fallback?: boolean };
}

function validateJson(obj: unknown, file: string): TokenizerJson {
  if (!isRecord(obj)) throw new XltFormatError('tokenizer.json must hold a JSON object', { file });
  const model = obj.model;
  if (!isRecord(model)) throw new XltFormatError('missing "model" object', { file, field: 'model' });
  if (model.type !== 'Unigram')
    throw new XltFormatError(`expected a Unigram model, got type ${JSON.stringify(model.type)}`, {
      file,
      field: 'model.type',
    });
  const vocab = model.vocab;
  if (!Array.isArray(vocab) || vocab.length === 0)
    throw new XltFormatError('expected a non-empty array of [piece, score]', { file, field: 'model.vocab' });
  for (let i = 0; i < vocab.length; i++) {
    const e = vocab[i];
    if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isFinite(e[1]))
      throw new XltFormatError(`entry ${i} is not a [string, finite number] pair`, {
        file,
        field: `model.vocab[${i}]`,
      });
  }
  const unk = model.unk_id;
  if (typeof unk !== 'number' || !Number.isInteger(unk) || unk < 0 || unk >= vocab.length)
    throw new XltFormatError(`unk_id must be an index into the vocabulary (0..${vocab.length - 1})`, {
      file,
      field: 'model.unk_id',
    });
  if (obj.added_tokens !== undefined && !Array.isArray(obj.added_tokens))
    throw new XltFormatError('added_tokens must be an array', { file, field: 'added_tokens' });
  return obj as unknown as TokenizerJson;
}

/**
 * An XLM-R-style (SentencePiece Unigram) tokenizer backed by the Hugging Face `tokenizers` native
 * library. Encodings match the `transformers` fast tokenizer (ids, tokens, word ids, offsets), with
 * offsets in UTF-16 code units.
 */
export class XltTokenizer {
  /** The parsed `tokenizer.json`. */
  readonly json: TokenizerJson;
  /** Where it was loaded from, if from a file. */
  readonly file: string | undefined;
  private readonly native: Tokenizer;
  private readonly idToPiece: string[];
  private readonly pieceToIdMap: Map<string, number>;
  private readonly single: TemplateItem[];
  private readonly pair: TemplateItem[];
  /** Id of the padding token (`<pad>`). */
  readonly padId: number;
  /** Id of the unknown token. */
  readonly unkId: number;

  private constructor(json: TokenizerJson, native: Tokenizer, file: string | undefined) {
    this.json = json;
    this.file = file;
    this.native = native;
    const size = native.getVocabSize(true);
    this.idToPiece = new Array<string>(size);
    this.pieceToIdMap = new Map();
    const vocab = native.getVocab(true);
    for (const [piece, id] of Object.entries(vocab)) {
      this.idToPiece[id] = piece;
      this.pieceToIdMap.set(piece, id);
    }
    this.unkId = json.model.unk_id ?? 0;
    const pad = this.pieceToIdMap.get('<pad>');
    this.padId = pad ?? 0;
    const tpl = this.parseTemplates(file);
    this.single = tpl.single;
    this.pair = tpl.pair;
  }

  /**
   * Loads a `tokenizer.json`, or a folder holding one (a Hugging Face model folder).
   * @throws XltNotFoundError when the file is missing, XltFormatError when it is not a valid Unigram tokenizer.json.
   */
  static async fromFile(file: string): Promise<XltTokenizer> {
    let p = path.resolve(file);
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(p);
    } catch (cause) {
      throw new XltNotFoundError('tokenizer file not found', { file: p, cause });
    }
    if (st.isDirectory()) {
      p = path.join(p, 'tokenizer.json');
      try {
        await stat(p);
      } catch (cause) {
        throw new XltNotFoundError('folder has no tokenizer.json', { file: p, cause });
      }
    }
    const text = await readFile(p, 'utf8');
    return XltTokenizer.fromString(text, p);
  }

  /** Builds a tokenizer from the text of a `tokenizer.json` (`file` is only used in error messages). */
  static fromString(text: string, file = '<string>'): XltTokenizer {
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (cause) {
      const line = jsonErrorLine(text, cause);
      throw new XltFormatError(`malformed JSON: ${(cause as Error).message}`, {
        file,
        ...(line !== undefined ? { line } : {}),
        cause,
      });
    }
    return XltTokenizer.fromJSON(validateJson(obj, file), file, text);
  }

  /** Builds a tokenizer from a parsed `tokenizer.json` object. */
  static fromJSON(json: TokenizerJson, file = '<object>', text?: string): XltTokenizer {
    const valid = validateJson(json, file);
    let native: Tokenizer;
    try {
      native = Tokenizer.fromString(text ?? JSON.stringify(valid));
    } catch (cause) {
      throw new XltFormatError(`the tokenizers library rejected it: ${(cause as Error).message}`, {
        file,
        cause,
      });
    }
    return new XltTokenizer(valid, native, file === '<object>' ? undefined : file);
  }

  private parseTemplates(file: string | undefined): { single: TemplateItem[]; pair: TemplateItem[] } {
    const pp = this.json.post_processor;
    const f = file ?? '<object>';
    const special = (tok: string, field: string): TemplateItem => {
      const id = this.pieceToIdMap.get(tok);
      if (id === undefined)
        throw new XltFormatError(`special token ${JSON.stringify(tok)} is not in the vocabulary`, {
          file: f,
          field,
        });
      return { kind: 'special', id, token: tok };
    };
    if (pp === null || pp === undefined)
      return {
        single: [{ kind: 'seq', seq: 0 }],
        pair: [
          { kind: 'seq', seq: 0 },
          { kind: 'seq', seq: 1 },
        ],
      };
    if (!isRecord(pp)) throw new XltFormatError('post_processor must be an object', { file: f });
    if (pp.type === 'RobertaProcessing' || pp.type === 'BertProcessing') {
      const cls = (pp.cls as [string, number])[0];
      const sep = (pp.sep as [string, number])[0];
      const c = special(cls, 'post_processor.cls');
      const s = special(sep, 'post_processor.sep');
      const a: TemplateItem = { kind: 'seq', seq: 0 };
      const b: TemplateItem = { kind: 'seq', seq: 1 };
      return {
        single: [c, a, s],
        pair: pp.type === 'RobertaProcessing' ? [c, a, s, s, b, s] : [c, a, s, b, s],
      };
    }
    if (pp.type === 'TemplateProcessing') {
      const conv = (items: unknown, name: string): TemplateItem[] => {
        if (!Array.isArray(items))
          throw new XltFormatError('template must be an array', { file: f, field: `post_processor.${name}` });
        return items.map((it, i): TemplateItem => {
          const field = `post_processor.${name}[${i}]`;
          if (isRecord(it) && isRecord(it.SpecialToken)) return special(String(it.SpecialToken.id), field);
          if (isRecord(it) && isRecord(it.Sequence))
            return { kind: 'seq', seq: it.Sequence.id === 'B' ? 1 : 0 };
          throw new XltFormatError('unknown template item', { file: f, field });
        });
      };
      return { single: conv(pp.single, 'single'), pair: conv(pp.pair, 'pair') };
    }
    throw new XltFormatError(`unsupported post_processor type ${JSON.stringify(pp.type)}`, {
      file: f,
      field: 'post_processor.type',
    });
  }

  /** Number of ids (pieces plus added tokens such as `<mask>`). */
  get vocabSize(): number {
    return this.idToPiece.length;
  }

  /** The token string of an id, or undefined when out of range. */
  idToToken(id: number): string | undefined {
    return this.idToPiece[id];
  }

  /** The id of a token string, or undefined when not in the vocabulary. */
  tokenToId(token: string): number | undefined {
    return this.pieceToIdMap.get(token);
  }

  /** Number of special tokens added to a single sequence (2 for XLM-R) or a pair (4). */
  numSpecialTokens(pair = false): number {
    return (pair ? this.pair : this.single).filter((t) => t.kind === 'special').length;
  }

  private async rawEncode(texts: string[]): Promise<RawEncoding[]> {
    let encs: Awaited<ReturnType<Tokenizer['encodeBatch']>>;
    try {
      encs = await this.native.encodeBatch(texts, { addSpecialTokens: false });
    } catch (cause) {
      throw new XltError('STATE', `native encoding failed: ${(cause as Error).message}`, { cause });
    }
    return encs.map((e, i) => {
      const ids = e.getIds();
      const offs = e.getOffsets() as [number, number][];
      const map = codePointToUtf16(texts[i]);
      const offsets: [number, number][] =
        map === undefined ? offs : offs.map(([s, t]) => [map[s] ?? s, map[t] ?? t]);
      const wordIds = e.getWordIds().map((w) => (w === undefined ? null : w));
      return { ids, offsets, wordIds };
    });
  }

  private assemble(a: RawEncoding, b: RawEncoding | undefined, options: XltEncodeOptions): XltEncoding {
    const add = options.addSpecialTokens ?? true;
    const template = add
      ? b
        ? this.pair
        : this.single
      : b
        ? this.pair.filter((t) => t.kind === 'seq')
        : this.single.filter((t) => t.kind === 'seq');
    const nSpecial = template.filter((t) => t.kind === 'special').length;
    let la = a.ids.length;
    let lb = b ? b.ids.length : 0;
    const truncation = options.truncation ?? true;
    if (options.maxLength !== undefined && truncation !== false) {
      const budget = options.maxLength - nSpecial;
      if (budget < 0)
        throw new XltConfigError(
          `maxLength ${options.maxLength} is smaller than the ${nSpecial} special tokens`,
          {
            field: 'maxLength',
          },
        );
      const strategy = truncation === true ? 'longest_first' : truncation;
      let excess = la + lb - budget;
      if (excess > 0) {
        if (strategy === 'only_first' || !b || strategy === 'only_second') {
          const first = strategy !== 'only_second' || !b;
          const avail = first ? la : lb;
          if (avail < excess)
            throw new XltConfigError(
              `cannot truncate to maxLength ${options.maxLength} with '${strategy}': the ${first ? 'first' : 'second'} sequence has only ${avail} tokens, ${excess} must go`,
              { field: 'truncation' },
            );
          if (first) la -= excess;
          else lb -= excess;
        } else {
          // remove one token at a time from the longer sequence (ties: from the second), as transformers does
          while (excess > 0) {
            if (la > lb) la--;
            else lb--;
            excess--;
          }
        }
      }
    }
    const out: XltEncoding = {
      ids: [],
      tokens: [],
      offsets: [],
      wordIds: [],
      attentionMask: [],
      sequenceIds: [],
      specialTokensMask: [],
    };
    for (const item of template) {
      if (item.kind === 'special') {
        out.ids.push(item.id);
        out.tokens.push(item.token);
        out.offsets.push([0, 0]);
        out.wordIds.push(null);
        out.attentionMask.push(1);
        out.sequenceIds.push(null);
        out.specialTokensMask.push(1);
      } else {
        const src = item.seq === 0 ? a : b;
        if (!src) continue;
        const n = item.seq === 0 ? la : lb;
        for (let i = 0; i < n; i++) {
          const id = src.ids[i];
          out.ids.push(id);
          out.tokens.push(this.idToPiece[id] ?? '<unk>');
          out.offsets.push(src.offsets[i]);
          out.wordIds.push(src.wordIds[i]);
          out.attentionMask.push(1);
          out.sequenceIds.push(item.seq);
          out.specialTokensMask.push(0);
        }
      }
    }
    return out;
  }

  private pad(enc: XltEncoding, length: number): void {
    const padToken = this.idToPiece[this.padId] ?? '<pad>';
    while (enc.ids.length < length) {
      enc.ids.push(this.padId);
      enc.tokens.push(padToken);
      enc.offsets.push([0, 0]);
      enc.wordIds.push(null);
      enc.attentionMask.push(0);
      enc.sequenceIds.push(null);
      enc.specialTokensMask.push(1);
    }
  }

  private checkOptions(options: XltEncodeOptions): void {
    const { maxLength, padding, padToMultipleOf } = options;
    if (maxLength !== undefined && (!Number.isInteger(maxLength) || maxLength < 0))
      throw new XltConfigError(`maxLength must be a non-negative integer, got ${maxLength}`, {
        field: 'maxLength',
      });
    if (padding === 'max_length' && maxLength === undefined)
      throw new XltConfigError("padding 'max_length' needs maxLength", { field: 'padding' });
    if (padToMultipleOf !== undefined && (!Number.isInteger(padToMultipleOf) || padToMultipleOf < 1))
      throw new XltConfigError(`padToMultipleOf must be a positive integer, got ${padToMultipleOf}`, {
        field: 'padToMultipleOf',
      });
  }

  /**
   * Encodes a text, or a pair when `pair` is given (`<s> A </s></s> B </s>` for XLM-R).
   * Lone surrogates are replaced by U+FFFD (offsets stay valid for the original string).
   */
  async encode(text: string, options: XltEncodeOptions & { pair?: string } = {}): Promise<XltEncoding> {
    const input: XltEncodeInput = options.pair !== undefined ? [text, options.pair] : text;
    const [enc] = await this.encodeBatch([input], options);
    return enc;
  }

  /** Encodes many texts or pairs at once (in parallel in native code), with optional batch padding. */
  async encodeBatch(
    inputs: readonly XltEncodeInput[],
    options: XltEncodeOptions = {},
  ): Promise<XltEncoding[]> {
    this.checkOptions(options);
    const flat: string[] = [];
    for (let i = 0; i < inputs.length; i++) {
      const inp = inputs[i];
      if (typeof inp === 'string') flat.push(toWellFormed(inp));
      else if (
        Array.isArray(inp) &&
        inp.length === 2 &&
        typeof inp[0] === 'string' &&
        typeof inp[1] === 'string'
      )
        flat.push(toWellFormed(inp[0]), toWellFormed(inp[1]));
      else
        throw new XltConfigError('each input must be a string or a [string, string] pair', {
          field: `inputs[${i}]`,
        });
    }
    const raw = await this.rawEncode(flat);
    const out: XltEncoding[] = [];
    let k = 0;
    for (const inp of inputs) {
      if (typeof inp === 'string') out.push(this.assemble(raw[k++], undefined, options));
      else {
        out.push(this.assemble(raw[k], raw[k + 1], options));
        k += 2;
      }
    }
    if (options.padding === 'longest' || options.padding === 'max_length') {
      let len =
        options.padding === 'max_length'
          ? (options.maxLength ?? 0)
          : Math.max(0, ...out.map((e) => e.ids.length));
      const m = options.padToMultipleOf;
      if (m !== undefined) len = Math.ceil(len / m) * m;
      for (const e of out) this.pad(e, len);
    }
    return out;
  }

  /** Turns ids back into text (special tokens skipped by default). */
  async decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): Promise<string> {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.idToPiece.length)
        throw new XltConfigError(`id ${id} is not in 0..${this.idToPiece.length - 1}`, {
          field: `ids[${i}]`,
        });
    }
    return this.native.decode([...ids], options.skipSpecialTokens ?? true);
  }

  /** Serialises the tokenizer.json text. */
  toJSONString(): string {
    return JSON.stringify(this.json, null, 2);
  }

  /** Writes `tokenizer.json` atomically (to `file`, or into it when it is an existing folder). */
  async save(file: string): Promise<string> {
    let p = path.resolve(file);
    try {
      if ((await stat(p)).isDirectory()) p = path.join(p, 'tokenizer.json');
    } catch {
      // not there yet: a file path
    }
    await writeJsonAtomic(p, this.toJSONString());
    return p;
  }
}

/** Writes text to a temp file beside `file`, then renames it into place. */
export async function writeJsonAtomic(file: string, text: string): Promise<void> {
  writeFileAtomic(file, text);
}
