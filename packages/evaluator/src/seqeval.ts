import { XltConfigError } from '@xlt/core';

/** Tagging schemes seqeval's strict mode knows. */
export type Scheme = 'IOB1' | 'IOB2' | 'IOBES';

/** An entity: type, sentence index, start and end (end exclusive). */
export interface Entity {
  type: string;
  sentence: number;
  start: number;
  end: number;
}

export interface EntityScores {
  precision: number;
  recall: number;
  f1: number;
}

export interface EntityReport extends EntityScores {
  /** Per entity type: scores and the number of gold entities (support). */
  byType: Record<string, EntityScores & { support: number }>;
  support: number;
}

// ---- default (lenient) mode: seqeval.metrics.sequence_labeling.get_entities -----------------

function endOfChunk(prevTag: string, tag: string, prevType: string, type: string): boolean {
  if (prevTag === 'E' || prevTag === 'S') return true;
  if (prevTag === 'B' && (tag === 'B' || tag === 'S' || tag === 'O')) return true;
  if (prevTag === 'I' && (tag === 'B' || tag === 'S' || tag === 'O')) return true;
  return prevTag !== 'O' && prevTag !== '.' && prevType !== type;
}

function startOfChunk(prevTag: string, tag: string, prevType: string, type: string): boolean {
  if (tag === 'B' || tag === 'S') return true;
  if ((prevTag === 'E' || prevTag === 'S' || prevTag === 'O') && (tag === 'E' || tag === 'I')) return true;
  return tag !== 'O' && tag !== '.' && prevType !== type;
}

/** Entities as seqeval's `get_entities` finds them (any scheme, lenient), per sentence. */
export function lenientEntities(sentences: readonly (readonly string[])[]): Entity[] {
  const out: Entity[] = [];
  sentences.forEach((seq, s) => {
    let prevTag = 'O';
    let prevType = '';
    let begin = 0;
    [...seq, 'O'].forEach((chunk, i) => {
      const tag = chunk[0] ?? 'O';
      // Python: chunk[1:].split('-', maxsplit=1)[-1] or '_'
      const rest = chunk.slice(1);
      const dash = rest.indexOf('-');
      const type = (dash >= 0 ? rest.slice(dash + 1) : rest) || '_';
      if (endOfChunk(prevTag, tag, prevType, type))
        out.push({ type: prevType, sentence: s, start: begin, end: i });
      if (startOfChunk(prevTag, tag, prevType, type)) begin = i;
      prevTag = tag;
      prevType = type;
    });
  });
  return out;
}

// ---- strict mode: seqeval.scheme --------------------------------------------------------------

type Pattern = [string, string, 'SAME' | 'DIFF' | 'ANY'];
const ANY = 'IOBES';
const SCHEMES: Record<Scheme, { allowed: string; start: Pattern[]; inside: Pattern[]; end: Pattern[] }> = {
  IOB1: {
    allowed: 'IOB',
    start: [
      ['O', 'I', 'ANY'],
      ['I', 'I', 'DIFF'],
      ['B', 'I', 'ANY'],
      ['I', 'B', 'SAME'],
      ['B', 'B', 'SAME'],
    ],
    inside: [
      ['B', 'I', 'SAME'],
      ['I', 'I', 'SAME'],
    ],
    end: [
      ['I', 'I', 'DIFF'],
      ['I', 'O', 'ANY'],
      ['I', 'B', 'ANY'],
      ['B', 'O', 'ANY'],
      ['B', 'I', 'DIFF'],
      ['B', 'B', 'SAME'],
    ],
  },
  IOB2: {
    allowed: 'IOB',
    start: [[ANY, 'B', 'ANY']],
    inside: [
      ['B', 'I', 'SAME'],
      ['I', 'I', 'SAME'],
    ],
    end: [
      ['I', 'O', 'ANY'],
      ['I', 'I', 'DIFF'],
      ['I', 'B', 'ANY'],
      ['B', 'O', 'ANY'],
      ['B', 'I', 'DIFF'],
      ['B', 'B', 'ANY'],
    ],
  },
  IOBES: {
    allowed: 'IOBES',
    start: [
      [ANY, 'B', 'ANY'],
      [ANY, 'S', 'ANY'],
    ],
    inside: [
      ['B', 'I', 'SAME'],
      ['B', 'E', 'SAME'],
      ['I', 'I', 'SAME'],
      ['I', 'E', 'SAME'],
    ],
    end: [
      ['S', ANY, 'ANY'],
      ['E', ANY, 'ANY'],
    ],
  },
};

interface Tok {
  prefix: string;
  tag: string;
}
const tok = (t: string): Tok => ({ prefix: t[0] ?? 'O', tag: t.slice(1).replace(/^-+|-+$/g, '') || '_' });

function matches(prev: Tok, cur: Tok, patterns: Pattern[]): boolean {
  return patterns.some(
    ([p, c, cond]) =>
      p.includes(prev.prefix) &&
      c.includes(cur.prefix) &&
      (cond === 'ANY' || (cond === 'SAME') === (prev.tag === cur.tag)),
  );
}

/** Entities as seqeval's strict mode (`Tokens(seq, scheme).entities`) finds them; invalid prefixes throw. */
export function strictEntities(sentences: readonly (readonly string[])[], scheme: Scheme): Entity[] {
  const sc = SCHEMES[scheme];
  const out: Entity[] = [];
  sentences.forEach((seq, s) => {
    const toks = [...seq, 'O'].map(tok);
    toks.forEach((t, i) => {
      if (!sc.allowed.includes(t.prefix)) {
        throw new XltConfigError(
          `invalid tag '${seq[i]}' for ${scheme} (allowed prefixes ${sc.allowed.split('').join(', ')})`,
          {
            field: `sentence ${s}, token ${i}`,
          },
        );
      }
    });
    let i = 0;
    let prev = tok('O');
    while (i < toks.length) {
      const t = toks[i] as Tok;
      if (matches(prev, t, sc.start)) {
        // _forward: extend while inside
        let end = toks.length - 2;
        let p = t;
        for (let j = i + 1; j < toks.length; j++) {
          const u = toks[j] as Tok;
          if (matches(p, u, sc.inside)) p = u;
          else {
            end = j;
            break;
          }
        }
        if (matches(toks[end - 1] as Tok, toks[end] as Tok, sc.end))
          out.push({ type: t.tag, sentence: s, start: i, end });
        i = end;
      } else i += 1;
      prev = toks[i - 1] as Tok;
    }
  });
  return out;
}

const key = (e: Entity) => `${e.sentence}\u0000${e.start}\u0000${e.end}\u0000${e.type}`;
const prf = (correct: number, pred: number, gold: number): EntityScores => {
  const precision = pred === 0 ? 0 : correct / pred;
  const recall = gold === 0 ? 0 : correct / gold;
  const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
  return { precision, recall, f1 };
};

/**
 * Entity-level precision, recall and F1 as seqeval computes them (micro-averaged, as the totals of
 * `classification_report`), with per-type scores. `mode: 'default'` chunks leniently as seqeval's
 * default (the scheme is then irrelevant); `mode: 'strict'` applies the scheme's rules.
 * Precision or recall with a zero denominator is 0, as seqeval's zero_division default reports.
 */
export function entityReport(
  gold: readonly (readonly string[])[],
  pred: readonly (readonly string[])[],
  options: { scheme?: Scheme; mode?: 'default' | 'strict' } = {},
): EntityReport {
  if (gold.length !== pred.length)
    throw new XltConfigError(`${gold.length} gold sentences but ${pred.length} predicted`, { field: 'pred' });
  gold.forEach((g, i) => {
    if (g.length !== (pred[i] as readonly string[]).length) {
      throw new XltConfigError(
        `sentence ${i}: ${g.length} gold tags but ${(pred[i] as readonly string[]).length} predicted`,
        { field: 'pred' },
      );
    }
  });
  const find = (seqs: readonly (readonly string[])[]) =>
    options.mode === 'strict' ? strictEntities(seqs, options.scheme ?? 'IOB2') : lenientEntities(seqs);
  const g = find(gold);
  const p = find(pred);
  const gs = new Set(g.map(key));
  const correct = p.filter((e) => gs.has(key(e)));
  const types = [...new Set([...g, ...p].map((e) => e.type))].sort();
  const byType: EntityReport['byType'] = {};
  for (const t of types) {
    const gt = g.filter((e) => e.type === t).length;
    byType[t] = {
      ...prf(correct.filter((e) => e.type === t).length, p.filter((e) => e.type === t).length, gt),
      support: gt,
    };
  }
  return { ...prf(correct.length, p.length, g.length), byType, support: g.length };
}

/** Micro-averaged entity precision, recall and F1 in [0, 1] (see {@link entityReport}). */
export function entityF1(
  gold: readonly (readonly string[])[],
  pred: readonly (readonly string[])[],
  options: { scheme?: Scheme; mode?: 'default' | 'strict' } = {},
): EntityScores {
  const { precision, recall, f1 } = entityReport(gold, pred, options);
  return { precision, recall, f1 };
}
