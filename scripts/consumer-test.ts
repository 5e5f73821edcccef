/**
 * The consumer test: the package as a user gets it, checked the way a user would use it.
 *
 * 1. `npm pack` (prepack makes the prebuilt addon, prepare compiles dist/), and the tarball is
 *    checked for what it must hold (dist, declarations, the linux-x64 addon, docs, LICENSE) and
 *    what it must not (tests, build output).
 * 2. The tarball is installed into a new empty project; the dependencies come from the npm
 *    registry (or npm's cache). The prebuilt addon must be used: nothing is compiled.
 * 3. Plain `node` (the repository's Node 24, no tsx, no NODE_OPTIONS) runs test/consumer's ESM
 *    program (open, append, read, two Replicators syncing over 127.0.0.1) and the README's
 *    plain-JavaScript example, copied out of the README as written.
 * 4. `tsc --strict --noEmit` type-checks test/consumer's TypeScript against the shipped
 *    declarations.
 * 5. `npx noatun --help`, then `npx noatun peer` with a `.js` and with a `.ts` app module: each
 *    prints its listen address and stops cleanly on SIGTERM; `npx noatun inspect` reads the
 *    database it left.
 * 6. Every relative link of the installed README resolves to a file inside the package.
 * 7. With the prebuilt addon removed, `npm rebuild noatun` builds it from source and it loads.
 *
 * Prints one line per step and the figures (tarball size and file count, install time); exits 1
 * on the first failure, showing the output of the command that failed.
 *
 * Runs under Node's native type stripping, so it uses erasable syntax and `node:` modules only.
 *
 * Usage: `npm run test:consumer` (or `node scripts/consumer-test.ts` from the repository's root).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

const REPO = path.resolve(import.meta.dirname, '..');
const FIXTURES = path.join(REPO, 'test', 'consumer');
/** The Node 24 the repository pins as a devDependency: what every program here runs on. */
const NODE = path.join(REPO, 'node_modules', 'node', 'bin', 'node');
/** Bound of any one command (the install included); a hung step fails instead of stalling CI. */
const STEP_TIMEOUT_MS = 180_000;

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * The environment of a user's shell: no npm script variables, no NODE_OPTIONS (the repository's
 * tests set conditions that resolve the package to its sources), none of the repository's
 * node_modules/.bin on PATH, and the repository's Node 24 first on PATH so `npx` and the
 * `#!/usr/bin/env node` of the bin run on it.
 */
function userEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.toLowerCase().startsWith('npm_') && key !== 'NODE_OPTIONS' && key !== 'INIT_CWD') env[key] = value;
  }
  const inherited = (process.env.PATH ?? '').split(path.delimiter).filter((entry) => entry !== '' && !entry.startsWith(REPO));
  env.PATH = [path.dirname(NODE), ...inherited].join(path.delimiter);
  env.NO_COLOR = '1';
  return env;
}

/** Runs `command args` in `cwd` to its end; rejects with its output when it fails or overruns. */
function run(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = userEnv()): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), STEP_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const shown = `${command} ${args.join(' ')} (in ${cwd})`;
      if (code === 0) resolve({ code, stdout, stderr });
      else reject(new Error(`${shown} exited with ${code ?? signal}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
    });
  });
}

/**
 * Starts `npx noatun peer` with the app module `app`, waits for the line naming its listen
 * address, stops it with SIGTERM, and resolves with that address once it has stopped cleanly.
 *
 * npx does not pass SIGTERM on to the command it runs, so the signal goes to the process group, as
 * a terminal's Ctrl-C or `kill -TERM -- -<pgid>` would: the peer then closes its database and
 * says `stopped`. The stop is complete when both output pipes close, that is, when every process
 * of the group holding them has exited.
 */
async function peerRound(project: string, app: string, db: string): Promise<string> {
  const args = ['noatun', 'peer', '--app', app, '--db', db, '--listen', '0'];
  const shown = `npx ${args.join(' ')}`;
  const child = spawn('npx', args, { cwd: project, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const lines: string[] = [];
  const closed = (stream: NodeJS.ReadableStream) => new Promise<void>((resolve) => stream.on('close', () => resolve()));
  const allClosed = Promise.all([closed(child.stdout), closed(child.stderr)]);
  let onAddress: ((address: string) => void) | undefined;
  const onLine = (line: string) => {
    lines.push(line);
    const match = /^listening on (\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+)$/.exec(line);
    if (match !== null) onAddress?.(match[1]!);
  };
  readline.createInterface({ input: child.stdout }).on('line', onLine);
  readline.createInterface({ input: child.stderr }).on('line', (line) => onLine(`! ${line}`));
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // The group has already exited.
    }
  };
  const bounded = <T>(promise: Promise<T>, what: string): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    const overrun = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        killGroup('SIGKILL');
        reject(new Error(`${shown}: ${what} within ${STEP_TIMEOUT_MS} ms; it printed:\n${lines.join('\n')}`));
      }, STEP_TIMEOUT_MS);
    });
    return Promise.race([promise, overrun]).finally(() => clearTimeout(timer));
  };
  const address = await bounded(
    new Promise<string>((resolve, reject) => {
      onAddress = resolve;
      void allClosed.then(() => reject(new Error(`${shown} exited before printing its address:\n${lines.join('\n')}`)));
    }),
    'no listen address',
  );
  killGroup('SIGTERM');
  await bounded(allClosed, 'no clean stop after SIGTERM');
  if (!lines.includes('stopped')) throw new Error(`${shown} did not stop cleanly on SIGTERM:\n${lines.join('\n')}`);
  return address;
}

/** The first ```js block of the README's "Install" section: the plain-JavaScript example. */
function readmeExample(readme: string): string {
  const install = readme.split(/^## /m).find((section) => section.startsWith('Install'));
  const block = install === undefined ? null : /^```js\n([\s\S]*?)^```$/m.exec(install);
  if (block === null) throw new Error('the README has no ```js block in its "Install" section');
  return block[1]!;
}

/** Relative link targets of a Markdown text (anchors and web addresses left out). */
function relativeLinks(markdown: string): string[] {
  const targets = [...markdown.matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1]!.split('#')[0]!);
  return targets.filter((target) => target !== '' && !/^[a-z]+:/i.test(target));
}

function step(what: string, started: number): void {
  process.stdout.write(`consumer: ${what} (${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
}

function kB(bytes: number): string {
  return `${(bytes / 1000).toFixed(1)} kB`;
}

async function main(): Promise<void> {
  if (!fs.existsSync(NODE)) throw new Error(`no Node at ${NODE}: run npm install first`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'noatun-consumer-'));
  try {
    let started = performance.now();
    const packed = await run('npm', ['pack', '--json', '--pack-destination', work], REPO, process.env);
    // Lifecycle scripts may print before the JSON; it is the array that starts a line.
    const json = packed.stdout.slice(packed.stdout.search(/^\[/m));
    const [pack] = JSON.parse(json) as { filename: string; size: number; unpackedSize: number; entryCount: number; files: { path: string }[] }[];
    const files = pack!.files.map((file) => file.path);
    const required = [
      'LICENSE',
      'README.md',
      'package.json',
      'bin/noatun.js',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/net/index.js',
      'dist/net/index.d.ts',
      'dist/cli/main.js',
      'docs/ARCHITECTURE.md',
      'native/mmap.c',
      'binding.gyp',
    ];
    const missing = required.filter((file) => !files.includes(file));
    if (!files.some((file) => /^prebuilds\/linux-x64\/.+\.node$/.test(file))) missing.push('prebuilds/linux-x64/*.node');
    if (missing.length > 0) throw new Error(`the tarball lacks ${missing.join(', ')}`);
    const stray = files.filter((file) => /^(build|test|bench|scripts|node_modules|\.ci)\//.test(file));
    if (stray.length > 0) throw new Error(`the tarball holds files it should not: ${stray.slice(0, 10).join(', ')}`);
    step(
      `packed ${pack!.filename}: ${kB(pack!.size)} packed, ${kB(pack!.unpackedSize)} unpacked, ${pack!.entryCount} files`,
      started,
    );

    const project = path.join(work, 'project');
    fs.mkdirSync(project);
    // allowScripts: npm 11 skips dependencies' install scripts unless the project allows them, and
    // noatun's must run here to show that it leaves a matching prebuilt addon alone.
    const consumer = { name: 'noatun-consumer', version: '1.0.0', private: true, type: 'module', allowScripts: { noatun: true } };
    fs.writeFileSync(path.join(project, 'package.json'), `${JSON.stringify(consumer, null, 2)}\n`);
    started = performance.now();
    await run('npm', ['install', '--no-audit', '--no-fund', path.join(work, pack!.filename)], project);
    step('installed the tarball into an empty project', started);
    const installed = path.join(project, 'node_modules', 'noatun');
    if (fs.existsSync(path.join(project, 'node_modules', 'tsx'))) throw new Error('installing noatun brought tsx in: nothing at run time may need it');
    if (fs.existsSync(path.join(installed, 'build'))) {
      throw new Error('the install compiled the addon although a prebuilt one matches (node_modules/noatun/build exists)');
    }

    // The repository's own versions of the compiler and of Node's types.
    const manifest = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
    const devTools = ['typescript', '@types/node'].map((name) => `${name}@${manifest.devDependencies[name]}`);
    started = performance.now();
    await run('npm', ['install', '--no-audit', '--no-fund', '--save-dev', ...devTools], project);
    step(`installed ${devTools.join(' and ')}`, started);

    for (const file of fs.readdirSync(FIXTURES)) fs.copyFileSync(path.join(FIXTURES, file), path.join(project, file));
    const readme = fs.readFileSync(path.join(installed, 'README.md'), 'utf8');
    fs.writeFileSync(path.join(project, 'readme-example.mjs'), readmeExample(readme));

    started = performance.now();
    const replicated = await run(NODE, ['replicate.mjs'], project);
    if (!/^consumer ok: /m.test(replicated.stdout)) throw new Error(`replicate.mjs did not finish:\n${replicated.stdout}${replicated.stderr}`);
    step('plain node ran replicate.mjs: open, append, read, two Replicators synced over 127.0.0.1', started);

    started = performance.now();
    const example = await run(NODE, ['readme-example.mjs'], project);
    if (!example.stdout.includes('Andersen')) throw new Error(`the README example printed:\n${example.stdout}${example.stderr}`);
    step(`plain node ran the README's example: ${example.stdout.trim().split('\n').join(' / ')}`, started);

    started = performance.now();
    await run('npx', ['tsc', '--strict', '--noEmit', '-p', 'tsconfig.json'], project);
    step('tsc --strict --noEmit type-checked consumer.ts and app.ts against the shipped declarations', started);

    started = performance.now();
    const help = await run('npx', ['noatun', '--help'], project);
    if (!/Usage: noatun/.test(help.stdout) || !/\bpeer\b/.test(help.stdout) || !/\binspect\b/.test(help.stdout)) {
      throw new Error(`npx noatun --help printed:\n${help.stdout}`);
    }
    step('npx noatun --help', started);

    for (const app of ['app.js', 'app.ts']) {
      started = performance.now();
      const db = `data-${path.extname(app).slice(1)}`;
      const address = await peerRound(project, app, db);
      const shown = await run('npx', ['noatun', 'inspect', db], project);
      if (!/events: 0 stored/.test(shown.stdout)) throw new Error(`npx noatun inspect ${db} printed:\n${shown.stdout}`);
      step(`npx noatun peer --app ${app} listened on ${address} and stopped on SIGTERM; inspect read its database`, started);
    }

    const broken = relativeLinks(readme).filter((target) => !fs.existsSync(path.join(installed, target)));
    if (broken.length > 0) throw new Error(`README links that do not resolve inside the package: ${broken.join(', ')}`);
    step(`the README's ${relativeLinks(readme).length} relative links resolve inside the package`, performance.now());

    // Where no prebuilt addon fits, the package builds it from source: shown here by removing it.
    started = performance.now();
    fs.rmSync(path.join(installed, 'prebuilds'), { recursive: true, force: true });
    await run('npm', ['rebuild', 'noatun'], project);
    if (!fs.existsSync(path.join(installed, 'build', 'Release', 'noatun_mmap.node'))) throw new Error('npm rebuild noatun built no addon');
    const rebuilt = await run(NODE, ['readme-example.mjs'], project);
    if (!rebuilt.stdout.includes('Andersen')) throw new Error(`the README example on the source-built addon printed:\n${rebuilt.stdout}${rebuilt.stderr}`);
    step('without the prebuilt addon, npm rebuild noatun built it from source and the README example ran on it', started);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

try {
  await main();
  process.stdout.write('consumer: passed\n');
} catch (error) {
  process.stderr.write(`consumer: FAILED: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = 1;
}
