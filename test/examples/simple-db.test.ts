import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const example = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'simple-db.ts');

test('examples/simple-db.ts runs as the README shows, and keeps its data across runs', (t) => {
  const dir = tempDir();
  const run = () => execFileSync(process.execPath, ['--import=tsx', example, dir], { encoding: 'utf8' });
  t.regex(run(), /total salary: 86\nBerg earns: 30\nemployees: Andersen, Berg, Dahl\nstored events: 3/);
  t.regex(run(), /total salary: 172\n[\s\S]*stored events: 6/);
});

const readme = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md'), 'utf8');

/** The code block of `language` that follows `marker` in the README. */
function readmeBlock(marker: string, language: string): string {
  const at = readme.indexOf(marker);
  const start = readme.indexOf(`\`\`\`${language}\n`, at);
  if (at < 0 || start < 0) throw new Error(`no ${language} block after ${JSON.stringify(marker)} in the README`);
  return readme.slice(start, readme.indexOf('\n```\n', start));
}

test("the README's plain-JavaScript program and its TypeScript example use different directories", (t) => {
  const pathOf = (code: string) => /path: '([^']+)'/.exec(code)?.[1];
  const js = pathOf(readmeBlock('A complete program in plain JavaScript', 'js'));
  const ts = pathOf(readmeBlock('## A short example', 'ts'));
  t.truthy(js);
  t.truthy(ts);
  // (Both were company-db, with different schemas: run in order, the second printed 75, not 25.)
  t.not(js, ts);
});

test("the README's noatun walkthrough shows the tracker's first line, its address", (t) => {
  const walkthrough = readmeBlock('## The `noatun` command', 'sh');
  const answers = walkthrough.slice(walkthrough.indexOf("printf 'add Crash on start"));
  t.regex(answers, /^[^\n]*\n[^\n]*\n# listening on \/ip4\/127\.0\.0\.1\/tcp\/…\/p2p\/…[^\n]*\n# ok added Crash on start/);
});
