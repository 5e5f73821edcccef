/**
 * Databases written by earlier versions, by `fixtures/make-format-fixture.ts`:
 * - `fixtures/db-2026-12-04/`: the code of 4 Dec 2026 (undo journal format version 2, event log
 *   format 1: one LMDB entry per event);
 * - `fixtures/db-2026-12-05/`: the code of 5 Dec 2026 (`01f7ce6`; journal version 3, log format 1);
 * - `fixtures/db-2026-12-05-runs/`: the code of 5 Dec 2026 before the records' table changed
 *   (`61938db`; journal version 3, log format 2, view format 3);
 * - `fixtures/db-2026-12-05-journal3/`: the code of the evening of 5 Dec 2026 (`2eb70b6`; journal
 *   version 3, log format 2, view format 4), the last before the journal's short entries (version 4);
 * - `fixtures/db-2026-12-05-packed/`: the code of the night of 5 Dec 2026 (`2f85782`; journal
 *   version 4, log format 3 with packed runs, view format 4), the last before the pruning records
 *   of 48 bytes (view format 5);
 * - `fixtures/db-2026-12-07/`: the code of 7 Dec 2026 (`d386fb6`; journal version 6, log format 3,
 *   view format 6), the last before list elements' existence trackers (view format 7);
 * - `fixtures/db-2026-12-07-v7/`: the code of the afternoon of 7 Dec 2026 (`da594ec`; journal
 *   version 6, log format 3, view format 7), the last before pruning records of 32 bytes (view
 *   format 8).
 * - `fixtures/db-2026-12-07-v8/`: the code of the evening of 7 Dec 2026 (`549d6ca`; view format
 *   8), the last before map keys' hashes took a secret seed from the view's header (0 there).
 * Today's code converts the log to runs (format 2, marked 3) at open where needed and rebuilds the
 * view from it (the view is derived, so one of an earlier format is replayed from
 * the log rather than converted), reaches the same view as a fresh replay of the events, and
 * rewinds through the rebuilt undo history for a late event. That journals of the earlier formats
 * are still read is tested in `test/view/undo.test.ts`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { open } from 'lmdb';
import { VIEW_FORMAT_VERSION } from '../../src/view/arena.js';
import { removeTempDirs, tempDir } from '../helpers/temp.js';
import { FIXTURE_EVENTS, FIXTURE_T0, openShop } from './fixtures/format-app.js';

test.after.always(removeTempDirs);

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

function copyFixture(name: string): string {
  const dir = tempDir();
  fs.cpSync(path.join(fixtures, name), dir, { recursive: true });
  return dir;
}

/** The names of the databases inside an LMDB file (its root database's keys). */
async function lmdbDatabases(file: string): Promise<string[]> {
  const env = open({ path: file, readOnly: true });
  try {
    return [...env.getKeys()].map(String);
  } finally {
    await env.close();
  }
}

/** A fresh database holding exactly `messages`, for comparison. */
async function replay(messages: Uint8Array[], now: number) {
  const db = await openShop(tempDir(), () => now);
  await db.ingest(messages);
  return db;
}

for (const [name, journalVersion, logFormat, viewFormat] of [
  ['db-2026-12-04', 2, 1, 3],
  ['db-2026-12-05', 3, 1, 3],
  ['db-2026-12-05-runs', 3, 2, 3],
  ['db-2026-12-05-journal3', 3, 2, 4],
  ['db-2026-12-05-packed', 4, 3, 4],
  ['db-2026-12-07', 6, 3, 6],
  ['db-2026-12-07-v7', 6, 3, 7],
] as const) {
test(`a database of an earlier format (${name}) opens, its log converted, and reaches the same view as a replay`, async (t) => {
  const dir = copyFixture(name);
  const journal = path.join(dir, 'view', 'journal.bin');
  t.is(fs.readFileSync(journal).readUInt32LE(8), journalVersion, `the fixture keeps journal format version ${journalVersion}`);
  t.is(fs.readFileSync(path.join(dir, 'view', 'view.bin')).readUInt32LE(8), viewFormat, `the fixture keeps view format ${viewFormat}`);
  t.deepEqual(await lmdbDatabases(path.join(dir, 'log.mdb')), logFormat === 1 ? ['events', 'meta'] : ['meta', 'runs'], `the fixture keeps log format ${logFormat}`);
  // The clock when the fixture was closed (its last transaction): opening later would move the cutoff.
  const now = FIXTURE_T0 + (FIXTURE_EVENTS - 3) * 1000;
  const db = await openShop(dir, () => now);
  t.is(db.stats().openedBy, 'rebuild', `a view of format ${viewFormat} is rebuilt from the log`);
  t.is(fs.readFileSync(path.join(dir, 'view', 'view.bin')).readUInt32LE(8), VIEW_FORMAT_VERSION, `now of format ${VIEW_FORMAT_VERSION}`);
  t.deepEqual(await lmdbDatabases(path.join(dir, 'log.mdb')), ['meta', 'runs'], 'the log is converted');
  t.is(db.stats().stored, 283);
  t.is(db.stats().pruned, 17);
  const messages = [...db.messages()].map((m) => m.bytes);
  const fresh = await replay(messages, now);
  t.deepEqual(db.read((root) => root.stock.export()), fresh.read((root) => root.stock.export()));
  t.deepEqual(db.read((root) => root.sold.export()), fresh.read((root) => root.sold.export()));
  t.is(db.read((root) => root.revenue), fresh.read((root) => root.revenue));
  t.deepEqual(db.cutoffState(), fresh.cutoffState());

  // A late event inside the kept history rewinds through the old entries (no rebuild).
  const late = await openShop(tempDir(), () => FIXTURE_T0 + (FIXTURE_EVENTS - 20) * 1000 + 500);
  await late.append({ put: 'item3', count: 99, note: 'late' });
  const [lateBytes] = [...late.messages()].map((m) => m.bytes);
  t.is((await db.ingest([lateBytes!])).stored, 1);
  t.is(db.stats().rebuilds, 0);
  t.is(db.stats().reapplied > 0, true);
  const both = await replay([...messages, lateBytes!], now);
  t.deepEqual(db.read((root) => root.stock.export()), both.read((root) => root.stock.export()));
  t.deepEqual(db.read((root) => root.sold.export()), both.read((root) => root.sold.export()));
  await db.close();
  t.is(fs.readFileSync(journal).readUInt32LE(8), 6, 'written as version 6 from then on');
  const again = await openShop(dir, () => now);
  t.is(again.stats().openedBy, 'clean-load');
  t.deepEqual(again.read((root) => root.stock.export()), both.read((root) => root.stock.export()));
  await Promise.all([again.close(), fresh.close(), both.close(), late.close()]);
});
}

test('a view of the current format made before map keys were hashed with a seed loads as it is, and its maps still find their keys', async (t) => {
  const dir = copyFixture('db-2026-12-07-v8');
  t.is(fs.readFileSync(path.join(dir, 'view', 'view.bin')).readUInt32LE(8), VIEW_FORMAT_VERSION);
  t.is(fs.readFileSync(path.join(dir, 'view', 'view.bin')).readUInt32LE(44), 0, 'no seed in the header');
  const now = FIXTURE_T0 + (FIXTURE_EVENTS - 3) * 1000;
  const db = await openShop(dir, () => now);
  t.is(db.stats().openedBy, 'clean-load', 'not rebuilt: its tables are read with the hashes they were built with');
  const messages = [...db.messages()].map((m) => m.bytes);
  const fresh = await replay(messages, now);
  const items = fresh.read((root) => [...root.stock.keys()]);
  t.true(items.length > 5);
  // Each key found by lookup (a hash of another seed would probe elsewhere and miss).
  t.deepEqual(
    db.read((root) => items.map((item) => root.stock.get(item)?.export())),
    fresh.read((root) => items.map((item) => root.stock.get(item)?.export())),
  );
  t.deepEqual(db.read((root) => root.stock.export()), fresh.read((root) => root.stock.export()));
  // Written to and rewound through in place (after the fixture's last clear, at event 290).
  const late = await openShop(tempDir(), () => FIXTURE_T0 + (FIXTURE_EVENTS - 8) * 1000 + 500);
  await late.append({ put: 'item3', count: 99, note: 'late' });
  await late.append({ put: 'new item', count: 5, note: 'x'.repeat(200) });
  const lateBytes = [...late.messages()].map((m) => m.bytes);
  t.is((await db.ingest(lateBytes)).stored, 2);
  t.is(db.stats().rebuilds, 0);
  const both = await replay([...messages, ...lateBytes], now);
  t.deepEqual(db.read((root) => root.stock.export()), both.read((root) => root.stock.export()));
  t.is(db.read((root) => root.stock.get('new item')?.note.length), 200);
  await db.close();
  const again = await openShop(dir, () => now);
  t.is(again.stats().openedBy, 'clean-load');
  t.deepEqual(again.read((root) => root.stock.export()), both.read((root) => root.stock.export()));
  await Promise.all([again.close(), fresh.close(), both.close(), late.close()]);
});
