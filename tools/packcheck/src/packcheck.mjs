#!/usr/bin/env node
// Packs every public package and app of the workspace with `pnpm pack`, installs each one alone
// with npm (its tarball and those of its @xlt/* dependencies) into a fresh folder outside the
// workspace, and runs the README example marked with `<!-- packcheck -->` there.
// Usage: node tools/packcheck/src/packcheck.mjs [--only core,cli] [--timeout 120] [--cache DIR]
//        [--keep] [--no-typecheck]          (see tools/packcheck/README.md)
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { extractExample } from './readme.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const GROUPS = ['packages', 'apps', 'tools'];
const DEP_FIELDS = ['dependencies', 'peerDependencies', 'optionalDependencies', 'devDependencies'];
const FORBIDDEN = ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'];

const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    timeout: { type: 'string', default: process.env.XLT_PACKCHECK_TIMEOUT ?? '120' },
    cache: {
      type: 'string',
      default: process.env.XLT_PACKCHECK_CACHE ?? path.join(os.tmpdir(), 'xlt-packcheck-npm-cache'),
    },
    tmp: { type: 'string', default: process.env.XLT_PACKCHECK_TMP },
    keep: { type: 'boolean', default: false },
    'no-typecheck': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log(
    'Usage: pnpm packcheck [--only core,cli] [--timeout SECONDS] [--cache DIR] [--tmp DIR] [--keep] [--no-typecheck]',
  );
  process.exit(0);
}
const exampleTimeoutMs = Number(args.timeout) * 1000;
const cacheDir = path.resolve(args.cache);

/**
 * Where the fresh install folders go: `--tmp`, else /dev/shm when it is a memory file system with
 * 4 GiB free (each install writes up to ~0.8 GB; on a slow disk that is most of the time), else
 * the system temp folder.
 */
function tmpRoot() {
  if (args.tmp) return path.resolve(args.tmp);
  try {
    const st = statfsSync('/dev/shm');
    if (st.type === 0x01021994 && st.bavail * st.bsize >= 4 * 1024 ** 3) return '/dev/shm';
  } catch {
    // no /dev/shm
  }
  return os.tmpdir();
}

/** @typedef {{ name: string, version: string, dir: string, rel: string, json: Record<string, any> }} Pkg */

/** @returns {Pkg[]} every non-private package of the workspace */
function workspacePackages() {
  /** @type {Pkg[]} */
  const out = [];
  for (const group of GROUPS) {
    const g = path.join(root, group);
    if (!existsSync(g)) continue;
    for (const name of readdirSync(g).sort()) {
      const file = path.join(g, name, 'package.json');
      if (!existsSync(file)) continue;
      const json = JSON.parse(readFileSync(file, 'utf8'));
      if (json.private === true) continue;
      out.push({
        name: json.name,
        version: json.version,
        dir: path.dirname(file),
        rel: `${group}/${name}`,
        json,
      });
    }
  }
  return out;
}

/** @type {Set<number>} process groups still running, killed if packcheck is interrupted */
const running = new Set();

/**
 * Runs a command; resolves with its exit code and output (never rejects on a non-zero exit).
 * A command past `timeoutMs` is killed with its whole process group.
 * @param {string} cmd @param {string[]} argv
 * @param {{ cwd: string, env?: NodeJS.ProcessEnv, timeoutMs?: number }} opts
 * @returns {Promise<{ code: number | null, stdout: string, stderr: string, ms: number, timedOut: boolean }>}
 */
function run(cmd, argv, opts) {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    if (child.pid !== undefined) running.add(child.pid);
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            try {
              process.kill(-(child.pid ?? 0), 'SIGKILL');
            } catch {
              child.kill('SIGKILL');
            }
          }, opts.timeoutMs);
    child.on('error', (e) => {
      stderr += String(e);
    });
    child.on('close', (code) => {
      if (child.pid !== undefined) running.delete(child.pid);
      if (timer) clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
  });
}

/** The environment for npm and the examples: the caller's, without what pnpm sets for its scripts. */
function cleanEnv() {
  /** @type {NodeJS.ProcessEnv} */
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|pnpm_|PNPM_)/i.test(k) && k.toLowerCase() !== 'npm_config_registry') continue;
    env[k] = v;
  }
  // onnxruntime-node bundles its CPU binaries; its install script would only fetch CUDA parts
  env.ONNXRUNTIME_NODE_INSTALL = 'skip';
  env.ONNXRUNTIME_NODE_INSTALL_CUDA = 'skip';
  env.npm_config_update_notifier = 'false';
  return env;
}

/** @param {string} text @param {number} n */
function tail(text, n) {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

/** @param {number} ms */
const secs = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** Every relative file a package.json points at (main, module, types, bin, exports). @param {Record<string, any>} json */
function entryFiles(json) {
  /** @type {Set<string>} */
  const files = new Set();
  /** @param {unknown} v */
  const walk = (v) => {
    if (typeof v === 'string') {
      if (v.startsWith('./') && !v.includes('*')) files.add(path.posix.normalize(v));
    } else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
  };
  for (const f of ['main', 'module', 'types'])
    if (typeof json[f] === 'string') walk(`./${path.posix.normalize(json[f])}`);
  walk(json.exports);
  if (typeof json.bin === 'string') walk(`./${path.posix.normalize(json.bin)}`);
  else if (json.bin) for (const b of Object.values(json.bin)) walk(`./${path.posix.normalize(String(b))}`);
  return [...files].map((f) => f.replace(/^\.\//, ''));
}

/** The @xlt/* packages a package needs at run time, transitively (itself excluded). @param {Pkg} pkg @param {Map<string, Pkg>} byName */
function xltClosure(pkg, byName) {
  /** @type {string[]} */
  const out = [];
  const todo = [pkg.name];
  const seen = new Set(todo);
  while (todo.length > 0) {
    const p = byName.get(/** @type {string} */ (todo.pop()));
    if (!p) continue;
    const optionalPeers = p.json.peerDependenciesMeta ?? {};
    const deps = {
      ...p.json.dependencies,
      ...Object.fromEntries(
        Object.entries(p.json.peerDependencies ?? {}).filter(([n]) => !optionalPeers[n]?.optional),
      ),
    };
    for (const dep of Object.keys(deps)) {
      if (!dep.startsWith('@xlt/') || seen.has(dep)) continue;
      seen.add(dep);
      out.push(dep);
      todo.push(dep);
    }
  }
  return out;
}

/**
 * Packs one package and checks the tarball: entry files and README present, no `workspace:`
 * ranges left, @xlt/* ranges that accept the workspace versions.
 * @param {Pkg} pkg @param {string} dest @param {Map<string, Pkg>} byName
 * @returns {Promise<{ ok: true, tarball: string, bytes: number, readme: string | null } | { ok: false, error: string }>}
 */
async function packOne(pkg, dest, byName) {
  const r = await run('pnpm', ['pack', '--pack-destination', dest, '--json'], { cwd: pkg.dir });
  if (r.code !== 0)
    return { ok: false, error: `pnpm pack exited ${r.code}\n${tail(r.stderr || r.stdout, 20)}` };
  let tarball;
  try {
    tarball = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))).filename;
  } catch {
    return { ok: false, error: `cannot read pnpm pack --json output: ${tail(r.stdout, 5)}` };
  }
  const list = await run('tar', ['-tzf', tarball], { cwd: dest });
  if (list.code !== 0) return { ok: false, error: `tar -t failed: ${list.stderr}` };
  const entries = new Set(list.stdout.split('\n').map((l) => l.replace(/^package\//, '')));
  const unpack = path.join(dest, pkg.name.replace('/', '-').replace('@', ''));
  mkdirSync(unpack, { recursive: true });
  const x = await run('tar', ['-xzf', tarball, '-C', unpack, 'package/package.json', 'package/README.md'], {
    cwd: dest,
  });
  const problems = [];
  if (x.code !== 0 && entries.has('README.md'))
    problems.push(`cannot extract from the tarball: ${x.stderr.trim()}`);
  const packed = JSON.parse(readFileSync(path.join(unpack, 'package', 'package.json'), 'utf8'));
  for (const f of entryFiles(packed))
    if (!entries.has(f))
      problems.push(`${f} (named in package.json) is not in the tarball: did \`pnpm build\` run?`);
  for (const field of DEP_FIELDS) {
    for (const [dep, range] of Object.entries(packed[field] ?? {})) {
      if (String(range).startsWith('workspace:')) problems.push(`${field}.${dep} is still ${range}`);
      const local = byName.get(dep);
      if (local && field !== 'devDependencies' && String(range).replace(/^[\^~]/, '') !== local.version)
        problems.push(`${field}.${dep} is ${range}, not a range of the workspace version ${local.version}`);
    }
  }
  if (problems.length > 0) return { ok: false, error: problems.join('\n') };
  const readmeFile = path.join(unpack, 'package', 'README.md');
  const readme = existsSync(readmeFile) ? readFileSync(readmeFile, 'utf8') : null;
  return { ok: true, tarball, bytes: statSync(tarball).size, readme };
}

/** @type {typeof import('typescript') | undefined} */
let tsModule;
function typescript() {
  tsModule ??= createRequire(path.join(root, 'package.json'))('typescript');
  return /** @type {typeof import('typescript')} */ (tsModule);
}

/**
 * Type-checks a TypeScript example against the installed packages' declarations.
 * @param {string} file @param {number} fenceLine the README line of the block's opening fence
 * @returns {string[]} diagnostics, located in the README
 */
function typecheck(file, fenceLine) {
  const ts = typescript();
  const program = ts.createProgram([file], {
    noEmit: true,
    strict: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    types: ['node'],
    typeRoots: [path.join(root, 'node_modules', '@types')],
  });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined) return msg;
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    const where =
      d.file.fileName === file
        ? `README.md:${fenceLine + line + 1}`
        : `${path.basename(d.file.fileName)}:${line + 1}`;
    return `${where}:${character + 1} ${msg}`;
  });
}

/**
 * @typedef {{ name: string, ok: boolean, stage: string, bytes?: number, installMs?: number, added?: string,
 *   exampleMs?: number, kind?: string, detail?: string, dir?: string }} Result
 */

/**
 * Installs a package alone from tarballs into a fresh folder and runs its README example there.
 * @param {Pkg} pkg @param {Map<string, { tarball: string, bytes: number, readme: string | null }>} packs
 * @param {Map<string, Pkg>} byName @param {string} work
 * @returns {Promise<Result>}
 */
async function checkOne(pkg, packs, byName, work) {
  const packed = packs.get(pkg.name);
  /** @type {Result} */
  const res = { name: pkg.name, ok: false, stage: 'pack', bytes: packed?.bytes };
  if (!packed) return { ...res, detail: 'not packed (see above)' };
  const deps = xltClosure(pkg, byName);
  const missing = deps.filter((d) => !packs.has(d));
  if (missing.length > 0)
    return { ...res, stage: 'install', detail: `dependencies not packed: ${missing.join(', ')}` };

  if (packed.readme === null)
    return {
      ...res,
      stage: 'readme',
      detail: 'README.md is not in the tarball (create it, and list it in "files")',
    };
  const found = extractExample(packed.readme);
  if ('error' in found) return { ...res, stage: 'readme', detail: `README.md: ${found.error}` };
  const ex = found.example;
  const binNames =
    typeof pkg.json.bin === 'string' ? [pkg.name.split('/')[1]] : Object.keys(pkg.json.bin ?? {});
  const usesPackage =
    ex.kind === 'sh'
      ? binNames.some((b) => new RegExp(`(^|[\\s;&|])(npx\\s+)?${b}(\\s|$)`, 'm').test(ex.code))
      : ex.code.includes(`'${pkg.name}'`) || ex.code.includes(`"${pkg.name}"`);
  if (!usesPackage)
    return {
      ...res,
      stage: 'readme',
      detail: `README.md line ${ex.line}: the marked example does not ${ex.kind === 'sh' ? `run ${binNames.join(' or ') || 'a bin of the package'}` : `import '${pkg.name}'`}`,
    };

  const dir = path.join(work, pkg.name.replace('@', '').replace('/', '-'));
  mkdirSync(dir);
  res.dir = dir;
  writeFileSync(
    path.join(dir, 'package.json'),
    `${JSON.stringify({ name: `packcheck-${pkg.name.split('/')[1]}`, version: '0.0.0', private: true, type: 'module' }, null, 2)}\n`,
  );
  const env = cleanEnv();
  const tarballs = [pkg.name, ...deps].map((n) => /** @type {{ tarball: string }} */ (packs.get(n)).tarball);
  const npmArgs = ['install', '--no-audit', '--no-fund', '--no-package-lock', '--prefer-offline'];
  const install = await run('npm', [...npmArgs, '--cache', cacheDir, ...tarballs], {
    cwd: dir,
    env,
    timeoutMs: 600_000,
  });
  res.stage = 'install';
  res.installMs = install.ms;
  res.added = /added (\d+) packages?/.exec(install.stdout)?.[1];
  if (install.code !== 0)
    return {
      ...res,
      detail: `npm install exited ${install.code}${install.timedOut ? ' (timed out)' : ''}\n${tail(install.stderr, 25)}`,
    };
  const installed = JSON.parse(
    readFileSync(path.join(dir, 'node_modules', ...pkg.name.split('/'), 'package.json'), 'utf8'),
  );
  if (installed.version !== pkg.version)
    return { ...res, detail: `installed ${pkg.name}@${installed.version}, expected ${pkg.version}` };
  const unwanted = FORBIDDEN.filter((n) => existsSync(path.join(dir, 'node_modules', n)));
  if (unwanted.length > 0)
    return { ...res, detail: `optional peer dependencies were installed: ${unwanted.join(', ')}` };
  const xltDir = path.join(dir, 'node_modules', '@xlt');
  const extra = readdirSync(xltDir).filter((n) => !deps.includes(`@xlt/${n}`) && `@xlt/${n}` !== pkg.name);
  if (extra.length > 0)
    return { ...res, detail: `npm installed @xlt packages outside the closure: ${extra.join(', ')}` };

  res.stage = 'example';
  res.kind = ex.kind;
  // an example must not install anything: `npx` of a missing bin fails instead of fetching a namesake
  env.npm_config_yes = 'false';
  env.npm_config_offline = 'true';
  const t0 = performance.now();
  /** @type {string[]} */
  let command;
  if (ex.kind === 'sh') {
    writeFileSync(path.join(dir, 'example.sh'), ex.code);
    env.PATH = `${path.join(dir, 'node_modules', '.bin')}${path.delimiter}${env.PATH ?? ''}`;
    command = ['bash', '-eo', 'pipefail', 'example.sh'];
  } else if (ex.kind === 'ts') {
    const file = path.join(dir, 'example.mts');
    writeFileSync(file, ex.code);
    if (!args['no-typecheck']) {
      const diags = typecheck(file, ex.line);
      if (diags.length > 0)
        return {
          ...res,
          exampleMs: performance.now() - t0,
          detail: `the README.md example (line ${ex.line}) does not type-check:\n${diags.slice(0, 15).join('\n')}`,
        };
      res.kind = 'ts, type-checked';
    }
    const ts = typescript();
    const js = ts.transpileModule(ex.code, {
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    }).outputText;
    writeFileSync(path.join(dir, 'example.mjs'), js);
    command = ['node', 'example.mjs'];
  } else {
    writeFileSync(path.join(dir, 'example.mjs'), ex.code);
    command = ['node', 'example.mjs'];
  }
  const r = await run(/** @type {string} */ (command[0]), command.slice(1), {
    cwd: dir,
    env,
    timeoutMs: exampleTimeoutMs,
  });
  res.exampleMs = performance.now() - t0;
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${args.timeout} s` : `exited ${r.code}`;
    return {
      ...res,
      detail: `the README.md example (line ${ex.line}) ${why}\n${tail(`${r.stdout}\n${r.stderr}`, 25)}`,
    };
  }
  return { ...res, ok: true, stage: 'done', detail: tail(r.stdout, 1) };
}

/** @param {Result} r */
function line(r) {
  const kb = r.bytes === undefined ? '' : `${Math.round(r.bytes / 1024)} kB`;
  const parts = [
    (r.ok ? 'ok  ' : 'FAIL').padEnd(5),
    r.name.padEnd(16),
    `pack ${kb.padStart(7)}`,
    r.installMs === undefined ? '' : `install ${secs(r.installMs).padStart(7)} (${r.added ?? '?'} pkgs)`,
    r.exampleMs === undefined ? '' : `example ${secs(r.exampleMs).padStart(7)} (${r.kind})`,
    r.ok ? '' : `failed at ${r.stage}`,
  ];
  return parts.filter(Boolean).join('  ');
}

async function main() {
  const t0 = performance.now();
  let pkgs = workspacePackages();
  const byName = new Map(pkgs.map((p) => [p.name, p]));
  if (args.only) {
    const want = new Set(args.only.split(',').map((s) => (s.startsWith('@') ? s : `@xlt/${s.trim()}`)));
    const unknown = [...want].filter((w) => !byName.has(w));
    if (unknown.length > 0) {
      console.error(`packcheck: unknown package(s) ${unknown.join(', ')}`);
      process.exit(2);
    }
    pkgs = pkgs.filter((p) => want.has(p.name));
  }
  const work = mkdtempSync(path.join(tmpRoot(), 'xlt-packcheck-'));
  for (const sig of /** @type {const} */ (['SIGINT', 'SIGTERM']))
    process.on(sig, () => {
      for (const pid of running) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      if (!args.keep) rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  if (!path.relative(root, work).startsWith('..'))
    throw new Error(`work folder ${work} is inside the workspace`);
  mkdirSync(cacheDir, { recursive: true });
  const npmVersion = (await run('npm', ['--version'], { cwd: work })).stdout.trim();
  console.log(`packcheck: ${pkgs.length} packages, work ${work}, npm ${npmVersion}, cache ${cacheDir}`);

  // pack every package the selection needs (the selection and its @xlt closures)
  const needed = new Set(pkgs.flatMap((p) => [p.name, ...xltClosure(p, byName)]));
  const tgzDir = path.join(work, 'tarballs');
  mkdirSync(tgzDir);
  /** @type {Map<string, { tarball: string, bytes: number, readme: string | null }>} */
  const packs = new Map();
  /** @type {Result[]} */
  const results = [];
  const packed = await Promise.all(
    [...needed].map(async (name) => [
      name,
      await packOne(/** @type {Pkg} */ (byName.get(name)), tgzDir, byName),
    ]),
  );
  for (const [name, r] of /** @type {[string, Awaited<ReturnType<typeof packOne>>][]} */ (packed)) {
    if (r.ok) packs.set(name, r);
    else {
      const res = { name, ok: false, stage: 'pack', detail: r.error };
      if (pkgs.some((p) => p.name === name)) results.push(res);
      console.log(line(res));
      console.log(indent(r.error));
    }
  }
  const packMs = performance.now() - t0;

  for (const pkg of pkgs) {
    if (results.some((r) => r.name === pkg.name)) continue;
    const r = await checkOne(pkg, packs, byName, work);
    results.push(r);
    console.log(line(r));
    const folder = args.keep ? `kept in ${r.dir}` : 'rerun with --keep to keep the folder';
    if (!r.ok && r.detail) console.log(indent(`${r.detail}${r.dir ? `\n(${folder})` : ''}`));
    if (r.dir && !args.keep) rmSync(r.dir, { recursive: true, force: true });
  }
  const failed = results.filter((r) => !r.ok);
  const sum = (/** @type {(r: Result) => number | undefined} */ f) =>
    results.reduce((s, r) => s + (f(r) ?? 0), 0);
  console.log(
    `packcheck: ${results.length - failed.length} ok, ${failed.length} failed of ${results.length} in ${secs(performance.now() - t0)}` +
      ` (pack ${secs(packMs)}, installs ${secs(sum((r) => r.installMs))}, examples ${secs(sum((r) => r.exampleMs))})` +
      (failed.length > 0 ? `: ${failed.map((r) => r.name).join(', ')}` : ''),
  );
  if (!args.keep) rmSync(work, { recursive: true, force: true });
  process.exitCode = failed.length > 0 ? 1 : 0;
}

/** @param {string} text */
function indent(text) {
  return text
    .split('\n')
    .map((l) => `      ${l}`)
    .join('\n');
}

await main();
