/**
 * Running out of file descriptors (`ulimit -n`) is an error, never a crash. lmdb-js (3.5.6) frees
 * an environment twice when LMDB's open fails after registering it, and the process died of
 * SIGSEGV when the limit was met while the log's environment was opening; the log now checks
 * that the descriptors are there first (src/core/log.ts, `openEnv`). The directory's lock file
 * failed with Node's raw EMFILE; it is SYSTEM_CALL_FAILED too.
 *
 * Each run is a child under its own limit (`sh -c 'ulimit -n N; exec node …'`), opening databases
 * that store two events each until one fails; the limits put the failure at different places (the
 * log, the view's files, the writer thread). The child then closes them all and reopens the first.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'descriptors-child.ts');

for (const limit of [42, 64, 96, 128]) {
  test(`with ulimit -n ${limit}, the database that finds no descriptor fails with SYSTEM_CALL_FAILED and the process goes on`, (t) => {
    const dir = tempDir();
    const node = `'${process.execPath}' --conditions=noatun-source --import=tsx '${child}' '${dir}'`;
    const result = spawnSync('sh', ['-c', `ulimit -n ${limit} && exec ${node}`], { encoding: 'utf8', timeout: 120_000 });
    t.is(result.signal, null, `killed by ${result.signal}: ${result.stderr}`);
    t.is(result.status, 0, result.stderr);
    const report = JSON.parse(result.stdout.trim().split('\n').pop()!) as {
      opened: number;
      failure?: { code?: string; message: string };
      closeErrors: string[];
      reopened: number;
    };
    t.true(report.opened >= 1, JSON.stringify(report));
    t.is(report.failure?.code, 'SYSTEM_CALL_FAILED', JSON.stringify(report));
    t.regex(report.failure!.message, /EMFILE/);
    t.deepEqual(report.closeErrors, []);
    // What the first database stored is there after all of it.
    t.is(report.reopened, 2);
  });
}
