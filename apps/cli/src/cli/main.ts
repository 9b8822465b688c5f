import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { isXltError, writeFileAtomic, XltConfigError } from '@xlt/core';
import type { z } from 'zod';
import { applyOverrides, readConfigFile, validateConfig } from './config.js';

/** What a command gets besides its validated config. */
export interface CommandContext {
  /** The command's run directory (created; holds `config.json` and the command's outputs). */
  runDir: string;
  log: (line: string) => void;
  /** The running `xlt` script (for child processes); absent when the CLI runs inside another program. */
  self?: string;
}

/** One `xlt` subcommand. */
export interface Command<S extends z.ZodType = z.ZodType> {
  /** e.g. `export` or `augment llm`. */
  name: string;
  summary: string;
  /** Help text after the usage line: options and examples. */
  help: string;
  schema: S;
  /** Whether the command writes a run directory (default true). */
  runDir?: boolean;
  run(config: z.infer<S>, ctx: CommandContext): Promise<void>;
}

/** Exit codes of the `xlt` command. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

function timestamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** The subcommands of command group `group` (`experiment` → `xmod-curse`, …), in order. */
function subcommands(group: string, commandNames: readonly string[]): string[] {
  return commandNames.filter((c) => c.startsWith(`${group} `)).map((c) => c.slice(group.length + 1));
}

/**
 * Parses `argv` (after `xlt`): the command words, then `--config FILE`, `--set key.path=value`
 * (repeatable), `--run-dir DIR`, `--help`, and any other `--key value` / `--flag` as an override of
 * the config key of the same name (dashes to camelCase); an option given more than once becomes a list.
 */
export function parseArgv(
  argv: readonly string[],
  commandNames: readonly string[],
): {
  command: string | undefined;
  /** The first word of several commands given alone (`xlt experiment`): its subcommands are listed. */
  group?: string;
  config?: string;
  overrides: string[];
  runDir?: string;
  help: boolean;
} {
  const words: string[] = [];
  let i = 0;
  while (i < argv.length && !(argv[i] as string).startsWith('-')) words.push(argv[i++] as string);
  let command: string | undefined;
  for (let n = words.length; n > 0; n--) {
    const cand = words.slice(0, n).join(' ');
    if (commandNames.includes(cand)) {
      command = cand;
      if (n < words.length) throw new XltConfigError(`unexpected argument '${words[n]}' after '${cand}'`);
      break;
    }
  }
  let group: string | undefined;
  if (command === undefined && words.length > 0) {
    const subs = subcommands(words[0] as string, commandNames);
    if (subs.length === 0) throw new XltConfigError(`unknown command '${words.join(' ')}'; run 'xlt --help'`);
    if (words.length > 1)
      throw new XltConfigError(`unknown command '${words.join(' ')}'; '${words[0]}' has: ${subs.join(', ')}`);
    group = words[0];
  }
  const out: ReturnType<typeof parseArgv> = { command, overrides: [], help: false };
  if (group !== undefined) out.group = group;
  const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  // a repeated `--key value` option collects its values into a list (`--text en=a --text de=b`)
  const repeated = new Map<string, string[]>();
  const option = (k: string, v: string) => {
    const seen = repeated.get(k);
    if (seen === undefined) {
      repeated.set(k, [v]);
      out.overrides.push(`${k}=${v}`);
      return;
    }
    seen.push(v);
    const at = out.overrides.findIndex((o) => o.startsWith(`${k}=`));
    out.overrides.splice(at, 1);
    out.overrides.push(`${k}=${JSON.stringify(seen)}`);
  };
  while (i < argv.length) {
    const a = argv[i++] as string;
    if (a === '--help' || a === '-h') out.help = true;
    else if (a === '--config' || a === '-c') out.config = argv[i++];
    else if (a === '--set') out.overrides.push(argv[i++] ?? '');
    else if (a === '--run-dir') out.runDir = argv[i++];
    else if (a.startsWith('--')) {
      const [k, inline] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
      const next = argv[i];
      if (inline !== undefined) option(camel(k), inline);
      else if (next === undefined || next.startsWith('--')) option(camel(k), 'true');
      else option(camel(k), argv[i++] as string);
    } else throw new XltConfigError(`unexpected argument '${a}'`);
  }
  return out;
}

function mainHelp(commands: readonly Command[]): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return `xlt: zero-shot cross-lingual transfer

Usage: xlt <command> [--config FILE] [--set key.path=value ...] [--key value ...] [--run-dir DIR]

Commands:
${commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

Every command reads its settings from a YAML or JSON config file and/or options; unknown keys are
errors. Outputs go to a run directory (default runs/<command>-<time>) with the resolved config.
Exit codes: 0 success, 1 failure, 2 bad usage, config or input files. 'xlt <command> --help' for details.
`;
}

/** Runs the CLI; returns the exit code. */
export async function runCli(
  argv: readonly string[],
  commands: readonly Command[],
  io: { out: (s: string) => void; err: (s: string) => void; self?: string },
): Promise<number> {
  let parsed: ReturnType<typeof parseArgv>;
  try {
    parsed = parseArgv(
      argv,
      commands.map((c) => c.name),
    );
  } catch (e) {
    io.err(`xlt: ${(e as Error).message}\n`);
    return EXIT.usage;
  }
  const cmd = commands.find((c) => c.name === parsed.command);
  if (cmd === undefined && parsed.group !== undefined) {
    const group = parsed.group;
    const subs = commands.filter((c) => c.name.startsWith(`${group} `));
    const w = Math.max(...subs.map((c) => c.name.length));
    const list = subs.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n');
    const names = subcommands(
      group,
      subs.map((c) => c.name),
    );
    const text = `Usage: xlt ${group} <${names.join('|')}> [options]\n\n${list}\n\n'xlt ${subs[0]?.name} --help' and the like for details.\n`;
    if (parsed.help) {
      io.out(text);
      return EXIT.ok;
    }
    io.err(`xlt: '${group}' needs a subcommand\n\n${text}`);
    return EXIT.usage;
  }
  if (cmd === undefined) {
    io.out(mainHelp(commands));
    return parsed.help || argv.length === 0 ? EXIT.ok : EXIT.usage;
  }
  if (parsed.help) {
    io.out(`Usage: xlt ${cmd.name} [options]\n\n${cmd.summary}\n\n${cmd.help}\n`);
    return EXIT.ok;
  }
  let config: unknown;
  try {
    const base = parsed.config !== undefined ? readConfigFile(parsed.config) : {};
    config = validateConfig(
      cmd.schema,
      applyOverrides(base, parsed.overrides),
      parsed.config ?? 'command-line options',
    );
  } catch (e) {
    io.err(`xlt ${cmd.name}: ${(e as Error).message}\n`);
    return EXIT.usage;
  }
  let runDir = '';
  if (cmd.runDir !== false) {
    runDir = path.resolve(
      parsed.runDir ?? path.join('runs', `${cmd.name.replace(/\s+/g, '-')}-${timestamp()}`),
    );
    mkdirSync(runDir, { recursive: true });
    writeFileAtomic(path.join(runDir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  }
  try {
    await cmd.run(config, {
      runDir,
      log: (l) => io.out(`${l}\n`),
      ...(io.self !== undefined ? { self: io.self } : {}),
    });
    return EXIT.ok;
  } catch (e) {
    const usage = isXltError(e, 'CONFIG') || isXltError(e, 'NOT_FOUND') || isXltError(e, 'FORMAT');
    io.err(`xlt ${cmd.name}: ${e instanceof Error ? e.message : String(e)}\n`);
    if (!usage && !isXltError(e) && e instanceof Error && e.stack) io.err(`${e.stack}\n`);
    return usage ? EXIT.usage : EXIT.failure;
  }
}
