import { XltConfigError } from '@xlt/core';
import { type TokenizerJson, XltTokenizer } from './tokenizer.js';
import { type TrainUnigramOptions, trainUnigram } from './train.js';
import { SPACE_MARK } from './unigram-json.js';

/** Result of {@link extendVocabulary}. */
export interface ExtendVocabularyResult {
  /** The extended tokenizer. */
  tokenizer: XltTokenizer;
  json: TokenizerJson;
  /** `oldToNew[oldId]` = id of the same token in the extended vocabulary (only trailing added tokens such as `<mask>` move). */
  oldToNew: Int32Array;
  /** Ids of the added pieces, in order (rows to initialise in a resized embedding matrix). */
  newIds: number[];
  /** The added pieces, aligned with `newIds`. */
  addedPieces: string[];
  /** New vocabulary size. */
  vocabSize: number;
}

/**
 * Adds up to `n` pieces that best shorten the tokenization of `newTexts` (a new language), keeping every
 * existing id except the trailing special tokens (`<mask>`), which move to the end.
 *
 * Candidates come from a Unigram model trained on `newTexts` alone; each is ranked by its probability in
 * that model times the number of tokens it saves over the old tokenization (characters the old vocabulary
 * lacks come first, since they were `<unk>`). New pieces get the new model's log-probability shifted by
 * (median old score - median new score), so they compete with old pieces on the same scale.
 * To resize an embedding matrix E (rows = old ids): `E2[oldToNew[i]] = E[i]`, rows `newIds` freshly initialised.
 */
export async function extendVocabulary(
  tokenizer: XltTokenizer,
  newTexts: readonly string[],
  n: number,
  options: Pick<TrainUnigramOptions, 'maxPieceLength' | 'characterCoverage' | 'onProgress' | 'verbose'> = {},
): Promise<ExtendVocabularyResult> {
  if (!Number.isInteger(n) || n < 1)
    throw new XltConfigError(`n must be a positive integer, got ${n}`, { field: 'n' });
  const old = tokenizer.json;
  const oldVocab = old.model.vocab;
  const known = new Set(oldVocab.map(([p]) => p));
  const chars = new Set<string>();
  for (const t of newTexts) for (const ch of t.normalize('NFKC')) chars.add(ch);
  const trained = await trainUnigram({
    texts: { new: newTexts },
    vocabSize: chars.size + 1 + 4 * n + 6,
    characterCoverage: options.characterCoverage ?? 1,
    ...(options.maxPieceLength !== undefined ? { maxPieceLength: options.maxPieceLength } : {}),
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    ...(options.verbose ? { verbose: options.verbose } : {}),
  });
  const newPieces = trained.json.model.vocab.filter(([p], i) => i >= 4 && p !== '<mask>' && !known.has(p));
  // tokens the old tokenizer needs for each candidate
  const surface = newPieces.map(([p]) => (p.startsWith(SPACE_MARK) ? p.slice(1) : p));
  const encs = await tokenizer.encodeBatch(
    surface.map((s) => (s.length > 0 ? s : ' ')),
    { addSpecialTokens: false },
  );
  const ranked = newPieces.map(([p, score], i) => {
    let cost = encs[i].ids.length;
    if (!p.startsWith(SPACE_MARK) && encs[i].tokens[0] === SPACE_MARK) cost--;
    const isNewChar = [...p].length === 1;
    const value = isNewChar ? Number.POSITIVE_INFINITY : Math.exp(score) * Math.max(0, cost - 1);
    return { p, score, value };
  });
  ranked.sort((a, b) => b.value - a.value || b.score - a.score);
  const chosen = ranked.filter((r) => r.value > 0).slice(0, n);

  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length === 0 ? 0 : s[Math.floor(s.length / 2)];
  };
  const special = new Set(old.added_tokens.filter((t) => t.special).map((t) => t.id));
  let tail = oldVocab.length;
  while (tail > 0 && special.has(tail - 1)) tail--;
  const oldScores = oldVocab
    .slice(0, tail)
    .filter((_, i) => !special.has(i))
    .map(([, s]) => s);
  const newScores = trained.json.model.vocab.slice(4, -1).map(([, s]) => s);
  const shift = median(oldScores) - median(newScores);

  const oldToNew = new Int32Array(oldVocab.length);
  for (let i = 0; i < oldVocab.length; i++) oldToNew[i] = i < tail ? i : i + chosen.length;
  const vocab: [string, number][] = [
    ...oldVocab.slice(0, tail),
    ...chosen.map((c): [string, number] => [c.p, c.score + shift]),
    ...oldVocab.slice(tail),
  ];
  const json: TokenizerJson = JSON.parse(JSON.stringify(old));
  json.model.vocab = vocab;
  if (json.model.unk_id !== null) json.model.unk_id = oldToNew[json.model.unk_id];
  json.added_tokens = json.added_tokens.map((t) => ({ ...t, id: oldToNew[t.id] }));
  const pp = json.post_processor as { special_tokens?: Record<string, { ids: number[] }> } | null;
  if (pp?.special_tokens)
    for (const st of Object.values(pp.special_tokens)) st.ids = st.ids.map((i) => oldToNew[i]);
  const newIds = chosen.map((_, k) => tail + k);
  return {
    tokenizer: XltTokenizer.fromJSON(json),
    json,
    oldToNew,
    newIds,
    addedPieces: chosen.map((c) => c.p),
    vocabSize: vocab.length,
  };
}
