import { XltConfigError } from '@xlt/core';

/**
 * Which language each token belongs to, estimated once from unlabelled multilingual text: a token
 * belongs to language l when l's relative frequency of it is at least `dominance` times every other
 * language's, and it occurs at least `minCount` times. Shared tokens (digits, punctuation, names)
 * belong to no language.
 */
export class TokenLanguageProfile {
  readonly languages: string[];
  private readonly owner = new Map<number, string>();

  private constructor(languages: string[], owner: Map<number, string>) {
    this.languages = languages;
    this.owner = owner;
  }

  /** Builds a profile from token id sequences per language. */
  static fromIds(
    idsByLanguage: ReadonlyMap<string, Iterable<readonly number[]>>,
    options: { minCount?: number; dominance?: number; ignore?: ReadonlySet<number> } = {},
  ): TokenLanguageProfile {
    const minCount = options.minCount ?? 3;
    const dominance = options.dominance ?? 5;
    const counts = new Map<string, Map<number, number>>();
    const totals = new Map<string, number>();
    for (const [lang, seqs] of idsByLanguage) {
      const c = new Map<number, number>();
      let total = 0;
      for (const seq of seqs) {
        for (const id of seq) {
          if (options.ignore?.has(id)) continue;
          c.set(id, (c.get(id) ?? 0) + 1);
          total++;
        }
      }
      if (total === 0) throw new XltConfigError(`no tokens for language '${lang}'`, { field: lang });
      counts.set(lang, c);
      totals.set(lang, total);
    }
    const langs = [...counts.keys()];
    const all = new Set<number>();
    for (const c of counts.values()) for (const id of c.keys()) all.add(id);
    const owner = new Map<number, string>();
    for (const id of all) {
      let best: string | undefined;
      let bestF = 0;
      let second = 0;
      let bestCount = 0;
      for (const l of langs) {
        const n = counts.get(l)?.get(id) ?? 0;
        const f = n / (totals.get(l) as number);
        if (f > bestF) {
          second = bestF;
          bestF = f;
          best = l;
          bestCount = n;
        } else if (f > second) second = f;
      }
      if (best !== undefined && bestCount >= minCount && bestF >= dominance * second) owner.set(id, best);
    }
    return new TokenLanguageProfile(langs, owner);
  }

  /** The language a token belongs to, or undefined when shared or rare. */
  languageOf(id: number): string | undefined {
    return this.owner.get(id);
  }

  /** Number of tokens assigned to each language. */
  sizes(): Record<string, number> {
    const out: Record<string, number> = Object.fromEntries(this.languages.map((l) => [l, 0]));
    for (const l of this.owner.values()) out[l] = (out[l] ?? 0) + 1;
    return out;
  }
}
