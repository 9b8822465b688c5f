import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { XltFormatError } from '@xlt/core';

/** How a reader treats malformed records. */
export interface ReadOptions {
  /** `'throw'` (default) stops at the first bad record; `'collect'` skips it and records the error. */
  onError?: 'throw' | 'collect';
  /** Receives collected errors when `onError` is `'collect'`. */
  errors?: XltFormatError[];
}

/** One line of a text file with its 1-based line number. */
export interface NumberedLine {
  text: string;
  line: number;
}

class ErrorSink {
  private readonly collect: boolean;
  private readonly errors: XltFormatError[] | undefined;
  constructor(opts: ReadOptions = {}) {
    this.collect = opts.onError === 'collect';
    this.errors = opts.errors;
  }
  /** Throws in throw mode; otherwise records the error. */
  report(err: XltFormatError): void {
    if (!this.collect) throw err;
    this.errors?.push(err);
  }
}

/** Streams the lines of a file (constant memory), with 1-based numbers; a trailing `\r` is removed. */
export async function* readNumberedLines(file: string): AsyncGenerator<NumberedLine> {
  const rl = createInterface({
    input: createReadStream(file, { encoding: 'utf8' }),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  let line = 0;
  for await (const raw of rl) {
    line += 1;
    let text = raw;
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    yield { text, line };
  }
}

/** Raw text, one sentence a line: yields each non-empty line. */
export async function* readLines(file: string): AsyncGenerator<string> {
  for await (const { text } of readNumberedLines(file)) if (text.trim() !== '') yield text;
}

/** XNLI label. */
export type XnliLabel = 'entailment' | 'neutral' | 'contradiction';
/** One XNLI pair (XTREME TSV `premise \t hypothesis \t label`). */
export interface XnliRecord {
  premise: string;
  hypothesis: string;
  label: XnliLabel;
  /** 1-based line number in the source file. */
  line: number;
}
/** One PAWS-X pair (XTREME TSV `s1 \t s2 \t label`), label 1 = paraphrase. */
export interface PawsxRecord {
  sentence1: string;
  sentence2: string;
  label: 0 | 1;
  line: number;
}

async function* readTsv3<T>(
  file: string,
  opts: ReadOptions,
  labels: readonly string[],
  make: (a: string, b: string, label: string, line: number) => T,
): AsyncGenerator<T> {
  const sink = new ErrorSink(opts);
  for await (const { text, line } of readNumberedLines(file)) {
    if (text === '') continue;
    const cols = text.split('\t');
    if (cols.length !== 3) {
      sink.report(new XltFormatError(`expected 3 tab-separated columns, got ${cols.length}`, { file, line }));
      continue;
    }
    const [a, b, label] = cols as [string, string, string];
    if (!labels.includes(label)) {
      sink.report(
        new XltFormatError(`unknown label '${label}', expected one of ${labels.join('/')}`, {
          file,
          line,
          field: 'label',
        }),
      );
      continue;
    }
    yield make(a, b, label, line);
  }
}

/** Streams XNLI pairs from an XTREME TSV file. */
export function readXnli(file: string, opts: ReadOptions = {}): AsyncGenerator<XnliRecord> {
  return readTsv3(
    file,
    opts,
    ['entailment', 'neutral', 'contradiction'],
    (premise, hypothesis, label, line) => ({
      premise,
      hypothesis,
      label: label as XnliLabel,
      line,
    }),
  );
}

/** Streams PAWS-X pairs from an XTREME TSV file. */
export function readPawsx(file: string, opts: ReadOptions = {}): AsyncGenerator<PawsxRecord> {
  return readTsv3(file, opts, ['0', '1'], (sentence1, sentence2, label, line) => ({
    sentence1,
    sentence2,
    label: label === '1' ? 1 : 0,
    line,
  }));
}

/** A NER sentence (PAN-X/WikiANN or CoNLL-2002/2003). */
export interface NerSentence {
  tokens: string[];
  tags: string[];
  /** Language prefix stripped from tokens (PAN-X `en:token`), if any. */
  lang?: string;
  /** 1-based line of the first token. */
  line: number;
}

const TAG_RE = /^(O|[BIES]-[A-Za-z]+)$/;

/**
 * Streams NER sentences. Lines are `token \t tag` (PAN-X) or space-separated columns with the tag
 * last (CoNLL-2002/2003); blank lines end sentences; `-DOCSTART-` lines are skipped. A leading
 * `xx:` language prefix on tokens is stripped when `stripLangPrefix` is true (default) and reported.
 */
export async function* readNer(
  file: string,
  opts: ReadOptions & { stripLangPrefix?: boolean } = {},
): AsyncGenerator<NerSentence> {
  const sink = new ErrorSink(opts);
  const strip = opts.stripLangPrefix ?? true;
  let tokens: string[] = [];
  let tags: string[] = [];
  let lang: string | undefined;
  let start = 0;
  let bad = false;
  const flush = (): NerSentence | undefined => {
    const out: NerSentence | undefined =
      tokens.length > 0 && !bad
        ? { tokens, tags, line: start, ...(lang !== undefined ? { lang } : {}) }
        : undefined;
    tokens = [];
    tags = [];
    lang = undefined;
    bad = false;
    return out;
  };
  for await (const { text, line } of readNumberedLines(file)) {
    if (text.trim() === '') {
      const s = flush();
      if (s) yield s;
      continue;
    }
    if (text.startsWith('-DOCSTART-')) continue;
    if (bad) continue;
    const cols = text.includes('\t') ? text.split('\t') : text.split(/ +/);
    if (cols.length < 2) {
      sink.report(
        new XltFormatError(`expected a token and a tag, got ${cols.length} column(s)`, { file, line }),
      );
      bad = true;
      continue;
    }
    let token = cols[0] as string;
    const tag = cols[cols.length - 1] as string;
    if (!TAG_RE.test(tag)) {
      sink.report(
        new XltFormatError(`bad NER tag '${tag}', expected O or B-/I-TYPE`, { file, line, field: 'tag' }),
      );
      bad = true;
      continue;
    }
    if (tokens.length === 0) start = line;
    if (strip) {
      const m = /^([a-z]{2,3}):(.+)$/.exec(token);
      if (m) {
        lang = m[1];
        token = m[2] as string;
      }
    }
    tokens.push(token);
    tags.push(tag);
  }
  const s = flush();
  if (s) yield s;
}

/** A multiword (surface) token of a CoNLL-U sentence, e.g. `1-2 du` covering words 1 and 2. */
export interface ConlluMultiword {
  /** First and last word id covered (1-based, inclusive). */
  start: number;
  end: number;
  form: string;
}
/** A CoNLL-U sentence: the syntactic words (empty nodes `1.1` are excluded). */
export interface ConlluSentence {
  sentId?: string;
  text?: string;
  /** All comment lines as key → value (`# key = value`). */
  comments: Record<string, string>;
  /** Word forms (column 2) in id order. */
  forms: string[];
  /** UPOS tags (column 4). */
  upos: string[];
  /** HEAD (column 7), 0 = root; NaN when `_`. */
  heads: number[];
  /** DEPREL (column 8). */
  deprels: string[];
  /** Multiword tokens as surface-token info. */
  multiwords: ConlluMultiword[];
  /** Number of empty nodes (`n.m` ids) skipped. */
  emptyNodes: number;
  /** 1-based line of the sentence's first line. */
  line: number;
}

/** Streams CoNLL-U sentences (Universal Dependencies). */
export async function* readConllu(file: string, opts: ReadOptions = {}): AsyncGenerator<ConlluSentence> {
  const sink = new ErrorSink(opts);
  const fresh = (line: number): ConlluSentence => ({
    comments: {},
    forms: [],
    upos: [],
    heads: [],
    deprels: [],
    multiwords: [],
    emptyNodes: 0,
    line,
  });
  let cur: ConlluSentence | undefined;
  let bad = false;
  for await (const { text, line } of readNumberedLines(file)) {
    if (text.trim() === '') {
      if (cur && !bad && cur.forms.length > 0) yield cur;
      cur = undefined;
      bad = false;
      continue;
    }
    cur ??= fresh(line);
    if (bad) continue;
    if (text.startsWith('#')) {
      const m = /^#\s*([^=]+?)\s*=\s?(.*)$/.exec(text);
      if (m) {
        const key = m[1] as string;
        const value = m[2] as string;
        cur.comments[key] = value;
        if (key === 'sent_id') cur.sentId = value;
        if (key === 'text') cur.text = value;
      }
      continue;
    }
    const cols = text.split('\t');
    if (cols.length !== 10) {
      sink.report(
        new XltFormatError(`expected 10 tab-separated CoNLL-U columns, got ${cols.length}`, { file, line }),
      );
      bad = true;
      continue;
    }
    const id = cols[0] as string;
    if (/^\d+-\d+$/.test(id)) {
      const [a, b] = id.split('-').map(Number) as [number, number];
      cur.multiwords.push({ start: a, end: b, form: cols[1] as string });
      continue;
    }
    if (/^\d+\.\d+$/.test(id)) {
      cur.emptyNodes += 1;
      continue;
    }
    if (!/^\d+$/.test(id) || Number(id) !== cur.forms.length + 1) {
      sink.report(
        new XltFormatError(`bad word id '${id}', expected ${cur.forms.length + 1}`, {
          file,
          line,
          field: 'ID',
        }),
      );
      bad = true;
      continue;
    }
    cur.forms.push(cols[1] as string);
    cur.upos.push(cols[3] as string);
    cur.heads.push(cols[6] === '_' ? Number.NaN : Number(cols[6]));
    cur.deprels.push(cols[7] as string);
  }
  if (cur && !bad && cur.forms.length > 0) yield cur;
}

/** A SQuAD answer. */
export interface SquadAnswer {
  text: string;
  /** Character offset of the answer in the context. */
  answerStart: number;
}
/** One question of a SQuAD v1.1 file (XQuAD, MLQA, TyDi QA GoldP), with its context. */
export interface SquadRecord {
  id: string;
  title: string;
  context: string;
  question: string;
  answers: SquadAnswer[];
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads a SQuAD v1.1 JSON file (whole file in memory) and yields one record per question. */
export async function* readSquad(file: string, opts: ReadOptions = {}): AsyncGenerator<SquadRecord> {
  const sink = new ErrorSink(opts);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    sink.report(new XltFormatError(`invalid JSON: ${(e as Error).message}`, { file, cause: e }));
    return;
  }
  if (!isObj(json) || !Array.isArray(json.data)) {
    sink.report(new XltFormatError('expected a SQuAD object with a "data" array', { file, field: 'data' }));
    return;
  }
  for (const [ai, article] of json.data.entries()) {
    if (!isObj(article) || !Array.isArray(article.paragraphs)) {
      sink.report(new XltFormatError('article without "paragraphs" array', { file, field: `data[${ai}]` }));
      continue;
    }
    const title = typeof article.title === 'string' ? article.title : '';
    for (const [pi, para] of article.paragraphs.entries()) {
      const field = `data[${ai}].paragraphs[${pi}]`;
      if (!isObj(para) || typeof para.context !== 'string' || !Array.isArray(para.qas)) {
        sink.report(new XltFormatError('paragraph needs "context" string and "qas" array', { file, field }));
        continue;
      }
      for (const [qi, qa] of para.qas.entries()) {
        const qf = `${field}.qas[${qi}]`;
        if (!isObj(qa) || typeof qa.question !== 'string' || !Array.isArray(qa.answers)) {
          sink.report(
            new XltFormatError('question needs "question" string and "answers" array', { file, field: qf }),
          );
          continue;
        }
        const answers: SquadAnswer[] = [];
        let ok = true;
        for (const a of qa.answers) {
          if (!isObj(a) || typeof a.text !== 'string' || typeof a.answer_start !== 'number') {
            ok = false;
            break;
          }
          answers.push({ text: a.text, answerStart: a.answer_start });
        }
        if (!ok) {
          sink.report(
            new XltFormatError('answer needs "text" and numeric "answer_start"', { file, field: qf }),
          );
          continue;
        }
        yield { id: String(qa.id ?? ''), title, context: para.context, question: qa.question, answers };
      }
    }
  }
}

/**
 * Reads a MUSE bilingual dictionary (`en \t xx` or `en xx`, one pair a line) into a map from
 * source word to its translations in file order (duplicates removed).
 */
export async function readMuseDictionary(
  file: string,
  opts: ReadOptions = {},
): Promise<Map<string, string[]>> {
  const sink = new ErrorSink(opts);
  const dict = new Map<string, string[]>();
  for await (const { text, line } of readNumberedLines(file)) {
    if (text.trim() === '') continue;
    const cols = text.includes('\t') ? text.split('\t') : text.trim().split(/\s+/);
    if (cols.length !== 2 || cols[0] === '' || cols[1] === '') {
      sink.report(
        new XltFormatError(`expected 2 columns (source, target), got ${cols.length}`, { file, line }),
      );
      continue;
    }
    const [src, tgt] = cols as [string, string];
    const list = dict.get(src);
    if (list === undefined) dict.set(src, [tgt]);
    else if (!list.includes(tgt)) list.push(tgt);
  }
  return dict;
}
