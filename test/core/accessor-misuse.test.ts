/**
 * What apps do with accessors that the API does not invite, through the public API: each either
 * works as the plain values would, or is refused with an error, and never makes an apply do what a
 * rebuild of the same events would not. Found by an adversarial review (7 Dec 2026):
 * - a property set on a list or map accessor was taken without a word; on the root's inline
 *   containers, reused from one apply to the next, it was still there for the next event (now
 *   those are closed to new properties: the assignment throws);
 * - `Object.freeze` of the root, or of a map inline in it, wedged the database (every later read
 *   was refused) or failed every later apply (now the read after it fails, and the rest work);
 * - a list or map assigned from its own accessors (`root.list = [...root.list].sort(...)`) came
 *   back as zeros: the assignment cleared the entries before it copied them;
 * - `toJSON` lost a map entry whose key is `__proto__`;
 * - a property defined on the root accessor itself (`Object.defineProperty`) shadowed a field for
 *   later events, until a reopen (now the root is closed to new properties too).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import test from 'ava';
import { Database, type NoatunError, s } from '../../src/index.js';
import { FakeClock, removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const Item = s.object({ n: s.u32(), tag: s.string() });
const Root = s.object({
  n: s.u32(),
  list: s.list(Item),
  numbers: s.list(s.u32()),
  map: s.map(s.string(), Item),
  counts: s.map(s.string(), s.u32()),
  log: s.opaqueList(s.string()),
  one: s.optional(Item),
  two: s.optional(Item),
});
type Ev = { op: string };

/** Opens `dir` with `apply`; with `rebuild`, after removing the view (a replay of the log). */
function open(dir: string, apply: (e: Ev, root: s.View<typeof Root>) => void, rebuild = false) {
  if (rebuild) fs.rmSync(path.join(dir, 'view'), { recursive: true, force: true });
  return Database.open<Ev, typeof Root>({ path: dir, root: Root, apply, now: new FakeClock().now });
}

/** The view as JSON, live and after a rebuild from the same log: they must agree. */
async function liveAndRebuilt(dir: string, db: Database<Ev, typeof Root>, apply: (e: Ev, root: s.View<typeof Root>) => void) {
  const live = db.read((root) => JSON.stringify(root));
  await db.close();
  const rebuilt = await open(dir, apply, true);
  const again = rebuilt.read((root) => JSON.stringify(root));
  await rebuilt.close();
  return { live, rebuilt: again };
}

test("a property set on the root's inline list, map or opaque list is refused, as is setting a length or a size, and cannot carry state from one apply to the next", async (t) => {
  const dir = tempDir();
  const codes: string[] = [];
  const attempt = (f: () => void) => {
    try {
      f();
      codes.push('taken');
    } catch (error) {
      codes.push((error as NoatunError).code ?? (error as Error).name);
    }
  };
  const apply = (e: Ev, root: s.View<typeof Root>) => {
    if (e.op === 'mark') {
      const bag = root as unknown as Record<string, Record<string | number, unknown>>;
      attempt(() => {
        bag.numbers![0] = 5;
      });
      attempt(() => {
        bag.counts!.seen = true;
      });
      attempt(() => {
        bag.log!.seen = true;
      });
      attempt(() => {
        bag.numbers!.length = 0;
      });
      attempt(() => {
        bag.counts!.size = 0;
      });
      // A mark the next event would see, if it were kept: then this event fails.
      (root.counts as unknown as { seen: boolean }).seen = true;
    }
    root.n = (root.counts as unknown as { seen?: boolean }).seen === true ? 1 : 2;
  };
  const db = await open(dir, apply);
  const error = await t.throwsAsync(db.append({ op: 'mark' }));
  t.is((error as NoatunError).code, 'APPLY_FAILED');
  // The root's inline containers take no new property (a TypeError); length and size are refused.
  t.deepEqual(codes, ['TypeError', 'TypeError', 'TypeError', 'UNKNOWN_FIELD', 'UNKNOWN_FIELD']);
  await db.append({ op: 'next' });
  const { live, rebuilt } = await liveAndRebuilt(dir, db, apply);
  t.is(live, rebuilt);
  t.is(JSON.parse(live).n, 2);
});

test('a property defined on the root in an apply (shadowing a field) is refused, and two peers that applied the same events in different sessions agree', async (t) => {
  // The root accessor is reused from one apply to the next: `Object.defineProperty(root, 'n', …)`
  // left an own property that shadowed the field for the events after it (until a reopen), so a
  // peer that applied them all in one session failed where one that reopened in between did not.
  const apply = (e: Ev, root: s.View<typeof Root>) => {
    if (e.op === 'shadow') Object.defineProperty(root, 'n', { value: 0 });
    if (e.op === 'inc') root.n += 1;
  };
  const author = await open(tempDir(), apply);
  await author.append({ op: 'inc' });
  const error = await t.throwsAsync(author.append({ op: 'shadow' }));
  t.is((error as NoatunError).code, 'APPLY_FAILED');
  t.is(author.read((root) => Object.isExtensible(root)), false);
  await author.append({ op: 'inc' });
  t.is(author.read((root) => root.n), 2);
  await author.close();
  // The shadowing event as another peer's (its author's apply did not refuse it), between two incs.
  const writer = await open(tempDir(), () => {});
  for (const op of ['inc', 'shadow', 'inc']) await writer.append({ op });
  const envelopes = [...writer.messages()].map((m) => m.bytes);
  await writer.close();
  const oneSession = await open(tempDir(), apply);
  await oneSession.ingest(envelopes);
  const dir = tempDir();
  const first = await open(dir, apply);
  await first.ingest(envelopes.slice(0, 2));
  await first.close();
  const reopened = await open(dir, apply);
  await reopened.ingest(envelopes.slice(2));
  for (const db of [oneSession, reopened]) {
    t.is(db.read((root) => root.n), 2);
    t.is(db.failures().length, 1);
    await db.close();
  }
});

test('freezing the root or a container inline in it, in a read or an apply, leaves later reads and applies working, and a rebuild agrees', async (t) => {
  const dir = tempDir();
  const apply = (e: Ev, root: s.View<typeof Root>) => {
    root.n += 1;
    if (e.op === 'freeze-root') Object.freeze(root);
    if (e.op === 'freeze-map') Object.freeze(root.counts);
  };
  const db = await open(dir, apply);
  // The read after a freeze fails (its root cannot take the session); the ones after it work.
  const freezes: ((root: s.View<typeof Root>) => void)[] = [(root) => Object.freeze(root), (root) => Object.freeze(root.counts)];
  for (const freeze of freezes) {
    db.read(freeze);
    t.throws(() => db.read((root) => root.n));
    t.is(db.read((root) => root.n), 0);
    t.is(db.read((root) => root.counts.size), 0);
  }
  for (const op of ['freeze-root', 'next', 'freeze-map', 'next']) await db.append({ op });
  t.is(db.stats().failedApplies, 0);
  const { live, rebuilt } = await liveAndRebuilt(dir, db, apply);
  t.is(live, rebuilt);
  t.is(JSON.parse(live).n, 4);
});

test('a list, a map or an optional assigned from accessors of the view (reordered, copied) gets their values, not zeros', async (t) => {
  const dir = tempDir();
  const items = [
    { n: 3, tag: 'c' },
    { n: 1, tag: 'a' },
    { n: 2, tag: 'b' },
  ];
  const apply = (e: Ev, root: s.View<typeof Root>) => {
    // (The typed API takes plain values: accessors are what apps pass anyway, the types cast away.)
    const plain = <T>(value: unknown) => value as T;
    if (e.op === 'init') {
      root.list.assign(items);
      for (const item of items) root.map.set(item.tag, item);
      root.one = plain(items[0]);
    }
    if (e.op === 'reorder') {
      root.list.assign(plain([...root.list].sort((x, y) => x.n - y.n)));
      (root as unknown as { map: unknown }).map = new Map([...root.map].reverse());
      root.list.push(plain(root.list.get(0)));
      root.list.set(1, plain(root.list.get(2)));
      root.two = root.one;
      root.one = plain(root.list.get(3));
    }
  };
  const db = await open(dir, apply);
  await db.append({ op: 'init' });
  await db.append({ op: 'reorder' });
  const { live, rebuilt } = await liveAndRebuilt(dir, db, apply);
  t.is(live, rebuilt);
  const view = JSON.parse(live) as { list: unknown[]; map: Record<string, unknown>; one: unknown; two: unknown };
  const [a, b, c] = [items[1], items[2], items[0]];
  t.deepEqual(view.list, [a, c, c, a]);
  t.deepEqual(Object.entries(view.map), [
    ['b', b],
    ['a', a],
    ['c', c],
  ]);
  t.deepEqual(view.one, a);
  t.deepEqual(view.two, c);
});

test('a value whose getters write to the view is read once, before anything of it is written: same view after a rebuild', async (t) => {
  const dir = tempDir();
  const calls: string[] = [];
  const apply = (e: Ev, root: s.View<typeof Root>) => {
    // (Before: the element was placed before the getter's push ran, so the list held the inner
    // element twice and a last one pointing at the view file's header; a rebuild gave another view.)
    if (e.op === 'list') {
      root.list.push({
        get n() {
          calls.push('n');
          root.list.push({ n: 100, tag: 'inner' });
          return 7;
        },
        tag: 'outer',
      });
    }
    if (e.op === 'map') {
      root.map.set('k', {
        n: 1,
        get tag() {
          calls.push('tag');
          root.map.set('other', { n: 2, tag: 'inner' });
          root.map.delete('k');
          return 'outer';
        },
      });
    }
    if (e.op === 'assign') {
      root.numbers.assign([1, 2]);
      root.list.assign([
        {
          n: 5,
          get tag() {
            root.numbers.push(3);
            return 'x';
          },
        },
      ]);
    }
  };
  const db = await open(dir, apply);
  for (const op of ['list', 'map', 'assign']) await db.append({ op });
  t.deepEqual(calls, ['n', 'tag'], 'each getter ran once, not once to copy and again to write');
  const { live, rebuilt } = await liveAndRebuilt(dir, db, apply);
  t.is(live, rebuilt);
  const view = JSON.parse(live) as { list: unknown[]; numbers: number[]; map: Record<string, unknown> };
  t.deepEqual(view.list, [{ n: 5, tag: 'x' }]);
  t.deepEqual(view.numbers, [1, 2, 3]);
  t.deepEqual(view.map, { other: { n: 2, tag: 'inner' }, k: { n: 1, tag: 'outer' } });
});

test('properties the schema lacks are not read: a cycle or a deep chain there is written like any value', async (t) => {
  const dir = tempDir();
  const apply = (_e: Ev, root: s.View<typeof Root>) => {
    const item: Record<string, unknown> = { n: 1, tag: 'a' };
    item.self = item; // (Before: RESOURCE_EXHAUSTED, the stack overflowed copying it.)
    let chain: Record<string, unknown> = {};
    for (let i = 0; i < 200_000; i++) chain = { next: chain };
    const deep = { n: 2, tag: 'b', chain };
    root.map.set('a', item as never);
    root.list.push(deep as never);
    root.one = item as never;
    root.list.assign([item as never, deep as never]);
  };
  const db = await open(dir, apply);
  await db.append({ op: 'x' });
  const { live, rebuilt } = await liveAndRebuilt(dir, db, apply);
  t.is(live, rebuilt);
  const view = JSON.parse(live) as { list: unknown[]; map: Record<string, unknown>; one: unknown };
  t.deepEqual(view.list, [
    { n: 1, tag: 'a' },
    { n: 2, tag: 'b' },
  ]);
  t.deepEqual(view.map, { a: { n: 1, tag: 'a' } });
  t.deepEqual(view.one, { n: 1, tag: 'a' });
});

test('toJSON keeps a map entry whose key is __proto__', async (t) => {
  const db = await open(tempDir(), (_, root) => {
    root.counts.set('__proto__', 1);
    root.counts.set('b', 2);
    root.map.set('__proto__', { n: 7, tag: 'x' });
  });
  await db.append({ op: 'x' });
  t.is(
    db.read((root) => JSON.stringify({ counts: root.counts, map: root.map })),
    '{"counts":{"__proto__":1,"b":2},"map":{"__proto__":{"n":7,"tag":"x"}}}',
  );
  await db.close();
});
