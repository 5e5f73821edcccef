import { execFileSync } from 'node:child_process';
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
