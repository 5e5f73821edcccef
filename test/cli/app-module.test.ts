/**
 * The hints `noatun peer` and `noatun inspect` add when Node itself refuses a TypeScript app
 * module (the command runs on plain Node, which only strips types, and not everywhere).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { typeScriptHint } from '../../src/cli/app-module.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const failure = (code: string) => Object.assign(new Error(code), { code });

test('a .ts module on a Node that does not strip types gets the flag and the versions that need it', (t) => {
  t.regex(typeScriptHint('app.ts', failure('ERR_UNKNOWN_FILE_EXTENSION')), /NODE_OPTIONS=--experimental-strip-types.*22\.18/);
  t.regex(typeScriptHint('app.mts', failure('ERR_UNKNOWN_FILE_EXTENSION')), /experimental-strip-types/);
  t.is(typeScriptHint('app.coffee', failure('ERR_UNKNOWN_FILE_EXTENSION')), '', 'other extensions get no TypeScript advice');
});

test('a .ts module under node_modules, or with syntax Node cannot strip, gets what to do instead', (t) => {
  t.regex(typeScriptHint('node_modules/x/app.ts', failure('ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING')), /outside it, or a \.js module/);
  t.regex(typeScriptHint('app.ts', failure('ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX')), /enums, namespaces and parameter properties/);
  t.is(typeScriptHint('app.ts', failure('ERR_MODULE_NOT_FOUND')), '');
  t.is(typeScriptHint('app.ts', 'not an error'), '');
});

test("a .ts module that imports another as './x.js' where ./x.ts exists is told to name it './x.ts'", (t) => {
  // (Node's own message; under this test's TypeScript loader the import would simply resolve.)
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'x.ts'), 'export const X = 1;\n');
  const notFound = (name: string) =>
    Object.assign(new Error(`Cannot find module '${path.join(dir, name)}' imported from ${path.join(dir, 'app.ts')}`), { code: 'ERR_MODULE_NOT_FOUND' });
  t.regex(typeScriptHint('app.ts', notFound('x.js')), /x\.ts exists: .* write '\.\/x\.ts'/);
  t.is(typeScriptHint('app.ts', notFound('y.js')), '', 'no hint when there is no .ts of that name');
});
