import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { extractExample, MARKER } from './readme.mjs';

const fence = '```';

describe('extractExample', () => {
  it('returns the block after the marker, not an earlier unmarked one', () => {
    const md = [
      '# pkg',
      `${fence}ts`,
      "import { a } from 'x';",
      fence,
      '',
      MARKER,
      `${fence}ts`,
      "import { b } from '@xlt/pkg';",
      'console.log(b);',
      fence,
      '',
      `${fence}ts`,
      'later();',
      fence,
    ].join('\n');
    const r = extractExample(md);
    expect(r).toEqual({
      example: { kind: 'ts', info: 'ts', code: "import { b } from '@xlt/pkg';\nconsole.log(b);\n", line: 7 },
    });
  });

  it('allows blank lines between marker and fence and maps info strings to kinds', () => {
    for (const [info, kind] of [
      ['js', 'js'],
      ['bash', 'sh'],
      ['typescript', 'ts'],
    ]) {
      const r = extractExample(`${MARKER}\n\n${fence}${info}\nx\n${fence}\n`);
      expect(r).toMatchObject({ example: { kind, code: 'x\n', line: 3 } });
    }
  });

  it('ignores a marker inside another code block', () => {
    const md = `${fence}md\n${MARKER}\n${fence}\n\n${MARKER}\n${fence}js\nreal();\n${fence}\n`;
    expect(extractExample(md)).toMatchObject({ example: { code: 'real();\n', line: 6 } });
  });

  it('keeps a longer fence open over inner triple backticks', () => {
    const md = `${MARKER}\n\`\`\`\`ts\nconst s = \`\n${fence}\n\`;\n\`\`\`\`\n`;
    expect(extractExample(md)).toMatchObject({ example: { code: `const s = \`\n${fence}\n\`;\n` } });
  });

  it('explains a missing marker, a marker without a block, an unknown language and an open block', () => {
    expect(extractExample(`${fence}ts\nx\n${fence}\n`)).toEqual({
      error: `no ${MARKER} line before a code block`,
    });
    expect(extractExample(`${MARKER}\ntext\n`)).toEqual({
      error: `line 1: ${MARKER} is not followed by a fenced code block`,
    });
    expect(extractExample(`${MARKER}\n${fence}python\nx\n${fence}\n`)).toMatchObject({
      error: expect.stringMatching(/^line 2: the marked block is ```python; expected one of ts, /),
    });
    expect(extractExample(`${MARKER}\n${fence}ts\nx\n`)).toEqual({
      error: 'line 2: the marked code block is never closed',
    });
  });

  it('finds a marked example importing the package in every public package README', () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
    const missing = [];
    for (const group of ['packages', 'apps']) {
      for (const name of readdirSync(path.join(root, group))) {
        const json = JSON.parse(readFileSync(path.join(root, group, name, 'package.json'), 'utf8'));
        if (json.private) continue;
        let md = '';
        try {
          md = readFileSync(path.join(root, group, name, 'README.md'), 'utf8');
        } catch {
          missing.push(`${group}/${name}: no README.md`);
          continue;
        }
        const r = extractExample(md);
        if ('error' in r) missing.push(`${group}/${name}: ${r.error}`);
        else if (r.example.kind !== 'sh' && !r.example.code.includes(`'${json.name}'`))
          missing.push(`${group}/${name}: the example does not import ${json.name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
