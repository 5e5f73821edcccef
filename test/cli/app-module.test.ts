/**
 * The hints `noatun peer` and `noatun inspect` add when Node itself refuses a TypeScript app
 * module (the command runs on plain Node, which only strips types, and not everywhere).
 */
import test from 'ava';
import { typeScriptHint } from '../../src/cli/app-module.js';

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
