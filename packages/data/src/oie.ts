import { readFile } from 'node:fs/promises';
import { XltFormatError } from '@xlt/core';
import { type ReadOptions, readNumberedLines } from './readers.js';

/** One gold tuple of CaRB: relation and its arguments (arg0 = subject). */
export interface CarbTuple {
  relation: string;
  args: string[];
  line: number;
}
/** A CaRB sentence with its gold tuples (consecutive lines with the same sentence are grouped). */
export interface CarbSentence {
  sentence: string;
  tuples: CarbTuple[];
}

/** Streams CaRB gold TSV (`sentence \t relation \t arg0 \t arg1 ...`) grouped per sentence. */
export async function* readCarb(file: string, opts: ReadOptions = {}): AsyncGenerator<CarbSentence> {
  const collect = opts.onError === 'collect';
  let cur: CarbSentence | undefined;
  for await (const { text, line } of readNumberedLines(file)) {
    if (text.trim() === '') continue;
    const cols = text.split('\t');
    if (cols.length < 3) {
      const e = new XltFormatError(
        `expected sentence, relation and >= 1 argument, got ${cols.length} column(s)`,
        { file, line },
      );
      if (!collect) throw e;
      opts.errors?.push(e);
      continue;
    }
    const [sentence, relation, ...args] = cols as [string, string, ...string[]];
    if (cur !== undefined && cur.sentence !== sentence) {
      yield cur;
      cur = undefined;
    }
    cur ??= { sentence, tuples: [] };
    cur.tuples.push({ relation, args, line });
  }
  if (cur !== undefined) yield cur;
}

/** One Re-OIE2016 (Multi2OIE JSON) extraction. Empty slots are omitted; indices are token spans [start, end]. */
export interface ReOieTuple {
  pred: string;
  predIndex: number[];
  /** arg0..argN in order (empty trailing arguments dropped). */
  args: string[];
  argIndices: number[][];
  /** Optional modifiers present in the file (loc, temp, context), when non-empty. */
  loc?: string;
  temp?: string;
  context?: string;
}
/** A Re-OIE2016 sentence and its extractions. */
export interface ReOieSentence {
  sentence: string;
  tuples: ReOieTuple[];
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads a Re-OIE2016 JSON file (Multi2OIE format: object keyed by sentence), whole file in memory. */
export async function* readReOie(file: string, opts: ReadOptions = {}): AsyncGenerator<ReOieSentence> {
  const report = (e: XltFormatError): void => {
    if (opts.onError !== 'collect') throw e;
    opts.errors?.push(e);
  };
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    report(new XltFormatError(`invalid JSON: ${(e as Error).message}`, { file, cause: e }));
    return;
  }
  if (!isObj(json)) {
    report(new XltFormatError('expected an object keyed by sentence', { file }));
    return;
  }
  for (const [sentence, list] of Object.entries(json)) {
    if (!Array.isArray(list)) {
      report(new XltFormatError('expected an array of extractions', { file, field: sentence }));
      continue;
    }
    const tuples: ReOieTuple[] = [];
    let ok = true;
    for (const t of list) {
      if (!isObj(t) || typeof t.pred !== 'string' || typeof t.arg0 !== 'string') {
        ok = false;
        break;
      }
      const args: string[] = [];
      const argIndices: number[][] = [];
      for (let i = 0; typeof t[`arg${i}`] === 'string'; i++) {
        args.push(t[`arg${i}`] as string);
        const idx = t[`arg${i}_index`];
        argIndices.push(Array.isArray(idx) ? idx.map(Number) : []);
      }
      while (args.length > 0 && args[args.length - 1] === '') {
        args.pop();
        argIndices.pop();
      }
      const tuple: ReOieTuple = {
        pred: t.pred,
        predIndex: Array.isArray(t.pred_index) ? t.pred_index.map(Number) : [],
        args,
        argIndices,
      };
      for (const key of ['loc', 'temp', 'context'] as const) {
        const v = t[key];
        if (typeof v === 'string' && v !== '') tuple[key] = v;
      }
      tuples.push(tuple);
    }
    if (!ok) {
      report(new XltFormatError('extraction needs string "pred" and "arg0"', { file, field: sentence }));
      continue;
    }
    yield { sentence, tuples };
  }
}

/** One slot (subject, relation or object) of a BenchIE fact. */
export interface BenchieSlot {
  /** The slot as written, optional tokens in brackets. */
  raw: string;
  /** All tokens, brackets removed. */
  full: string;
  /** Only the required tokens (bracketed optional tokens removed). */
  required: string;
}
/** A BenchIE fact synset (cluster): equivalent triples, any of which counts as a match. */
export interface BenchieCluster {
  index: number;
  triples: [BenchieSlot, BenchieSlot, BenchieSlot][];
  line: number;
}
/** A BenchIE gold sentence. */
export interface BenchieSentence {
  sentId: number;
  sentence: string;
  clusters: BenchieCluster[];
  line: number;
}

function slot(raw: string): BenchieSlot {
  const t = raw.trim();
  const squash = (s: string): string => s.replace(/\s+/g, ' ').trim();
  return { raw: t, full: squash(t.replace(/[[\]]/g, '')), required: squash(t.replace(/\[[^\]]*\]/g, ' ')) };
}

/**
 * Streams BenchIE gold fact synsets: `sent_id:N \t sentence`, then cluster headers `N--> Cluster K:`
 * (tolerating the variants in the released files, e.g. `14-> Cluster 6:`, `78-->Cluster 6:`, `2 0 6 :`),
 * then triples `subject --> relation --> object` (optional tokens in brackets; `|OR|` alternatives
 * in a slot are kept in `raw`).
 */
export async function* readBenchie(file: string, opts: ReadOptions = {}): AsyncGenerator<BenchieSentence> {
  const report = (e: XltFormatError): void => {
    if (opts.onError !== 'collect') throw e;
    opts.errors?.push(e);
  };
  let cur: BenchieSentence | undefined;
  for await (const { text, line } of readNumberedLines(file)) {
    const t = text.trim();
    if (t === '' || /^-{4,}$/.test(t)) continue;
    const sm = /^sent_id:\s*(\d+)\t(.*)$/.exec(text);
    if (sm) {
      if (cur) yield cur;
      cur = { sentId: Number(sm[1]), sentence: (sm[2] as string).trim(), clusters: [], line };
      continue;
    }
    if (cur === undefined) {
      report(new XltFormatError('expected a `sent_id:N<TAB>sentence` line first', { file, line }));
      continue;
    }
    const hm = /^([\d ]+?)\s*(?:-*>\s*Cluster\s*(\d+))?\s*:$/.exec(t);
    if (hm) {
      // The header's sentence number is redundant and has typos in the released gold (en line 2331
      // says 19 inside sentence 68), so it is not checked against sent_id.
      const index = hm[2] !== undefined ? Number(hm[2]) : (cur.clusters.at(-1)?.index ?? 0) + 1;
      cur.clusters.push({ index, triples: [], line });
      continue;
    }
    const parts = text.split('-->');
    const cl = cur.clusters.at(-1);
    if (parts.length !== 3 || cl === undefined) {
      report(
        new XltFormatError(
          cl === undefined
            ? 'triple before any cluster header'
            : `expected 'subj --> rel --> obj', got ${parts.length} part(s)`,
          { file, line },
        ),
      );
      continue;
    }
    cl.triples.push([slot(parts[0] as string), slot(parts[1] as string), slot(parts[2] as string)]);
  }
  if (cur) yield cur;
}
