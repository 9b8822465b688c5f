import { padTokenRows, type TokenBatch, XltConfigError } from '@xlt/core';
import type { OnnxOutput } from '@xlt/onnx';

/** One encoded sequence: token ids, character offsets (UTF-16) and word index per token (null for specials). */
export interface Encoded {
  ids: number[];
  offsets: Array<[number, number]>;
  wordIds: Array<number | null>;
  /** 0 for the first text, 1 for the pair text, null for specials (pairs only). */
  sequenceIds?: Array<number | null>;
}

/** What the server needs from a tokenizer (implemented over @xlt/tokenizer). */
export interface ServeTokenizer {
  encode(text: string, pair?: string): Promise<Encoded>;
  idToToken(id: number): string | undefined;
  readonly maskTokenId: number;
  readonly padTokenId: number;
}

/** Pads encodings to the longest: the `inputIds` / `attentionMask` of `@xlt/core`'s `TokenBatch`. */
export function padBatch(
  encs: Encoded[],
  padId: number,
): Required<Pick<TokenBatch, 'inputIds' | 'attentionMask'>> {
  return padTokenRows(
    encs.map((e) => e.ids),
    padId,
  );
}

/** Truncates an encoding to `max` tokens, keeping the final special token. */
export function truncate(e: Encoded, max: number): Encoded {
  if (e.ids.length <= max) return e;
  const keep = (xs: readonly unknown[]) => [...xs.slice(0, max - 1), xs[xs.length - 1]];
  const out: Encoded = {
    ids: keep(e.ids) as number[],
    offsets: keep(e.offsets) as Array<[number, number]>,
    wordIds: keep(e.wordIds) as Array<number | null>,
  };
  if (e.sequenceIds) out.sequenceIds = keep(e.sequenceIds) as Array<number | null>;
  return out;
}

export function softmax(xs: ArrayLike<number>, from = 0, n = xs.length): number[] {
  let m = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) m = Math.max(m, xs[from + i] as number);
  const e: number[] = [];
  let s = 0;
  for (let i = 0; i < n; i++) {
    const v = Math.exp((xs[from + i] as number) - m);
    e.push(v);
    s += v;
  }
  return e.map((v) => v / s);
}

const labelOf = (id2label: Record<string, string>, i: number) => id2label[String(i)] ?? `LABEL_${i}`;

export interface ClassifyResult {
  label: string;
  score: number;
  scores: Record<string, number>;
}

/** Row `b` of sequence-classification logits [B, C]. */
export function classifyRow(out: OnnxOutput, b: number, id2label: Record<string, string>): ClassifyResult {
  const C = out.dims[1] as number;
  const p = softmax(out.data, b * C, C);
  let best = 0;
  for (let i = 1; i < C; i++) if ((p[i] as number) > (p[best] as number)) best = i;
  return {
    label: labelOf(id2label, best),
    score: p[best] as number,
    scores: Object.fromEntries(p.map((v, i) => [labelOf(id2label, i), v])),
  };
}

export interface TaggedWord {
  word: string;
  start: number;
  end: number;
  label: string;
  score: number;
}

/** Word-level labels from token-classification logits: each word takes its first sub-token's prediction. */
export function tagRow(
  out: OnnxOutput,
  b: number,
  enc: Encoded,
  text: string,
  id2label: Record<string, string>,
): TaggedWord[] {
  const S = out.dims[1] as number;
  const C = out.dims[2] as number;
  const words: TaggedWord[] = [];
  let last: number | null = null;
  enc.wordIds.forEach((w, t) => {
    if (w === null) return;
    const [s, e] = enc.offsets[t] as [number, number];
    if (w !== last) {
      const p = softmax(out.data, (b * S + t) * C, C);
      let best = 0;
      for (let i = 1; i < C; i++) if ((p[i] as number) > (p[best] as number)) best = i;
      words.push({
        word: text.slice(s, e),
        start: s,
        end: e,
        label: labelOf(id2label, best),
        score: p[best] as number,
      });
      last = w;
    } else {
      const cur = words[words.length - 1] as TaggedWord;
      cur.end = Math.max(cur.end, e);
      cur.word = text.slice(cur.start, cur.end);
    }
  });
  return words;
}

export interface QaResult {
  answer: string;
  start: number;
  end: number;
  score: number;
}

/** Best answer span in the context (sequence 1) with start <= end and at most `maxAnswerTokens` tokens. */
export function qaRow(
  start: OnnxOutput,
  end: OnnxOutput,
  b: number,
  enc: Encoded,
  context: string,
  maxAnswerTokens = 30,
): QaResult {
  const S = start.dims[1] as number;
  const ctx: number[] = [];
  enc.sequenceIds?.forEach((s, t) => {
    if (s === 1) ctx.push(t);
  });
  if (ctx.length === 0)
    throw new XltConfigError('the context was truncated away: shorten the question', { field: 'question' });
  const ps = softmax(start.data, b * S, S);
  const pe = softmax(end.data, b * S, S);
  let best = { i: ctx[0] as number, j: ctx[0] as number, score: -1 };
  for (const i of ctx) {
    for (const j of ctx) {
      if (j < i || j - i + 1 > maxAnswerTokens) continue;
      const sc = (ps[i] as number) * (pe[j] as number);
      if (sc > best.score) best = { i, j, score: sc };
    }
  }
  const s = (enc.offsets[best.i] as [number, number])[0];
  const e = (enc.offsets[best.j] as [number, number])[1];
  return { answer: context.slice(s, e), start: s, end: e, score: best.score };
}

export interface FillResult {
  token: string;
  tokenId: number;
  score: number;
}

/** Top-k predictions at each `<mask>` position of a masked-LM output. */
export function fillRow(
  out: OnnxOutput,
  b: number,
  enc: Encoded,
  maskId: number,
  topK: number,
  tok: ServeTokenizer,
): FillResult[][] {
  const S = out.dims[1] as number;
  const V = out.dims[2] as number;
  const res: FillResult[][] = [];
  enc.ids.forEach((id, t) => {
    if (id !== maskId) return;
    const p = softmax(out.data, (b * S + t) * V, V);
    const idx = p
      .map((v, i) => [v, i] as const)
      .sort((x, y) => y[0] - x[0])
      .slice(0, topK);
    res.push(
      idx.map(([score, tokenId]) => ({ token: tok.idToToken(tokenId) ?? String(tokenId), tokenId, score })),
    );
  });
  return res;
}
