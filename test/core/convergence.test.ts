/**
 * Convergence (issue 13): peers that hold the same events have the same view — maps compared in
 * iteration order, with the values an order-dependent `apply` derives — the same stored set and
 * the same cutoff hashes, whatever their history: rebuilt, compacted, reopened with a damaged
 * view, given events behind the cutoff in any order, or joined from a pruned peer. One test per
 * numbered case of the issue, through the public API only (`Database`, `ingest`, `messages`,
 * `compact`, `cutoffState`, `compareCutoffs`, `failures`, and `Replicator` on the in-memory
 * network for the resync loop).
 *
 * Maps iterate in insertion order, as a JS `Map` does (re-setting a key keeps its place; delete
 * and re-insert moves it to the end), and changing a map while iterating it behaves as on a JS
 * `Map`: the JS `Map` is the model every test compares with.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fc } from '@fast-check/ava';
import test from 'ava';
import { compareCutoffs, Database, type MessageId, type NoatunError, s } from '../../src/index.js';
import { MemoryNetwork, Replicator } from '../../src/net/index.js';
import { cutoffKey, describeIdDifference, failureIds, holdClearance, storedIds } from '../helpers/convergence.js';
import { FakeClock, prng, removeTempDirs, T0, tempDir, testSeed } from '../helpers/temp.js';
import { EventLog } from '../../src/core/log.js';

// Packs of 1 KiB of runs (not 32): the log packs what falls behind the cutoff as these tests go.
EventLog.defaultPackBytes = 1024;

test.after.always(removeTempDirs);

const INTERVAL = 120_000;
const MINUTE = 60_000;

// ------------------------------------------------------------------ the app

/**
 * A map of names, and values derived from its order: the first key and the keys joined, written
 * by `derive`; `loop` runs scripted actions while iterating and records the keys it visited.
 */
const Keys = s.object({
  m: s.map(s.string(), s.u32()),
  first: s.string(),
  joined: s.string(),
  visited: s.string(),
  sum: s.f64(),
});

/** What a `loop` does when it has visited `at` keys (0: at the first key). */
type Action =
  | { readonly at: number; readonly do: 'set'; readonly key: string }
  | { readonly at: number; readonly do: 'delete'; readonly key: string }
  | { readonly at: number; readonly do: 'delete-current' }
  | { readonly at: number; readonly do: 'reinsert-current' }
  | { readonly at: number; readonly do: 'clear' };

type KeyEvent =
  | { readonly set: string; readonly v: number }
  | { readonly del: string }
  | { readonly move: string }
  | { readonly update: string; readonly v: number }
  | { readonly derive: true }
  | { readonly sweep: string }
  | { readonly loop: readonly Action[] }
  | { readonly depth: number };

/** The map operations `applyKeys` uses: a view's map accessor and a JS `Map` both have them. */
interface MapLike {
  get(key: string): number | undefined;
  has(key: string): boolean;
  set(key: string, value: number): unknown;
  delete(key: string): boolean;
  clear(): void;
  keys(): IterableIterator<string>;
  [Symbol.iterator](): IterableIterator<[string, number]>;
}

interface KeysLike {
  readonly m: MapLike;
  first: string;
  joined: string;
  visited: string;
  sum: number;
}

/** At most this many keys are visited by one loop (re-inserted and added keys are visited again). */
const LOOP_LIMIT = 80;

function recurse(depth: number): number {
  return depth <= 0 ? 0 : 1 + recurse(depth - 1);
}

/** The fold, on a view root or on the JS model alike. */
function applyKeys(event: KeyEvent, r: unknown): void {
  const root = r as KeysLike;
  const m = root.m;
  if ('set' in event) m.set(event.set, event.v);
  else if ('del' in event) m.delete(event.del);
  else if ('move' in event) {
    const v = m.get(event.move);
    if (v !== undefined) {
      m.delete(event.move);
      m.set(event.move, v);
    }
  } else if ('update' in event) {
    // A conditional write: only a key that exists is updated.
    if (m.has(event.update)) m.set(event.update, event.v);
  } else if ('derive' in event) {
    const keys: string[] = [];
    let sum = 0;
    for (const [key, v] of m) {
      keys.push(key);
      sum += v / 7;
    }
    root.first = keys[0] ?? '';
    root.joined = keys.join(',');
    root.sum = sum;
  } else if ('sweep' in event) {
    // Delete every key with the prefix, in one loop.
    for (const key of m.keys()) if (key.startsWith(event.sweep)) m.delete(key);
  } else if ('loop' in event) {
    const seen: string[] = [];
    let i = 0;
    for (const key of m.keys()) {
      seen.push(key);
      for (const action of event.loop) {
        if (action.at !== i) continue;
        if (action.do === 'set') m.set(action.key, i);
        else if (action.do === 'delete') m.delete(action.key);
        else if (action.do === 'delete-current') m.delete(key);
        else if (action.do === 'reinsert-current') {
          const v = m.get(key);
          m.delete(key);
          m.set(key, v ?? i);
        } else m.clear();
      }
      if (++i >= LOOP_LIMIT) break;
    }
    root.visited = seen.join(',');
  } else {
    root.first = 'deep';
    root.sum = recurse(event.depth);
  }
}

/** The JS `Map` model: the events in order. */
function model(events: readonly KeyEvent[]): { keys: string[]; values: number[]; first: string; joined: string; visited: string; sum: number } {
  const root = { m: new Map<string, number>(), first: '', joined: '', visited: '', sum: 0 };
  for (const event of events) applyKeys(event, root);
  return { keys: [...root.m.keys()], values: [...root.m.values()], first: root.first, joined: root.joined, visited: root.visited, sum: root.sum };
}

type KeysDb = Database<KeyEvent, typeof Keys>;

/** `lateWorkShare`: see `DatabaseOptions` (the engine's default when omitted). */
function open(dir: string, clock: FakeClock, autoPrune = true, lateWorkShare?: number): Promise<KeysDb> {
  return Database.open<KeyEvent, typeof Keys>({
    path: dir,
    root: Keys,
    now: clock.now,
    cutoffIntervalMs: INTERVAL,
    autoPrune,
    ...(lateWorkShare === undefined ? {} : { lateWorkShare }),
    apply: (event, root) => applyKeys(event, root),
  });
}

/** The view as the tests compare it: map keys and values in iteration order, and the derived fields. */
function snapshot(db: KeysDb) {
  return db.read((root) => ({
    keys: [...root.m.keys()],
    values: [...root.m.values()],
    first: root.first,
    joined: root.joined,
    visited: root.visited,
    sum: root.sum,
  }));
}

const bytesOf = (db: KeysDb) => [...db.messages()].map((m) => m.bytes.slice());

/** Closes `db` and reopens its directory after `damage` (with the same clock). */
async function reopen(db: KeysDb, clock: FakeClock, damage: (dir: string) => void): Promise<KeysDb> {
  const dir = db.path;
  await db.close();
  damage(dir);
  return open(dir, clock);
}

const deleteView = (dir: string) => fs.rmSync(path.join(dir, 'view'), { recursive: true, force: true });
/** Damages the view file's first byte (its magic) and one in the middle: it cannot be loaded. */
function damageView(dir: string): void {
  const file = path.join(dir, 'view', 'view.bin');
  const bytes = fs.readFileSync(file);
  bytes[0]! ^= 0xff;
  bytes[bytes.length >> 1]! ^= 0x5a;
  fs.writeFileSync(file, bytes);
}

/** A workload that makes a map grow, shrink and reorder: puts, deletes, moves, updates and derives over 24 keys. */
function workload(seed: number, count: number): KeyEvent[] {
  const random = prng(seed);
  const events: KeyEvent[] = [];
  for (let i = 0; i < count; i++) {
    const key = `${['a', 'b', 'x'][Math.floor(random() * 3)]}${Math.floor(random() * 8)}`;
    const r = random();
    if (r < 0.4) events.push({ set: key, v: Math.floor(random() * 1000) });
    else if (r < 0.6) events.push({ del: key });
    else if (r < 0.72) events.push({ move: key });
    else if (r < 0.82) events.push({ update: key, v: Math.floor(random() * 1000) });
    else events.push({ derive: true });
  }
  return events;
}

// ------------------------------------------------------------------ 1. iteration order

test('1. map iteration order (first key, joined keys) after a rebuild, a compaction, a damaged view, a late event and a join from a pruned log equals the in-time peer’s', async (t) => {
  const clock = new FakeClock(T0);
  const events = workload(13, 160);
  const author = await open(tempDir(), clock);
  // Peers that get every event in time, as the author writes it (one of them will miss the last two).
  const compacted = await open(tempDir(), clock);
  const rebuilt = await open(tempDir(), clock);
  const damaged = await open(tempDir(), clock);
  const late = await open(tempDir(), clock);
  const inTime = [compacted, rebuilt, damaged];
  // The last two events (a new key, then a derive) reach `late` only once they are behind its cutoff.
  const lastTwo = [...events, { set: 'late', v: 1 }, { derive: true }] as KeyEvent[];
  const withheld: { id: MessageId; bytes: Uint8Array }[] = [];
  for (const [i, event] of lastTwo.entries()) {
    clock.advance(2_500);
    const id = await author.append(event);
    const bytes = author.message(id)!.bytes.slice();
    for (const peer of inTime) await peer.ingest([bytes]);
    if (i < events.length) await late.ingest([bytes]);
    else withheld.push({ id, bytes });
  }
  t.true(author.stats().pruned > 0, 'the author pruned something (the join below is from a pruned log)');
  const expected = model(lastTwo);
  t.deepEqual(snapshot(author), expected, 'the in-time peer iterates in insertion order (a JS Map replay)');

  clock.advance(holdClearance(INTERVAL, MINUTE));
  late.advanceCutoff();
  t.true(withheld.every((w) => w.id.timestamp < late.cutoffTime), 'the withheld events are behind the late peer’s cutoff');
  await late.ingest(withheld.map((w) => w.bytes));
  await compacted.compact();
  const rebuiltAgain = await reopen(rebuilt, clock, deleteView);
  const damagedAgain = await reopen(damaged, clock, damageView);
  t.is(rebuiltAgain.stats().openedBy, 'rebuild');
  t.is(damagedAgain.stats().openedBy, 'rebuild');
  const joined = await open(tempDir(), clock);
  await joined.ingest(bytesOf(author));

  const view = snapshot(author);
  for (const [name, db] of [
    ['compacted', compacted],
    ['rebuilt (view deleted)', rebuiltAgain],
    ['reopened with a damaged view', damagedAgain],
    ['given the last two events behind its cutoff', late],
    ['joined from the pruned log', joined],
  ] as const) {
    const got = snapshot(db);
    t.deepEqual(got.keys, view.keys, `${name}: keys in iteration order`);
    t.is(got.first, view.first, `${name}: the first key`);
    t.is(got.joined, view.joined, `${name}: the joined keys`);
    t.deepEqual(got, view, `${name}: the whole view`);
  }
  await Promise.all([author, compacted, rebuiltAgain, damagedAgain, late, joined].map((db) => db.close()));
});

// ------------------------------------------------------------------ 2. changing a map while iterating

const keyArb = fc.constantFrom(...['a', 'b', 'x'].flatMap((p) => Array.from({ length: 6 }, (_, i) => `${p}${i}`)));
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ at: fc.nat({ max: 14 }), do: fc.constant('set' as const), key: keyArb }),
  fc.record({ at: fc.nat({ max: 14 }), do: fc.constant('delete' as const), key: keyArb }),
  fc.record({ at: fc.nat({ max: 14 }), do: fc.constant('delete-current' as const) }),
  fc.record({ at: fc.nat({ max: 14 }), do: fc.constant('reinsert-current' as const) }),
  fc.record({ at: fc.nat({ max: 14 }), do: fc.constant('clear' as const) }),
);
const eventArb: fc.Arbitrary<KeyEvent> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ set: keyArb, v: fc.nat({ max: 999 }) }) },
  { weight: 2, arbitrary: fc.record({ del: keyArb }) },
  { weight: 1, arbitrary: fc.record({ move: keyArb }) },
  { weight: 2, arbitrary: fc.record({ loop: fc.array(actionArb, { minLength: 1, maxLength: 8 }) }) },
  { weight: 1, arbitrary: fc.record({ sweep: fc.constantFrom('a', 'b', 'x') }) },
  { weight: 1, arbitrary: fc.constant({ derive: true as const }) },
);

test('2. changing a map while iterating it (set, delete, delete and re-insert, clear) matches a JS Map exactly', async (t) => {
  const seed = testSeed();
  t.log(`fast-check seed ${seed} (NOATUN_SEED=${seed} npx ava test/core/convergence.test.ts -m '2. *' repeats it)`);
  const result = await fc.check(
    fc.asyncProperty(fc.array(eventArb, { minLength: 1, maxLength: 50 }), async (events) => {
      const clock = new FakeClock(T0);
      const db = await open(tempDir(), clock, false);
      try {
        for (const event of events) {
          clock.advance(1_000);
          await db.append(event);
        }
        const got = snapshot(db);
        const want = model(events);
        return JSON.stringify(got) === JSON.stringify(want);
      } finally {
        await db.close();
      }
    }),
    { seed, numRuns: Number.parseInt(process.env.NOATUN_RUNS ?? '60', 10) },
  );
  if (result.failed) {
    const events = result.counterexample![0];
    const db = await open(tempDir(), new FakeClock(T0), false);
    for (const event of events) await db.append(event);
    t.deepEqual(snapshot(db), model(events), `smallest failing sequence (seed ${seed}): ${JSON.stringify(events)}`);
    await db.close();
  }
  t.false(result.failed, `seed ${seed}`);
});

test('2. deleting every x… key in one loop leaves none, on every peer, whatever its table’s history', async (t) => {
  const clock = new FakeClock(T0);
  const author = await open(tempDir(), clock);
  const inTime = await open(tempDir(), clock);
  const events: KeyEvent[] = [];
  const write = async (event: KeyEvent) => {
    clock.advance(1_000);
    const id = await author.append(event);
    await inTime.ingest([author.message(id)!.bytes]);
    events.push(event);
  };
  // A table that grew large and emptied: its layout now differs from a fresh table's.
  for (let i = 0; i < 40; i++) await write({ set: `k${i}`, v: i });
  for (let i = 0; i < 36; i++) await write({ del: `k${i}` });
  clock.advance(holdClearance(INTERVAL, MINUTE));
  // 14 x-keys among others, then one loop that deletes every x-key.
  for (let i = 0; i < 14; i++) {
    await write({ set: `x${i}`, v: i });
    if (i % 3 === 0) await write({ set: `y${i}`, v: i });
  }
  await write({ sweep: 'x' });
  await write({ derive: true });
  const expected = model(events);
  t.deepEqual(expected.keys.filter((k) => k.startsWith('x')), []);

  const joined = await open(tempDir(), clock);
  await joined.ingest(bytesOf(author));
  const shuffled = await open(tempDir(), clock);
  const frames = bytesOf(author).reverse();
  for (let i = 0; i < frames.length; i += 5) await shuffled.ingest(frames.slice(i, i + 5));
  const rebuilt = await reopen(inTime, clock, deleteView);
  for (const [name, db] of [
    ['the author', author],
    ['a peer rebuilt from the log', rebuilt],
    ['a peer that joined from the pruned log', joined],
    ['a peer that got the log backwards in batches', shuffled],
  ] as const) {
    const got = snapshot(db);
    t.deepEqual(got.keys.filter((k) => k.startsWith('x')), [], `${name}: no x-key survives the sweep`);
    t.deepEqual(got.keys, expected.keys, `${name}: keys in insertion order`);
    t.deepEqual(got, expected, `${name}: the whole view`);
  }
  await Promise.all([author, rebuilt, joined, shuffled].map((db) => db.close()));
});

// ------------------------------------------------------------------ 3. a delete whose insert was pruned

/**
 * The author of case 3: inserts two keys, deletes one (the last change of the map's membership,
 * so the delete owns the membership), derives from the map, and lets the cutoff pass all of it:
 * the insert of the deleted key goes, the delete stays.
 */
async function pruneInsertKeepDelete(clock: FakeClock) {
  const author = await open(tempDir(), clock);
  clock.advance(1_000);
  await author.append({ set: 'kept', v: 1 });
  clock.advance(1_000);
  const insert = await author.append({ set: 'k', v: 1 });
  clock.advance(1_000);
  const remove = await author.append({ del: 'k' });
  clock.advance(1_000);
  await author.append({ derive: true });
  clock.advance(10 * MINUTE);
  author.advanceCutoff();
  return { author, insert, remove };
}

test('3. a delete whose insert was pruned: the author and a fresh replay of its log store the same events and the same cutoff hashes', async (t) => {
  const clock = new FakeClock(T0);
  const { author, insert, remove } = await pruneInsertKeepDelete(clock);
  const log = (ids: string[]) => `insert ${insert.toString().slice(0, 12)}…, delete ${remove.toString().slice(0, 12)}…; stored: ${ids.map((id) => id.slice(0, 12)).join(', ')}`;
  const fresh = await open(tempDir(), clock);
  await fresh.ingest(bytesOf(author));
  t.deepEqual(storedIds(fresh), storedIds(author), `at once: ${describeIdDifference(storedIds(author), storedIds(fresh))} (${log(storedIds(author))})`);
  clock.advance(holdClearance(INTERVAL, MINUTE));
  author.advanceCutoff();
  fresh.advanceCutoff();
  t.deepEqual(storedIds(fresh), storedIds(author), `after the clock passed every hold: ${describeIdDifference(storedIds(author), storedIds(fresh))}`);
  t.is(cutoffKey(fresh), cutoffKey(author));
  t.is(compareCutoffs(author.cutoffState(), fresh.cutoffState(), author.cutoffStrideMs), 'same');
  t.deepEqual(snapshot(fresh), snapshot(author));
  await Promise.all([author.close(), fresh.close()]);
});

test('3. a late event that three pruning peers pass around is stored again without a new hold: they agree, where it went round for ever', async (t) => {
  // Each peer that gets the event late holds pruning for an interval, then prunes it and forgets
  // that it did an interval and two strides later. Reaching the peers 7 and 14 minutes apart, the
  // last one still held it when the first had forgotten it: before, the first stored it as a new
  // late event with a hold of its own, and so on round the ring, with a period of 25 minutes.
  const clock = new FakeClock(T0);
  const interval = 10 * MINUTE;
  const Counter = s.object({ n: s.u32() });
  const openPeer = (autoPrune: boolean) =>
    Database.open<{ add?: number }, typeof Counter>({
      path: tempDir(),
      root: Counter,
      now: clock.now,
      cutoffIntervalMs: interval,
      autoPrune,
      lateWorkShare: 1,
      apply(event, root) {
        if (event.add !== undefined) root.n += event.add;
      },
    });
  // A peer that was away holds an old event that writes nothing; the others never saw it.
  const away = await openPeer(false);
  const late = await away.append({});
  const peers = [await openPeer(true), await openPeer(true), await openPeer(true)];
  clock.advance(30 * MINUTE);
  for (const db of peers) db.advanceCutoff();
  const send = async (from: { messages(): Iterable<{ bytes: Uint8Array }> }, to: (typeof peers)[number]) => {
    await to.ingest([...from.messages()].map((m) => m.bytes.slice()));
  };
  const [a, b, c] = peers as [(typeof peers)[number], (typeof peers)[number], (typeof peers)[number]];
  await send(away, a);
  const timeline: string[] = [];
  for (let minute = 1; minute <= 90; minute++) {
    clock.advance(MINUTE);
    for (const db of peers) db.advanceCutoff();
    if (minute === 7) await send(a, b);
    if (minute === 14) await send(b, c);
    if (minute >= 15) {
      for (const [from, to] of [[a, b], [a, c], [b, a], [b, c], [c, a], [c, b]] as const) await send(from, to);
    }
    timeline.push(peers.map((db) => (db.message(late) === undefined ? '-' : 'X')).join(''));
  }
  t.log(`who holds the late event, minute by minute: ${timeline.join(' ')}`);
  t.deepEqual(
    peers.map((db) => db.message(late) === undefined),
    [true, true, true],
    'every peer pruned it for good',
  );
  t.true(timeline.slice(40).every((held) => held === '---'), 'nobody stored it again after minute 40');
  t.deepEqual(storedIds(b), storedIds(a));
  t.deepEqual(storedIds(c), storedIds(a));
  t.is(cutoffKey(b), cutoffKey(a));
  t.is(cutoffKey(c), cutoffKey(a));
  await Promise.all([away.close(), ...peers.map((db) => db.close())]);
});

test('3. a delete whose insert was pruned: two replicating peers stop re-storing it (sessions stop)', async (t) => {
  const clock = new FakeClock(T0);
  const { author } = await pruneInsertKeepDelete(clock);
  const fresh = await open(tempDir(), clock);
  await fresh.ingest(bytesOf(author));
  const network = new MemoryNetwork({ seed: 3, latencyMs: 1 });
  const replicators = [new Replicator(author as never, network.join('author'), { statusIntervalMs: 20 }), new Replicator(fresh as never, network.join('fresh'), { statusIntervalMs: 20 })];
  let restored = 0;
  const unsubscribe = fresh.subscribe({ stored: (events) => (restored += events.length) });
  const both = async () => {
    const signal = AbortSignal.timeout(10_000);
    await Promise.all([replicators[0]!.syncedWith('fresh', { signal }), replicators[1]!.syncedWith('author', { signal })]);
  };
  try {
    await both();
    clock.advance(holdClearance(INTERVAL, MINUTE));
    author.advanceCutoff();
    fresh.advanceCutoff();
    await both();
  } catch (error) {
    t.log(`no sync within 10 s: ${String(error)}; ${JSON.stringify(replicators.map((r) => r.peers()))}`);
  }
  // Nothing is left to do: over 25 status rounds, no session and no re-store. (This waits on
  // time, not on a state, because what it checks is that nothing happens.)
  const sessions = () => replicators.map((r) => r.peers()[0]?.sessions ?? 0).reduce((a, b) => a + b, 0);
  const before = { sessions: sessions(), restored };
  await new Promise((resolve) => setTimeout(resolve, 500));
  // A session counts on both sides; a trailing session or two from the syncs above may still
  // complete (4), a resync loop runs one or more per status round (50 and up).
  const grew = sessions() - before.sessions;
  t.true(grew <= 4, `${grew} sessions in 25 status rounds after syncing (a resync loop); states: ${JSON.stringify(replicators.map((r) => r.peers().map((p) => [p.state, p.reason])))}`);
  t.is(restored - before.restored, 0, 'the fresh peer kept storing the same events again');
  t.deepEqual(storedIds(fresh), storedIds(author));
  t.is(compareCutoffs(author.cutoffState(), fresh.cutoffState(), author.cutoffStrideMs), 'same');
  unsubscribe();
  await Promise.all(replicators.map((r) => r.stop()));
  await Promise.all([author.close(), fresh.close()]);
});

// ------------------------------------------------------------------ 4. arrival order behind the cutoff

test('4. a delete and a conditional write that reach a peer before their targets, all behind the cutoff, in separate ingests: the key stays deleted, and the peer equals one that got them in id order', async (t) => {
  const authorClock = new FakeClock(T0);
  const author = await open(tempDir(), authorClock);
  const write = async (event: KeyEvent) => {
    authorClock.advance(1_000);
    return author.message(await author.append(event))!.bytes.slice();
  };
  const insert = await write({ set: 'k', v: 1 });
  const remove = await write({ del: 'k' });
  const insert2 = await write({ set: 'k2', v: 1 });
  const update = await write({ update: 'k2', v: 50 });
  const derive = await write({ derive: true });
  // Both receivers' cutoffs are past all five events.
  const clock = new FakeClock(T0 + 20 * MINUTE);
  // Each out-of-order ingest rewinds the view: with the default share of time for that work, the
  // last one could wait for the budget (`deferred`) and be stored only after the check below.
  const early = await open(tempDir(), clock, true, 1);
  const inOrder = await open(tempDir(), clock, true, 1);
  for (const frame of [remove, update, derive, insert, insert2]) await early.ingest([frame]);
  for (const frame of [insert, remove, insert2, update, derive]) await inOrder.ingest([frame]);
  t.true(early.cutoffState().time > T0 + 5_000, 'the events arrived behind the cutoff');
  const expected = model([{ set: 'k', v: 1 }, { del: 'k' }, { set: 'k2', v: 1 }, { update: 'k2', v: 50 }, { derive: true }]);
  for (const [name, db] of [
    ['the peer that got them out of order', early],
    ['the peer that got them in id order', inOrder],
  ] as const) {
    const got = snapshot(db);
    t.false(got.keys.includes('k'), `${name}: the deleted key is back`);
    t.deepEqual(got, expected, `${name}: the view`);
  }
  clock.advance(holdClearance(INTERVAL, MINUTE));
  early.advanceCutoff();
  inOrder.advanceCutoff();
  t.deepEqual(storedIds(early), storedIds(inOrder), describeIdDifference(storedIds(early), storedIds(inOrder), early.cutoffTime));
  t.is(cutoffKey(early), cutoffKey(inOrder));
  t.deepEqual(snapshot(early), snapshot(inOrder));
  t.deepEqual(snapshot(early), expected);
  await Promise.all([author.close(), early.close(), inOrder.close()]);
});

// ------------------------------------------------------------------ 5. compaction and rebuilds

/**
 * What the bookkeeping says of the stored events: the count of tombstones, and per event what
 * `explain` says (tombstone, what it owns, which events it deleted data of). A replay of the same
 * stored events must say the same: a tombstone whose victims were pruned stayed one, where a
 * rebuild, with nothing left for it to delete, made it none (a probe of 7 Dec 2026).
 */
function bookkeeping(db: KeysDb): string[] {
  const lines = [`tombstones ${db.stats().tombstones}`];
  for (const message of db.messages()) {
    const { tombstone, owns, deletedDataOf } = db.explain(message.id);
    lines.push(`${String(message.id)} tombstone ${tombstone} owns ${owns} deleted ${deletedDataOf.map(String).join(',')}`);
  }
  return lines;
}

async function checkLocalDecisions(t: import('ava').ExecutionContext, db: KeysDb, clock: FakeClock, what: string): Promise<void> {
  const ids = storedIds(db);
  const cutoff = cutoffKey(db);
  const view = snapshot(db);
  const book = bookkeeping(db);
  await db.compact();
  t.deepEqual(storedIds(db), ids, `${what}: compact() changed the stored set: ${describeIdDifference(ids, storedIds(db), db.cutoffTime)}`);
  t.is(cutoffKey(db), cutoff, `${what}: compact() changed the cutoff hashes`);
  t.deepEqual(snapshot(db), view, `${what}: compact() changed the view`);
  t.deepEqual(bookkeeping(db), book, `${what}: compact() changed what explain() and stats() say`);
  const rebuilt = await reopen(db, clock, deleteView);
  t.is(rebuilt.stats().openedBy, 'rebuild');
  t.deepEqual(storedIds(rebuilt), ids, `${what}: a rebuild changed the stored set: ${describeIdDifference(ids, storedIds(rebuilt), rebuilt.cutoffTime)}`);
  t.is(cutoffKey(rebuilt), cutoff, `${what}: a rebuild changed the cutoff hashes`);
  t.deepEqual(snapshot(rebuilt), view, `${what}: a rebuild changed the view`);
  t.deepEqual(bookkeeping(rebuilt), book, `${what}: a rebuild changed what explain() and stats() say`);
  await rebuilt.close();
}

test('5. compact() and a rebuild (view directory deleted) change neither the stored set nor the cutoff hashes: a delete whose insert was pruned', async (t) => {
  const clock = new FakeClock(T0);
  const { author } = await pruneInsertKeepDelete(clock);
  await checkLocalDecisions(t, author, clock, 'insert, delete, cutoff passed');
});

test('5. compact() and a rebuild change neither the stored set nor what explain() says: an optional set to null, whose setter was pruned', async (t) => {
  // Setting null destroys the value (its setter is the victim) and owns the absence, so it stays
  // when the setter is pruned. It was still counted a tombstone; a replay without the setter
  // finds nothing for it to destroy.
  const Opt = s.object({ o: s.optional(s.u32()) });
  const clock = new FakeClock(T0);
  const dir = tempDir();
  const options = {
    path: dir,
    root: Opt,
    now: clock.now,
    cutoffIntervalMs: INTERVAL,
    apply: (event: { v: number | null }, root: { o: number | null }) => {
      root.o = event.v;
    },
  };
  const db = await Database.open<{ v: number | null }, typeof Opt>(options);
  clock.advance(1_000);
  await db.append({ v: 5 });
  clock.advance(1_000);
  const unset = await db.append({ v: null });
  clock.advance(holdClearance(INTERVAL, MINUTE));
  db.advanceCutoff();
  t.deepEqual(storedIds(db), [Buffer.from(unset.bytes).toString('hex')], 'the setter was pruned');
  const said = (d: typeof db) => [d.stats().tombstones, JSON.stringify(d.explain(unset))];
  t.deepEqual(said(db), [0, JSON.stringify({ ...db.explain(unset), tombstone: false })]);
  const before = said(db);
  await db.compact();
  t.deepEqual(said(db), before, 'compact() changed what explain() and stats() say');
  await db.close();
  deleteView(dir);
  const rebuilt = await Database.open<{ v: number | null }, typeof Opt>(options);
  t.is(rebuilt.stats().openedBy, 'rebuild');
  t.deepEqual(said(rebuilt), before, 'a rebuild changed what explain() and stats() say');
  await rebuilt.close();
});

test('5. compact() and a rebuild change neither the stored set nor the cutoff hashes: random workloads with pruning', async (t) => {
  const first = testSeed();
  t.log(`seeds ${first} to ${first + 4} (NOATUN_SEED=${first} repeats them)`);
  for (let k = 0; k < 5; k++) {
    const seed = (first + k) >>> 0;
    const clock = new FakeClock(T0);
    const db = await open(tempDir(), clock);
    const random = prng(seed);
    for (const event of workload(seed, 300)) {
      clock.advance(Math.floor(random() * 4_000));
      await db.append(event);
    }
    // A quiet spell: the cutoff passes the last events too.
    clock.advance(holdClearance(INTERVAL, MINUTE));
    db.advanceCutoff();
    t.true(db.stats().pruned > 0);
    await checkLocalDecisions(t, db, clock, `seed ${seed}`);
  }
});

// ------------------------------------------------------------------ 6. failures

const Stock = s.object({ stock: s.i32(), note: s.string() });
type StockEvent = { readonly put: number } | { readonly take: number } | { readonly depth: number };

function openStock(dir: string, clock: FakeClock, recurseDeeply = true) {
  return Database.open<StockEvent, typeof Stock>({
    path: dir,
    root: Stock,
    now: clock.now,
    cutoffIntervalMs: INTERVAL,
    apply(event, root) {
      if ('put' in event) root.stock += event.put;
      else if ('take' in event) {
        root.stock -= event.take;
        if (root.stock < 0) throw new Error(`short by ${-root.stock}`);
      } else {
        root.note = 'deep';
        if (recurseDeeply) recurse(event.depth);
      }
    },
  });
}

test('6. failures() is the same on the author, on a peer, and after a reopen (clean and rebuilt)', async (t) => {
  const clock = new FakeClock(T0);
  const author = await openStock(tempDir(), clock);
  const other = await openStock(tempDir(), clock);
  clock.advance(1_000);
  const put = await author.append({ put: 10 });
  await other.ingest([author.message(put)!.bytes]);
  clock.advance(2_000);
  // The author's take succeeds when written; an earlier take from another peer arrives later and
  // makes it fail on re-application.
  const take5 = await author.append({ take: 5 });
  const take8 = await other.append({ take: 8 }, { time: T0 + 2_000 });
  await author.ingest([other.message(take8)!.bytes]);
  await other.ingest([author.message(take5)!.bytes]);
  const peer = await openStock(tempDir(), clock);
  await peer.ingest([...author.messages()].map((m) => m.bytes));
  const expected = [take5.toString()];
  t.deepEqual(failureIds(author), expected, 'the author');
  t.deepEqual(failureIds(other), expected, 'the peer whose event came first');
  t.deepEqual(failureIds(peer), expected, 'a peer that got everything at once');
  for (const db of [author, other, peer]) t.is(db.stats().failedApplies, 1);
  const dir = author.path;
  await author.close();
  const reopened = await openStock(dir, clock);
  t.is(reopened.stats().openedBy, 'clean-load');
  t.deepEqual(failureIds(reopened), expected, 'the author after a clean reopen');
  t.is(reopened.stats().failedApplies, 1);
  await reopened.close();
  deleteView(dir);
  const rebuilt = await openStock(dir, clock);
  t.is(rebuilt.stats().openedBy, 'rebuild');
  t.deepEqual(failureIds(rebuilt), expected, 'the author after a rebuild');
  t.is(rebuilt.stats().failedApplies, 1);
  await Promise.all([rebuilt.close(), other.close(), peer.close()]);
});

test('6. an apply that exhausts the call stack is not recorded as the event’s failure: the author stores nothing, a receiving peer records no failure', async (t) => {
  const clock = new FakeClock(T0);
  const author = await openStock(tempDir(), clock);
  clock.advance(1_000);
  await author.append({ put: 1 });
  const before = storedIds(author);
  // RESOURCE_EXHAUSTED, as for a batch from a peer (it was APPLY_FAILED, the event's failure).
  const overflow = await t.throwsAsync(author.append({ depth: 1e7 }), undefined, 'the append of an event whose apply overflows the stack rejects');
  t.is((overflow as NoatunError).code, 'RESOURCE_EXHAUSTED');
  const previewed = t.throws(() => author.preview({ depth: 1e7 }, () => 0));
  t.is((previewed as NoatunError).code, 'RESOURCE_EXHAUSTED');
  // The database may refuse further use until reopened (as with a full view); what it stored may not change.
  const dir = author.path;
  await author.close();
  const again = await openStock(dir, clock);
  t.deepEqual(storedIds(again), before, 'the author stored the event anyway');
  t.deepEqual(failureIds(again), []);

  // The same event minted where its apply does not recurse, then sent to a peer whose apply does.
  const mint = await openStock(tempDir(), clock, false);
  clock.advance(1_000);
  const id: MessageId = await mint.append({ depth: 1e7 });
  const receiver = await openStock(tempDir(), clock);
  try {
    await receiver.ingest([mint.message(id)!.bytes]);
  } catch (error) {
    t.log(`the receiving peer refused the batch: ${String(error)}`);
  }
  let listed: readonly { readonly id: MessageId }[] = [];
  try {
    listed = receiver.failures();
  } catch (error) {
    // A database that refuses use until reopened (as after a full view) records nothing either.
    t.log(`failures() refused until reopen: ${String(error)}`);
  }
  t.false(
    listed.some((f) => f.id.equals(id)),
    'a stack overflow on this machine was recorded as the event failing',
  );
  try {
    t.is(receiver.stats().failedApplies, 0);
  } catch (error) {
    t.log(`stats() refused until reopen: ${String(error)}`);
  }
  await Promise.all([again.close(), mint.close(), receiver.close()]);
});
