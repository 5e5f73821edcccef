/**
 * A full disk is an error, not a crash. Each scenario runs in a child process with a mount
 * namespace of its own (`unshare --mount`, which needs root: the scenarios are skipped, and say
 * so, where it is refused), on an 8 MiB tmpfs that it fills:
 *
 * - through the view (the memory map): a write into a page without a block on disk raised SIGBUS
 *   and killed the process. Now the batch is refused with `DISK_FULL`, undone, and the database
 *   goes on: reads see what was acknowledged, and once there is room again writes succeed in the
 *   same session;
 * - through the event log (LMDB): its failed commit surfaced as lmdb-js's own error, and an
 *   unobserved rejection of lmdb-js ended the process. Now the write is refused with `DISK_FULL`,
 *   the database refuses work until it is reopened, closes cleanly, and reopens (in the same
 *   process) with every acknowledged event and none of the refused batch;
 * - through `ingest`, as a peer's batches would fill it, and through replication over libp2p:
 *   the replicator reports the failure and the process goes on; reopened with room, replication
 *   brings the rest;
 * - through the view again after a reopen, once its undo history slid (a fast clock) and the
 *   journal gave back its pages outside it at the close: the pages written again get their blocks
 *   first;
 * - at open, on a file system already full or nearly (96 KiB left): refused with `DISK_FULL`, the
 *   directory left unlocked, so that it opens once there is room.
 *
 * After each, the reopened database holds exactly the acknowledged events (and one more written
 * once there was room) and its view equals them.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'disk-full-child.ts');

/** Whether this process may make a mount namespace and mount in it (root, or a user namespace). */
const canMount =
  process.platform === 'linux' &&
  spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /mnt'], {
    stdio: 'ignore',
  }).status === 0;

interface Report {
  acked: number;
  failure: string | null;
  failureMessage: string | null;
  readAfter: number | string;
  writeAfterRoom: string;
  close: string;
  reopenedStored: number;
  reopenedKeys: number;
  reopenedMatches: boolean;
  keysBelowAcked: number;
  writeAfterReopen: string;
  storedBeforeResume: number;
  total: number;
  journalHoleBytes: number;
  openWhenFull: string;
  openWhenNearlyFull: string;
  storedAfterRoom: number;
}

function run(scenario: string, commitMode: string): Report {
  const dir = tempDir('disk-full');
  fs.mkdirSync(dir, { recursive: true });
  const result = spawnSync(
    'unshare',
    ['--mount', '--propagation', 'private', process.execPath, '--import=tsx', child, dir, scenario, commitMode],
    { encoding: 'utf8', timeout: 120_000 },
  );
  if (result.status !== 0) {
    throw new Error(`the ${scenario} child exited with ${result.status ?? result.signal}: ${result.stderr.slice(-2000)}`);
  }
  const line = result.stdout.trim().split('\n').at(-1)!;
  return JSON.parse(line) as Report;
}

/**
 * The event log met the full disk: the batch was refused, the database refused work until it was
 * reopened, closed cleanly, and reopened with exactly the acknowledged events.
 */
function expectLogFilled(t: ExecutionContext, report: Report): void {
  t.is(report.failure, 'DISK_FULL', report.failureMessage ?? '');
  t.true(report.acked > 0);
  t.is(report.readAfter, 'DISK_FULL');
  t.is(report.writeAfterRoom, 'DISK_FULL');
  t.is(report.close, 'ok');
  t.is(report.reopenedStored, report.acked);
  t.is(report.reopenedKeys, report.acked);
  t.is(report.keysBelowAcked, report.acked);
  t.true(report.reopenedMatches);
  t.is(report.writeAfterReopen, 'ok');
}

const when = canMount ? test : test.skip;
if (!canMount) console.log('disk-full.test.ts: skipped (needs root for a mount namespace with a small tmpfs)');

/**
 * The view met the full disk: the batch was refused and undone, and the database went on; with
 * room again it wrote in the same session, and reopened with every acknowledged event. (With
 * `pruned`, events before the filling were overwritten and pruned, so the stored count is not
 * checked, only the view.)
 */
function expectViewFilled(t: ExecutionContext, report: Report, pruned = false): void {
  t.is(report.failure, 'DISK_FULL', report.failureMessage ?? '');
  t.true(report.acked > 0);
  // Undone and still usable: the view holds exactly what was acknowledged.
  t.is(report.readAfter, report.acked);
  t.is(report.writeAfterRoom, 'ok');
  t.is(report.close, 'ok');
  if (!pruned) t.is(report.reopenedStored, report.acked + 1);
  t.is(report.reopenedKeys, report.acked + 1);
  t.true(report.reopenedMatches);
  t.is(report.writeAfterReopen, 'ok');
}

for (const commitMode of ['async', 'sync']) {
  when(`a view that fills the disk refuses the batch and goes on (${commitMode} commits)`, (t) => {
    expectViewFilled(t, run('view', commitMode));
  });

  when(`an event log that fills the disk refuses writes until reopened, keeping what was acknowledged (${commitMode} commits)`, (t) => {
    expectLogFilled(t, run('log', commitMode));
  });
}

when('batches ingested from a peer that fill the disk are refused with DISK_FULL, and the database survives', (t) => {
  expectLogFilled(t, run('ingest', 'async'));
});

when('a peer whose events fill the disk over libp2p leaves the process running; with room again, replication completes', (t) => {
  const report = run('replicate', 'async');
  t.is(report.failure, 'DISK_FULL', report.failureMessage ?? '');
  t.is(report.close, 'ok');
  t.true(report.storedBeforeResume > 0 && report.storedBeforeResume < report.total);
  t.is(report.reopenedStored, report.total);
  t.is(report.reopenedKeys, report.total);
  t.true(report.reopenedMatches);
});

when('opening a database on a full file system is refused with DISK_FULL, and it opens once there is room', (t) => {
  const report = run('open', 'async');
  t.is(report.openWhenFull, 'DISK_FULL');
  // With a little room: the lock is taken, then the log or the view finds none.
  t.is(report.openWhenNearlyFull, 'DISK_FULL');
  t.is(report.storedAfterRoom, 1);
});

when('a view reopened after its undo history slid (journal pages given back) fills the disk without a crash', (t) => {
  const report = run('reopen', 'async');
  t.true(report.journalHoleBytes > 0, 'the journal gave pages back before the reopen');
  expectViewFilled(t, report, true);
});

interface SweepStep {
  spare: number;
  operation: string;
  rebuilds: number;
  marker?: string;
  afterRoom?: string;
  close?: string;
  reopen?: string;
  viewWrong: string[];
  stored: number;
  storedIs: 'before' | 'after' | 'neither';
}

interface SweepReport {
  operation: string;
  before: number;
  after: number;
  steps: SweepStep[];
}

function sweep(operation: string): SweepReport {
  const dir = tempDir('disk-full-sweep');
  fs.mkdirSync(dir, { recursive: true });
  const result = spawnSync('unshare', ['--mount', '--propagation', 'private', process.execPath, '--import=tsx', sweepChild, dir, operation], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (result.status !== 0) {
    throw new Error(`the ${operation} sweep exited with ${result.status ?? result.signal}: ${result.stderr.slice(-2000)}`);
  }
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as SweepReport;
}

const sweepChild = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'disk-full-sweep-child.ts');

/**
 * Every size of the sweep: the operation and the write after it either succeeded or were refused
 * with DISK_FULL (nothing else, no crash), the database closed, and reopened with room it held the
 * stored set from before or after the operation and the view those events give.
 */
function expectSweep(t: ExecutionContext, report: SweepReport): void {
  t.true(report.steps.length >= 2, 'the sweep ran');
  for (const step of report.steps) {
    const at = `with ${step.spare} bytes left: ${JSON.stringify(step)}`;
    t.true(['ok', 'DISK_FULL'].includes(step.operation), at);
    if (step.marker !== undefined) t.true(['ok', 'DISK_FULL'].includes(step.marker), at);
    if (step.close !== undefined) t.is(step.close, 'ok', at);
    t.is(step.reopen, undefined, at);
    t.deepEqual(step.viewWrong, [], at);
    t.not(step.storedIs, 'neither', at);
  }
  // It went on until the operation had room to finish, twice.
  const last = report.steps.slice(-2);
  t.true(
    last.every((step) => step.operation === 'ok' && step.marker === 'ok'),
    JSON.stringify(last),
  );
}

when('a compaction that meets a full disk at any point is refused with DISK_FULL; reopened with room, nothing is lost', (t) => {
  const report = sweep('compact');
  expectSweep(t, report);
  const refused = report.steps.filter((step) => step.operation === 'DISK_FULL');
  t.true(refused.length >= 5, `the disk filled during the rebuild at ${refused.length} sizes`);
  for (const step of report.steps) t.is(step.rebuilds, 1);
  for (const step of report.steps) t.is(step.storedIs, 'before');
});

when('rebuilding a missing view at open on a full disk is refused with DISK_FULL at any point, and succeeds once there is room', (t) => {
  const report = sweep('rebuild');
  expectSweep(t, report);
  t.true(report.steps.filter((step) => step.operation === 'DISK_FULL').length >= 5);
  for (const step of report.steps) t.is(step.storedIs, 'before');
});

when('a pruning pass on a full disk completes, and the pruned database reopens with the same view', (t) => {
  const report = sweep('prune');
  expectSweep(t, report);
  t.true(report.after < report.before, 'the pass pruned');
  // With no room at all: pruning only frees (log pages it deletes, view records it drops).
  t.is(report.steps[0]!.spare, 0);
  t.is(report.steps[0]!.operation, 'ok');
  t.is(report.steps[0]!.storedIs, 'after');
});
