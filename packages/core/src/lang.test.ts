import { describe, expect, it } from 'vitest';
import { detectLanguage, iso3Of } from './lang.js';

const LANGS = ['en_XX', 'de_DE', 'fr_XX', 'zh_CN', 'sw_KE', 'ar_AR'];

describe('language detection', () => {
  it('maps model codes to ISO 639-3', () => {
    expect(iso3Of('en_XX')).toBe('eng');
    expect(iso3Of('zh_CN')).toBe('cmn');
    expect(iso3Of('sw_KE')).toBe('swh');
    expect(iso3Of('xx_YY')).toBeUndefined();
    expect(iso3Of('deu_Latn')).toBe('deu');
    expect(iso3Of('pt-BR')).toBe('por');
  });

  it.each([
    ['The committee will publish its final report on the new railway next week.', 'en_XX'],
    ['Die Regierung hat gestern ein neues Gesetz über erneuerbare Energien beschlossen.', 'de_DE'],
    ['Le gouvernement a présenté hier un nouveau projet de loi sur les énergies renouvelables.', 'fr_XX'],
    ['政府昨天宣布了一项关于可再生能源的新法律，预计明年开始实施。', 'zh_CN'],
    ['Serikali imetangaza sheria mpya kuhusu nishati mbadala ambayo itaanza kutumika mwaka ujao.', 'sw_KE'],
    ['أعلنت الحكومة أمس عن قانون جديد بشأن الطاقة المتجددة سيدخل حيز التنفيذ العام المقبل.', 'ar_AR'],
  ])('detects %s as %s', async (text, lang) => {
    expect(await detectLanguage(text, LANGS)).toBe(lang);
  });

  it('gives up on text too short to tell', async () => {
    expect(await detectLanguage('ok', LANGS)).toBeUndefined();
  });
});
