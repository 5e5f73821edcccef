/**
 * The undo journal restores the arena byte for byte: random writes grouped into events, then
 * rewinds to random earlier marks compared against snapshots taken at those marks.
 *
 * Replay with NOATUN_SEED=<seed>; more seeds with NOATUN_SEEDS=<count>.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import type { NoatunError } from '../../src/errors.js';
import type { JournalMark } from '../../src/view/journal.js';
import * as s from '../../src/view/schema.js';
import { prng, removeTempDirs } from '../helpers/temp.js';
import { openView, Recorder } from './view-helpers.js';

test.after.always(removeTempDirs);

const Root = s.object({
  counter: s.u32(),
  total: s.f64(),
  big: s.i64(),
  title: s.string(),
  note: s.optional(s.string()),
  people: s.map(s.string(), s.object({ age: s.u8(), tags: s.list(s.string()) })),
  scores: s.map(s.u32(), s.u32()),
  history: s.list(s.u32()),
  audit: s.opaqueList(s.string()),
});

type View = s.View<typeof Root>;

function randomWrite(random: () => number, root: View): void {
  const r = random();
  const name = `p${Math.floor(random() * 12)}`;
  if (r < 0.1) root.counter += 1;
  else if (r < 0.15) root.total = random() * 1000;
  else if (r < 0.2) root.big = BigInt(Math.floor(random() * 1e9)) - 500_000_000n;
  else if (r < 0.3) root.title = 'title '.repeat(Math.floor(random() * 5)) + String(Math.floor(random() * 1000));
  else if (r < 0.35) root.note = random() < 0.5 ? null : `note ${random()}`;
  else if (r < 0.5) root.people.set(name, { age: Math.floor(random() * 100), tags: ['a'] });
  else if (r < 0.55) root.people.delete(name);
  else if (r < 0.6) root.people.get(name)?.tags.push(`t${Math.floor(random() * 9)}`);
  else if (r < 0.75) root.scores.set(Math.floor(random() * 300), Math.floor(random() * 1e6));
  else if (r < 0.8) root.scores.delete(Math.floor(random() * 300));
  else if (r < 0.88) root.history.push(Math.floor(random() * 1e6));
  else if (r < 0.9) root.history.pop();
  else if (r < 0.92) root.scores.clear();
  else root.audit.push(`event ${Math.floor(random() * 1e6)}`);
}

interface Snapshot {
  mark: JournalMark;
  bytes: Buffer;
}

function runSeed(seed: number) {
  const random = prng(seed);
  const view = openView(Root);
  const snapshots: Snapshot[] = [];
  const snapshot = (mark: JournalMark): Snapshot => ({
    mark,
    bytes: Buffer.from(view.arena.u8.subarray(0, view.arena.top * 4)),
  });
  for (let ordinal = 1; ordinal <= 120; ordinal++) {
    const mark = view.mark(ordinal);
    snapshots.push(snapshot(mark));
    const writes = 1 + Math.floor(random() * 12);
    view.write(new Recorder(ordinal), (root) => {
      for (let i = 0; i < writes; i++) randomWrite(random, root);
    });
  }
  return { view, snapshots, random };
}

function assertRestored(t: import('ava').ExecutionContext, view: ReturnType<typeof runSeed>['view'], snap: Snapshot, hint: string) {
  const arena = view.arena;
  const now = Buffer.from(arena.u8.subarray(0, Math.max(arena.top * 4, snap.bytes.length)));
  t.is(arena.top * 4, snap.bytes.length, `${hint}: allocation top`);
  t.true(now.subarray(0, snap.bytes.length).equals(snap.bytes), `${hint}: arena bytes differ`);
  // Everything above the top is zero again.
  const tail = arena.u8.subarray(arena.top * 4);
  t.true(tail.every((b) => b === 0), `${hint}: memory above the top is not zero`);
}

const seedCount = Number.parseInt(process.env.NOATUN_SEEDS ?? '3', 10);
const seeds =
  process.env.NOATUN_SEED === undefined
    ? Array.from({ length: seedCount }, () => (Math.random() * 2 ** 32) >>> 0)
    : [Number.parseInt(process.env.NOATUN_SEED, 10) >>> 0];

for (const seed of seeds) {
  test(`rewinding to any earlier mark restores the arena byte for byte (seed ${seed})`, (t) => {
    const { view, snapshots, random } = runSeed(seed);
    const hint = `replay with NOATUN_SEED=${seed} npx ava test/view/undo.test.ts`;
    // One random jump back, then every remaining mark in reverse order.
    const jump = Math.floor(random() * snapshots.length);
    view.rewindTo(snapshots[jump]!.mark);
    assertRestored(t, view, snapshots[jump]!, `${hint} (mark ${jump})`);
    for (let i = jump - 1; i >= 0; i -= 1 + Math.floor(random() * 5)) {
      view.rewindTo(snapshots[i]!.mark);
      assertRestored(t, view, snapshots[i]!, `${hint} (mark ${i})`);
    }
    view.rewindTo(snapshots[0]!.mark);
    t.deepEqual(view.export(), {
      counter: 0,
      total: 0,
      big: 0n,
      title: '',
      note: null,
      people: new Map(),
      scores: new Map(),
      history: [],
      audit: [],
    });
    view.close();
  });
}

test('the journal survives a reopen: rewinding after reopening restores the earlier state', (t) => {
  const { view, snapshots } = runSeed(7);
  const dir = view.directory;
  const target = snapshots[60]!;
  view.close();
  const again = openView(Root, dir);
  t.is(again.arena.findMark(61), target.mark);
  again.rewindTo(target.mark);
  t.true(Buffer.from(again.arena.u8.subarray(0, again.arena.top * 4)).equals(target.bytes));
  t.is(again.arena.findMark(61), -1);
  again.close();
});

test('truncated history cannot be rewound to, later history still can', (t) => {
  const { view, snapshots } = runSeed(11);
  view.truncateBefore(snapshots[50]!.mark);
  const error = t.throws(() => view.rewindTo(snapshots[10]!.mark));
  t.is((error as NoatunError).code, 'INTERNAL');
  t.is(view.arena.findMark(11), -1);
  view.rewindTo(snapshots[80]!.mark);
  t.true(Buffer.from(view.arena.u8.subarray(0, view.arena.top * 4)).equals(snapshots[80]!.bytes));
  view.close();
});

test('the mark index finds every kept mark after rewinds, re-applies, truncation and a reopen', (t) => {
  const { view, snapshots, random } = runSeed(23);
  for (let ordinal = 1; ordinal <= 120; ordinal++) t.is(view.arena.findMark(ordinal), snapshots[ordinal - 1]!.mark);
  // Rewind to event 70 and apply other events 70..90: marks 91..120 are gone, 70..90 moved.
  view.rewindTo(snapshots[69]!.mark);
  const moved = new Map<number, JournalMark>();
  for (let ordinal = 70; ordinal <= 90; ordinal++) {
    moved.set(ordinal, view.mark(ordinal));
    view.write(new Recorder(ordinal), (root) => randomWrite(random, root));
  }
  for (let ordinal = 91; ordinal <= 120; ordinal++) t.is(view.arena.findMark(ordinal), -1, `mark ${ordinal} was undone`);
  for (const [ordinal, mark] of moved) t.is(view.arena.findMark(ordinal), mark);
  t.is(view.arena.findMark(10), snapshots[9]!.mark);
  view.truncateBefore(snapshots[40]!.mark);
  t.is(view.arena.findMark(10), -1);
  t.is(view.arena.findMark(41), snapshots[40]!.mark);
  const dir = view.directory;
  view.close();
  // A reopened journal builds its index from the entries.
  const again = openView(Root, dir);
  t.is(again.arena.findMark(41), snapshots[40]!.mark);
  t.is(again.arena.findMark(40), -1);
  for (const [ordinal, mark] of moved) t.is(again.arena.findMark(ordinal), mark);
  again.close();
});

test('a journal whose history slides forward uses at most an eighth more of its file than it keeps, and still rewinds', (t) => {
  const random = prng(41);
  const view = openView(Root);
  const journal = view.arena.journal;
  const header = journal.start;
  const marks: JournalMark[] = [];
  const states: Buffer[] = [];
  const keep = 200;
  let highest = 0;
  for (let ordinal = 1; ordinal <= 2000; ordinal++) {
    marks.push(view.mark(ordinal));
    states.push(Buffer.from(view.arena.u8.subarray(0, view.arena.top * 4)));
    view.write(new Recorder(ordinal), (root) => randomWrite(random, root));
    if (ordinal > keep) {
      view.truncateBefore(marks[ordinal - keep]!);
      // What was dropped in front of the history is at most an eighth of it: then it moves to
      // the front of the file, and the pages it leaves behind go back to the file system.
      t.true((journal.start - header) * 8 < journal.end - journal.start, `${journal.start - header} words dropped before ${journal.end - journal.start} kept`);
      highest = Math.max(highest, (journal.end - header) / (journal.end - journal.start));
    }
  }
  t.log(`most of the file in use against the history kept: ${highest.toFixed(2)}×`);
  t.true(highest < 1.15);
  // Its blocks on disk: the file's written part, not the most it ever held (where holes can be punched).
  if (journal.file.discard(journal.end * 4)) {
    const blocks = fs.statSync(path.join(view.directory, 'journal.bin')).blocks * 512;
    t.true(blocks <= journal.end * 4 * 1.15 + 64 * 1024, `${blocks} bytes of blocks for ${journal.end * 4} bytes written`);
  }
  view.rewindTo(marks[2000 - keep + 1]!);
  t.true(Buffer.from(view.arena.u8.subarray(0, view.arena.top * 4)).equals(states[2000 - keep + 1]!));
  view.close();
});

test('a counter moved by one takes one journal word and a value with its tracker three; a rewind restores both, also across a wrap', (t) => {
  const view = openView(Root);
  const arena = view.arena;
  const block = arena.alloc(8);
  arena.u32[block] = 5;
  arena.u32[block + 2] = 0;
  arena.u32[block + 4] = 0xffffffff;
  arena.u32[block + 6] = 1234;
  arena.u32[block + 7] = 77;
  const before = Buffer.from(arena.u8.subarray(0, arena.top * 4));
  const mark = view.mark(1);
  const start = arena.journal.byteLength;
  arena.add32(block, 1);
  arena.add32(block, 1);
  arena.add32(block + 2, -1);
  arena.add32(block + 4, 1);
  t.is(arena.journal.byteLength - start, 16, 'one word each');
  t.deepEqual([arena.u32[block], arena.u32[block + 2], arena.u32[block + 4]], [7, 0xffffffff, 0]);
  arena.j2(block + 6);
  t.is(arena.journal.byteLength - start, 28, 'three words for two');
  arena.u32[block + 6] = 1;
  arena.u32[block + 7] = 2;
  arena.set32(block + 2, 9);
  arena.add32(block + 2, -1);
  view.rewindTo(mark);
  t.true(Buffer.from(arena.u8.subarray(0, arena.top * 4)).equals(before));
  view.close();
});

test('words that were zero are journaled as such and zeroed again by a rewind', (t) => {
  const view = openView(Root);
  const arena = view.arena;
  const block = arena.alloc(16);
  const mark = view.mark(1);
  const before = arena.journal.byteLength;
  arena.jnZero(block, 13);
  t.is(arena.journal.byteLength - before, 12, 'one 3-word entry');
  for (let i = 0; i < 13; i++) arena.u32[block + i] = 1000 + i;
  // Not all zero any more: journaled word by word.
  arena.jnZero(block, 13);
  t.is(arena.journal.byteLength - before, 12 + 16 * 4);
  for (let i = 0; i < 13; i++) arena.u32[block + i] = 7;
  view.rewindTo(mark);
  t.true(arena.u32.subarray(block, block + 16).every((w) => w === 0));
  view.close();
});

test('a journal of format version 2 (without zero entries) is still read', (t) => {
  const { view, snapshots } = runSeed(31);
  const dir = view.directory;
  view.close();
  const file = path.join(dir, 'journal.bin');
  const bytes = fs.readFileSync(file);
  bytes.writeUInt32LE(2, 8);
  fs.writeFileSync(file, bytes);
  const again = openView(Root, dir);
  again.rewindTo(snapshots[30]!.mark);
  t.true(Buffer.from(again.arena.u8.subarray(0, again.arena.top * 4)).equals(snapshots[30]!.bytes));
  again.close();
  t.is(fs.readFileSync(file).readUInt32LE(8), 5, 'written as version 5 from then on');
});

for (const keep of [1, 11]) {
  test(`on close the journal gives back the blocks outside its history (${keep} of 16 MiB kept${keep === 1 ? ', moved to the front' : ''}), and reopens to rewind through it`, (t) => {
    const view = openView(Root);
    const arena = view.arena;
    const words = 1 << 18; // 1 MiB
    const block = arena.alloc(words);
    const marks: JournalMark[] = [];
    const states: Buffer[] = [];
    for (let ordinal = 1; ordinal <= 16; ordinal++) {
      marks.push(view.mark(ordinal));
      states.push(Buffer.from(arena.u8.subarray(block * 4, (block + words) * 4)));
      arena.jn(block, words);
      arena.u32.fill(ordinal, block, block + words);
    }
    const dir = view.directory;
    const file = path.join(dir, 'journal.bin');
    const grown = fs.statSync(file).blocks * 512;
    view.truncateBefore(marks[16 - keep]!);
    // Whether this file system punches holes (the space past the history is unused).
    const discards = arena.journal.file.discard(arena.journal.end * 4);
    view.close();
    const after = fs.statSync(file).blocks * 512;
    t.log(`journal on disk: ${(grown / 2 ** 20).toFixed(1)} MiB with 16 MiB of history, ${(after / 2 ** 20).toFixed(1)} MiB with ${keep} kept, closed`);
    if (discards) t.true(after < ((keep + 1) / 16) * grown, `${after} bytes of ${grown} still allocated`);
    else t.log('this file system keeps the blocks (no hole punching): nothing to check');
    // The kept history still rewinds after a reopen, byte for byte.
    const again = openView(Root, dir);
    again.rewindTo(marks[16 - keep]!);
    t.true(Buffer.from(again.arena.u8.subarray(block * 4, (block + words) * 4)).equals(states[16 - keep]!));
    again.close();
  });
}

test('a retired block is given back once no kept history reaches before it, and not if a rewind uses it again', (t) => {
  const view = openView(Root);
  const arena = view.arena;
  const words = 1 << 18; // 1 MiB
  const file = path.join(view.directory, 'view.bin');
  // Old table A, in use at mark 1; at event 1 it "grows" into B and A is retired.
  const a = arena.alloc(words);
  arena.u32.fill(7, a, a + words);
  const first = view.mark(1);
  const b = arena.alloc(words);
  arena.u32.fill(8, b, b + words);
  arena.retire(a, words);
  const second = view.mark(2);
  // A rewind to before the retirement uses A again: a later trim must not give it back, even once
  // the history has grown past where it was retired.
  view.rewindTo(first);
  view.mark(1);
  arena.jn(a, words);
  arena.u32.fill(6, a, a + words);
  const later = view.mark(2);
  t.true(arena.position > second);
  view.truncateBefore(later);
  t.true(arena.u32.subarray(a, a + words).every((word) => word === 6), 'A is in use again and intact');
  // Retired for good, then the history moves past it.
  const c = arena.alloc(words);
  arena.u32.fill(9, c, c + words);
  arena.retire(a, words);
  const before = fs.statSync(file).blocks * 512;
  const third = view.mark(3);
  t.true(second > first);
  view.truncateBefore(third);
  const after = fs.statSync(file).blocks * 512;
  // Whether this file system punches holes (the retired block is garbage now; its whole pages go,
  // the partial ones at its ends stay).
  const inner = arena.u32.subarray(a + 1024, a + words - 1024);
  if (inner[0] === 0) {
    t.true(inner.every((word) => word === 0), 'A reads as zeros');
    t.true(after <= before - 0.9 * words * 4, `${before} → ${after} bytes allocated`);
  } else t.log('this file system keeps the blocks (no hole punching): nothing to check');
  t.true(arena.u32.subarray(c, c + words).every((word) => word === 9), 'the block in use is intact');
  view.close();
});
