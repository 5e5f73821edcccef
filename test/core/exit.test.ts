/**
 * A process that ends by an uncaught exception while a commit is on its way ends: it must not
 * hang in its exit holding the database's lock. lmdb-js runs a transaction with a callback on its
 * own thread, holding LMDB's write lock until this thread runs the callback; the log made such
 * commits (the removal of a refused append's events, before the writer thread was up), and a
 * process whose exit began first waited for the callback for ever (two runs of three of
 * `refused-apply` hung before). An `apply` that returns a rejected promise is refused, and its
 * rejection is no unhandled one that ends the process.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { Database, s } from '../../src/index.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'exit-child.ts');
const Root = s.object({ n: s.u32() });

for (const how of ['refused-apply', 'async-apply']) {
  test(`a process ended by an uncaught exception while a commit is on its way exits, and its database opens (${how})`, async (t) => {
    for (let round = 0; round < (how === 'refused-apply' ? 4 : 1); round++) {
      const dir = tempDir();
      const result = spawnSync(process.execPath, ['--conditions=noatun-source', '--import=tsx', child, dir, how], { encoding: 'utf8', timeout: 30_000 });
      t.is(result.signal, null, `round ${round}: ended by ${result.signal} (a hang, killed at the timeout)`);
      t.is(result.status, 1, result.stderr);
      t.true(result.stderr.includes(`the end (${how})`), `the child's own exception ended it: ${result.stderr}`);
      t.false(result.stderr.includes('an async apply'), 'the async apply is no unhandled rejection');
      const db = await Database.open<unknown, typeof Root>({ path: dir, root: Root, apply: (_event, root) => void (root.n += 1) });
      t.is(db.read((root) => root.n), 1, 'the first append is there, the refused one is not');
      t.is(db.stats().stored, 1);
      await db.close();
    }
  });
}
