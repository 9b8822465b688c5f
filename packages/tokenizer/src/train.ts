import { XltConfigError } from '@xlt/core';
import { type TokenizerJson, writeJsonAtomic, XltTokenizer } from './tokenizer.js';
import { buildCorpus, readSentences, weighLanguages } from './train-corpus.js';
import { seedPieces } from './train-seeds.js';
import { emIteration, piecesTrie, pruneRound, UNK_PENALTY } from './unigram-em.js';
import { buildTokenizerJson, SPECIALS } from './unigram-json.js';
import { buildLattice } from './unigram-lattice.js';

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
  const { langs, languages, total } = weighLanguages(
    await readSentences(options),
    alphaExp,
    options.maxSentencesPerLanguage,
    options.seed ?? 0,
  );
  report({
    stage: 'read',
    round: 0,
    pieces: 0,
    message: `read ${total} sentences in ${langs.length} languages`,
  });

  // 2. words with weights, characters
  const pieceBudget = vocabSize - SPECIALS.length - 1;
  const { corpus, charFreq, nChars } = buildCorpus(langs, languages, coverage, pieceBudget, vocabSize);
  const { alphabet } = corpus;
  report({
    stage: 'count',
    round: 0,
    pieces: alphabet.length,
    message: `${corpus.freq.length} distinct words, ${nChars} characters, alphabet ${alphabet.length} (of ${charFreq.size})`,
  });

  // 3. seed pieces: frequent substrings (score freq * length), plus every alphabet character
  let pieces = seedPieces(corpus, charFreq, maxLen, seedSize);
  report({ stage: 'seed', round: 0, pieces: pieces.length, message: `${pieces.length} seed pieces` });

  // 4. EM + pruning rounds
  const desired = Math.ceil(pieceBudget * 1.1);
  const wordWeight = corpus.freq.reduce((a, b) => a + b, 0);
  let round = 0;
  for (;;) {
    round++;
    const lat = buildLattice(corpus, piecesTrie(pieces), maxLen);
    let scores: Float64Array = Float64Array.from(pieces, (p) => p.score);
    for (let it = 0; it < subIters; it++) {
      const step = emIteration(corpus, lat, pieces, scores);
      scores = step.scores;
      const loss = -step.logLikelihood / wordWeight;
      report({
        stage: 'em',
        round,
        pieces: pieces.length,
        loss,
        message: `round ${round} EM ${it + 1}: ${pieces.length} pieces, loss ${loss.toFixed(4)}`,
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
