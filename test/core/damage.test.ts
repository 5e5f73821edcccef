/**
 * Damaged files: a view file damaged at any offset (every 512th byte), truncated or deleted
 * reopens with the view rebuilt from the log; a damaged undo history is never used for a rewind;
 * a damaged run of the event log is refused with `CORRUPT_FILE`, never another error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { open as lmdbOpen } from 'lmdb';
import { Database, messagePackCodec, NoatunError, s } from '../../src/index.js';
import { FakeClock, prng, removeTempDirs, T0, tempDir, testSeed } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const Root = s.object({
  total: s.u32(),
  names: s.map(s.string(), s.object({ n: s.u32(), note: s.string() })),
  order: s.list(s.string()),
});
type Event = { name: string; n: number };

function open(dir: string, clock = new FakeClock()) {
  return Database.open<Event, typeof Root>({
    path: dir,
    root: Root,
    now: clock.now,
    autoPrune: false,
    apply(event, root) {
      root.total += event.n;
      root.names.set(event.name, { n: event.n, note: `note for ${event.name}`.repeat(3) });
      root.order.push(event.name);
    },
  });
}

function replay(events: Event[]) {
  const names = new Map<string, { n: number; note: string }>();
  let total = 0;
  for (const e of events) {
    total += e.n;
    names.set(e.name, { n: e.n, note: `note for ${e.name}`.repeat(3) });
  }
  return { total, names: [...names].sort(), order: events.map((e) => e.name) };
}

async function snapshot(db: Awaited<ReturnType<typeof open>>) {
  const view = db.read((root) => root.export());
  const codec = messagePackCodec<Event>();
  const events = [...db.messages()].map((m) => codec.decode(m.payload));
  return { view: { total: view.total, names: [...view.names].sort(), order: view.order }, expected: replay(events) };
}

async function template(): Promise<string> {
  const dir = tempDir();
  const clock = new FakeClock();
  const db = await open(dir, clock);
  for (let i = 0; i < 300; i++) {
    clock.advance(100);
    await db.append({ name: `name-${i % 40}`, n: i });
  }
  await db.close();
  return dir;
}

test('a view damaged at any 512th byte reopens equal to a replay of the log', async (t) => {
  const source = await template();
  const viewFile = path.join(source, 'view', 'view.bin');
  const size = fs.statSync(viewFile).size;
  let rebuilt = 0;
  let offsets = 0;
  for (let offset = 0; offset < size; offset += 512) {
    const dir = tempDir();
    fs.cpSync(source, dir, { recursive: true });
    const file = path.join(dir, 'view', 'view.bin');
    const fd = fs.openSync(file, 'r+');
    const byte = Buffer.alloc(1);
    fs.readSync(fd, byte, 0, 1, offset);
    byte[0]! ^= 0x5a;
    fs.writeSync(fd, byte, 0, 1, offset);
    fs.closeSync(fd);
    const db = await open(dir);
    if (db.stats().openedBy === 'rebuild') rebuilt++;
    const { view, expected } = await snapshot(db);
    t.deepEqual(view, expected, `damage at byte ${offset}`);
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
    offsets++;
  }
  t.log(`${offsets} offsets damaged, ${rebuilt} rebuilt (the others fell in unused space)`);
  t.true(rebuilt > 0);
});

test('a truncated or deleted view file is rebuilt; a deleted journal only loses undo history', async (t) => {
  const source = await template();
  for (const [damage, openedBy] of [
    [(file: string) => fs.truncateSync(file, 1000), 'rebuild'],
    [(file: string) => fs.truncateSync(file, 0), 'rebuild'],
    [(file: string) => fs.rmSync(file), 'rebuild'],
    [(file: string) => fs.rmSync(path.join(path.dirname(file), 'journal.bin')), 'clean-load'],
  ] as const) {
    const dir = tempDir();
    fs.cpSync(source, dir, { recursive: true });
    damage(path.join(dir, 'view', 'view.bin'));
    const db = await open(dir);
    t.is(db.stats().openedBy, openedBy);
    const { view, expected } = await snapshot(db);
    t.deepEqual(view, expected);
    await db.close();
  }
});

test('an undo journal cut to any length up to past its header, or to a length between two words, reopens with the view right', async (t) => {
  // (Cut shorter than its 64-byte header, it threw a RangeError at every open.)
  const source = await template();
  const length = fs.statSync(path.join(source, 'view', 'journal.bin')).size;
  for (const bytes of [1, 7, 8, 63, 64, 65, 70, 4097, length - 1]) {
    const dir = tempDir();
    fs.cpSync(source, dir, { recursive: true });
    fs.truncateSync(path.join(dir, 'view', 'journal.bin'), bytes);
    const db = await open(dir);
    const { view, expected } = await snapshot(db);
    t.deepEqual(view, expected, `journal cut to ${bytes} bytes`);
    await db.close();
  }
});

test('a plain file where the view directory goes is replaced by a view rebuilt from the log', async (t) => {
  // (It was a plain ENOTDIR error out of the open, at every open.)
  const source = await template();
  const dir = tempDir();
  fs.cpSync(source, dir, { recursive: true });
  fs.rmSync(path.join(dir, 'view'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'view'), 'not a view');
  const db = await open(dir);
  t.is(db.stats().openedBy, 'rebuild');
  const { view, expected } = await snapshot(db);
  t.deepEqual(view, expected);
  await db.close();
});

test('damaged undo history is not used: a late event then rebuilds and the view stays right', async (t) => {
  const source = await template();
  const journal = path.join(source, 'view', 'journal.bin');
  const bytes = fs.readFileSync(journal);
  // Damage entries, not the header (a damaged header is refused outright and rebuilt).
  for (let at = 4096; at < 8192; at += 16) bytes[at]! ^= 0xff;
  fs.writeFileSync(journal, bytes);
  const db = await open(source);
  t.is(db.stats().openedBy, 'clean-load');
  const late = await open(tempDir(), new FakeClock(T0 + 5_050));
  await late.append({ name: 'late', n: 1000 });
  await db.ingest([...late.messages()].map((m) => m.bytes));
  t.is(db.stats().rebuilds, 1);
  const { view, expected } = await snapshot(db);
  t.deepEqual(view, expected);
  await Promise.all([db.close(), late.close()]);
});

test('a run of the event log damaged at random (bytes changed, cut short, lengthened) is refused with CORRUPT_FILE, or the rebuild drops what is damaged and the view is a replay of the rest; never another error', async (t) => {
  const seed = testSeed();
  const random = prng(seed);
  const source = await template();
  const keys = await (async () => {
    const env = lmdbOpen({ path: path.join(source, 'log.mdb'), compression: false, maxDbs: 8, readOnly: true });
    const runs = env.openDB<Buffer, Buffer>({ name: 'runs', encoding: 'binary', keyEncoding: 'binary' });
    const found = [...runs.getKeys()].map((key) => Buffer.from(key as Buffer));
    await env.close();
    return found;
  })();
  t.true(keys.length > 1, 'the template has several runs');
  const outcomes = { refused: 0, equal: 0, dropped: 0 };
  for (let trial = 0; trial < 40; trial++) {
    const dir = tempDir();
    fs.cpSync(source, dir, { recursive: true });
    // Without the view the open replays every run, checking each envelope against its id. (A
    // view that loads as it is trusts the log: what it serves is checked by the peers it reaches.)
    fs.rmSync(path.join(dir, 'view'), { recursive: true });
    const env = lmdbOpen({ path: path.join(dir, 'log.mdb'), compression: false, maxDbs: 8 });
    const runs = env.openDB<Buffer, Buffer>({ name: 'runs', encoding: 'binary', keyEncoding: 'binary' });
    const key = keys[Math.floor(random() * keys.length)]!;
    let run = Buffer.from(runs.getBinary(key)!);
    const how = Math.floor(random() * 3);
    if (how === 0) {
      for (let i = 1 + Math.floor(random() * 4); i > 0; i--) run[Math.floor(random() * run.length)]! ^= 1 + Math.floor(random() * 255);
    } else if (how === 1) {
      run = run.subarray(0, Math.floor(random() * run.length));
    } else {
      run = Buffer.concat([run, Buffer.from(Array.from({ length: 1 + Math.floor(random() * 64) }, () => Math.floor(random() * 256)))]);
    }
    await runs.put(key, run);
    await env.close();
    const what = `seed ${seed}, trial ${trial}: run ${key.toString('hex')} ${['with bytes changed', 'cut short', 'lengthened'][how]}`;
    try {
      const db = await open(dir);
      try {
        const { view, expected } = await snapshot(db);
        t.deepEqual(view, expected, what);
        outcomes.equal++;
        outcomes.dropped += db.discarded().length;
      } finally {
        await db.close();
      }
    } catch (error) {
      t.true(error instanceof NoatunError && error.code === 'CORRUPT_FILE', `${what}: ${String(error)}`);
      outcomes.refused++;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  t.log(`seed ${seed}: ${outcomes.refused} refused, ${outcomes.equal} read equal to a replay (${outcomes.dropped} damaged events dropped)`);
});

test('a log whose metadata lost a record that every commit writes (a damaged metadata page) is refused with CORRUPT_FILE, and nothing is changed', async (t) => {
  // Zeroed records in LMDB's metadata page read as missing keys (LMDB does not notice): before
  // this, a missing count made the open throw the view away and make an empty one, and the
  // ordinals of new events started from 1 again beside the stored ones, for good.
  const source = await template();
  for (const name of ['log.count', 'log.format', 'nextOrdinal', 'heads', 'logId']) {
    const dir = tempDir();
    fs.cpSync(source, dir, { recursive: true });
    const env = lmdbOpen({ path: path.join(dir, 'log.mdb'), noSubdir: true, maxDbs: 8 });
    await env.openDB({ name: 'meta', encoding: 'msgpack' }).remove(name);
    await env.close();
    const files = () => ['log.mdb', 'view/view.bin'].map((file) => fs.readFileSync(path.join(dir, file)).toString('base64'));
    const before = files();
    const error = await t.throwsAsync(open(dir), undefined, name);
    t.true(error instanceof NoatunError, name);
    t.is((error as NoatunError).code, 'CORRUPT_FILE', name);
    t.regex(error!.message, /metadata is damaged/, name);
    t.deepEqual(files(), before, `${name}: the refused open changed a file`);
  }
});

test("a view from another copy of the database, or a log restored from an older backup, is not trusted: the view is rebuilt", async (t) => {
  // Two copies of one database share the log's id, and may hold as many events: the view of one,
  // moved beside the other's log, was trusted as it was (the log's write token tells them apart).
  const clock = new FakeClock();
  const a = tempDir();
  let db = await open(a, clock);
  await db.append({ name: 'first', n: 1 });
  await db.close();
  const b = tempDir();
  fs.cpSync(a, b, { recursive: true });
  const backup = fs.readFileSync(path.join(a, 'log.mdb'));
  for (const [dir, n] of [
    [a, 10],
    [b, 500],
  ] as const) {
    db = await open(dir, clock);
    clock.advance(1000);
    await db.append({ name: `from ${dir === a ? 'a' : 'b'}`, n });
    await db.close();
  }
  // b's view beside a's log: the same id and as many events.
  fs.rmSync(path.join(a, 'view'), { recursive: true });
  fs.cpSync(path.join(b, 'view'), path.join(a, 'view'), { recursive: true });
  db = await open(a, clock);
  t.is(db.stats().openedBy, 'rebuild');
  t.is(db.read((root) => root.total), 11);
  let { view, expected } = await snapshot(db);
  t.deepEqual(view, expected);
  await db.close();
  // a's log from before its last session, beside the view of after it.
  fs.writeFileSync(path.join(a, 'log.mdb'), backup);
  db = await open(a, clock);
  t.is(db.stats().openedBy, 'rebuild');
  t.is(db.read((root) => root.total), 1);
  ({ view, expected } = await snapshot(db));
  t.deepEqual(view, expected);
  await db.close();
  // A clean close and a reopen, with nothing in between, trusts the view.
  db = await open(a, clock);
  t.is(db.stats().openedBy, 'clean-load');
  await db.close();
});
