/**
 * Mistakes a developer makes, caught where they are made: an `apply` that is not deterministic
 * (with `checkDeterminism`), payloads MessagePack would change or cannot carry (`PAYLOAD_INVALID`
 * with the path), values that do not fit a field (`VALUE_INVALID` naming the field) and
 * assignments to fields the schema does not have (`UNKNOWN_FIELD`).
 */
import * as fs from 'node:fs';
import test from 'ava';
import { assertSupportedNode } from '../../src/errors.js';
import { Database, defineApp, type MessageId, NoatunError, s } from '../../src/index.js';
import { FakeClock, removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const Employee = s.object({ name: s.string(), salary: s.u32() });
const Root = s.object({ stamp: s.f64(), employees: s.map(s.string(), Employee), count: s.u32() });
type Ev = { kind: 'clock' } | { kind: 'dice' } | { kind: 'date' } | { kind: 'hire'; name: string; salary: number } | { kind: 'typo' } | { kind: 'ok'; payload?: unknown };

function apply(e: Ev, root: s.View<typeof Root>): void {
  if (e.kind === 'clock') root.stamp = Date.now();
  // The whole double, not a number of 1 to 1000: the check's other world draws other numbers, and
  // one in a thousand of them used to land on the same integer (the check then passed it).
  else if (e.kind === 'dice') root.stamp = Math.random();
  // biome-ignore lint/complexity/useDateNow: the constructor without arguments is what is checked
  else if (e.kind === 'date') root.stamp = new Date().getTime();
  else if (e.kind === 'hire') root.employees.set(e.name, { name: e.name, salary: e.salary });
  else if (e.kind === 'typo') (root as unknown as { cuont: number }).cuont = 1;
  else root.count += 1;
}

function open(extra: { checkDeterminism?: boolean; onNonDeterministicApply?: (id: MessageId) => void } = {}) {
  return Database.open<Ev, typeof Root>({ path: tempDir(), root: Root, apply, now: new FakeClock().now, ...extra });
}

test('a Node.js older than 22.12 is refused with RUNTIME_UNSUPPORTED (Database.open checks the running one)', (t) => {
  for (const version of ['20.20.2', '22.11.0', '18.0.0', '0.10.48']) {
    const error = t.throws(() => assertSupportedNode(version));
    t.is((error as NoatunError).code, 'RUNTIME_UNSUPPORTED', version);
    t.regex(error!.message, /22\.12/);
  }
  for (const version of ['22.12.0', '22.18.1', '23.0.0', '24.21.0', '25.1.0-nightly20261201']) t.notThrows(() => assertSupportedNode(version), version);
  t.notThrows(() => assertSupportedNode());
});

test('checkDeterminism refuses an apply that reads Date.now(), new Date() or Math.random(), and stores nothing', async (t) => {
  const db = await open({ checkDeterminism: true });
  await db.append({ kind: 'ok' });
  for (const kind of ['clock', 'date', 'dice'] as const) {
    const error = await t.throwsAsync(db.append({ kind }));
    t.is((error as NoatunError).code, 'NON_DETERMINISTIC_APPLY', kind);
    t.regex((error as Error).message, /ctx\.time/);
  }
  t.is(db.stats().stored, 1);
  t.is(db.read((r) => r.count), 1);
  // A deterministic batch passes, and the globals are back to normal afterwards.
  await db.transaction((tx) => {
    tx.append({ kind: 'hire', name: 'Berg', salary: 30 });
    tx.append({ kind: 'ok' });
  });
  t.is(db.read((r) => r.count), 2);
  // biome-ignore lint/complexity/useDateNow: checks that the constructor is the real one again
  t.true(Math.abs(Date.now() - new Date().getTime()) < 60_000);
  await db.close();
});

test('checkDeterminism reports an event from another peer whose apply differs here, without refusing it', async (t) => {
  const author = await open();
  await author.append({ kind: 'dice' });
  const seen: string[] = [];
  const db = await open({ checkDeterminism: true, onNonDeterministicApply: (id) => seen.push(id.toString()) });
  await db.ingest([...author.messages()].map((m) => m.bytes));
  t.is(db.stats().stored, 1);
  t.deepEqual(seen, [[...author.messages()][0]!.id.toString()]);
  await Promise.all([author.close(), db.close()]);
});

test('payloads MessagePack would change or cannot carry are refused with PAYLOAD_INVALID and the path', async (t) => {
  const db = await open();
  const circular: Record<string, unknown> = {};
  circular.self = circular;
  class Point {
    x = 1;
  }
  const cases: [unknown, RegExp][] = [
    [{ f: () => 1 }, /event\.payload\.f: a function/],
    [new Map([[1, 2]]), /event\.payload: a Map/],
    [{ tags: new Set(['a']) }, /event\.payload\.tags: a Set/],
    [[new Point()], /event\.payload\[0\]: a Point instance/],
    [circular, /event\.payload\.self: a circular reference/],
    [{ s: Symbol('x') }, /event\.payload\.s: a Symbol/],
    [{ wide: 2n ** 70n }, /event\.payload\.wide: 1180591620717411303424n does not fit in 64 bits/],
    [new Float32Array(2), /Float32Array/],
    // Before: accepted, and every apply (the author's too) saw U+FFFD in its place.
    [{ name: 'a\ud800b' }, /event\.payload\.name: a string with a lone surrogate .* read back with U\+FFFD/],
    [['ok', '\udc00'], /event\.payload\[1\]: a string with a lone surrogate/],
    [{ ['k\ud800']: 1 }, /event\.payload\.k\ud800: its key: a string with a lone surrogate/],
    // Before: accepted, and every apply saw the key renamed "__proto_".
    [JSON.parse('{"a": {"__proto__": {"x": 1}}}'), /event\.payload\.a\.__proto__: a key "__proto__" is read back as "__proto_"/],
  ];
  for (const [payload, message] of cases) {
    const error = await t.throwsAsync(db.append({ kind: 'ok', payload }));
    t.is((error as NoatunError).code, 'PAYLOAD_INVALID');
    t.regex((error as Error).message, message);
  }
  t.is(db.stats().stored, 0);
  // What round-trips is accepted.
  await db.append({ kind: 'ok', payload: { n: 1.5, big: 2n ** 60n, bytes: new Uint8Array([1]), when: new Date(0), list: [null, 'x', true], nested: { a: [1] }, pair: '😀' } });
  t.is(db.stats().stored, 1);
  await db.close();
});

test('a value that does not fit names its field; an unknown field is refused', async (t) => {
  const db = await open();
  const error = await t.throwsAsync(db.append({ kind: 'hire', name: 'Andersen', salary: -1 }));
  t.is((error as NoatunError).code, 'APPLY_FAILED');
  const cause = (error as Error).cause as NoatunError;
  t.is(cause.code, 'VALUE_INVALID');
  t.is(cause.message, '["Andersen"].salary: -1 is not a valid u32');
  const typo = await t.throwsAsync(db.append({ kind: 'typo' }));
  t.is(((typo as Error).cause as NoatunError).code, 'UNKNOWN_FIELD');
  t.regex(((typo as Error).cause as Error).message, /"cuont" is not a field of this object \(it has "stamp", "employees", "count"\)/);
  t.is(db.stats().stored, 0);
  t.true(error instanceof NoatunError);
  await db.close();
});

test('a set of a new map key whose leaf value is refused leaves no key, in an apply that catches the error; the same after a rebuild', async (t) => {
  // Before: the key went in first, with the type's zero: `has` and `size` counted an entry whose
  // write was refused.
  const Maps = s.object({ counts: s.map(s.string(), s.u32()), names: s.map(s.string(), s.string()), log: s.list(s.string()) });
  const apply = (e: { key: string; count: unknown; name: unknown }, root: s.View<typeof Maps>) => {
    for (const write of [() => root.counts.set(e.key, e.count as number), () => root.names.set(e.key, e.name as string)]) {
      try {
        write();
      } catch (error) {
        root.log.push((error as NoatunError).code);
      }
    }
  };
  const dir = tempDir();
  let db = await Database.open<{ key: string; count: unknown; name: unknown }, typeof Maps>({ path: dir, root: Maps, apply });
  await db.append({ key: 'a', count: -1, name: 5 });
  await db.append({ key: 'b', count: 2, name: 'bee' });
  const expected = { counts: new Map([['b', 2]]), names: new Map([['b', 'bee']]), log: ['VALUE_INVALID', 'VALUE_INVALID'] };
  t.deepEqual(db.read((root) => root.export()), expected);
  t.deepEqual(
    db.read((root) => [root.counts.has('a'), root.counts.size, root.names.has('a'), root.names.size]),
    [false, 1, false, 1],
  );
  await db.close();
  db = await Database.open({ path: dir, root: Maps, apply, applyVersion: 'rebuilt' });
  t.is(db.stats().openedBy, 'rebuild');
  t.deepEqual(db.read((root) => root.export()), expected);
  await db.close();
});

test('a schema change that every stored event fails with is refused at open (SCHEMA_MISMATCH), unless accepted', async (t) => {
  const dir = tempDir();
  const Old = s.object({ total: s.u32() });
  const old = await Database.open<{ add: number }, typeof Old>({ path: dir, root: Old, apply: (e, r) => void (r.total += e.add) });
  await old.append({ add: 1 });
  await old.append({ add: 2 });
  await old.close();
  // total became a bool: every event writes a number into it, and fails.
  const New = s.object({ total: s.bool() });
  const apply = (e: { add: number }, r: s.View<typeof New>) => {
    r.total = e.add as unknown as boolean;
  };
  const error = await t.throwsAsync(Database.open<{ add: number }, typeof New>({ path: dir, root: New, apply }));
  t.is((error as NoatunError).code, 'SCHEMA_MISMATCH');
  t.regex((error as Error).message, /none of its 2 events applies/);
  const accepted = await Database.open<{ add: number }, typeof New>({ path: dir, root: New, apply, acceptSchemaChange: true });
  t.is(accepted.stats().failedApplies, 2);
  await accepted.close();
  // The old schema still opens it.
  const again = await Database.open<{ add: number }, typeof Old>({ path: dir, root: Old, apply: (e, r) => void (r.total += e.add) });
  t.is(again.read((r) => r.total), 3);
  await again.close();
});

test("a database opened with another app than the one whose events it holds is refused (SCHEMA_MISMATCH) and keeps its events", async (t) => {
  // The other app's apply did nothing with the notes: they owned nothing, and the open's pruning
  // removed all of them for good (`noatun inspect --app` of the wrong module did the same).
  const dir = tempDir();
  const notes = defineApp({
    name: 'notes',
    root: s.object({ notes: s.list(s.string()) }),
    apply: (e: { text: string }, r) => void r.notes.push(e.text),
  });
  const todo = defineApp({
    name: 'todo',
    root: s.object({ open: s.map(s.string(), s.bool()) }),
    apply: (e: { title?: string }, r) => {
      if (e.title !== undefined) r.open.set(e.title, true);
    },
  });
  const hourAgo = Date.now() - 60 * 60_000;
  let db = await Database.open({ ...notes, path: dir });
  for (let i = 0; i < 3; i++) await db.append({ text: `note ${i}` }, { time: hourAgo + i });
  await db.close();
  const before = fs.readFileSync(`${dir}/log.mdb`);
  const error = await t.throwsAsync(Database.open({ ...todo, path: dir }));
  t.is((error as NoatunError).code, 'SCHEMA_MISMATCH');
  t.regex((error as Error).message, /holds the events of the app 'notes', not of 'todo'/);
  t.deepEqual(fs.readFileSync(`${dir}/log.mdb`), before, 'the refused open changed the log');
  db = await Database.open({ ...notes, path: dir });
  t.deepEqual(db.read((r) => r.notes.export()), ['note 0', 'note 1', 'note 2']);
  await db.close();
  // An open that names no app is not checked (it cannot be); one that names one records it.
  const plain = tempDir();
  db = await Database.open({ root: notes.root, apply: notes.apply, path: plain });
  await db.append({ text: 'x' });
  await db.close();
  const named = await Database.open({ ...notes, path: plain });
  await named.close();
  await t.throwsAsync(Database.open({ ...todo, path: plain }), { code: 'SCHEMA_MISMATCH' as never });
});

test('open refuses a clock, a codec, an interval, a flag, a callback, a size, limits, a root, an unknown option or a path that cannot work, with what is wrong, and makes nothing on disk', async (t) => {
  const base = { root: Root, apply };
  const refused = async (options: Record<string, unknown>, message: RegExp, name: string, code: string = 'INVALID_ARGUMENT') => {
    const path = `${tempDir()}/db`;
    const error = await t.throwsAsync(Database.open<Ev, typeof Root>({ path, ...base, ...options } as never), undefined, name);
    t.is((error as NoatunError).code as string, code, name);
    t.regex((error as Error).message, message, name);
    // (Before: a bad root or bad inbox limits were refused after the lock, the log and the view's
    // directory were made.)
    t.false(fs.existsSync(path), `${name}: the refused open made ${path}`);
  };
  // A misspelt option was ignored: `autoprune: false` kept pruning on.
  await refused({ autoprune: false }, /no option "autoprune" \(did you mean autoPrune\?\)/, 'misspelt option');
  await refused({ cutoffInterval: 120_000 }, /no option "cutoffInterval" \(did you mean cutoffIntervalMs\?\)/, 'option two letters short');
  await refused({ autoPrun: false }, /no option "autoPrun" \(did you mean autoPrune\?\)/, 'option a letter short');
  await refused({ colour: 'red' }, /no option "colour"$/, 'unknown option');
  await refused({ inbox: null }, /inbox must be an object of limits, got null/, 'inbox null');
  await refused({ inbox: 'big' }, /inbox must be an object of limits, got string/, 'inbox string');
  await refused({ inbox: { maxParkedEvents: -1 } }, /maxParkedEvents must be a positive number/, 'negative limit');
  // (A misspelt limit was ignored, the default left in force.)
  await refused({ inbox: { maxParkedEvent: 10 } }, /^inbox has no option "maxParkedEvent" \(did you mean maxParkedEvents\?\)$/, 'misspelt inbox limit');
  await refused({ inbox: { maxParkedEvents: 10, speed: 1 } }, /^inbox has no option "speed"$/, 'unknown inbox limit');
  await refused({ maxViewBytes: 2 ** 40 }, /maxViewBytes must be in/, 'maxViewBytes past what a view addresses');
  await refused({ root: s.u32() }, /the root of a view must be an s\.object/, 'root not an object', 'SCHEMA_INVALID');
  await refused({ root: {} }, /the root of a view must be an s\.object/, 'root not a schema', 'SCHEMA_INVALID');
  // A clock returning a string, NaN, infinity or a time before 1970.
  await refused({ now: () => '1767225600000' }, /now\(\) returned "1767225600000"/, 'string clock');
  await refused({ now: () => Number.NaN }, /now\(\) returned NaN/, 'NaN clock');
  await refused({ now: () => Number.POSITIVE_INFINITY }, /now\(\) returned Infinity/, 'infinite clock');
  await refused({ now: () => -1000 }, /now\(\) returned -1000/, 'negative clock');
  await refused({ now: Date.UTC(2026, 0, 1) }, /now must be a function/, 'clock not a function');
  // A codec without encode or decode, or with a copy that is not a function.
  await refused({ codec: { encode: (e: unknown) => Buffer.from(JSON.stringify(e)) } }, /codec\.decode must be a function/, 'no decode');
  await refused({ codec: { encode: 5, decode: () => ({}) } }, /codec\.encode must be a function/, 'encode not a function');
  await refused({ codec: { encode: () => new Uint8Array(), decode: () => ({}), copy: true } }, /codec\.copy must be a function/, 'copy not a function');
  // An interval that is not a whole number of ms.
  await refused({ cutoffIntervalMs: 1e300 }, /whole number of ms/, 'huge interval');
  await refused({ cutoffIntervalMs: 120_000.5 }, /whole number of ms/, 'fractional interval');
  // Flags that are not booleans (a truthy string was taken), callbacks that are not functions
  // (they threw when first called, in a rebuild), sizes too small or not numbers (VIEW_FULL).
  await refused({ autoPrune: 'no' }, /autoPrune must be true or false, got "no"/, 'autoPrune string');
  await refused({ checkDeterminism: 1 }, /checkDeterminism must be true or false/, 'checkDeterminism number');
  await refused({ acceptSchemaChange: 'yes' }, /acceptSchemaChange must be true or false/, 'acceptSchemaChange string');
  await refused({ onProgress: 5 }, /onProgress must be a function, got 5/, 'onProgress number');
  await refused({ onNonDeterministicApply: {} }, /onNonDeterministicApply must be a function/, 'listener object');
  await refused({ maxViewBytes: '1' }, /maxViewBytes must be a whole number of bytes, at least 65536, got "1"/, 'maxViewBytes string');
  await refused({ maxUndoBytes: 0 }, /maxUndoBytes must be a whole number of bytes, at least 65536/, 'maxUndoBytes 0');
  for (const options of [null, 'db', 42]) {
    const error = await t.throwsAsync(Database.open(options as never));
    t.is((error as NoatunError).code, 'INVALID_ARGUMENT', String(options));
  }
  // A path that is a file, or lies under one.
  const file = `${tempDir()}/a-file`;
  fs.writeFileSync(file, 'x');
  for (const path of [file, `${file}/db`]) {
    const error = await t.throwsAsync(Database.open<Ev, typeof Root>({ path, ...base }));
    t.is((error as NoatunError).code, 'INVALID_ARGUMENT', path);
    t.regex((error as Error).message, /is a file/);
  }
  // A path with a NUL character (it was SYSTEM_CALL_FAILED, errno 0), and an app name that is no name.
  const nul = await t.throwsAsync(Database.open<Ev, typeof Root>({ path: `${tempDir()}/a\0b`, ...base }));
  t.is((nul as NoatunError).code, 'INVALID_ARGUMENT');
  t.regex((nul as Error).message, /must not hold a NUL character/);
  await refused({ name: '' }, /name \(the app's\) must be a non-empty string/, 'empty app name');
  await refused({ name: 7 }, /name \(the app's\) must be a non-empty string, got 7/, 'app name a number');
  // Where mkdir fails with ENOENT although the parent exists, Node's recursive mkdir retried for
  // ever at full CPU, deaf to signals: the open never returned.
  if (fs.existsSync('/proc/self')) {
    const proc = await t.throwsAsync(Database.open<Ev, typeof Root>({ path: '/proc/no-such-directory/db', ...base }));
    t.is((proc as NoatunError).code, 'SYSTEM_CALL_FAILED');
    t.regex((proc as Error).message, /ENOENT/);
  }
  // What does work: a clock at 0, with fractions of a ms, and a codec of two functions.
  const db = await Database.open<Ev, typeof Root>({
    path: tempDir(),
    ...base,
    now: () => 1.5,
    codec: { encode: (e) => Buffer.from(JSON.stringify(e)), decode: (bytes) => JSON.parse(Buffer.from(bytes).toString()) as Ev },
  });
  await db.append({ kind: 'ok' });
  t.is(db.read((root) => root.count), 1);
  await db.close();
});

test('arguments of the wrong kind are refused with INVALID_ARGUMENT and change nothing; a listener that is not one is refused at subscribe', async (t) => {
  const db = await open();
  try {
    const first = await db.append({ kind: 'ok' });
    const outcome = async (f: () => unknown) => {
      try {
        await f();
        return 'ok';
      } catch (error) {
        return `refused ${(error as NoatunError).code}`;
      }
    };
    const refuses = async (name: string, values: readonly unknown[], call: (v: never) => unknown) => {
      for (const value of values) {
        const shown = typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
        t.is(await outcome(() => call(value as never)), 'refused INVALID_ARGUMENT', `${name}(${shown})`);
      }
    };
    const notIds = [undefined, null, 'abc', 42, {}, { bytes: new Uint8Array(3) }];
    await refuses('explain', notIds, (v) => db.explain(v));
    await refuses('message', notIds, (v) => db.message(v));
    await refuses('remove', notIds, (v) => db.remove(v));
    await refuses('messages after', notIds.slice(1), (v) => [...db.messages({ after: v })]);
    await refuses('append after', notIds.slice(1), (v) => db.append({ kind: 'ok' }, { after: v }));
    await refuses('append before', notIds.slice(1), (v) => db.append({ kind: 'ok' }, { before: v }));
    const notOptions = [null, 'abc', 42];
    await refuses('messages', notOptions, (v) => [...db.messages(v)]);
    await refuses('append options', notOptions, (v) => db.append({ kind: 'ok' }, v));
    await refuses('ingest options', notOptions, (v) => db.ingest([], v));
    await refuses('ingest peer', [null, 42, {}], (v) => db.ingest([], { peer: v }));
    await refuses('ingest', [undefined, null, 42, {}], (v) => db.ingest(v));
    await refuses('advanceCutoff', [null, 'abc', 1.5, {}, Number.NaN], (v) => db.advanceCutoff(v));
    const notFunctions = [undefined, null, 'abc', 42, {}];
    await refuses('transaction', notFunctions, (v) => db.transaction(v));
    await refuses('preview', notFunctions, (v) => db.preview({ kind: 'ok' }, v));
    // read is not checked (the check cost queries 12%): the language's TypeError, and no session
    // is left open.
    for (const value of notFunctions) t.throws(() => db.read(value as never), { instanceOf: TypeError });
    t.is(db.read((root) => root.count), 1, 'a failed read leaves no session open');
    // A listener is checked when it is given: before, one that was not an object was taken, and
    // every later append rejected (after storing its event) when the listener was called.
    await refuses('subscribe', [undefined, null, 'abc', 42, { stored: 'yes' }, { removed: 1 }], (v) => db.subscribe(v));
    // (Before: options that were not an object were taken as none.)
    await refuses('inspectView', [null, 'abc', 42, { maxEntries: -1 }, { maxEntries: 'all' }], (v) => db.inspectView(v));
    // Nothing was stored or changed by any of it, and writes go on as before.
    t.is(db.stats().stored, 1);
    t.is(db.read((root) => root.count), 1);
    await db.append({ kind: 'ok' }, { after: first });
    t.is(db.read((root) => root.count), 2);
  } finally {
    await db.close();
  }
});

/** What an apply may throw: every one of them is a failure of the event, rolled back. */
const thrown: Record<string, { make: () => unknown; recorded: string }> = {
  undefined: { make: () => undefined, recorded: 'undefined' },
  null: { make: () => null, recorded: 'null' },
  'a symbol': { make: () => Symbol('odd'), recorded: 'Symbol(odd)' },
  'an object whose toString throws': {
    make: () => ({
      toString() {
        throw new Error('no');
      },
    }),
    recorded: 'a thrown object that cannot be shown',
  },
  'a revoked proxy': {
    make: () => {
      const { proxy, revoke } = Proxy.revocable({}, {});
      revoke();
      return proxy;
    },
    recorded: 'a thrown object that cannot be shown',
  },
};

test('whatever apply throws (undefined, null, a symbol, an unprintable object, a revoked proxy) fails the event: rolled back, refused at an append, recorded alike on every peer', async (t) => {
  // Before: `throw undefined` was taken for success (the event stored with its writes), and a
  // revoked proxy, or a value whose conversion to a string throws, escaped the projector, so a
  // peer's whole batch was refused and replication stalled on it.
  const Counter = s.object({ count: s.u32() });
  type Throw = { kind: string };
  const throwing = (e: Throw, root: s.View<typeof Counter>) => {
    root.count += 1;
    if (e.kind !== 'ok') {
      root.count += 100;
      throw thrown[e.kind]!.make();
    }
  };
  const clock = new FakeClock();
  const open = (apply: (e: Throw, root: s.View<typeof Counter>) => void) =>
    Database.open<Throw, typeof Counter>({ path: tempDir(), root: Counter, apply, now: clock.now });
  const local = await open(throwing);
  // The author's own apply throws: the append is refused and nothing stays.
  for (const kind of Object.keys(thrown)) {
    const error = await t.throwsAsync(local.append({ kind }));
    t.is((error as NoatunError).code, 'APPLY_FAILED', kind);
    t.true((error as Error).message.includes(thrown[kind]!.recorded), (error as Error).message);
  }
  t.is(local.stats().stored, 0);
  t.is(local.read((root) => root.count), 0);
  // The same events from an author whose apply does not throw: each peer stores them, records
  // the same failure for each, and keeps none of the failed applies' writes.
  const author = await open(() => {});
  for (const kind of ['ok', ...Object.keys(thrown), 'ok']) {
    clock.time += 1000;
    await author.append({ kind });
  }
  const batch = [...author.messages()].map((m) => m.bytes);
  const peers = [await open(throwing), await open(throwing)];
  await peers[0]!.ingest(batch);
  for (const bytes of batch.toReversed()) await peers[1]!.ingest([bytes]);
  for (const peer of peers) {
    t.is(peer.stats().stored, batch.length);
    t.is(peer.read((root) => root.count), 2);
    t.deepEqual(
      peer.failures().map((f) => f.error),
      Object.values(thrown).map((v) => v.recorded),
    );
  }
  for (const db of [local, author, ...peers]) await db.close();
});

test('a clock that goes wrong after the open is refused at the append that reads it: nothing is stored, and appends go on once it is right', async (t) => {
  let time: unknown = Date.UTC(2026, 0, 1);
  const db = await Database.open<Ev, typeof Root>({ path: tempDir(), root: Root, apply, now: () => time as number });
  await db.append({ kind: 'ok' });
  const good = time;
  // Before: "5" dated the event 5 ms after 1970 and a negative time was taken as 0, silently.
  for (const wrong of ['5', -1, Number.NaN, Number.POSITIVE_INFINITY, undefined, null, 5n]) {
    time = wrong;
    const error = await t.throwsAsync(db.append({ kind: 'ok' }));
    t.is((error as NoatunError).code, 'INVALID_ARGUMENT', String(wrong));
    t.regex((error as Error).message, /now\(\) returned/);
    const transaction = await t.throwsAsync(db.transaction((tx) => tx.append({ kind: 'ok' })));
    t.is((transaction as NoatunError).code, 'INVALID_ARGUMENT', String(wrong));
  }
  t.is(db.stats().stored, 1);
  time = (good as number) + 1000;
  await db.append({ kind: 'ok' });
  t.is(db.read((root) => root.count), 2);
  await db.close();
});

test('a clock or a time past the 48 bits of an id is refused at the append before anything moves; the database still ingests, reads and moves its cutoff', async (t) => {
  let time = Date.UTC(2026, 0, 1);
  const db = await Database.open<Ev, typeof Root>({ path: tempDir(), root: Root, apply, now: () => time });
  await db.append({ kind: 'hire', name: 'a', salary: 1 });
  await db.append({ kind: 'hire', name: 'a', salary: 2 });
  const before = { cutoff: db.cutoffState(), heads: db.heads().map(String), stored: db.stats().stored };
  // Before: the append moved the cutoff to the year 10889 first (pruning the overwritten event and
  // dropping every head, for good), then threw on the cutoff's own time; a clock of exactly 2^48,
  // or a time option past it, was taken as 2^48 - 1 without a word.
  for (const wrong of [2 ** 48 + 5e6, 2 ** 48, Number.MAX_SAFE_INTEGER]) {
    time = wrong;
    const error = await t.throwsAsync(db.append({ kind: 'ok' }));
    t.is((error as NoatunError).code, 'INVALID_ARGUMENT', String(wrong));
    t.regex((error as Error).message, /past the last time an event id can hold/);
    const transaction = await t.throwsAsync(db.transaction((tx) => tx.append({ kind: 'ok' })));
    t.is((transaction as NoatunError).code, 'INVALID_ARGUMENT', String(wrong));
    // A preview is refused as an append is (it ran apply at a time clamped to 2^48 - 1).
    const preview = t.throws(() => db.preview({ kind: 'ok' }, (root) => root.count));
    t.is((preview as NoatunError).code, 'INVALID_ARGUMENT', String(wrong));
    t.deepEqual({ cutoff: db.cutoffState(), heads: db.heads().map(String), stored: db.stats().stored }, before, String(wrong));
  }
  time = Date.UTC(2026, 0, 1) + 1000;
  const option = await t.throwsAsync(db.append({ kind: 'ok' }, { time: 2 ** 48 + 10 }));
  t.is((option as NoatunError).code, 'INVALID_ARGUMENT');
  t.deepEqual({ cutoff: db.cutoffState(), heads: db.heads().map(String), stored: db.stats().stored }, before);
  // Such a clock still ingests and reads, and moves the cutoff no further than ids reach.
  const other = await Database.open<Ev, typeof Root>({ path: tempDir(), root: Root, apply, now: () => Date.UTC(2026, 0, 2) });
  await other.append({ kind: 'ok' });
  time = 2 ** 48 + 5e6;
  db.advanceCutoff();
  t.true(db.cutoffState().time <= 2 ** 48 - 1 && db.cutoffState().time > Date.UTC(2026, 0, 2));
  t.is((await db.ingest([...other.messages()].map((m) => m.bytes))).stored, 1);
  t.is(db.read((root) => root.count), 1);
  await other.close();
  await db.close();
});

test('append options that are misspelt, or a time further ahead of the clock than peers accept, are refused and store nothing', async (t) => {
  const time = Date.UTC(2026, 0, 1);
  const db = await Database.open<Ev, typeof Root>({ path: tempDir(), root: Root, apply, now: () => time });
  const backdate = time - 60_000;
  // A misspelt `time` placed the event at the clock's time, silently.
  for (const options of [{ tiem: backdate }, { Time: backdate }, { time: backdate, afer: undefined }]) {
    const error = await t.throwsAsync(db.append({ kind: 'ok' }, options as never));
    t.is((error as NoatunError).code, 'INVALID_ARGUMENT', JSON.stringify(options));
    t.regex((error as Error).message, /append has no option/);
  }
  const inTransaction = await t.throwsAsync(db.transaction((tx) => tx.append({ kind: 'ok' }, { tiem: backdate } as never)));
  t.regex((inTransaction as Error).message, /append has no option "tiem" \(did you mean time\?\)/);
  // An hour ahead: stored here, refused by every peer until their clocks got there (they stayed
  // "differs", and syncedWith timed out).
  const ahead = await t.throwsAsync(db.append({ kind: 'ok' }, { time: time + 3_600_000 }));
  t.is((ahead as NoatunError).code, 'INVALID_ARGUMENT');
  t.regex((ahead as Error).message, /peers refuse events dated more than 60000 ms ahead of their clocks/);
  t.is(db.stats().stored, 0);
  // In a transaction, a time before the previous event's: its events form a chain, so it is
  // placed just after the previous one, with its time (as documented on transaction()).
  const [first, second] = await db.transaction((tx) => {
    tx.append({ kind: 'ok' }, { time: backdate });
    tx.append({ kind: 'ok' }, { time: backdate - 20_000 });
  });
  t.is(second!.timestamp, first!.timestamp);
  t.true(second!.sequence > first!.sequence);
  t.is(db.stats().stored, 2);
  // Within the skew peers accept, and backdated, it is taken.
  await db.append({ kind: 'ok' }, { time: time + 30_000 });
  await db.append({ kind: 'ok' }, { time: backdate });
  t.is(db.stats().stored, 4);
  await db.close();
});

test('changes made from inside apply, read or preview (append, transaction, ingest, compact, remove, advanceCutoff) are refused with SESSION_NESTED, and the event around them is stored', async (t) => {
  // Before: compact() from an apply re-applied that apply, which compacted again, until the stack
  // ran out (and the database was broken); an append from an apply failed later as APPLY_FAILED.
  const Counter = s.object({ count: s.u32() });
  let db!: Database<string, typeof Counter>;
  let inner: unknown;
  const attempts: Record<string, () => unknown> = {
    append: () => db.append('ok'),
    transaction: () => db.transaction((tx) => tx.append('ok')),
    ingest: () => db.ingest([]),
    compact: () => db.compact(),
    remove: () => db.remove([...db.messages()][0]!.id),
    advanceCutoff: () => db.advanceCutoff(),
  };
  let attempt = '';
  db = await Database.open<string, typeof Counter>({
    path: tempDir(),
    root: Counter,
    now: new FakeClock().now,
    apply: (e, root) => {
      root.count += 1;
      if (e === 'inner') {
        try {
          inner = attempts[attempt]!();
        } catch (error) {
          inner = error;
        }
      }
    },
  });
  await db.append('ok');
  const reason = async (value: unknown) => {
    try {
      await value;
      return 'no error';
    } catch (error) {
      return (error as NoatunError).code;
    }
  };
  for (const name of Object.keys(attempts)) {
    attempt = name;
    await db.append('inner');
    t.is(await reason(inner instanceof Error ? Promise.reject(inner) : inner), 'SESSION_NESTED', `${name} in apply`);
    for (const session of ['read', 'preview'] as const) {
      const run = () => {
        try {
          return attempts[name]!();
        } catch (error) {
          return error;
        }
      };
      const result = session === 'read' ? db.read(run) : db.preview('ok', run);
      t.is(await reason(result instanceof Error ? Promise.reject(result) : result), 'SESSION_NESTED', `${name} in ${session}`);
    }
  }
  const events = 1 + Object.keys(attempts).length;
  t.is(db.stats().stored, events);
  t.is(db.read((root) => root.count), events);
  await db.append('ok');
  await db.compact();
  t.is(db.read((root) => root.count), events + 1);
  await db.close();
});

test('tx.append after the transaction callback returned is refused, and stores nothing', async (t) => {
  const db = await open();
  let kept!: { append(e: Ev): MessageId };
  await db.transaction((tx) => {
    kept = tx;
    tx.append({ kind: 'ok' });
  });
  // Before: it returned an id for an event that was never stored.
  const error = t.throws(() => kept.append({ kind: 'ok' }));
  t.is((error as NoatunError).code, 'INVALID_ARGUMENT');
  t.is(db.stats().stored, 1);
  await db.close();
});

test("a codec whose encode returns something else than bytes is refused with PAYLOAD_INVALID, not the language's error", async (t) => {
  const returns: Record<string, unknown> = { a: 'string', b: [1, 2], c: new DataView(new ArrayBuffer(4)), d: undefined, e: null, f: 5 };
  for (const [key, value] of Object.entries(returns)) {
    const db = await Database.open<number, typeof Root>({
      path: tempDir(),
      root: Root,
      apply: (_, root) => {
        root.count += 1;
      },
      codec: { encode: () => value as Uint8Array, decode: () => 1 },
    });
    const error = await t.throwsAsync(db.append(1));
    t.is((error as NoatunError).code, 'PAYLOAD_INVALID', key);
    t.regex((error as Error).message, /the codec's encode returned .*, not bytes/);
    t.is(db.stats().stored, 0);
    await db.close();
  }
});

test('every method of a closed database refuses with CLOSED, whatever it is, and changes nothing; peerLeft and a second close do nothing', async (t) => {
  const dir = tempDir();
  const clock = new FakeClock();
  const db = await Database.open<Ev, typeof Root>({ path: dir, root: Root, apply, now: clock.now });
  const [id] = await db.transaction((tx) => {
    tx.append({ kind: 'ok' });
  });
  await db.close();
  // One call per method; a method added later fails this test until it is listed here.
  const calls: Record<string, () => unknown> = {
    append: () => db.append({ kind: 'ok' }),
    transaction: () => db.transaction((tx) => tx.append({ kind: 'ok' })),
    ingest: () => db.ingest([]),
    advanceCutoff: () => db.advanceCutoff(),
    compact: () => db.compact(),
    remove: () => db.remove(id!),
    read: () => db.read((root) => root.count),
    preview: () => db.preview({ kind: 'ok' }, (root) => root.count),
    ids: () => [...db.ids()],
    messages: () => [...db.messages()],
    message: () => db.message(id!),
    heads: () => db.heads(),
    failures: () => db.failures(),
    stats: () => db.stats(),
    cutoffState: () => db.cutoffState(),
    discarded: () => db.discarded(),
    subscribe: () => db.subscribe({ stored: () => {} }),
    inspectView: () => db.inspectView(),
    explain: () => db.explain(id!),
  };
  const allowed = new Set(['constructor', 'close', 'peerLeft']);
  for (const name of Object.getOwnPropertyNames(Database.prototype)) {
    const member = Object.getOwnPropertyDescriptor(Database.prototype, name)!;
    if (typeof member.value !== 'function' || allowed.has(name)) continue;
    const call = calls[name];
    if (call === undefined) {
      t.fail(`Database.${name} is not tried on a closed database: add it to this test`);
      continue;
    }
    let failure: unknown;
    try {
      const result = call();
      if (result instanceof Promise) await result;
    } catch (error) {
      failure = error;
    }
    t.is((failure as NoatunError | undefined)?.code, 'CLOSED', name);
  }
  t.true(db.closed);
  db.peerLeft('someone');
  await db.close();
  const again = await Database.open<Ev, typeof Root>({ path: dir, root: Root, apply, now: clock.now });
  t.is(again.stats().stored, 1);
  t.deepEqual(again.heads(), [id]);
  await again.close();
});
