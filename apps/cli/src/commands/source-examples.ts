import { readFileSync } from 'node:fs';
import type { SourceExample } from '@xlt/augment';
import { XltFormatError } from '@xlt/core';

const SHAPE = '{"id": string, "sentence": string, "spans": [{"label": string, "text": string}]}';

/** What is wrong with `v` as a {@link SourceExample}, or undefined when nothing is. */
function shapeProblem(v: unknown): string | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return `expected an object ${SHAPE}, got ${Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v}`;
  const o = v as Record<string, unknown>;
  if (typeof o.id !== 'string' && typeof o.id !== 'number') return "'id' must be a string";
  if (typeof o.sentence !== 'string' || o.sentence.trim() === '')
    return "'sentence' must be a non-empty string";
  if (!Array.isArray(o.spans)) return "'spans' must be an array of {label, text}";
  for (const [i, s] of o.spans.entries()) {
    const span = s as Record<string, unknown> | null;
    if (
      typeof span !== 'object' ||
      span === null ||
      typeof span.label !== 'string' ||
      typeof span.text !== 'string'
    )
      return `'spans[${i}]' must be {"label": string, "text": string}`;
  }
  return undefined;
}

/**
 * Reads the source examples of `xlt augment llm`: one JSON object a line, blank lines skipped. A
 * line that is not JSON, or not of the shape, is an `XltFormatError` naming the file, the line
 * (1-based, counting blank lines) and what was expected.
 */
export function readSourceExamples(file: string): SourceExample[] {
  const out: SourceExample[] = [];
  readFileSync(file, 'utf8')
    .split('\n')
    .forEach((l, i) => {
      if (l.trim() === '') return;
      let v: unknown;
      try {
        v = JSON.parse(l);
      } catch {
        throw new XltFormatError(`line is not JSON: expected ${SHAPE}`, { file, line: i + 1 });
      }
      const problem = shapeProblem(v);
      if (problem !== undefined) throw new XltFormatError(problem, { file, line: i + 1 });
      const e = v as SourceExample;
      out.push({ ...e, id: String(e.id) });
    });
  return out;
}
