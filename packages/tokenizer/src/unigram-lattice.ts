// The Unigram lattice over the training corpus: the trie of the current pieces, the edges every
// word position has, and the passes over them (forward-backward expected counts, Viterbi counts,
// the best segmentation of a piece without itself).

/** The corpus as distinct words over a dense alphabet. */
export interface Corpus {
  /** code points of the alphabet; char id = index. */
  alphabet: number[];
  /** concatenated char ids of all distinct words (-1 = not in the alphabet). */
  chars: Int32Array;
  /** word w spans chars[start[w], start[w+1]). */
  start: Int32Array;
  freq: Float64Array;
}

/** A candidate piece: char ids, log-probability score, and whether pruning must keep it (an alphabet character). */
export interface Piece {
  chars: Int32Array;
  score: number;
  required: boolean;
}

function logAdd(a: number, b: number): number {
  if (a === Number.NEGATIVE_INFINITY) return b;
  if (b === Number.NEGATIVE_INFINITY) return a;
  return a > b ? a + Math.log1p(Math.exp(b - a)) : b + Math.log1p(Math.exp(a - b));
}

/** Open-addressing hash (node, char) -> child node: the trie of the current pieces. */
export class Trie {
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

/** Lattice edges of every word for the current pieces (CSR by position). */
export interface Lattice {
  /** edges of global position p are edgeStart[p]..edgeStart[p+1]. */
  edgeStart: Int32Array;
  edgeLen: Int32Array;
  /** piece index, or -1 for the unknown-character edge. */
  edgePiece: Int32Array;
}

/** The lattice edges of every word position: one per piece starting there, or one unknown-character edge. */
export function buildLattice(corpus: Corpus, trie: Trie, maxLen: number): Lattice {
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
export function expectation(
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
export function viterbiCounts(
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
export function bestAlternative(
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
