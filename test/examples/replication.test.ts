/**
 * examples/replication.ts as a child process: two databases replicating over 127.0.0.1 end with
 * equal views, and the program exits by itself.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { killAll, run } from '../helpers/child.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(() => {
  killAll();
  removeTempDirs();
});

test('examples/replication.ts syncs two databases to equal views and exits by itself', async (t) => {
  const dir = tempDir();
  const child = run(['--import=tsx', 'examples/replication.ts', dir]);
  const timer = setTimeout(() => child.process.kill('SIGKILL'), 30_000);
  t.teardown(() => clearTimeout(timer));
  t.is(await child.exited(), 0, child.output);
  await child.waitFor(/^views equal: true$/);
  t.regex(child.output, /^a listens on \/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+$/m);
  const both = 'ann: written on a | bob: written on b';
  t.true(child.lines.includes(`a: ${both}`), child.output);
  t.true(child.lines.includes(`b: ${both}`), child.output);
  t.true(fs.existsSync(path.join(dir, 'a')) && fs.existsSync(path.join(dir, 'b')), 'a given directory is kept');
});
