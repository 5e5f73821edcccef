/**
 * The pruning records' table (src/core/bookkeeping.ts): records behind an index. Random inserts,
 * removals and rewinds against a plain Map; every record must be found with what was written into
 * it (its use count, or the time that count reached 0, id, flags, the events it read — inline up
 * to two, in a block beyond —, its victims or its failure message), the index must list exactly the
 * live ones, a rewind must restore the arena
 * byte for byte, a removed record's place must be reused, and the counts of failed records (kept
 * in memory between rewinds) and of tombstones whose victims are live must match the records.
 *
 * Replay with NOATUN_SEED=<seed>; more seeds with NOATUN_SEEDS=<count>.
 */
import test from 'ava';
import { EventBook, Rec, RecFlag } from '../../src/core/bookkeeping.js';
import type { Ordinal } from '../../src/view/tracking.js';
import * as s from '../../src/view/schema.js';
import type { JournalMark } from '../../src/view/journal.js';
import { prng, removeTempDirs, testSeed } from '../helpers/temp.js';
import { openView } from '../view/view-helpers.js';

test.after.always(removeTempDirs);

const Root = s.object({ n: s.u32() });

/** A 16-byte id that names its ordinal in the bytes a record keeps (so a record tells whose it is). */
function idOf(ordinal: number): Uint8Array {
  const id = new Uint8Array(16);
  new DataView(id.buffer).setUint32(4, ordinal);
  new DataView(id.buffer).setUint32(12, ordinal);
  return id;
}

/**
 * What a record says of its event: 0 plain, 1 a tombstone (it destroyed data of events that have
 * no record), 2 its apply failed, 3 a tombstone that destroyed data of live records (see
 * {@link destroyedBy}).
 */
type Kind = 0 | 1 | 2 | 3;

/** For an event of kind 3: the events whose data it destroyed. */
const destroyedBy = new Map<number, number[]>();

/** The events an event read, by its ordinal: none to five (inline up to two, a block beyond). */
function readsOf(ordinal: number): number[] {
  return Array.from({ length: ordinal % 6 }, (_, k) => ordinal * 7 + 1 + k);
}

/**
 * The events whose data a tombstone of kind 1 destroyed, by its ordinal (ordinals no record has):
 * none to two, in every combination with the number of reads.
 */
function victimsOf(ordinal: number): number[] {
  return Array.from({ length: Math.floor(ordinal / 6) % 3 }, (_, k) => 2_000_000_000 + ordinal * 3 + k);
}

/** The victims a record of `kind` must list. */
function expectedVictims(ordinal: number, kind: Kind): number[] {
  return kind === 1 ? victimsOf(ordinal) : kind === 3 ? destroyedBy.get(ordinal)! : [];
}

/**
 * Writes the record of `ordinal`; `plain`: one that read nothing (needs no block). It writes `owns`
 * new data and takes one datum from each of `takeFrom`: overwrites it, or destroys it for kind 3.
 */
function record(book: EventBook, ordinal: number, time: number, kind: Kind = 0, plain = false, owns = 0, takeFrom: readonly number[] = []): void {
  book.begin(ordinal, time);
  if (!plain) for (const source of readsOf(ordinal)) book.onRead(source as Ordinal);
  for (let i = 0; i < owns; i++) book.onWrite(0 as Ordinal, false);
  for (const owner of takeFrom) {
    if (kind === 3) book.onDestroy(owner as Ordinal);
    else book.onWrite(owner as Ordinal, false);
  }
  if (kind === 1) {
    book.onDestroy(0 as Ordinal);
    for (const victim of victimsOf(ordinal)) book.onDestroy(victim as Ordinal);
  }
  book.finish(idOf(ordinal), kind === 2 ? `it threw (${ordinal})` : undefined);
}

/** What is wrong with the reads, victims, flags and failure message of the record of `ordinal`, or undefined. */
function contentMismatch(book: EventBook, r: number, ordinal: number, kind: Kind): string | undefined {
  const u32 = book.arena.u32;
  const reads = Array.from(book.reads(r)).join();
  if (reads !== readsOf(ordinal).join()) return `record ${ordinal} read [${reads}], expected [${readsOf(ordinal).join()}]`;
  // The pruner walks the words where the lists lie (readsAt/readCount, victimsAt/victimCount).
  const walkedReads = Array.from(u32.subarray(book.readsAt(r), book.readsAt(r) + book.readCount(r))).join();
  if (walkedReads !== reads) return `record ${ordinal} walks the reads [${walkedReads}], lists [${reads}]`;
  const victims = Array.from(book.victims(r)).join();
  const expected = expectedVictims(ordinal, kind).join();
  if (victims !== expected) return `record ${ordinal} destroyed data of [${victims}], expected [${expected}]`;
  const walkedVictims = book.victimCount(r) === 0 ? '' : Array.from(u32.subarray(book.victimsAt(r), book.victimsAt(r) + book.victimCount(r))).join();
  if (walkedVictims !== victims) return `record ${ordinal} walks the victims [${walkedVictims}], lists [${victims}]`;
  const failed = (book.flagsOf(r) & RecFlag.FAILED) !== 0;
  const tombstone = (book.flagsOf(r) & RecFlag.TOMBSTONE) !== 0;
  if (failed !== (kind === 2) || tombstone !== (kind === 1 || kind === 3)) return `record ${ordinal} has flags ${book.flagsOf(r)} for kind ${kind}`;
  const failure = book.failureOf(r);
  if (failure !== (kind === 2 ? `it threw (${ordinal})` : '')) return `record ${ordinal} has the failure message '${failure}'`;
  return undefined;
}

/** What is wrong with the kept counts against the kinds of the live records, or undefined. */
function countsMismatch(book: EventBook, kinds: Map<number, Kind>): string | undefined {
  let tombstones = 0;
  let failed = 0;
  for (const [ordinal, kind] of kinds) {
    // A tombstone counts while it destroyed data of a live record (kind 1's victims have none).
    if (kind === 3 && destroyedBy.get(ordinal)!.some((victim) => kinds.has(victim))) tombstones++;
    if (kind === 2) failed++;
  }
  if (book.tombstoneCount !== tombstones) return `${book.tombstoneCount} tombstones counted, ${tombstones} live`;
  if (book.failedCount !== failed) return `${book.failedCount} failed records counted, ${failed} live`;
  return undefined;
}

/** What is wrong with the table against the model (count, records, the index's set), or undefined. */
function mismatch(book: EventBook, model: Map<number, number>, kinds: Map<number, Kind>, uses: Map<number, number>, gone: readonly number[]): string | undefined {
  const u32 = book.arena.u32;
  if (book.count !== model.size) return `count ${book.count}, expected ${model.size}`;
  const words = new Set<number>();
  for (const [ordinal, time] of model) {
    const r = book.find(ordinal);
    if (r === -1) return `record ${ordinal} not found`;
    const owns = uses.get(ordinal) ?? 0;
    if (u32[r + Rec.ORDINAL] !== ordinal || !Buffer.from(book.idPrefixOf(r)).equals(idOf(ordinal).subarray(0, 8))) {
      return `record ${ordinal} holds another's content`;
    }
    if (book.usesOf(r) !== owns || book.dead(r) !== (owns === 0)) return `record ${ordinal} owns ${book.usesOf(r)} (dead: ${book.dead(r)}), expected ${owns}`;
    if (owns === 0 && book.effectTime(r) !== time) return `record ${ordinal} owns nothing since ${book.effectTime(r)}, expected ${time}`;
    const wrong = contentMismatch(book, r, ordinal, kinds.get(ordinal)!);
    if (wrong !== undefined) return wrong;
    words.add(r);
  }
  if (words.size !== model.size) return 'two records share a place';
  for (const ordinal of gone) {
    if (!model.has(ordinal) && book.find(ordinal) !== -1) return `removed record ${ordinal} still found`;
  }
  const listed: number[] = [];
  book.forEach((r) => {
    listed.push(u32[r]!);
  });
  listed.sort((a, b) => a - b);
  const expected = [...model.keys()].sort((a, b) => a - b);
  return listed.join() === expected.join() ? undefined : 'forEach lists other records';
}

const seedCount = Number.parseInt(process.env.NOATUN_SEEDS ?? '3', 10);
const seeds = process.env.NOATUN_SEED !== undefined ? [testSeed()] : Array.from({ length: seedCount }, () => testSeed());

for (const seed of seeds) {
  test(`records are found with their content through inserts, removals, index growth and rewinds (seed ${seed})`, (t) => {
    const hint = `replay with NOATUN_SEED=${seed} npx ava test/core/bookkeeping.test.ts`;
    const random = prng(seed);
    const view = openView(Root);
    const arena = view.arena;
    const book = new EventBook(arena);
    destroyedBy.clear();
    let model = new Map<number, number>();
    let kinds = new Map<number, Kind>();
    // What each live record's event owns (absent: nothing), when it is not 0.
    let uses = new Map<number, number>();
    const gone: number[] = [];
    const snapshots: { mark: JournalMark; model: Map<number, number>; kinds: Map<number, Kind>; uses: Map<number, number>; bytes: Buffer }[] = [];
    let next = 1;
    for (let step = 1; step <= 1500; step++) {
      const mark = arena.mark(step);
      snapshots.push({ mark, model: new Map(model), kinds: new Map(kinds), uses: new Map(uses), bytes: Buffer.from(arena.u8.subarray(0, arena.top * 4)) });
      const r = random();
      if (r < 0.1 && uses.size !== 0) {
        // An event takes one datum from each of a few owners: their counts drop, the last one's
        // to 0 at this event's time. Overwritten, it owns what it took; destroyed, it owns
        // nothing and lists them as its victims.
        const owners = [...uses.keys()];
        const takeFrom: number[] = [];
        for (let n = 1 + Math.floor(random() * 3); n > 0 && owners.length !== 0; n--) {
          takeFrom.push(owners.splice(Math.floor(random() * owners.length), 1)[0]!);
        }
        const ordinal = next++;
        const time = Math.floor(random() * 2 ** 48);
        const kind: Kind = random() < 0.5 ? 3 : 0;
        if (kind === 3) destroyedBy.set(ordinal, takeFrom);
        record(book, ordinal, time, kind, false, 0, takeFrom);
        for (const owner of takeFrom) {
          const left = uses.get(owner)! - 1;
          if (left === 0) {
            uses.delete(owner);
            model.set(owner, time);
          } else {
            uses.set(owner, left);
          }
        }
        model.set(ordinal, time);
        kinds.set(ordinal, kind);
        if (kind === 0) uses.set(ordinal, takeFrom.length);
      } else if (r < 0.6 || model.size === 0) {
        // Several records per event, as a batch's applies make (one mark each in the engine; here
        // several under one, so that one event both reuses places and takes new ones).
        for (let n = 1 + Math.floor(random() * 8); n > 0; n--) {
          const ordinal = next++;
          const time = Math.floor(random() * 2 ** 40);
          const pick = random();
          const kind: Kind = pick < 0.2 ? 1 : pick < 0.3 ? 2 : 0;
          // Some own data (up to 2^32 - 1: a count of any size is kept).
          const owns = kind === 2 || random() < 0.6 ? 0 : random() < 0.05 ? 2 ** 32 - 1 - Math.floor(random() * 3) : 1 + Math.floor(random() * 3);
          if (owns > 100) {
            record(book, ordinal, time, kind, false, 0);
            // (Writing 2^32 data is too slow here: the count is set as the engine would have left it.)
            book.arena.set32(book.find(ordinal) + Rec.USES_OR_EFFECT, owns);
            book.arena.set32(book.find(ordinal) + Rec.FLAGS_EFFECT_HI, (book.arena.u32[book.find(ordinal) + Rec.FLAGS_EFFECT_HI]! & ~((RecFlag.DEAD << 16) | 0xffff)) >>> 0);
          } else {
            record(book, ordinal, time, kind, false, owns);
          }
          model.set(ordinal, time);
          kinds.set(ordinal, kind);
          if (owns !== 0) uses.set(ordinal, owns);
        }
      } else if (r < 0.93) {
        const live = [...model.keys()];
        for (let n = 1 + Math.floor(random() * 6); n > 0 && live.length !== 0; n--) {
          const ordinal = live.splice(Math.floor(random() * live.length), 1)[0]!;
          book.remove(ordinal);
          model.delete(ordinal);
          kinds.delete(ordinal);
          uses.delete(ordinal);
          gone.push(ordinal);
        }
      } else {
        const back = Math.max(0, snapshots.length - 1 - Math.floor(random() * 40));
        const snapshot = snapshots[back]!;
        arena.rewindTo(snapshot.mark);
        snapshots.length = back;
        model = new Map(snapshot.model);
        kinds = new Map(snapshot.kinds);
        uses = new Map(snapshot.uses);
        const now = Buffer.from(arena.u8.subarray(0, arena.top * 4));
        if (!now.equals(snapshot.bytes)) {
          t.fail(`${hint}: the rewind to step ${back + 1} did not restore the arena`);
          break;
        }
      }
      // The counts are read now and then, so that they are kept across many changes in between.
      const wrong = mismatch(book, model, kinds, uses, gone.slice(-50)) ?? (random() < 0.1 ? countsMismatch(book, kinds) : undefined);
      if (wrong !== undefined) {
        t.fail(`${hint}, step ${step}: ${wrong}`);
        break;
      }
    }
    t.pass();
    view.close();
  });
}

test("a removed record's place is taken by the next new record: the records take no more room than the most ever live", (t) => {
  const view = openView(Root);
  const arena = view.arena;
  const book = new EventBook(arena);
  arena.mark(1);
  for (let ordinal = 1; ordinal <= 3000; ordinal++) record(book, ordinal, ordinal, 0, true);
  const firstPlaces = new Set<number>();
  for (let ordinal = 1; ordinal <= 3000; ordinal++) firstPlaces.add(book.find(ordinal));
  arena.mark(2);
  for (let ordinal = 1; ordinal <= 2000; ordinal++) book.remove(ordinal);
  arena.mark(3);
  const top = arena.top;
  for (let ordinal = 3001; ordinal <= 5000; ordinal++) record(book, ordinal, ordinal, 0, true);
  for (let ordinal = 3001; ordinal <= 5000; ordinal++) t.true(firstPlaces.has(book.find(ordinal)), `record ${ordinal} took a removed one's place`);
  t.is(arena.top, top, 'no memory was allocated for them');
  t.is(book.count, 3000);
  view.close();
});

test('taking a datum from an event that owns nothing is an internal error, not a changed time', (t) => {
  const view = openView(Root);
  const book = new EventBook(view.arena);
  view.arena.mark(1);
  record(book, 1, 1000, 0, true, 1);
  record(book, 2, 2000, 0, true, 0, [1]);
  const r = book.find(1);
  t.true(book.dead(r));
  t.is(book.effectTime(r), 2000);
  book.begin(3, 3000);
  t.throws(() => book.onWrite(1 as Ordinal, false), { message: /event 1 owns nothing/ });
  t.is(book.effectTime(r), 2000, 'the time it came to own nothing stays');
  view.close();
});
