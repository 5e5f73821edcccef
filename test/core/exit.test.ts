/**
 * An `apply` that returns a rejected promise is refused, and its rejection is no unhandled one
 * that ends the process: the child closes its database and exits by itself. (Before, the
 * rejection ended the process, and with a commit of lmdb-js's waiting for this thread, hung it in
 * its exit.)
 *
 * Not tested here, and not fixed: a process that ends by an uncaught exception while lmdb-js runs
 * a transaction with a callback (the log's commits of removals before its writer thread is up)
 * can hang in its exit, holding the database — lmdb-js's thread holds LMDB's write lock and waits
 * for this thread to run the callback, and Node's exit waits for that thread. Making those commits
 * batches or synchronous instead made a pruning pass on a full disk end the process with SIGABRT
 * in lmdb-js now and then (BENCHMARKS.md, run AK).
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

test('an apply that returns a rejected promise is refused, and its rejection does not end the process; the database opens', async (t) => {
  const dir = tempDir();
  const result = spawnSync(process.execPath, ['--conditions=noatun-source', '--import=tsx', child, dir], { encoding: 'utf8', timeout: 60_000 });
  t.is(result.signal, null, 'ended by a signal (a hang, killed at the timeout)');
  t.is(result.status, 0, result.stderr);
  t.deepEqual(result.stdout.trim().split('\n'), ['refused APPLY_FAILED', 'closed']);
  t.false(result.stderr.includes('an async apply'), 'the async apply is no unhandled rejection');
  const db = await Database.open<unknown, typeof Root>({ path: dir, root: Root, apply: (_event, root) => void (root.n += 1) });
  t.is(db.read((root) => root.n), 1, 'the first append is there, the refused one is not');
  t.is(db.stats().stored, 1);
  await db.close();
});
