/**
 * A local transaction is handed to the log's writer thread before it is applied, so it can be
 * written while it is applied (BENCHMARKS.md, run V). Should its apply fail, it is taken out of
 * the log again before the append rejects; these tests kill the process in between, inside the
 * apply, and check what the next open makes of the batch left in the log: taken out when its
 * apply fails (the append was never acknowledged, and a rejected append stores nothing), kept when
 * it applies.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { EventLog } from '../../src/core/log.js';
import { cutoffHashMismatch } from '../helpers/convergence.js';
import { T0, tempDir } from '../helpers/temp.js';
import { openUnconfirmedDb, writerRunning } from './fixtures/unconfirmed-app.js';

const writer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'unconfirmed-writer.ts');

/** Runs the writer until it kills itself; resolves with what it printed. */
function runWriter(dir: string, how: 'local' | 'peer' | 'behind' = 'local'): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import=tsx', writer, dir, how], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`the writer was not killed: ${out} ${err}`));
      else resolve(out);
    });
  });
}

test('a batch whose apply fails, left in the log by a kill before it was taken out, is taken out at the next open', async (t) => {
  const dir = tempDir();
  t.is(await runWriter(dir), 'acknowledged\n');
  let db = await openUnconfirmedDb(dir, 'throw');
  t.is(db.stats().openedBy, 'rebuild');
  t.is(db.stats().stored, 3);
  t.deepEqual(
    db.read((root) => ({ sum: root.sum, values: root.values.export() })),
    { sum: 6, values: [1, 2, 3] },
  );
  t.deepEqual(db.failures(), []);
  const stored = [...db.messages()].map((m) => m.id.toString());
  t.deepEqual(db.heads().map(String), [stored[2]]);
  t.deepEqual(db.discarded(), [], 'a withdrawn batch is not reported as damaged records');
  await db.close();
  // Durable: the next open (a clean one) finds the same.
  db = await openUnconfirmedDb(dir, 'throw');
  t.is(db.stats().openedBy, 'clean-load');
  t.is(db.stats().stored, 3);
  t.is(db.read((root) => root.sum), 6);
  await db.close();
});

test('a batch that applies, left in the log by a kill while it was applied, stays at the next open', async (t) => {
  const dir = tempDir();
  t.is(await runWriter(dir), 'acknowledged\n');
  const db = await openUnconfirmedDb(dir, 'pass');
  t.is(db.stats().openedBy, 'rebuild');
  t.is(db.stats().stored, 6);
  t.deepEqual(
    db.read((root) => ({ sum: root.sum, values: root.values.export() })),
    { sum: 66, values: [1, 2, 3, 10, 20, 30] },
  );
  t.deepEqual(db.failures(), []);
  await db.close();
});

test('a transaction whose apply fails rejects once its batch is out of the log again: nothing of it is stored, before or after a reopen', async (t) => {
  const dir = tempDir();
  let db = await openUnconfirmedDb(dir, 'throw');
  await db.transaction((tx) => {
    for (const value of [1, 2, 3]) tx.append({ value });
  });
  await writerRunning(db);
  const before = [...db.messages()].map((m) => m.id.toString());
  const error = await t.throwsAsync(
    db.transaction((tx) => {
      tx.append({ value: 10 });
      tx.append({ value: 20, boom: true });
    }),
  );
  t.is((error as { code?: string }).code, 'APPLY_FAILED');
  t.deepEqual([...db.messages()].map((m) => m.id.toString()), before);
  t.is(db.stats().stored, 3);
  await db.append({ value: 4 });
  t.deepEqual(db.read((root) => root.values.export()), [1, 2, 3, 4]);
  await db.close();
  db = await openUnconfirmedDb(dir, 'pass');
  t.is(db.stats().stored, 4);
  t.deepEqual(db.read((root) => root.values.export()), [1, 2, 3, 4]);
  await db.close();
});

test("a peer's batch left in the log by a kill while it was applied stays at the next open, with its failure recorded", async (t) => {
  // A peer's event whose apply fails is stored and its failure recorded, identically on every
  // peer: only this machine failing (a full view, the stack) takes a peer's batch out again.
  const dir = tempDir();
  t.is(await runWriter(dir, 'peer'), 'acknowledged\n');
  const db = await openUnconfirmedDb(path.join(dir, 'target'), 'throw');
  t.is(db.stats().openedBy, 'rebuild');
  t.is(db.stats().stored, 6);
  t.deepEqual(
    db.read((root) => ({ sum: root.sum, values: root.values.export() })),
    { sum: 46, values: [1, 2, 3, 10, 30] },
  );
  t.is(db.failures().length, 1);
  await db.close();
});

test("a peer's batch behind the cutoff, left in the log by a kill while it was applied, is in the cutoff hashes at the next open", async (t) => {
  // Its ids joined the hashes in memory as it was stored, but the hashes were saved with the
  // commit after the batch's: the kill left the batch without them, a rebuild kept the stale
  // hashes for good, and a peer holding the same events was never synced with this one.
  const dir = tempDir();
  t.is(await runWriter(dir, 'behind'), 'acknowledged\n');
  const now = () => T0 + 2 * 3_600_000;
  let db = await openUnconfirmedDb(path.join(dir, 'target'), 'pass', now);
  t.is(db.stats().openedBy, 'rebuild');
  t.is(db.stats().stored, 6);
  t.true(db.cutoffState().time > T0, 'the events are behind the cutoff');
  t.is(cutoffHashMismatch(db), undefined);
  await db.close();
  // A fresh peer given the same events has the same hashes.
  const fresh = await openUnconfirmedDb(tempDir(), 'pass', now);
  db = await openUnconfirmedDb(path.join(dir, 'target'), 'pass', now);
  await fresh.ingest([...db.messages()].map((m) => m.bytes));
  t.deepEqual(fresh.cutoffState(), db.cutoffState());
  await fresh.close();
  await db.close();
});

test('cutoff hashes left short by an earlier version are taken afresh when the view is rebuilt', async (t) => {
  const dir = tempDir();
  t.is(await runWriter(dir, 'behind'), 'acknowledged\n');
  const target = path.join(dir, 'target');
  const now = () => T0 + 2 * 3_600_000;
  let db = await openUnconfirmedDb(target, 'pass', now);
  const expected = db.cutoffState();
  await db.close();
  // What a kill between a batch's commit and its hashes' left before: hashes without the batch.
  const log = await EventLog.open(target);
  const stride = expected.time - expected.previousTime;
  log.setMeta('cutoffHashes', [new Uint8Array(16), new Uint8Array(16), stride]);
  await log.written();
  await log.close();
  fs.rmSync(path.join(target, 'view'), { recursive: true });
  db = await openUnconfirmedDb(target, 'pass', now);
  t.is(db.stats().openedBy, 'rebuild');
  t.is(cutoffHashMismatch(db), undefined);
  t.deepEqual(db.cutoffState(), expected);
  await db.close();
  // Saved: the next (clean) open has them too.
  db = await openUnconfirmedDb(target, 'pass', now);
  t.is(db.stats().openedBy, 'clean-load');
  t.deepEqual(db.cutoffState(), expected);
  await db.close();
});
