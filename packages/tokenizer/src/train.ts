import { readFile } from 'node:fs/promises';
import { Rng, XltConfigError, XltFormatError, XltNotFoundError } from '@xlt/core';
import { type TokenizerJson, writeJsonAtomic, XltTokenizer } from './tokenizer.js';

/** The word-boundary marker of SentencePiece / Metaspace. */
export const SPACE_MARK = '\u2581';
const SPECIALS = ['<s>', '<pad>', '</s>', '<unk>'] as const;
const UNK_PENALTY = 10;
const EXPECTED_FREQUENCY_THRESHOLD = 0.5;

/** A progress report of {@link trainUnigram}. */
export interface TrainProgress {
  stage: 'read' | 'count' | 'seed' | 'em' | 'prune' | 'finalize';
  /** EM/prune round (0 before the first). */
  round: number;
  /** Current number of candidate pieces. */
  pieces: number;
  /** Negative mean log-likelihood per word (EM stage). */
  loss?: number;
  elapsedMs: number;
  message: string;
}

/** Options of {@link trainUnigram}. */
export interface TrainUnigramOptions {
  /** Sentences by language code. */
  texts?: Record<string, readonly string[]>;
  /** Plain-text files (one sentence a line) by language code. */
  files?: Record<string, string | readonly string[]>;
  /** Total vocabulary size, including `<s>`, `<pad>`, `</s>`, `<unk>` and `<mask>`. */
  vocabSize: number;
  /** Language sampling exponent: language l is weighted by p_l^alpha (default 0.3, as XLM-R). */
  alpha?: number;
  /** Fraction of (weighted) characters the alphabet must cover; rarer characters become `<unk>` (default 0.9995). */
  characterCoverage?: number;
  /** Longest piece in code points (default 16). */
  maxPieceLength?: number;
  /** Number of seed substrings before EM (default 200,000; sentencepiece uses 1,000,000). */
  seedSize?: number;
  /** Fraction of pieces kept per pruning round (default 0.75). */
  shrinkingFactor?: number;
  /** EM iterations per round (default 2). */
  numSubIterations?: number;
  /** Read at most this many sentences per language (random subset, seeded); default all. */
  maxSentencesPerLanguage?: number;
  /** Seed of the subsampling (default 0). */
  seed?: number;
  /** Called at each stage and round. */
  onProgress?: (p: TrainProgress) => void;
  /** Print progress lines to stderr. */
  verbose?: boolean;
  /** Write the tokenizer.json here (atomically). */
  output?: string;
}

/** Result of {@link trainUnigram}. */
export interface TrainUnigramResult {
  json: TokenizerJson;
  tokenizer: XltTokenizer;
  /** Per language: sentences read and the sampling weight each sentence got (p_l^alpha normalised, per sentence). */
  languages: { lang: string; sentences: number; sentenceWeight: number; share: number }[];
  /** Alphabet size after character coverage. */
  alphabetSize: number;
  /** Number of distinct words trained on. */
  distinctWords: number;
  elapsedMs: number;
}

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

function finiteMin(scores: Float64Array): number {
  let m = 0;
  for (let i = 0; i < scores.length; i++) if (scores[i] < m && Number.isFinite(scores[i])) m = scores[i];
  return m;
}

function digamma(x: number): number {
  let r = 0;
  while (x < 7) {
    r -= 1 / x;
    x += 1;
  }
  x -= 0.5;
  const xx = 1 / x;
  const xx2 = xx * xx;
  const xx4 = xx2 * xx2;
  return (
    r + Math.log(x) + (1 / 24) * xx2 - (7 / 960) * xx4 + (31 / 8064) * xx4 * xx2 - (127 / 30720) * xx4 * xx4
  );
}

function logAdd(a: number, b: number): number {
  if (a === Number.NEGATIVE_INFINITY) return b;
  if (b === Number.NEGATIVE_INFINITY) return a;
  return a > b ? a + Math.log1p(Math.exp(b - a)) : b + Math.log1p(Math.exp(a - b));
}

/** Open-addressing hash (node, char) -> child node: the trie of the current pieces. */
class Trie {
  private keysA: Int32Array;
  private keysB: Int32Array;
  private vals: Int32Array;
  private mask: number;
  private size = 0;
  /** piece id at each node, -1 if none. */
  piece: number[] = [-1];
  constructor(capacityHint: number) {
    let cap = 1024;
    while (cap < capacityHint * 2) cap *= 2;
    this.keysA = new Int32Array(cap).fill(-1);
    this.keysB = new Int32Array(cap);
    this.vals = new Int32Array(cap);
    this.mask = cap - 1;
  }
  private slot(a: number, b: number): number {
    return (Math.imul(a, 0x9e3779b1) ^ Math.imul(b + 1, 0x85ebca77)) & this.mask;
  }
  get(a: number, b: number): number {
    let s = this.slot(a, b);
    for (;;) {
      const k = this.keysA[s];
      if (k === -1) return -1;
      if (k === a && this.keysB[s] === b) return this.vals[s];
      s = (s + 1) & this.mask;
    }
  }
  insert(chars: ArrayLike<number>, pieceId: number): void {
    let node = 0;
    for (let i = 0; i < chars.length; i++) {
      let next = this.get(node, chars[i]);
      if (next < 0) {
        next = this.piece.length;
        this.piece.push(-1);
        if ((this.size + 1) * 2 > this.mask) this.grow();
        let s = this.slot(node, chars[i]);
        while (this.keysA[s] !== -1) s = (s + 1) & this.mask;
        this.keysA[s] = node;
        this.keysB[s] = chars[i];
        this.vals[s] = next;
        this.size++;
      }
      node = next;
    }
    this.piece[node] = pieceId;
  }
  private grow(): void {
    const { keysA, keysB, vals } = this;
    const cap = (this.mask + 1) * 2;
    this.keysA = new Int32Array(cap).fill(-1);
    this.keysB = new Int32Array(cap);
    this.vals = new Int32Array(cap);
    this.mask = cap - 1;
    for (let i = 0; i < keysA.length; i++) {
      if (keysA[i] === -1) continue;
      let s = this.slot(keysA[i], keysB[i]);
      while (this.keysA[s] !== -1) s = (s + 1) & this.mask;
      this.keysA[s] = keysA[i];
      this.keysB[s] = keysB[i];
      this.vals[s] = vals[i];
    }
  }
}

class GrowInt {
  data = new Int32Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const d = new Int32Array(this.data.length * 2);
      d.set(this.data);
      this.data = d;
    }
    this.data[this.length++] = v;
  }
}

/** The corpus as distinct words over a dense alphabet. */
interface Corpus {
  /** code points of the alphabet; char id = index. */
  alphabet: number[];
  /** concatenated char ids of all distinct words (-1 = not in the alphabet). */
  chars: Int32Array;
  /** word w spans chars[start[w], start[w+1]). */
  start: Int32Array;
  freq: Float64Array;
}

/** Lattice edges of every word for the current pieces (CSR by position). */
interface Lattice {
  /** edges of global position p are edgeStart[p]..edgeStart[p+1]. */
  edgeStart: Int32Array;
  edgeLen: Int32Array;
  /** piece index, or -1 for the unknown-character edge. */
  edgePiece: Int32Array;
}

function buildLattice(corpus: Corpus, trie: Trie, maxLen: number): Lattice {
  const { chars, start } = corpus;
  const nPos = chars.length;
  const edgeStart = new Int32Array(nPos + 1);
  const lens = new GrowInt();
  const pcs = new GrowInt();
  const nWords = start.length - 1;
  for (let w = 0; w < nWords; w++) {
    const end = start[w + 1];
    for (let p = start[w]; p < end; p++) {
      edgeStart[p] = lens.length;
      if (chars[p] < 0) {
        lens.push(1);
        pcs.push(-1);
        continue;
      }
      let node = 0;
      let found = false;
      for (let q = p; q < end && q - p < maxLen; q++) {
        const c = chars[q];
        if (c < 0) break;
        node = trie.get(node, c);
        if (node < 0) break;
        const pid = trie.piece[node];
        if (pid >= 0) {
          lens.push(q - p + 1);
          pcs.push(pid);
          found = true;
        }
      }
      if (!found) {
        lens.push(1);
        pcs.push(-1);
      }
    }
  }
  edgeStart[nPos] = lens.length;
  return {
    edgeStart,
    edgeLen: lens.data.subarray(0, lens.length),
    edgePiece: pcs.data.subarray(0, pcs.length),
  };
}

/** One EM step: expected counts of each piece; returns the corpus log-likelihood. */
function expectation(
  corpus: Corpus,
  lat: Lattice,
  scores: Float64Array,
  unkScore: number,
  counts: Float64Array,
): number {
  counts.fill(0);
  const { start, freq } = corpus;
  const { edgeStart, edgeLen, edgePiece } = lat;
  let maxW = 0;
  for (let w = 0; w + 1 < start.length; w++) maxW = Math.max(maxW, start[w + 1] - start[w]);
  const alpha = new Float64Array(maxW + 1);
  const beta = new Float64Array(maxW + 1);
  let ll = 0;
  for (let w = 0; w + 1 < start.length; w++) {
    const s0 = start[w];
    const n = start[w + 1] - s0;
    alpha.fill(Number.NEGATIVE_INFINITY, 0, n + 1);
    alpha[0] = 0;
    for (let i = 0; i < n; i++) {
      const a = alpha[i];
      if (a === Number.NEGATIVE_INFINITY) continue;
      for (let e = edgeStart[s0 + i]; e < edgeStart[s0 + i + 1]; e++) {
        const pid = edgePiece[e];
        const j = i + edgeLen[e];
        alpha[j] = logAdd(alpha[j], a + (pid >= 0 ? scores[pid] : unkScore));
      }
    }
    const z = alpha[n];
    beta.fill(Number.NEGATIVE_INFINITY, 0, n + 1);
    beta[n] = 0;
    for (let i = n - 1; i >= 0; i--) {
      let b = Number.NEGATIVE_INFINITY;
      for (let e = edgeStart[s0 + i]; e < edgeStart[s0 + i + 1]; e++) {
        const pid = edgePiece[e];
        b = logAdd(b, (pid >= 0 ? scores[pid] : unkScore) + beta[i + edgeLen[e]]);
      }
      beta[i] = b;
    }
    const f = freq[w];
    ll += f * z;
    for (let i = 0; i < n; i++) {
      const a = alpha[i];
      for (let e = edgeStart[s0 + i]; e < edgeStart[s0 + i + 1]; e++) {
        const pid = edgePiece[e];
        if (pid < 0) continue;
        counts[pid] += f * Math.exp(a + scores[pid] + beta[i + edgeLen[e]] - z);
      }
    }
  }
  return ll;
}

/** Viterbi over every word: piece usage frequency and frequency of words using each piece. */
function viterbiCounts(
  corpus: Corpus,
  lat: Lattice,
  scores: Float64Array,
  unkScore: number,
): { freq: Float64Array; wordFreq: Float64Array; total: number } {
  const nP = scores.length;
  const freq = new Float64Array(nP);
  const wordFreq = new Float64Array(nP);
  const stamp = new Int32Array(nP).fill(-1);
  const { start } = corpus;
  const { edgeStart, edgeLen, edgePiece } = lat;
  let maxW = 0;
  for (let w = 0; w + 1 < start.length; w++) maxW = Math.max(maxW, start[w + 1] - start[w]);
  const best = new Float64Array(maxW + 1);
  const back = new Int32Array(maxW + 1);
  let total = 0;
  for (let w = 0; w + 1 < start.length; w++) {
    const s0 = start[w];
    const n = start[w + 1] - s0;
    best.fill(Number.NEGATIVE_INFINITY, 0, n + 1);
    best[0] = 0;
    for (let i = 0; i < n; i++) {
      const a = best[i];
      if (a === Number.NEGATIVE_INFINITY) continue;
      for (let e = edgeStart[s0 + i]; e < edgeStart[s0 + i + 1]; e++) {
        const pid = edgePiece[e];
        const j = i + edgeLen[e];
        const v = a + (pid >= 0 ? scores[pid] : unkScore);
        if (v > best[j]) {
          best[j] = v;
          back[j] = e;
        }
      }
    }
    const f = corpus.freq[w];
    let j = n;
    while (j > 0) {
      const e = back[j];
      const pid = edgePiece[e];
      if (pid >= 0) {
        freq[pid] += f;
        total += f;
        if (stamp[pid] !== w) {
          stamp[pid] = w;
          wordFreq[pid] += f;
        }
      }
      j -= edgeLen[e];
    }
  }
  return { freq, wordFreq, total };
}

/** Best segmentation of `chars` (piece ids) that does not use `exclude` over the whole span; null if none. */
function bestAlternative(
  chars: Int32Array,
  trie: Trie,
  scores: Float64Array,
  exclude: number,
): { score: number; pieces: number[] } | null {
  const n = chars.length;
  const best = new Float64Array(n + 1).fill(Number.NEGATIVE_INFINITY);
  const backLen = new Int32Array(n + 1);
  const backPiece = new Int32Array(n + 1);
  best[0] = 0;
  for (let i = 0; i < n; i++) {
    if (best[i] === Number.NEGATIVE_INFINITY) continue;
    let node = 0;
    for (let q = i; q < n; q++) {
      node = trie.get(node, chars[q]);
      if (node < 0) break;
      const pid = trie.piece[node];
      if (pid < 0 || (pid === exclude && i === 0 && q === n - 1)) continue;
      const v = best[i] + scores[pid];
      if (v > best[q + 1]) {
        best[q + 1] = v;
        backLen[q + 1] = q - i + 1;
        backPiece[q + 1] = pid;
      }
    }
  }
  if (best[n] === Number.NEGATIVE_INFINITY) return null;
  const pieces: number[] = [];
  for (let j = n; j > 0; j -= backLen[j]) pieces.push(backPiece[j]);
  return { score: best[n], pieces };
}

interface Piece {
  chars: Int32Array;
  score: number;
  required: boolean;
}

async function readSentences(options: TrainUnigramOptions): Promise<Map<string, string[]>> {
  const byLang = new Map<string, string[]>();
  const push = (lang: string, lines: Iterable<string>) => {
    let arr = byLang.get(lang);
    if (!arr) {
      arr = [];
      byLang.set(lang, arr);
    }
    const before = arr.length;
    for (const l of lines) if (l.trim().length > 0) arr.push(l);
    return arr.length - before;
  };
  for (const [lang, t] of Object.entries(options.texts ?? {})) {
    // a language named with nothing to learn from is a mistake to report, not to drop silently
    if (push(lang, t) === 0)
      throw new XltConfigError(`language '${lang}' has no non-blank sentence: its corpus is empty`, {
        field: `texts.${lang}`,
      });
  }
  for (const [lang, f] of Object.entries(options.files ?? {})) {
    for (const file of typeof f === 'string' ? [f] : f) {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (cause) {
        throw new XltNotFoundError('cannot read training file', { file, cause });
      }
      if (push(lang, text.split(/\r?\n/)) === 0)
        throw new XltFormatError(
          `the training file of language '${lang}' is empty or blank: expected one sentence a line`,
          { file, field: `files.${lang}` },
        );
    }
  }
  return byLang;
}

/**
 * Trains a SentencePiece-style Unigram vocabulary (seed substrings, EM with Bayesian M-step, pruning by
 * likelihood loss, as `sentencepiece` does) on a multilingual corpus with language-balanced weighting
 * (p_l^alpha), and returns an XLM-R-layout `tokenizer.json` (`<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3,
 * pieces, `<mask>` last) with an NFKC normalizer.
 *
 * When the corpus supports fewer pieces than `vocabSize - 5` (every remaining candidate has an
 * expected count below 0.5), the vocabulary is smaller than asked: check `json.model.vocab.length`.
 *
 * Sampling is done in expectation: every sentence of language l is counted with weight
 * q_l N / n_l (q_l = p_l^alpha / sum p^alpha), which is what repeated sampling converges to.
 * @throws XltConfigError on an empty corpus, a vocabulary smaller than the alphabet + 5, or bad options.
 */
export async function trainUnigram(options: TrainUnigramOptions): Promise<TrainUnigramResult> {
  const t0 = Date.now();
  const vocabSize = options.vocabSize;
  const alphaExp = options.alpha ?? 0.3;
  const coverage = options.characterCoverage ?? 0.9995;
  const maxLen = options.maxPieceLength ?? 16;
  const seedSize = options.seedSize ?? 200_000;
  const shrink = options.shrinkingFactor ?? 0.75;
  const subIters = options.numSubIterations ?? 2;
  if (!Number.isInteger(vocabSize) || vocabSize < SPECIALS.length + 2)
    throw new XltConfigError(`vocabSize must be an integer >= 6, got ${vocabSize}`, { field: 'vocabSize' });
  if (!(coverage > 0 && coverage <= 1))
    throw new XltConfigError(`characterCoverage must be in (0, 1], got ${coverage}`, {
      field: 'characterCoverage',
    });
  if (!(alphaExp >= 0 && alphaExp <= 1))
    throw new XltConfigError(`alpha must be in [0, 1], got ${alphaExp}`, { field: 'alpha' });
  if (!(shrink > 0 && shrink < 1))
    throw new XltConfigError(`shrinkingFactor must be in (0, 1), got ${shrink}`, {
      field: 'shrinkingFactor',
    });
  if (!Number.isInteger(maxLen) || maxLen < 1)
    throw new XltConfigError(`maxPieceLength must be a positive integer, got ${maxLen}`, {
      field: 'maxPieceLength',
    });
  const report = (p: Omit<TrainProgress, 'elapsedMs'>) => {
    const full = { ...p, elapsedMs: Date.now() - t0 };
    options.onProgress?.(full);
    if (options.verbose)
      process.stderr.write(`[trainUnigram ${(full.elapsedMs / 1000).toFixed(1)}s] ${p.message}\n`);
  };

  // 1. read, subsample, weight languages
  const byLang = await readSentences(options);
  const rng = new Rng(options.seed ?? 0);
  for (const [lang, arr] of byLang) {
    const cap = options.maxSentencesPerLanguage;
    if (cap !== undefined && arr.length > cap) byLang.set(lang, rng.shuffle([...arr]).slice(0, cap));
  }
  const langs = [...byLang.entries()].filter(([, a]) => a.length > 0);
  const total = langs.reduce((s, [, a]) => s + a.length, 0);
  if (total === 0)
    throw new XltConfigError('the training corpus is empty (no non-blank sentence)', { field: 'texts' });
  const qs = langs.map(([, a]) => (a.length / total) ** alphaExp);
  const qSum = qs.reduce((a, b) => a + b, 0);
  const languages = langs.map(([lang, a], i) => ({
    lang,
    sentences: a.length,
    share: qs[i] / qSum,
    sentenceWeight: ((qs[i] / qSum) * total) / a.length,
  }));
  report({
    stage: 'read',
    round: 0,
    pieces: 0,
    message: `read ${total} sentences in ${langs.length} languages`,
  });

  // 2. words with weights, characters
  const words = new Map<string, number>();
  langs.forEach(([, arr], i) => {
    const wgt = languages[i].sentenceWeight;
    for (const line of arr) {
      for (const w of line.normalize('NFKC').split(/\s+/u)) {
        if (w.length === 0) continue;
        const key = SPACE_MARK + w;
        words.set(key, (words.get(key) ?? 0) + wgt);
      }
    }
  });
  const charFreq = new Map<number, number>();
  for (const [w, f] of words)
    for (const ch of w) {
      const cp = ch.codePointAt(0)!;
      charFreq.set(cp, (charFreq.get(cp) ?? 0) + f);
    }
  const sortedChars = [...charFreq.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]);
  const charTotal = sortedChars.reduce((s, [, f]) => s + f, 0);
  const alphabet: number[] = [];
  let acc = 0;
  for (const [cp, f] of sortedChars) {
    if (alphabet.length > 0 && acc / charTotal >= coverage) break;
    alphabet.push(cp);
    acc += f;
  }
  // the word-boundary mark starts every word: always in the alphabet, whatever its share
  if (!alphabet.includes(0x2581)) alphabet.push(0x2581);
  const pieceBudget = vocabSize - SPECIALS.length - 1;
  if (alphabet.length > pieceBudget)
    throw new XltConfigError(
      `vocabSize ${vocabSize} is smaller than the alphabet (${alphabet.length} characters at coverage ${coverage}) plus 5 special tokens`,
      { field: 'vocabSize' },
    );
  const charId = new Map<number, number>();
  for (let i = 0; i < alphabet.length; i++) charId.set(alphabet[i], i);
  let nChars = 0;
  for (const w of words.keys()) for (const _ of w) nChars++;
  const corpus: Corpus = {
    alphabet,
    chars: new Int32Array(nChars),
    start: new Int32Array(words.size + 1),
    freq: new Float64Array(words.size),
  };
  {
    let p = 0;
    let wi = 0;
    for (const [w, f] of words) {
      corpus.start[wi] = p;
      corpus.freq[wi] = f;
      for (const ch of w) corpus.chars[p++] = charId.get(ch.codePointAt(0)!) ?? -1;
      wi++;
    }
    corpus.start[wi] = p;
  }
  words.clear();
  report({
    stage: 'count',
    round: 0,
    pieces: alphabet.length,
    message: `${corpus.freq.length} distinct words, ${nChars} characters, alphabet ${alphabet.length} (of ${sortedChars.length})`,
  });

  // 3. seed pieces: frequent substrings (score freq * length), plus every alphabet character
  const subCount = new Map<string, number>();
  let minKeep = 0;
  const nWords = corpus.freq.length;
  for (let w = 0; w < nWords; w++) {
    const s = corpus.start[w];
    const e = corpus.start[w + 1];
    const f = corpus.freq[w];
    for (let i = s; i < e; i++) {
      if (corpus.chars[i] < 0) continue;
      let key = `${corpus.chars[i]},`;
      for (let j = i + 1; j < e && j - i < maxLen; j++) {
        const c = corpus.chars[j];
        if (c < 0) break;
        // the word-boundary mark may only start a piece
        if (alphabet[c] === 0x2581) break;
        key += `${c},`;
        subCount.set(key, (subCount.get(key) ?? 0) + f);
      }
    }
    if (subCount.size > 6_000_000) {
      // bounded memory: drop the rarest substrings (lossy counting)
      minKeep = Math.max(minKeep * 2, 1);
      for (const [k, v] of subCount) if (v <= minKeep) subCount.delete(k);
    }
  }
  const seeds: { key: string; score: number }[] = [];
  for (const [k, v] of subCount) {
    if (v < 2) continue;
    const len = k.split(',').length - 1;
    seeds.push({ key: k, score: v * len });
  }
  subCount.clear();
  seeds.sort((a, b) => b.score - a.score || (a.key < b.key ? -1 : 1));
  const keep = seeds.slice(0, Math.max(0, seedSize - alphabet.length));
  let pieces: Piece[] = alphabet.map((_, i) => ({
    chars: Int32Array.of(i),
    score: charFreq.get(alphabet[i])!,
    required: true,
  }));
  for (const s of keep)
    pieces.push({
      chars: Int32Array.from(s.key.slice(0, -1).split(',').map(Number)),
      score: s.score,
      required: false,
    });
  {
    const sum = pieces.reduce((a, p) => a + p.score, 0);
    for (const p of pieces) p.score = Math.log(p.score) - Math.log(sum);
  }
  report({ stage: 'seed', round: 0, pieces: pieces.length, message: `${pieces.length} seed pieces` });

  // 4. EM + pruning rounds
  const desired = Math.ceil(pieceBudget * 1.1);
  let round = 0;
  for (;;) {
    round++;
    const trie = new Trie(pieces.reduce((a, p) => a + p.chars.length, 0));
    for (let i = 0; i < pieces.length; i++) trie.insert(pieces[i].chars, i);
    const lat = buildLattice(corpus, trie, maxLen);
    let scores = Float64Array.from(pieces, (p) => p.score);
    for (let it = 0; it < subIters; it++) {
      const minScore = finiteMin(scores);
      const counts = new Float64Array(pieces.length);
      const ll = expectation(corpus, lat, scores, minScore - UNK_PENALTY, counts);
      // Bayesian M-step (sentencepiece): score = digamma(count) - digamma(sum); rare pieces go
      let sum = 0;
      for (let i = 0; i < counts.length; i++)
        if (counts[i] >= EXPECTED_FREQUENCY_THRESHOLD || pieces[i].required) sum += counts[i];
      const lsum = digamma(sum);
      const next = new Float64Array(pieces.length);
      for (let i = 0; i < counts.length; i++) {
        if (counts[i] < EXPECTED_FREQUENCY_THRESHOLD && !pieces[i].required)
          next[i] = Number.NEGATIVE_INFINITY;
        else next[i] = digamma(Math.max(counts[i], EXPECTED_FREQUENCY_THRESHOLD)) - lsum;
      }
      scores = next;
      report({
        stage: 'em',
        round,
        pieces: pieces.length,
        loss: -ll / corpus.freq.reduce((a, b) => a + b, 0),
        message: `round ${round} EM ${it + 1}: ${pieces.length} pieces, loss ${(-ll / corpus.freq.reduce((a, b) => a + b, 0)).toFixed(4)}`,
      });
    }
    pieces.forEach((p, i) => {
      p.score = scores[i];
    });
    // drop pieces the M-step killed
    const alive = pieces.filter((p) => p.score !== Number.NEGATIVE_INFINITY);
    if (alive.length <= desired) {
      pieces = alive;
      break;
    }
    const pruned = pruneRound(corpus, alive, maxLen, Math.max(desired, Math.floor(shrink * alive.length)));
    const stuck = pruned.length >= alive.length;
    pieces = pruned;
    report({
      stage: 'prune',
      round,
      pieces: pieces.length,
      message: `round ${round} pruned to ${pieces.length} pieces`,
    });
    if (pieces.length <= desired || stuck) break;
  }

  // 5. finalize: all required characters, then the best pieces by score
  const required = pieces.filter((p) => p.required);
  const others = pieces.filter((p) => !p.required).sort((a, b) => b.score - a.score);
  const minScore = pieces.reduce((a, p) => (Number.isFinite(p.score) ? Math.min(a, p.score) : a), 0);
  for (const p of required) if (!Number.isFinite(p.score)) p.score = minScore - UNK_PENALTY;
  const final = [...required, ...others.slice(0, pieceBudget - required.length)];
  final.sort((a, b) => b.score - a.score);
  const vocab: [string, number][] = final.map((p) => [
    String.fromCodePoint(...Array.from(p.chars, (c) => alphabet[c])),
    p.score,
  ]);
  const json = buildTokenizerJson(vocab);
  const tokenizer = XltTokenizer.fromJSON(json);
  if (options.output !== undefined) await writeJsonAtomic(options.output, JSON.stringify(json, null, 2));
  const short =
    json.model.vocab.length < vocabSize
      ? ` (fewer than the ${vocabSize} asked: the corpus has no more useful pieces)`
      : '';
  report({
    stage: 'finalize',
    round,
    pieces: vocab.length,
    message: `final vocabulary ${json.model.vocab.length}${short}`,
  });
  return {
    json,
    tokenizer,
    languages,
    alphabetSize: alphabet.length,
    distinctWords: corpus.freq.length,
    elapsedMs: Date.now() - t0,
  };
}

/** One sentencepiece pruning step: keeps `target` pieces, dropping those whose removal costs least likelihood. */
function pruneRound(corpus: Corpus, pieces: Piece[], maxLen: number, target: number): Piece[] {
  const trie = new Trie(pieces.reduce((a, p) => a + p.chars.length, 0));
  for (let i = 0; i < pieces.length; i++) trie.insert(pieces[i].chars, i);
  const scores = Float64Array.from(pieces, (p) => p.score);
  const minScore = finiteMin(scores);
  const n = pieces.length;
  const alwaysKeep = new Uint8Array(n);
  const alternatives: (number[] | null)[] = new Array(n).fill(null);
  for (let i = 0; i < n; i++) {
    const p = pieces[i];
    if (p.chars.length === 1) {
      alwaysKeep[i] = 1;
      continue;
    }
    const alt = bestAlternative(p.chars, trie, scores, i);
    if (alt === null) alwaysKeep[i] = 1;
    else if (alt.score > scores[i]) alwaysKeep[i] = 0;
    else {
      alwaysKeep[i] = 1;
      alternatives[i] = alt.pieces;
    }
  }
  const lat = buildLattice(corpus, trie, maxLen);
  const { freq, wordFreq, total } = viterbiCounts(corpus, lat, scores, minScore - UNK_PENALTY);
  const kept: number[] = [];
  const candidates: { i: number; loss: number }[] = [];
  for (let i = 0; i < n; i++) {
    if (pieces[i].required) {
      kept.push(i);
      continue;
    }
    if (freq[i] === 0 || !alwaysKeep[i]) continue;
    const alt = alternatives[i];
    if (alt === null) {
      kept.push(i);
      continue;
    }
    const F = wordFreq[i] / total;
    const logProbSp = Math.log(freq[i]) - Math.log(total);
    const sumAlt = total - freq[i] + freq[i] * alt.length;
    let logProbAlt = 0;
    for (const a of alt) logProbAlt += Math.log(freq[a] + freq[i]) - Math.log(sumAlt);
    candidates.push({ i, loss: F * (logProbSp - logProbAlt) });
  }
  candidates.sort((a, b) => b.loss - a.loss || a.i - b.i);
  for (const c of candidates) {
    if (kept.length >= target) break;
    kept.push(c.i);
  }
  kept.sort((a, b) => a - b);
  return kept.map((i) => pieces[i]);
}
