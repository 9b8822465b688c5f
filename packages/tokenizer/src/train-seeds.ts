// The seed pieces of Unigram training: every alphabet character, plus the most frequent substrings
// of the corpus words scored by frequency x length (as sentencepiece seeds its EM).
import type { Corpus, Piece } from './unigram-lattice.js';

/**
 * Up to `seedSize` seed pieces with log-probability scores normalised over all of them: the
 * alphabet characters (required, scored by their frequency `charFreq`) and the substrings of 2 to
 * `maxLen` characters with a weighted count >= 2 (the word-boundary mark only at a piece's start),
 * best `count x length` first. Substring counting is lossy above six
 * million distinct substrings (the rarest are dropped) to bound memory.
 */
export function seedPieces(
  corpus: Corpus,
  charFreq: Map<number, number>,
  maxLen: number,
  seedSize: number,
): Piece[] {
  const { alphabet } = corpus;
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
  const pieces: Piece[] = alphabet.map((_, i) => ({
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
  return pieces;
}
