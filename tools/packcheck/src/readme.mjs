// Finds the runnable example of a README: the first fenced code block right after a
// `<!-- packcheck -->` comment line (blank lines between them are allowed).

/** Info strings the check can run, mapped to how it runs them. */
export const EXAMPLE_KINDS = /** @type {const} */ ({
  ts: 'ts',
  typescript: 'ts',
  mts: 'ts',
  js: 'js',
  javascript: 'js',
  mjs: 'js',
  sh: 'sh',
  bash: 'sh',
  shell: 'sh',
});

export const MARKER = '<!-- packcheck -->';

/**
 * @typedef {{ kind: 'ts' | 'js' | 'sh', info: string, code: string, line: number }} ReadmeExample
 * `line` is the 1-based line of the opening fence.
 */

/**
 * Returns the marked example of a README, or an error message saying why there is none.
 * @param {string} markdown
 * @returns {{ example: ReadmeExample } | { error: string }}
 */
export function extractExample(markdown) {
  const lines = markdown.split(/\r?\n/);
  let fence = null; // inside an unmarked fenced block: its fence, so a marker in code is ignored
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (fence !== null) {
      if (isClosingFence(line, fence)) fence = null;
      continue;
    }
    const open = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (open) {
      fence = open[1];
      continue;
    }
    if (line.trim() !== MARKER) continue;
    let j = i + 1;
    while (j < lines.length && lines[j].trim() === '') j++;
    const start = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)\s*$/.exec(lines[j] ?? '');
    if (!start) return { error: `line ${i + 1}: ${MARKER} is not followed by a fenced code block` };
    const info = start[2];
    const kind = EXAMPLE_KINDS[/** @type {keyof typeof EXAMPLE_KINDS} */ (info.toLowerCase())];
    if (kind === undefined)
      return {
        error: `line ${j + 1}: the marked block is \`\`\`${info}; expected one of ${Object.keys(EXAMPLE_KINDS).join(', ')}`,
      };
    const body = [];
    for (let k = j + 1; k < lines.length; k++) {
      if (isClosingFence(lines[k], start[1]))
        return { example: { kind, info, code: `${body.join('\n')}\n`, line: j + 1 } };
      body.push(lines[k]);
    }
    return { error: `line ${j + 1}: the marked code block is never closed` };
  }
  return { error: `no ${MARKER} line before a code block` };
}

/** @param {string} line @param {string} fence */
function isClosingFence(line, fence) {
  const m = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line);
  return m !== null && m[1][0] === fence[0] && m[1].length >= fence.length;
}
