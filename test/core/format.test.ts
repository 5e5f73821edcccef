/**
 * Databases written by earlier versions: `fixtures/db-2026-12-04/` was written by the code of
 * 4 Dec 2026 (undo journal format version 2; see `fixtures/make-format-fixture.ts`). Today's code
 * opens it without a rebuild, reaches the same view as a fresh replay of its events, and rewinds
 * through its old undo history for a late event.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { removeTempDirs, tempDir } from '../helpers/temp.js';
import { FIXTURE_EVENTS, FIXTURE_T0, openShop } from './fixtures/format-app.js';

test.after.always(removeTempDirs);

const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'db-2026-12-04');

function copyFixture(): string {
  const dir = tempDir();
  fs.cpSync(fixture, dir, { recursive: true });
  return dir;
}

/** A fresh database holding exactly `messages`, for comparison. */
async function replay(messages: Uint8Array[], now: number) {
  const db = await openShop(tempDir(), () => now);
  await db.ingest(messages);
  return db;
}

test('a database of the previous format opens as it is and reaches the same view as a replay', async (t) => {
  const dir = copyFixture();
  const journal = path.join(dir, 'view', 'journal.bin');
  t.is(fs.readFileSync(journal).readUInt32LE(8), 2, 'the fixture keeps journal format version 2');
  // The clock when the fixture was closed (its last transaction): opening later would move the cutoff.
  const now = FIXTURE_T0 + (FIXTURE_EVENTS - 3) * 1000;
  const db = await openShop(dir, () => now);
  t.is(db.stats().openedBy, 'clean-load', 'no rebuild: the old view and journal are read');
  t.is(db.stats().stored, 283);
  t.is(db.stats().pruned, 17);
  const messages = [...db.messages()].map((m) => m.bytes);
  const fresh = await replay(messages, now);
  t.deepEqual(db.read((root) => root.stock.export()), fresh.read((root) => root.stock.export()));
  t.deepEqual(db.read((root) => root.sold.export()), fresh.read((root) => root.sold.export()));
  t.is(db.read((root) => root.revenue), fresh.read((root) => root.revenue));
  t.deepEqual(db.cutoffState(), fresh.cutoffState());

  // A late event inside the kept history rewinds through the version 2 entries (no rebuild).
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
  t.is(fs.readFileSync(journal).readUInt32LE(8), 3, 'written as version 3 from then on');
  const again = await openShop(dir, () => now);
  t.is(again.stats().openedBy, 'clean-load');
  t.deepEqual(again.read((root) => root.stock.export()), both.read((root) => root.stock.export()));
  await Promise.all([again.close(), fresh.close(), both.close(), late.close()]);
});
