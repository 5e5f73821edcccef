import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { checkLayers, findImports, type Rule } from '../../scripts/check-layers.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const SCRIPT = path.resolve(import.meta.dirname, '../../scripts/check-layers.ts');

/** Writes `files` (path relative to the root → contents) into a fresh directory; returns it. */
function tree(files: Record<string, string>): string {
  const root = tempDir('noatun-layers-');
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true });
    fs.writeFileSync(path.join(root, name), text);
  }
  return root;
}

const rules = (root: string): Rule[] => checkLayers(root).violations.map((v) => v.rule);

/** Runs the checker the way `npm run lint` does, on `root`. */
function runChecker(root: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [SCRIPT, root], { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

const CLEAN = {
  'src/errors.ts': 'export class NoatunError extends Error {}\n',
  'src/constants.ts': "import { NoatunError } from './errors.js';\nexport const E = NoatunError;\n",
  'src/view/arena.ts': "import { NoatunError } from '../errors.js';\nexport const arena = NoatunError;\n",
  'src/core/log.ts': [
    "import type { NoatunError } from '../errors.js';",
    "import { arena } from '../view/arena.js';",
    'export const log = (e: NoatunError) => [arena, e];',
    "export const later = () => import('../view/arena.js');",
  ].join('\n'),
  'src/net/node.ts': "import { log } from '../core/log.js';\nimport { arena } from '../view/arena.js';\nexport const n = [log, arena];\n",
  'src/cli/main.ts': "import { n } from '../net/node.js';\nimport { Packr } from 'msgpackr';\nimport * as fs from 'node:fs';\nexport const m = [n, Packr, fs];\n",
  'src/index.ts': "export { log } from './core/log.js';\nexport * from './view/arena.js';\nexport * from './errors.js';\n",
  'examples/chat/main.ts': "import { log } from 'noatun';\nimport { helper } from './helper.js';\nconsole.log(log, helper);\n",
  'examples/chat/helper.ts': 'export const helper = 1;\n',
};

test('a tree whose imports point down the layers passes', (t) => {
  const report = checkLayers(tree(CLEAN));
  t.deepEqual(report.violations, []);
  t.is(report.files, 7);
});

test('the command line prints `layers ok (N files)` for a clean tree and exits 0', (t) => {
  const { status, stdout } = runChecker(tree(CLEAN));
  t.is(stdout.trim(), 'layers ok (7 files)');
  t.is(status, 0);
});

test('an upward import is reported with its file, line, import and rule', (t) => {
  const root = tree({
    'src/core/b.ts': 'export const b = 1;\n',
    'src/view/a.ts': "// view may not depend on core\nimport { b } from '../core/b.js';\nexport const a = b;\n",
  });
  const { violations } = checkLayers(root);
  t.is(violations.length, 1);
  t.like(violations[0], { rule: 'upward-import', file: 'src/view/a.ts', line: 2, specifier: '../core/b.js' });
  t.regex(violations[0]!.message, /^src\/view\/a\.ts:2: import '\.\.\/core\/b\.js': view may not import core/);
});

test('type-only, dynamic, multi-line and re-exporting upward imports are all reported', (t) => {
  const root = tree({
    'src/net/node.ts': 'export type Node = { id: number };\nexport const node = 1;\n',
    'src/cli/main.ts': 'export const main = 1;\n',
    'src/core/a.ts': [
      "import type { Node } from '../net/node.js';",
      'export const load = () => import("../cli/main.js");',
      'import {',
      '  node,',
      "} from '../net/node.js';",
      "export { main } from '../cli/main.js';",
      'export const x: Node = { id: node };',
    ].join('\n'),
  });
  const found = checkLayers(root).violations.map((v) => [v.rule, v.line]);
  t.deepEqual(found, [
    ['upward-import', 1],
    ['upward-import', 2],
    ['upward-import', 3],
    ['upward-import', 6],
  ]);
});

test('an import cycle is reported with its path', (t) => {
  const root = tree({
    'src/core/a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
    'src/core/b.ts': "import type { C } from './c.js';\nexport const b = (c: C) => c;\n",
    'src/core/c.ts': "import { a } from './a.js';\nexport type C = typeof a;\n",
  });
  const { violations } = checkLayers(root);
  t.is(violations.length, 1);
  t.like(violations[0], { rule: 'import-cycle', file: 'src/core/a.ts', line: 1 });
  t.true(violations[0]!.message.includes('src/core/a.ts → src/core/b.ts → src/core/c.ts → src/core/a.ts'));
});

test('the command line prints one line per violation and exits 1', (t) => {
  const root = tree({
    'src/view/a.ts': "import { b } from '../core/b.js';\nexport const a = 1;\n",
    'src/core/b.ts': "import { a } from '../view/a.js';\nexport const b = a;\n",
  });
  const { status, stdout, stderr } = runChecker(root);
  t.is(status, 1);
  t.is(stdout, '');
  const lines = stderr.trim().split('\n');
  t.true(lines.some((line) => /^src\/view\/a\.ts:1: import '\.\.\/core\/b\.js': view may not import core/.test(line)));
  t.true(lines.some((line) => line.includes('import cycle src/core/b.ts → src/view/a.ts → src/core/b.ts')));
});

test('shared files importing a layer, imports of the public entry and an entry importing net are reported', (t) => {
  const root = tree({
    'src/errors.ts': "import { arena } from './view/arena.js';\nexport const e = arena;\n",
    'src/view/arena.ts': 'export const arena = 1;\n',
    'src/net/node.ts': 'export const node = 1;\n',
    'src/core/log.ts': "import { x } from '../index.js';\nexport const log = x;\n",
    'src/index.ts': "export const x = 1;\nexport { node } from './net/node.js';\n",
  });
  t.deepEqual(rules(root).sort(), ['entry-imports-layer', 'imports-entry', 'shared-imports-layer']);
});

test('examples importing ../src are reported; imports of the package name are not', (t) => {
  const root = tree({
    'src/index.ts': 'export const x = 1;\n',
    'examples/good.ts': "import { x } from 'noatun';\nconsole.log(x);\n",
    'examples/chat/bad.ts': "import { x } from '../../src/index.js';\nconsole.log(x);\n",
  });
  const { violations } = checkLayers(root);
  t.is(violations.length, 1);
  t.like(violations[0], { rule: 'example-imports-src', file: 'examples/chat/bad.ts', line: 1 });
});

test('imports that name no file, leave src or sit in an unknown folder are reported', (t) => {
  const root = tree({
    'src/core/a.ts': "import { gone } from './gone.js';\nimport { w } from '../../bench/w.js';\nexport const a = [gone, w];\n",
    'bench/w.ts': 'export const w = 1;\n',
    'src/util/u.ts': 'export const u = 1;\n',
  });
  t.deepEqual(rules(root).sort(), ['outside-layers', 'outside-src', 'unresolved-import']);
});

test('imports inside comments, strings, templates and regular expressions are not imports', (t) => {
  const text = [
    "// import { a } from './comment.js';",
    "/* import b from './block.js' */",
    'const s = "import c from \'./string.js\'";',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the source text of a template literal
    "const t = `import d from './template.js' ${`${'./nested.js'}`}`;",
    "const r = /['\"]import e from '.\\/regex.js'/;",
    "const half = (1) / 2; const q = 'x' / 3;",
    "loader.import('./property.js');",
    "import real from './real.js';",
  ].join('\n');
  t.deepEqual(findImports(text), [{ specifier: './real.js', line: 8 }]);
});
