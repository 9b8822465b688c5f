import { franc } from 'franc-min';

/** ISO 639-1 -> the ISO 639-3 code franc reports (macro-languages by their main member). */
const ISO3: Record<string, string> = {
  af: 'afr',
  am: 'amh',
  ar: 'arb',
  az: 'azj',
  be: 'bel',
  bg: 'bul',
  bn: 'ben',
  ca: 'cat',
  cs: 'ces',
  da: 'dan',
  de: 'deu',
  el: 'ell',
  en: 'eng',
  es: 'spa',
  et: 'est',
  eu: 'eus',
  fa: 'pes',
  fi: 'fin',
  fr: 'fra',
  gu: 'guj',
  ha: 'hau',
  he: 'heb',
  hi: 'hin',
  hr: 'hrv',
  hu: 'hun',
  hy: 'hye',
  id: 'ind',
  ig: 'ibo',
  it: 'ita',
  ja: 'jpn',
  jv: 'jav',
  ka: 'kat',
  kk: 'kaz',
  km: 'khm',
  kn: 'kan',
  ko: 'kor',
  lt: 'lit',
  lv: 'lvs',
  mk: 'mkd',
  ml: 'mal',
  mr: 'mar',
  ms: 'zlm',
  my: 'mya',
  ne: 'npi',
  nl: 'nld',
  no: 'nob',
  pa: 'pan',
  pl: 'pol',
  pt: 'por',
  ro: 'ron',
  ru: 'rus',
  si: 'sin',
  sk: 'slk',
  sl: 'slv',
  so: 'som',
  sq: 'als',
  sr: 'srp',
  sv: 'swe',
  sw: 'swh',
  ta: 'tam',
  te: 'tel',
  th: 'tha',
  tl: 'tgl',
  tr: 'tur',
  uk: 'ukr',
  ur: 'urd',
  uz: 'uzn',
  vi: 'vie',
  yo: 'yor',
  zh: 'cmn',
  zu: 'zul',
};

/** The ISO 639-3 code of a model language code such as `en_XX`, `de_DE`, `zh` (undefined if unknown). */
export function iso3Of(code: string): string | undefined {
  const two = code.split(/[_-]/)[0]?.toLowerCase() ?? '';
  return ISO3[two] ?? (two.length === 3 ? two : undefined);
}

/**
 * Detects which of the model's languages `text` is in (franc, restricted to those languages).
 * Returns undefined when the text is too short or the language is none of them.
 */
export function detectLanguage(text: string, languages: readonly string[]): string | undefined {
  const byIso = new Map<string, string>();
  for (const l of languages) {
    const iso = iso3Of(l);
    if (iso !== undefined && !byIso.has(iso)) byIso.set(iso, l);
  }
  if (byIso.size === 0) return undefined;
  if (byIso.size === 1) return [...byIso.values()][0];
  const iso = franc(text, { only: [...byIso.keys()], minLength: 10 });
  return byIso.get(iso);
}
