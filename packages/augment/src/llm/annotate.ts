import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { detectLanguage, XltConfigError } from '@xlt/core';
import { ChatClient, type ChatCounters, type ChatEndpoint, type ChatMessage, mapLimit } from './client.js';

/** One labelled span of a source sentence (an entity, or a subject / relation / object). */
export interface SpanAnnotation {
  label: string;
  text: string;
}

/** A source-language example to carry into other languages. */
export interface SourceExample {
  id: string;
  sentence: string;
  spans: SpanAnnotation[];
}

/** A kept result: the translation and each span located in it (UTF-16 offsets, end exclusive). */
export interface AnnotatedExample {
  id: string;
  lang: string;
  source: string;
  translation: string;
  spans: Array<SpanAnnotation & { start: number; end: number }>;
}

export type RejectReason =
  | 'request_failed'
  | 'empty_translation'
  | 'bad_reply'
  | 'span_count'
  | 'not_substring'
  | 'wrong_language'
  | 'duplicate';

/** Prompt templates; `{{name}}` placeholders are filled in. */
export interface PromptTemplates {
  system: string;
  /** Stage 1. Placeholders: `{{language}}`, `{{source_language}}`, `{{sentence}}`. */
  translate: string;
  /** Stage 2. Placeholders: `{{language}}`, `{{sentence}}`, `{{translation}}`, `{{spans}}` (JSON). */
  align: string;
}

export const DEFAULT_TEMPLATES: PromptTemplates = {
  system: 'You are a careful professional translator and annotator.',
  translate:
    'Translate the following {{source_language}} sentence into {{language}}. Reply with the translation only, on one line, without quotes or comments.\n\n{{sentence}}',
  align:
    'Here is a {{source_language}} sentence, its {{language}} translation, and labelled spans of the {{source_language}} sentence.\n\n' +
    'Sentence: {{sentence}}\nTranslation: {{translation}}\nSpans: {{spans}}\n\n' +
    'For each span, in the same order, give the part of the translation that expresses it, copied character for character from the translation. ' +
    'Reply with JSON only: {"spans": [{"label": "...", "text": "..."}]}',
};

export interface TargetLanguage {
  /** Code written to the output (e.g. `de`, `de_DE`). */
  code: string;
  /** Name used in prompts (e.g. `German`). */
  name: string;
}

export interface AnnotateOptions {
  endpoint: ChatEndpoint | ChatClient;
  languages: TargetLanguage[];
  /** JSONL of kept results; rejected ones go to `<outFile>.rejects.jsonl`. Both are appended to and read on resume. */
  outFile: string;
  concurrency?: number;
  templates?: Partial<PromptTemplates>;
  sourceLanguage?: TargetLanguage;
  /** Language identifier (default: @xlt/core's `detectLanguage`). */
  detect?: (text: string, candidates: readonly string[]) => Promise<string | undefined>;
  onProgress?: (p: { done: number; total: number; kept: number; rejected: number }) => void;
}

/** What a run did: counts, yield and the client's request/token/cost counters. */
export interface AnnotateReport {
  total: number;
  /** Pairs (example, language) already done in an earlier run and not asked again. */
  resumed: number;
  kept: number;
  rejected: Record<RejectReason, number>;
  /** kept / attempted in this run. */
  yieldRate: number;
  counters: ChatCounters;
}

export function fillTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (m, k: string) => (k in values ? (values[k] as string) : m));
}

/** Extracts the first JSON object from a reply (models often wrap JSON in code fences or prose). */
export function parseJsonObject(reply: string): unknown {
  const start = reply.indexOf('{');
  const end = reply.lastIndexOf('}');
  if (start < 0 || end <= start) return undefined;
  try {
    return JSON.parse(reply.slice(start, end + 1));
  } catch {
    return undefined;
  }
}

const normalise = (s: string) => s.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim();

/** Reads a JSONL file written by {@link annotate}, dropping a truncated last line (and repairing the file). */
function readJsonl<T>(file: string): T[] {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const out: T[] = [];
  let goodLength = 0;
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') {
      goodLength += line.length + 1;
      continue;
    }
    try {
      out.push(JSON.parse(line) as T);
      goodLength += line.length + 1;
    } catch {
      if (i === lines.length - 1) break; // a write cut short by a crash
      throw new XltConfigError(`line ${i + 1} is not JSON`, { file, line: i + 1 });
    }
  }
  if (goodLength < text.length && !text.endsWith('\n')) {
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, text.slice(0, goodLength));
    renameSync(tmp, file);
  }
  return out;
}

/**
 * MT4CrossIE's two-stage LLM annotation: for each example and target language, (1) ask for a
 * translation, (2) give the source spans and the translation and ask for the corresponding spans.
 * A result is kept only if every span is a substring of the translation, the translation is
 * identified as the target language, and it is not a duplicate. Resumable: pairs already in the
 * output (kept or rejected) are never asked again.
 */
export async function annotate(examples: SourceExample[], options: AnnotateOptions): Promise<AnnotateReport> {
  const client = options.endpoint instanceof ChatClient ? options.endpoint : new ChatClient(options.endpoint);
  const t: PromptTemplates = { ...DEFAULT_TEMPLATES, ...options.templates };
  const src = options.sourceLanguage ?? { code: 'en', name: 'English' };
  const detect = options.detect ?? detectLanguage;
  const rejectsFile = `${options.outFile}.rejects.jsonl`;
  const kept = readJsonl<AnnotatedExample>(options.outFile);
  const rejectedBefore = readJsonl<{ id: string; lang: string }>(rejectsFile);
  const done = new Set([...kept, ...rejectedBefore].map((r) => `${r.id}\t${r.lang}`));
  const seen = new Map<string, Set<string>>();
  for (const k of kept) {
    const s = seen.get(k.lang) ?? new Set<string>();
    s.add(normalise(k.translation));
    seen.set(k.lang, s);
  }
  const jobs = options.languages
    .flatMap((lang) => examples.map((ex) => ({ ex, lang })))
    .filter((j) => !done.has(`${j.ex.id}\t${j.lang.code}`));
  const report: AnnotateReport = {
    total: examples.length * options.languages.length,
    resumed: examples.length * options.languages.length - jobs.length,
    kept: 0,
    rejected: {
      request_failed: 0,
      empty_translation: 0,
      bad_reply: 0,
      span_count: 0,
      not_substring: 0,
      wrong_language: 0,
      duplicate: 0,
    },
    yieldRate: 0,
    counters: client.counters,
  };
  let finished = 0;
  const reject = (id: string, lang: string, reason: RejectReason, detail?: string) => {
    report.rejected[reason]++;
    appendFileSync(rejectsFile, `${JSON.stringify({ id, lang, reason, ...(detail ? { detail } : {}) })}\n`);
  };
  const ask = (content: string): ChatMessage[] => [
    { role: 'system', content: t.system },
    { role: 'user', content },
  ];
  await mapLimit(jobs, options.concurrency ?? 4, async ({ ex, lang }) => {
    try {
      const vars = { language: lang.name, source_language: src.name, sentence: ex.sentence };
      let translation: string;
      try {
        translation = (await client.complete(ask(fillTemplate(t.translate, vars))))
          .trim()
          .replace(/^["“«]|["”»]$/g, '');
      } catch (e) {
        return reject(ex.id, lang.code, 'request_failed', (e as Error).message);
      }
      if (translation === '') return reject(ex.id, lang.code, 'empty_translation');
      const detected = await detect(translation, [lang.code, src.code]);
      if (detected !== undefined && detected !== lang.code)
        return reject(ex.id, lang.code, 'wrong_language', `identified as ${detected}`);
      const langSeen = seen.get(lang.code) ?? new Set<string>();
      seen.set(lang.code, langSeen);
      const key = normalise(translation);
      if (langSeen.has(key)) return reject(ex.id, lang.code, 'duplicate');
      langSeen.add(key);
      let reply: string;
      try {
        reply = await client.complete(
          ask(fillTemplate(t.align, { ...vars, translation, spans: JSON.stringify(ex.spans) })),
        );
      } catch (e) {
        langSeen.delete(key);
        return reject(ex.id, lang.code, 'request_failed', (e as Error).message);
      }
      const parsed = parseJsonObject(reply) as
        | { spans?: Array<{ label?: unknown; text?: unknown }> }
        | undefined;
      if (!parsed || !Array.isArray(parsed.spans)) {
        langSeen.delete(key);
        return reject(ex.id, lang.code, 'bad_reply', reply.slice(0, 200));
      }
      if (parsed.spans.length !== ex.spans.length) {
        langSeen.delete(key);
        return reject(ex.id, lang.code, 'span_count', `${parsed.spans.length} spans for ${ex.spans.length}`);
      }
      const spans: AnnotatedExample['spans'] = [];
      for (const [i, s] of parsed.spans.entries()) {
        const text = typeof s.text === 'string' ? s.text.trim() : '';
        const start = text === '' ? -1 : translation.indexOf(text);
        if (start < 0) {
          langSeen.delete(key);
          return reject(ex.id, lang.code, 'not_substring', `span ${i}: ${JSON.stringify(s.text)}`);
        }
        spans.push({ label: (ex.spans[i] as SpanAnnotation).label, text, start, end: start + text.length });
      }
      const out: AnnotatedExample = { id: ex.id, lang: lang.code, source: ex.sentence, translation, spans };
      appendFileSync(options.outFile, `${JSON.stringify(out)}\n`);
      report.kept++;
    } finally {
      finished++;
      options.onProgress?.({
        done: finished,
        total: jobs.length,
        kept: report.kept,
        rejected: finished - report.kept,
      });
    }
  });
  report.yieldRate = jobs.length > 0 ? report.kept / jobs.length : 0;
  return report;
}
