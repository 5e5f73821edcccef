/**
 * Pruning and the cutoff against the spec's scenarios 13–36 (noatun-spec.md §11), adapted where
 * this port decides differently (docs/PRUNING.md): every overwritten event waits for the cutoff to
 * pass its last overwriter, so the counts the spec reaches "at once" for local or opaque-only
 * events are reached here once the clock moves past the cutoff.
 */
import test from 'ava';
import { INSPECTING } from '../../src/core/database-contract.js';
import { decodeEnvelope, encodeEnvelope, withParents } from '../../src/core/envelope.js';
import { compareCutoffs, Database, MessageId, type NoatunError, nominalCutoff, s } from '../../src/index.js';
import { FakeClock, prng, removeTempDirs, T0, tempDir, testSeed } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const MIN = 60_000;
const DAY = 24 * 60 * MIN;

// ADD: Add(d) reads and writes the counter; Set(v) only writes it.
const Add = s.object({ counter: s.u32() });
type AddEvent = { add: number } | { set: number };
function applyAdd(event: AddEvent, root: s.View<typeof Add>): void {
  if ('add' in event) root.counter += event.add;
  else root.counter = event.set;
}

interface Options {
  clock?: FakeClock;
  autoPrune?: boolean;
  cutoffIntervalMs?: number;
}

function open<E, R extends ReturnType<typeof s.object>>(root: R, apply: (event: E, root: s.View<R>) => void, options: Options = {}) {
  const clock = options.clock ?? new FakeClock();
  return Database.open<E, R>({
    path: tempDir(),
    root,
    now: clock.now,
    autoPrune: options.autoPrune ?? true,
    ...(options.cutoffIntervalMs === undefined ? {} : { cutoffIntervalMs: options.cutoffIntervalMs }),
    apply: (event, r) => apply(event, r),
  });
}

/**
 * Makes "nonlocal" events (as if received from a peer): a scratch database with no pruning mints
 * them at the given times, and the target ingests their wire form. They carry no parents, so any
 * of them can be ingested alone, also behind the cutoff.
 */
async function remote<E, R extends ReturnType<typeof s.object>>(
  root: R,
  apply: (event: E, root: s.View<R>) => void,
  events: ReadonlyArray<readonly [number, E]>,
): Promise<Uint8Array[]> {
  // (Its clock after every event's time: an append dated ahead of the clock is refused.)
  const latest = Math.max(...events.map(([time]) => time));
  const source = await open(root, apply, { autoPrune: false, clock: new FakeClock(latest) });
  const ids: MessageId[] = [];
  for (const [time, event] of events) ids.push(await source.append(event, { time }));
  const byId = new Map([...source.messages()].map((m) => [m.id.toString(), m.bytes]));
  await source.close();
  return ids.map((id) => encodeEnvelope(withParents(decodeEnvelope(byId.get(id.toString())!), [])));
}

const count = (db: Database<unknown, never> | { stats(): { stored: number } }) => db.stats().stored;

test('13: a counter chain is never pruned (each event read its predecessor)', async (t) => {
  const clock = new FakeClock();
  const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock });
  const frames = await remote<AddEvent, typeof Add>(Add, applyAdd, [[T0, { add: 1 }], [T0 + 1000, { add: 1 }], [T0 + 2000, { add: 1 }]]);
  for (const frame of frames) await db.ingest([frame]);
  clock.time = T0 + 365 * DAY;
  db.advanceCutoff();
  t.is(count(db), 3);
  t.is(db.read((r) => r.counter), 3);
  await db.close();
});

test('14: an overwritten event is pruned once the cutoff passes its overwriter (local or transmitted alike)', async (t) => {
  const clock = new FakeClock();
  const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock });
  const first = await db.append({ set: 1 });
  const second = await db.append({ set: 2 });
  t.is(count(db), 2);
  const why = db.explain(first);
  t.is(why.owns, 0);
  t.is(why.overwrittenAt, second.timestamp);
  t.true(why.keptBecause.some((line) => line.includes('waiting for the cutoff')));
  clock.advance(17 * MIN);
  db.advanceCutoff();
  t.is(count(db), 1);
  t.false(db.explain(first).stored);
  t.deepEqual(db.explain(second).keptBecause, ['it wrote 1 current value of the view']);
  t.is(db.stats().pruned, 1);
  t.is(db.read((r) => r.counter), 2);
  await db.close();
});

test('15: the cutoff is relative to the overwriter', async (t) => {
  const clock = new FakeClock(T0 + 30 * MIN);
  const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock, cutoffIntervalMs: 60 * MIN });
  await db.ingest(await remote<AddEvent, typeof Add>(Add, applyAdd, [[T0, { set: 0 }], [T0 + 30 * MIN, { set: 0 }]]));
  t.is(count(db), 2);
  clock.time = T0 + 60 * MIN + 1000;
  db.advanceCutoff();
  t.is(db.cutoffTime, Date.UTC(2019, 11, 31, 23, 54));
  t.is(count(db), 2);
  clock.time = T0 + 120 * MIN;
  db.advanceCutoff();
  t.is(db.cutoffTime, T0 + 54 * MIN);
  t.is(count(db), 1);
  t.is([...db.messages()][0]!.id.timestamp, T0 + 30 * MIN);
  await db.close();
});

test('16: a late overwriter older than the cutoff prunes once the hold for late arrivals ends; a late overwritten event does not', async (t) => {
  const settings = { cutoffIntervalMs: 60 * MIN };
  {
    const clock = new FakeClock(T0 + 120 * MIN);
    const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock, ...settings });
    const [a, b] = await remote<AddEvent, typeof Add>(Add, applyAdd, [[T0, { set: 0 }], [T0 + 1000, { set: 0 }]]);
    await db.ingest([a!]);
    await db.ingest([b!]);
    // Both arrived behind the cutoff: pruning waits until the cutoff passes their arrival, so
    // whatever else travels with them arrives before anything they concern is pruned.
    t.is(count(db), 2);
    t.is(db.stats().pruningPausedUntil, T0 + 120 * MIN);
    t.true(db.explain(MessageId.fromBytes(decodeEnvelope(a!).id.bytes)).keptBecause.some((line) => line.startsWith('pruning is paused')));
    clock.advance(80 * MIN);
    db.advanceCutoff();
    t.is(count(db), 1);
    t.is(db.stats().pruningPausedUntil, 0);
    await db.close();
  }
  {
    const clock = new FakeClock(T0 + 120 * MIN);
    const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock, ...settings });
    const [late, stored] = await remote<AddEvent, typeof Add>(Add, applyAdd, [[T0, { set: 0 }], [T0 + 120 * MIN, { set: 0 }]]);
    await db.ingest([stored!]);
    await db.ingest([late!]);
    t.is(count(db), 2);
    await db.close();
  }
});

// SYNC: Inc reads both fields and writes both; Reset writes both without reading.
const Sync = s.object({ counter: s.u32(), sum: s.u32() });
type SyncEvent = { inc: number } | { reset: true };
function applySync(event: SyncEvent, root: s.View<typeof Sync>): void {
  if ('inc' in event) {
    root.counter += 1;
    root.sum += event.inc;
  } else {
    root.counter = 1;
    root.sum = 1;
  }
}

test('17: an overwrite that read nothing waits for the cutoff; then the cutoff hash is the XOR of what is left', async (t) => {
  const clock = new FakeClock(Date.UTC(2020, 0, 1, 0, 1));
  const db = await open<SyncEvent, typeof Sync>(Sync, applySync, { clock, cutoffIntervalMs: 2 * DAY });
  await db.append({ inc: 1 });
  clock.advance(10_000);
  const reset = await db.append({ reset: true });
  t.is(count(db), 2);
  clock.time = Date.UTC(2024, 0, 2);
  db.advanceCutoff();
  t.deepEqual([...db.messages()].map((m) => m.id.toString()), [reset.toString()]);
  t.deepEqual(Buffer.from(db.cutoffState().hash), Buffer.from(reset.bytes));
  await db.close();
});

test('18: a read chain goes once its last link is overwritten and the cutoff passes', async (t) => {
  const clock = new FakeClock(Date.UTC(2020, 0, 1, 0, 1));
  const db = await open<SyncEvent, typeof Sync>(Sync, applySync, { clock, cutoffIntervalMs: 2 * DAY });
  const inc1 = await db.append({ inc: 1 });
  clock.advance(10_000);
  const inc2 = await db.append({ inc: 2 });
  clock.time = Date.UTC(2020, 0, 2);
  db.advanceCutoff();
  t.is(count(db), 2);
  t.deepEqual(db.explain(inc1).readBy.map(String), [inc2.toString()]);
  clock.time = Date.UTC(2024, 0, 2);
  const reset = await db.append({ reset: true });
  t.is(count(db), 3, 'the reset is not final yet');
  clock.advance(3 * DAY);
  db.advanceCutoff();
  t.deepEqual([...db.messages()].map((m) => m.id.toString()), [reset.toString()]);
  t.deepEqual(db.read((r) => r.export()), { counter: 1, sum: 1 });
  await db.close();
});

test('19: rotation: 75 × (50 Add(1), Set(0)) leaves one event', async (t) => {
  const clock = new FakeClock();
  const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock });
  for (let round = 0; round < 75; round++) {
    await db.transaction((tx) => {
      for (let i = 0; i < 50; i++) tx.append({ add: 1 });
      tx.append({ set: 0 });
    });
  }
  t.is(count(db), 75 * 51);
  clock.advance(20 * MIN);
  db.advanceCutoff();
  t.is(count(db), 1);
  t.is(db.read((r) => r.counter), 0);
  await db.close();
});

// OVEC / OMAP: opaque collections.
const OVec = s.object({ items: s.optional(s.opaqueList(s.u32())) });
type OVecEvent = { push: number } | { clear: true } | { destroy: true };
function applyOVec(event: OVecEvent, root: s.View<typeof OVec>): void {
  if ('destroy' in event) {
    root.items = null;
    return;
  }
  // Assigning a plain array imports it (the accessor type has no separate setter type).
  if (root.items === null) (root as { items: unknown }).items = [];
  if ('push' in event) root.items!.push(event.push);
  else root.items!.clear();
}

test('20/23/24: opaque list: clear makes earlier pushes prunable; the clearer stays while it owns the clear marker; destroy ends it', async (t) => {
  const clock = new FakeClock();
  const db = await open<OVecEvent, typeof OVec>(OVec, applyOVec, { clock });
  const first = await db.append({ push: 10 });
  for (const v of [11, 12]) await db.append({ push: v });
  t.is(count(db), 3);
  const clear = await db.append({ clear: true });
  clock.advance(20 * MIN);
  db.advanceCutoff();
  // The first push created the list (it owns the list's presence), the clear owns its clear marker.
  t.deepEqual([...db.messages()].map((m) => m.id.toString()), [first.toString(), clear.toString()]);
  t.true(db.explain(clear).tombstone);
  const destroy = await db.append({ destroy: true });
  t.is(count(db), 3);
  t.true(db.explain(destroy).tombstone);
  clock.advance(DAY);
  db.advanceCutoff();
  // The first push and the clear go together (the clear read the list's presence the first push
  // wrote, and destroyed its element); the destroy stays: it wrote "no list".
  t.deepEqual([...db.messages()].map((m) => m.id.toString()), [destroy.toString()]);
  t.is(db.read((r) => r.items), null);
  await db.close();
});

const OMap = s.object({ items: s.map(s.u32(), s.opaque(s.u32())) });
type OMapEvent = { insert: [number, number] } | { remove: number } | { clear: true };
function applyOMap(event: OMapEvent, root: s.View<typeof OMap>): void {
  if ('insert' in event) root.items.set(event.insert[0], event.insert[1]);
  else if ('remove' in event) root.items.delete(event.remove);
  else root.items.clear();
}

test('25: a map delete is a tombstone; it goes with the entry it deleted once the cutoff passes a later change of the map', async (t) => {
  const clock = new FakeClock();
  const db = await open<OMapEvent, typeof OMap>(OMap, applyOMap, { clock });
  await db.append({ insert: [32, 32] });
  await db.append({ remove: 32 });
  const insert = await db.append({ insert: [33, 33] });
  const last = await db.append({ remove: 33 });
  t.is(db.stats().tombstones, 2);
  clock.advance(DAY);
  db.advanceCutoff();
  // The spec derives 0; here the last delete stays: it owns the map's membership ("33 is absent"),
  // which a later lookup that misses reads. And the insert it deleted stays with it: the delete
  // found the key (a read of its inserter); a replay without the insert would miss, own nothing
  // and be pruned, so the two stored sets would differ.
  t.deepEqual([...db.messages()].map((m) => m.id.toString()), [insert.toString(), last.toString()]);
  t.deepEqual(db.explain(last).keptBecause, ['it wrote 1 current value of the view', 'it deleted data of 1 stored event (a tombstone)']);
  t.deepEqual(db.explain(insert).keptBecause, ['1 stored event read data it wrote']);
  t.deepEqual(db.read((r) => r.items.export()), new Map());
  await db.close();
});

test('a tombstone stays while the writer of what it deleted is stored (a replay would bring the data back)', async (t) => {
  const Two = s.object({ a: s.map(s.string(), s.u32()), b: s.u32() });
  type TwoEvent = { both: true } | { delete: true };
  const applyTwo = (event: TwoEvent, root: s.View<typeof Two>) => {
    if ('both' in event) {
      root.a.set('k', 1);
      root.b = 1;
    } else root.a.delete('k');
  };
  const clock = new FakeClock();
  const db = await open<TwoEvent, typeof Two>(Two, applyTwo, { clock });
  const writer = await db.append({ both: true });
  const deleter = await db.append({ delete: true });
  clock.advance(DAY);
  db.advanceCutoff();
  t.is(count(db), 2);
  t.deepEqual(db.explain(deleter).deletedDataOf.map(String), [writer.toString()]);
  await db.close();
});

test('26/23: map clear: the previous clearer goes when a later clear takes the marker', async (t) => {
  const clock = new FakeClock();
  const db = await open<OMapEvent, typeof OMap>(OMap, applyOMap, { clock });
  await db.append({ insert: [42, 43] });
  await db.append({ clear: true });
  await db.append({ clear: true });
  clock.advance(DAY);
  db.advanceCutoff();
  t.is(count(db), 1);
  await db.close();
});

// The issue tracker of the spec (scenario 27, 33).
const Tracker = s.object({ issues: s.map(s.string(), s.object({ title: s.string(), text: s.string() })) });
type TrackerEvent = { add: string } | { append: string; text: string } | { remove: string };
function applyTracker(event: TrackerEvent, root: s.View<typeof Tracker>): void {
  if ('add' in event) root.issues.set(event.add, { title: event.add, text: '' });
  else if ('append' in event) {
    const issue = root.issues.get(event.append);
    if (issue !== undefined) issue.text = issue.text + event.text;
  } else root.issues.delete(event.remove);
}

test('27: an event that changed nothing goes once the cutoff passes it (its no-op depended on state)', async (t) => {
  const clock = new FakeClock();
  const db = await open<TrackerEvent, typeof Tracker>(Tracker, applyTracker, { clock });
  const noop = await db.append({ append: 'missing', text: 'x' });
  t.is(count(db), 1);
  t.is(db.explain(noop).owns, 0);
  clock.advance(20 * MIN);
  db.advanceCutoff();
  t.is(count(db), 0);
  await db.close();
});

test('28: list pushes form a chain that clear breaks', async (t) => {
  const Vec = s.object({ v: s.list(s.u32()) });
  type VecEvent = { push: number } | { clear: true };
  const applyVec = (event: VecEvent, root: s.View<typeof Vec>) => {
    if ('push' in event) root.v.push(event.push);
    else root.v.clear();
  };
  const clock = new FakeClock();
  const db = await open<VecEvent, typeof Vec>(Vec, applyVec, { clock });
  await db.append({ push: 1 });
  await db.append({ push: 2 });
  await db.append({ clear: true });
  t.is(count(db), 3);
  clock.advance(20 * MIN);
  db.advanceCutoff();
  t.is(count(db), 1);
  t.deepEqual(db.read((r) => r.v.export()), []);
  await db.close();
});

test('29: two peers holding the same events compute the same cutoff hash, also after pruning', async (t) => {
  const frames = await remote<AddEvent, typeof Add>(Add, applyAdd, [
    [T0, { set: 1 }],
    [T0 + 1000, { add: 1 }],
    [T0 + 2000, { set: 5 }],
    [T0 + 3000, { set: 6 }],
  ]);
  const states = [];
  for (const order of [[0, 1, 2, 3], [3, 1, 0, 2]]) {
    const clock = new FakeClock(T0 + 5000);
    const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock });
    for (const i of order) await db.ingest([frames[i]!]);
    clock.advance(DAY);
    db.advanceCutoff();
    states.push({ stored: count(db), state: db.cutoffState() });
    await db.close();
  }
  t.is(states[0]!.stored, 1);
  t.deepEqual(states[0], states[1]);
  t.is(compareCutoffs(states[0]!.state, states[1]!.state, MIN), 'same');
});

test('30: a live event read by a pruned reader survives, also after a rebuild', async (t) => {
  const AB = s.object({ a: s.u32(), b: s.opaque(s.u32()) });
  type ABEvent = 'm1' | 'm2' | 'm3';
  const applyAB = (event: ABEvent, root: s.View<typeof AB>) => {
    if (event === 'm1') root.a = 1;
    else if (event === 'm2') root.b = root.a + 1;
    else root.b = 5;
  };
  const clock = new FakeClock();
  const dir = tempDir();
  const openAB = () => Database.open<ABEvent, typeof AB>({ path: dir, root: AB, now: clock.now, apply: applyAB });
  const db = await openAB();
  const m1 = await db.append('m1');
  const m2 = await db.append('m2');
  const m3 = await db.append('m3');
  clock.advance(DAY);
  db.advanceCutoff();
  t.deepEqual([...db.messages()].map((m) => m.id.toString()), [m1.toString(), m3.toString()]);
  t.false(db.explain(m2).stored);
  t.deepEqual(db.explain(m1).readBy, []);
  await db.compact();
  t.is(db.read((r) => r.a), 1);
  t.is(count(db), 2);
  await db.close();
});

test('31/32: nominal cutoff values, and the cutoff never moves back', async (t) => {
  t.is(nominalCutoff(T0, 15 * MIN), Date.UTC(2019, 11, 31, 23, 44));
  t.is(nominalCutoff(T0 + 120 * MIN, 60 * MIN), T0 + 54 * MIN);
  const clock = new FakeClock(T0 + DAY);
  const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock });
  const reached = db.cutoffTime;
  clock.time = T0;
  await db.append({ set: 1 });
  t.is(db.cutoffTime, reached);
  await db.close();
});

test('33: events older than the cutoff are stored without parents, never heads, and pruned when final once the hold ends', async (t) => {
  const clock = new FakeClock(T0 + DAY);
  const db = await open<TrackerEvent, typeof Tracker>(Tracker, applyTracker, { clock });
  const frames = await remote<TrackerEvent, typeof Tracker>(Tracker, applyTracker, [
    [T0 + 1 * MIN, { add: 'heading2' }],
    [T0 + 61 * MIN, { append: 'heading2', text: 'more' }],
    [T0 + 62 * MIN, { add: 'bfgd' }],
    [T0 + 63 * MIN, { remove: 'bfgd' }],
    [T0 + 64 * MIN, { add: '4' }],
    [T0 + 240 * MIN, { add: '5' }],
  ]);
  for (const frame of frames) await db.ingest([frame]);
  t.deepEqual(db.heads(), []);
  t.is(count(db), 6);
  clock.advance(DAY);
  db.advanceCutoff();
  const times = [...db.messages()].map((m) => (m.id.timestamp - T0) / MIN);
  t.deepEqual(times, [1, 61, 64, 240]);
  t.true([...db.messages()].every((m) => m.parents.length === 0));
  await db.close();
});

test('34/35: comparing cutoff states: one stride apart agrees, more is a clock problem', (t) => {
  const a = { time: T0, hash: new Uint8Array(16), previousTime: T0 - MIN, previousHash: new Uint8Array(16) };
  const b = { time: T0 + MIN, hash: Uint8Array.of(1, ...new Uint8Array(15)), previousTime: T0, previousHash: new Uint8Array(16) };
  t.is(compareCutoffs(a, b, MIN), 'same');
  t.is(compareCutoffs(b, a, MIN), 'same');
  t.is(compareCutoffs(a, { ...b, previousHash: b.hash }, MIN), 'differ');
  t.is(compareCutoffs(a, { ...b, time: T0 + 3 * MIN }, MIN), 'peer-ahead');
  t.is(compareCutoffs({ ...b, time: T0 + 3 * MIN }, a, MIN), 'peer-behind');
});

test('36: with autoPrune off the cutoff never advances and nothing is pruned', async (t) => {
  const clock = new FakeClock();
  const db = await open<AddEvent, typeof Add>(Add, applyAdd, { clock, autoPrune: false });
  await db.append({ set: 1 });
  await db.append({ set: 2 });
  clock.advance(365 * DAY);
  db.advanceCutoff();
  t.is(count(db), 2);
  t.is(db.cutoffTime, 0);
  t.true(db.explain([...db.messages()][0]!.id).keptBecause.includes('autoPrune is off'));
  await db.close();
});

test('opened for inspection (pruning off, INSPECTING), explain gives no "autoPrune is off": the owner prunes by its own setting', async (t) => {
  const clock = new FakeClock();
  const dir = tempDir();
  const owner = await Database.open<AddEvent, typeof Add>({ path: dir, root: Add, now: clock.now, apply: applyAdd });
  await owner.append({ set: 1 });
  await owner.append({ set: 2 });
  await owner.close();
  // What `noatun inspect` passes; before, every event it explained was "kept because: autoPrune is off".
  const inspected = await Database.open<AddEvent, typeof Add>({ path: dir, root: Add, now: clock.now, apply: applyAdd, autoPrune: false, [INSPECTING]: true } as never);
  const [first, second] = [...inspected.messages()].map((m) => m.id);
  t.deepEqual(inspected.explain(first!).keptBecause.filter((line) => line.includes('autoPrune')), []);
  t.deepEqual(inspected.explain(second!).keptBecause, ['it wrote 1 current value of the view']);
  await inspected.close();
});

test('prunes survive a late event that rewinds past them, and a reopen', async (t) => {
  const clock = new FakeClock();
  const dir = tempDir();
  const openDir = () => Database.open<AddEvent, typeof Add>({ path: dir, root: Add, now: clock.now, apply: applyAdd });
  let db = await openDir();
  await db.append({ set: 1 });
  await db.append({ set: 2 });
  clock.advance(20 * MIN);
  await db.append({ set: 3 });
  await db.append({ set: 4 });
  t.is(count(db), 3);
  await db.close();
  db = await openDir();
  t.is(db.stats().openedBy, 'clean-load');
  // A late event between set 3 and set 4 rewinds past the prune made at the cutoff move.
  const [late] = await remote<AddEvent, typeof Add>(Add, applyAdd, [[clock.time - 1, { add: 10 }]]);
  await db.ingest([late!]);
  t.is(db.read((r) => r.counter), 4);
  t.is(db.stats().records, count(db));
  clock.advance(20 * MIN);
  db.advanceCutoff();
  t.is(count(db), 1);
  t.is(db.stats().records, 1);
  await db.close();
});

/** The XOR of the ids of `messages` dated before `time`: what a cutoff hash must be. */
function xorBefore(ids: readonly MessageId[], time: number): string {
  const hash = new Uint8Array(16);
  for (const id of ids) if (id.timestamp < time) for (let i = 0; i < 16; i++) hash[i]! ^= id.bytes[i]!;
  return Buffer.from(hash).toString('hex');
}

for (const seed of process.env.NOATUN_SEED === undefined ? [testSeed(), testSeed()] : [testSeed()]) {
  test(`the cutoff hashes are the XOR of the stored ids before each cutoff, through late, backdated, removed and pruned events, reopens with a changed interval or without pruning (seed ${seed})`, async (t) => {
    const random = prng(seed);
    const clock = new FakeClock();
    const dir = tempDir();
    let interval = 10 * MIN;
    let autoPrune = true;
    const openAt = () =>
      Database.open<AddEvent, typeof Add>({ path: dir, root: Add, now: clock.now, cutoffIntervalMs: interval, autoPrune, apply: applyAdd });
    let db = await openAt();
    const late: Uint8Array[] = await remote(
      Add,
      applyAdd,
      Array.from({ length: 30 }, (_, i) => [T0 + i * 97_000, { add: 1 }] as const),
    );
    for (let step = 0; step < 60; step++) {
      const dice = random();
      if (dice < 0.5) {
        await db.transaction((tx) => {
          for (let n = 1 + Math.floor(random() * 5); n > 0; n--) {
            // Mostly now; sometimes backdated, also behind the cutoff.
            const back = random() < 0.3 ? Math.floor(random() * 30 * MIN) : 0;
            tx.append(random() < 0.5 ? { add: 1 } : { set: step }, back === 0 ? undefined : { time: clock.time - back });
          }
        });
      } else if (dice < 0.65 && late.length > 0) {
        await db.ingest(late.splice(0, 1 + Math.floor(random() * 4)));
      } else if (dice < 0.75) {
        const ids = [...db.messages()].map((m) => m.id);
        // (An event another one names as its parent is refused, changing nothing.)
        if (ids.length > 0) {
          await db.remove(ids[Math.floor(random() * ids.length)]!).catch((error: NoatunError) => {
            if (error.code !== 'INVALID_ARGUMENT') throw error;
          });
        }
      } else if (dice < 0.85) {
        await db.close();
        if (random() < 0.3) interval = (5 + Math.floor(random() * 20)) * MIN;
        // Now and then a session without pruning: the cutoff stands still while events come.
        autoPrune = random() >= 0.25;
        db = await openAt();
      }
      clock.advance(Math.floor(random() * 3 * MIN));
      db.advanceCutoff();
      const state = db.cutoffState();
      const ids = [...db.messages()].map((m) => m.id);
      t.is(Buffer.from(state.hash).toString('hex'), xorBefore(ids, state.time), `step ${step}: hash`);
      t.is(Buffer.from(state.previousHash).toString('hex'), xorBefore(ids, state.previousTime), `step ${step}: previous hash`);
    }
    // A last session with pruning, two intervals on: the hashes hold and pruning has run.
    await db.close();
    autoPrune = true;
    db = await openAt();
    clock.advance(2 * interval);
    db.advanceCutoff();
    const state = db.cutoffState();
    const ids = [...db.messages()].map((m) => m.id);
    t.is(Buffer.from(state.hash).toString('hex'), xorBefore(ids, state.time), 'at the end: hash');
    t.is(Buffer.from(state.previousHash).toString('hex'), xorBefore(ids, state.previousTime), 'at the end: previous hash');
    t.true(db.stats().pruned > 0, 'pruning ran');
    await db.close();
  });
}
