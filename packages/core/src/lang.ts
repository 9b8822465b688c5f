/** ISO 639-1 -> the ISO 639-3 code the language identifier reports (macro-languages by their main member). */
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

/**
 * The ISO 639-3 code of a language code as models and datasets write it: `en`, `en_XX`, `de-DE`,
 * `deu`, or a FLORES code such as `deu_Latn`. Undefined when unknown.
 */
export function iso3Of(code: string): string | undefined {
  const head = code.split(/[_-]/)[0]?.toLowerCase() ?? '';
  if (head.length === 2) return ISO3[head];
  return head.length === 3 ? head : undefined;
}

type Franc = (text: string, options?: { only?: string[]; minLength?: number }) => string;
let francPromise: Promise<Franc> | undefined;
// A variable specifier keeps the ESM-only package a real dynamic import in the CommonJS build too.
const dynamicImport = (s: string): Promise<unknown> => import(/* @vite-ignore */ s);

async function loadFranc(): Promise<Franc> {
  francPromise ??= dynamicImport('franc-min').then((m) => (m as { franc: Franc }).franc);
  return francPromise;
}

/**
 * Detects which of `candidates` (language codes in any of the forms {@link iso3Of} reads) `text` is
 * written in, with the `franc` trigram identifier restricted to those languages. Undefined when the
 * text is too short (under `minLength` characters, default 10) or none of the candidates fits.
 */
export async function detectLanguage(
  text: string,
  candidates: readonly string[],
  minLength = 10,
): Promise<string | undefined> {
  const byIso = new Map<string, string>();
  for (const l of candidates) {
    const iso = iso3Of(l);
    if (iso !== undefined && !byIso.has(iso)) byIso.set(iso, l);
  }
  if (byIso.size === 0) return undefined;
  if (byIso.size === 1) return text.trim().length >= minLength ? [...byIso.values()][0] : undefined;
  const franc = await loadFranc();
  return byIso.get(franc(text, { only: [...byIso.keys()], minLength }));
}
