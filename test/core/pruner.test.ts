/**
 * The pruner's decision (src/core/pruner.ts) against its definition, computed the slow way: random
 * events read, write and destroy data slots through the pruning records (as apply does through the
 * view), the cutoff moves, and at every step what `collect` returns must be exactly the largest
 * set of candidates (stored, owning nothing, their data taken before the cutoff) in which every
 * stored reader of a member and every stored victim of a member is a member too. What it returns
 * is then pruned as the projector prunes (the record removed, its sources' reader counts
 * dropped), so later steps meet records of events gone, as they do in a database.
 *
 * The workloads range from a few hot slots (long chains of events reading what the one before
 * wrote, as the warehouse's quantities make) to many cold ones, with and without reads,
 * tombstones and events that destroy data they read.
 *
 * Replay with NOATUN_SEED=<seed>; more seeds with NOATUN_SEEDS=<count>.
 */
import test from 'ava';
import { EventBook } from '../../src/core/bookkeeping.js';
import { Pruner } from '../../src/core/pruner.js';
import type { Ordinal } from '../../src/view/tracking.js';
import * as s from '../../src/view/schema.js';
import { prng, removeTempDirs, testSeed } from '../helpers/temp.js';
import { openView } from '../view/view-helpers.js';

test.after.always(removeTempDirs);

const Root = s.object({ n: s.u32() });

/** A 16-byte id for an ordinal (the records keep its first 8 bytes). */
function idOf(ordinal: number): Uint8Array {
  const id = new Uint8Array(16);
  new DataView(id.buffer).setUint32(4, ordinal);
  return id;
}

/** One workload's shape. */
interface Shape {
  readonly name: string;
  /** Data slots events read and write. */
  readonly slots: number;
  /** Chance that an event reads a slot before writing it (a read-modify-write). */
  readonly readModify: number;
  /** Chance of an extra read of another slot. */
  readonly extraRead: number;
  /** Chance that an event destroys a slot (a tombstone). */
  readonly destroy: number;
}

const shapes: readonly Shape[] = [
  { name: 'hot read-modify-write chains', slots: 6, readModify: 0.98, extraRead: 0.05, destroy: 0.003 },
  { name: 'many slots, some reads', slots: 200, readModify: 0.3, extraRead: 0.3, destroy: 0.05 },
  { name: 'overwrites only', slots: 40, readModify: 0, extraRead: 0, destroy: 0 },
  { name: 'tombstones and reads', slots: 25, readModify: 0.4, extraRead: 0.4, destroy: 0.25 },
];

/** The largest prunable set, by its definition (see the module comment). */
function prunable(book: EventBook, stored: ReadonlySet<number>, cutoff: number): Set<number> {
  // Who read each event's data, and who destroyed it (stored events only).
  const readers = new Map<number, number[]>();
  const destroyers = new Map<number, number[]>();
  const add = (map: Map<number, number[]>, key: number, value: number): void => {
    const list = map.get(key);
    if (list === undefined) map.set(key, [value]);
    else list.push(value);
  };
  for (const ordinal of stored) {
    const r = book.find(ordinal);
    for (const source of book.reads(r)) if (stored.has(source)) add(readers, source, ordinal);
    for (const victim of book.victims(r)) if (stored.has(victim)) add(destroyers, victim, ordinal);
  }
  const set = new Set<number>();
  for (const ordinal of stored) {
    const r = book.find(ordinal);
    if (book.dead(r) && book.effectTime(r) < cutoff) set.add(ordinal);
  }
  // Take out what a stored reader or victim outside the set blocks, until nothing changes.
  const work = [...set];
  while (work.length !== 0) {
    const ordinal = work.pop()!;
    if (!set.has(ordinal)) continue;
    const r = book.find(ordinal);
    const blocked =
      (readers.get(ordinal) ?? []).some((reader) => !set.has(reader)) ||
      Array.from(book.victims(r)).some((victim) => stored.has(victim) && !set.has(victim));
    if (!blocked) continue;
    set.delete(ordinal);
    for (const source of book.reads(r)) if (set.has(source)) work.push(source);
    for (const destroyer of destroyers.get(ordinal) ?? []) if (set.has(destroyer)) work.push(destroyer);
  }
  return set;
}

const seedCount = Number.parseInt(process.env.NOATUN_SEEDS ?? '3', 10);
const seeds = process.env.NOATUN_SEED !== undefined ? [testSeed()] : Array.from({ length: seedCount }, () => testSeed());

for (const shape of shapes) {
  for (const seed of seeds) {
    test(`collect returns exactly the largest prunable set at every cutoff (${shape.name}, seed ${seed})`, (t) => {
      const hint = `replay with NOATUN_SEED=${seed} npx ava test/core/pruner.test.ts`;
      const random = prng(seed);
      const view = openView(Root);
      const arena = view.arena;
      const book = new EventBook(arena);
      const pruner = new Pruner(book);
      book.onZero = (ordinal, time, reader) => pruner.noteZero(ordinal, time, reader);
      pruner.reset();
      const owners = new Array<number>(shape.slots).fill(0);
      const stored = new Set<number>();
      let time = 1_000;
      let cutoff = 0;
      let pruned = 0;
      for (let ordinal = 1; ordinal <= 1_500; ordinal++) {
        time += Math.floor(random() * 3);
        arena.mark(ordinal);
        book.begin(ordinal, time);
        // What an apply reports: a read of another event's datum, a write that takes it, a destroy.
        const read = (slot: number): void => {
          if (owners[slot] !== ordinal) book.onRead(owners[slot]! as Ordinal);
        };
        const slot = Math.floor(random() * shape.slots);
        if (random() < shape.readModify) read(slot);
        if (random() < shape.extraRead) read(Math.floor(random() * shape.slots));
        if (random() < shape.destroy) {
          book.onDestroy(owners[slot]! as Ordinal);
          owners[slot] = 0;
          // Now and then it writes too (a list's clear writes its clear marker): it owns data
          // after its victim's is gone, and becomes a candidate later than the victim does.
          const other = Math.floor(random() * shape.slots);
          if (random() < 0.5 && other !== slot && owners[other] !== ordinal) {
            book.onWrite(owners[other]! as Ordinal, false);
            owners[other] = ordinal;
          }
        } else if (owners[slot] !== ordinal) {
          book.onWrite(owners[slot]! as Ordinal, false);
          owners[slot] = ordinal;
        }
        book.finish(idOf(ordinal));
        stored.add(ordinal);
        if (random() < 0.08) {
          // The cutoff moves to a time already passed, sometimes not at all.
          cutoff = Math.max(cutoff, time - Math.floor(random() * 40));
          const expected = prunable(book, stored, cutoff);
          const got = pruner.collect(cutoff);
          const gotSet = new Set(got);
          if (got.length !== gotSet.size) return void t.fail(`${hint}: event ${ordinal}, cutoff ${cutoff}: collect returned an event twice`);
          const missing = [...expected].filter((o) => !gotSet.has(o));
          const extra = got.filter((o) => !expected.has(o));
          if (missing.length !== 0 || extra.length !== 0) {
            return void t.fail(`${hint}: event ${ordinal}, cutoff ${cutoff}: collect missed [${missing.slice(0, 10)}] and returned [${extra.slice(0, 10)}] beyond the largest prunable set`);
          }
          // Pruned as the projector prunes them.
          for (const victim of got) {
            const reads = Array.from(book.reads(book.find(victim)));
            book.remove(victim);
            for (const source of reads) book.dropReader(source);
            stored.delete(victim);
          }
          pruned += got.length;
        }
      }
      t.log(`${stored.size} stored, ${pruned} pruned`);
      t.true(pruned > 0, `${hint}: nothing was pruned, the test tests nothing`);
      view.close();
    });
  }
}
