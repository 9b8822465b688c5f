import type { Module } from '@xlt/xmod';
import { LoraMixtureLinear, mixtureLayers } from './mixture.js';

/** One row of {@link parameterTable}. */
export interface ParameterRow {
  /** Module name (a LoRA / mixture layer), or `language:<lang>`, or `total`. */
  name: string;
  trainable: number;
  total: number;
}

/**
 * Trainable and total parameter counts per LoRA/mixture module, per language (the expert
 * parameters of that language across all layers) and for the whole model.
 */
export function parameterTable(model: Module): ParameterRow[] {
  const rows: ParameterRow[] = [];
  const perLang = new Map<string, ParameterRow>();
  for (const [name, m] of model.namedModules()) {
    const isLora = m.children().has('lora_A') || m.localParameters().has('lora_embedding_A');
    if (!isLora && !(m instanceof LoraMixtureLinear)) continue;
    const ps = m.namedParameters().filter(([n]) => !n.startsWith('base_layer.'));
    rows.push({
      name,
      trainable: ps.reduce((a, [, p]) => a + (p.trainable ? p.size : 0), 0),
      total: ps.reduce((a, [, p]) => a + p.size, 0),
    });
  }
  for (const [, m] of mixtureLayers(model)) {
    for (const lang of m.languages) {
      const row = perLang.get(lang) ?? { name: `language:${lang}`, trainable: 0, total: 0 };
      for (const [, p] of m.experts.get(lang)?.namedParameters() ?? []) {
        row.total += p.size;
        if (p.trainable) row.trainable += p.size;
      }
      perLang.set(lang, row);
    }
  }
  rows.push(...perLang.values());
  rows.push({ name: 'total', trainable: model.numParameters(true), total: model.numParameters() });
  return rows;
}

/** {@link parameterTable} as aligned text (name, trainable, total, trainable %). */
export function formatParameterTable(rows: readonly ParameterRow[]): string {
  const w = Math.max(6, ...rows.map((r) => r.name.length));
  const head = `${'module'.padEnd(w)}  ${'trainable'.padStart(10)}  ${'total'.padStart(10)}  ${'%'.padStart(7)}`;
  const lines = rows.map(
    (r) =>
      `${r.name.padEnd(w)}  ${String(r.trainable).padStart(10)}  ${String(r.total).padStart(10)}  ${(r.total > 0 ? (100 * r.trainable) / r.total : 0).toFixed(2).padStart(7)}`,
  );
  return [head, ...lines].join('\n');
}
