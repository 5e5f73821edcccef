/**
 * The event log's overlay (queued and committing writes by id), against a Map as the model:
 * appends, writes below queued ids and to queued ids again, commits let go of in order (with
 * later writes to the same ids kept), and clearing; lookups, ranges and the highest id.
 */
import test from 'ava';
import { LogOverlay, type OverlayItem } from '../../src/core/log-overlay.js';
import { prng, testSeed } from '../helpers/temp.js';

interface Item extends OverlayItem {
  readonly tag: number;
}

/** A 16-byte id for `n` (big-endian, so ids sort as numbers). */
function id(n: number): Uint8Array {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(n, 12);
  return new Uint8Array(key.buffer, key.byteOffset, 16);
}

/** The number {@link id} made `key` from. */
function numberOf(key: Uint8Array): number {
  return Buffer.from(key.buffer, key.byteOffset, 16).readUInt32BE(12);
}

for (let round = 0; round < 3; round++) {
  test(`every id finds its latest entry, as in a Map, through appends, writes below and again, commits and clears (round ${round})`, (t) => {
    const seed = testSeed() + round;
    t.log(`seed ${seed}`);
    const random = prng(seed);
    const overlay = new LogOverlay<Item>();
    const model = new Map<number, Item>();
    // Entries of each commit not yet let go of, oldest first (as the log lets go of them).
    const commits: { commit: number; entries: Item[] }[] = [];
    let commit = 0;
    let queued: Item[] = [];
    let top = 1_000;
    let tag = 0;
    const check = (step: number): boolean => {
      if (overlay.size !== model.size) {
        t.fail(`step ${step}: size ${overlay.size}, the model ${model.size}`);
        return false;
      }
      for (const [n, item] of model) {
        if (overlay.get(id(n)) !== item) {
          t.fail(`step ${step}: id ${n} finds another entry`);
          return false;
        }
      }
      const values = [...overlay.values()];
      if (values.length !== model.size || values.some((item) => model.get(numberOf(item.key)) !== item)) {
        t.fail(`step ${step}: values() differs from the model`);
        return false;
      }
      for (let probe = 0; probe < 5; probe++) {
        // A range [from, to), or [from, ∞): whether an entry lies in it, as the model says.
        const from = Math.floor(random() * (top + 100));
        const to = random() < 0.2 ? undefined : from + Math.floor(random() * 40);
        const expected = [...model.keys()].some((n) => n >= from && (to === undefined || n < to));
        if (overlay.hasIn(id(from), to === undefined ? undefined : id(to)) !== expected) {
          t.fail(`step ${step}: hasIn(${from}, ${to}) is ${!expected}, the model says ${expected}`);
          return false;
        }
      }
      // The highest id among the entries a predicate accepts (as the log asks for entries that
      // store an event): one of three tags, most, or all.
      for (const counts of [(item: Item) => item.tag % 3 === 0, (item: Item) => item.tag % 5 !== 0, () => true]) {
        let expected: number | undefined;
        for (const [n, item] of model) if (counts(item) && (expected === undefined || n > expected)) expected = n;
        const found = overlay.highest(counts);
        if ((found === undefined ? undefined : numberOf(found)) !== expected) {
          t.fail(`step ${step}: highest() is ${found === undefined ? 'none' : numberOf(found)}, the model says ${expected ?? 'none'}`);
          return false;
        }
      }
      for (let probe = 0; probe < 5; probe++) {
        const n = Math.floor(random() * (top + 2_000));
        if (!model.has(n) && overlay.get(id(n)) !== undefined) {
          t.fail(`step ${step}: id ${n} has no entry but finds one`);
          return false;
        }
      }
      return true;
    };
    for (let step = 0; step < 4_000; step++) {
      const dice = random();
      if (dice < 0.6) {
        // Mostly appends; some ids below queued ones, some queued ones again.
        const kind = random();
        // (Ids below are taken close under the top, so that they meet queued ones, and sorted
        // entries let go of can leave the map's ids above the rest.)
        const n =
          kind < 0.5 ? (top += 1 + Math.floor(random() * 3)) : kind < 0.75 || model.size === 0 ? top - Math.floor(random() * 64) : [...model.keys()][Math.floor(random() * model.size)]!;
        const item: Item = { key: id(n), commit, tag: tag++ };
        const prior = overlay.set(item);
        if (prior !== model.get(n)) return void t.fail(`step ${step}: set of ${n} replaced another entry than the model's`);
        model.set(n, item);
        queued.push(item);
      } else if (dice < 0.8) {
        // What is queued goes to a commit.
        commits.push({ commit, entries: queued });
        queued = [];
        commit++;
      } else {
        // The oldest commit is done: its entries go, unless a later write replaced them.
        const done = commits.shift();
        if (done === undefined) continue;
        for (const item of done.entries) {
          const n = numberOf(item.key);
          if (model.get(n) === item) model.delete(n);
        }
        // Nothing queued or in flight after it: the log may drop everything at once instead.
        if (commits.length === 0 && queued.length === 0 && random() < 0.5) {
          if (model.size !== 0) return void t.fail(`step ${step}: entries left when nothing is queued or in flight`);
          overlay.clear();
        } else overlay.release(done.commit, done.entries);
      }
      if (!check(step)) return;
    }
    t.pass();
  });
}
