// Training the Unigram piece scores as sentencepiece does: EM with a Bayesian M-step, then
// pruning rounds that drop the pieces whose removal costs the corpus least likelihood.
import {
  bestAlternative,
  buildLattice,
  type Corpus,
  expectation,
  type Lattice,
  type Piece,
  Trie,
  viterbiCounts,
} from './unigram-lattice.js';

/** How far below the lowest piece score an unknown character scores. */
export const UNK_PENALTY = 10;
/** Pieces with a smaller expected count are dropped by the M-step (unless required). */
const EXPECTED_FREQUENCY_THRESHOLD = 0.5;

/** The smallest finite score (0 if none is below 0). */
export function finiteMin(scores: Float64Array): number {
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

/** The trie of `pieces` (piece id = index). */
export function piecesTrie(pieces: readonly Piece[]): Trie {
  const trie = new Trie(pieces.reduce((a, p) => a + p.chars.length, 0));
  for (let i = 0; i < pieces.length; i++) trie.insert(pieces[i].chars, i);
  return trie;
}

/**
 * One EM iteration: expected piece counts under `scores` (E-step), then the Bayesian M-step of
 * sentencepiece, score = digamma(count) - digamma(sum); pieces with an expected count below 0.5
 * that are not required get score -Infinity. Returns the new scores and the corpus log-likelihood.
 */
export function emIteration(
  corpus: Corpus,
  lat: Lattice,
  pieces: readonly Piece[],
  scores: Float64Array,
): { scores: Float64Array; logLikelihood: number } {
  const minScore = finiteMin(scores);
  const counts = new Float64Array(pieces.length);
  const ll = expectation(corpus, lat, scores, minScore - UNK_PENALTY, counts);
  let sum = 0;
  for (let i = 0; i < counts.length; i++)
    if (counts[i] >= EXPECTED_FREQUENCY_THRESHOLD || pieces[i].required) sum += counts[i];
  const lsum = digamma(sum);
  const next = new Float64Array(pieces.length);
  for (let i = 0; i < counts.length; i++) {
    if (counts[i] < EXPECTED_FREQUENCY_THRESHOLD && !pieces[i].required) next[i] = Number.NEGATIVE_INFINITY;
    else next[i] = digamma(Math.max(counts[i], EXPECTED_FREQUENCY_THRESHOLD)) - lsum;
  }
  return { scores: next, logLikelihood: ll };
}

/** One sentencepiece pruning step: keeps `target` pieces, dropping those whose removal costs least likelihood. */
export function pruneRound(corpus: Corpus, pieces: Piece[], maxLen: number, target: number): Piece[] {
  const trie = piecesTrie(pieces);
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
