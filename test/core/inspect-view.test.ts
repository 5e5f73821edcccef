/**
 * `db.inspectView()`: the view as a JSON-able tree whose every value names the event that wrote
 * it (the provenance the web inspector shows).
 */
import test from 'ava';
import { Database, type MessageId, type ObjectNode, s, type ViewNode } from '../../src/index.js';
import { FakeClock, removeTempDirs, tempDir } from '../helpers/temp.js';

test.after.always(removeTempDirs);

const Item = s.object({ label: s.string(), count: s.u32() });
const Root = s.object({
  total: s.u32(),
  big: s.u64(),
  note: s.optional(s.string()),
  items: s.map(s.string(), Item),
  tags: s.list(s.string()),
  log: s.opaqueList(s.string()),
  secret: s.opaque(s.string()),
  ref: s.optional(s.messageId()),
  raw: s.bytes(),
});

type Event =
  | { add: number }
  | { item: string; count: number }
  | { tag: string }
  | { untag: true }
  | { note: string | null }
  | { log: string }
  | { secret: string }
  | { drop: string }
  | { ref: true }
  | { raw: number[] }
  | { big: string }
  | { clearTags: true };

function apply(event: Event, root: s.View<typeof Root>, ctx: { id: MessageId }): void {
  if ('add' in event) root.total += event.add;
  else if ('item' in event) root.items.set(event.item, { label: event.item.toUpperCase(), count: event.count });
  else if ('tag' in event) root.tags.push(event.tag);
  else if ('untag' in event) root.tags.pop();
  else if ('note' in event) root.note = event.note;
  else if ('log' in event) root.log.push(event.log);
  else if ('secret' in event) root.secret = event.secret;
  else if ('drop' in event) root.items.delete(event.drop);
  else if ('ref' in event) root.ref = ctx.id;
  else if ('raw' in event) root.raw = Uint8Array.from(event.raw);
  else if ('big' in event) root.big = BigInt(event.big);
  else root.tags.clear();
}

function open(path = tempDir()) {
  const clock = new FakeClock();
  return Database.open<Event, typeof Root>({
    path,
    root: Root,
    now: () => {
      clock.advance(1);
      return clock.time;
    },
    apply,
  });
}

function field(node: ViewNode, name: string): ViewNode {
  if (node.kind !== 'object') throw new Error(`expected an object, got ${node.kind}`);
  const found = node.fields.find((f) => f.name === name);
  if (found === undefined) throw new Error(`no field ${name}`);
  return found.node;
}

function leaf(node: ViewNode) {
  if (node.kind !== 'leaf') throw new Error(`expected a leaf, got ${node.kind}`);
  return node;
}

test('every leaf names the event that wrote it last, as the id string', async (t) => {
  const db = await open();
  const first = await db.append({ add: 2 });
  const second = await db.append({ add: 3 });
  const tree = db.inspectView();
  t.deepEqual(leaf(field(tree, 'total')), { kind: 'leaf', type: 'u32', value: 5, writer: second.toString(), opaque: false });
  t.not(leaf(field(tree, 'total')).writer, first.toString());
  // A field no event wrote has no writer.
  t.is(leaf(field(tree, 'raw')).writer, null);
  await db.close();
});

test('maps give size, entries with the key inserter, values with their writers; membership and clear writers', async (t) => {
  const db = await open();
  const a = await db.append({ item: 'a', count: 1 });
  const b = await db.append({ item: 'b', count: 2 });
  const a2 = await db.append({ item: 'a', count: 7 });
  const drop = await db.append({ drop: 'b' });
  const items = field(db.inspectView(), 'items');
  if (items.kind !== 'map') throw new Error('items is not a map');
  t.is(items.size, 1);
  t.is(items.truncated, 0);
  t.is(items.writer, drop.toString(), 'the delete wrote the membership last');
  t.is(items.clearedBy, null);
  t.is(items.entries.length, 1);
  const entry = items.entries[0]!;
  t.is(entry.key, 'a');
  t.is(entry.keyWriter, a.toString(), 'the key was inserted by the first event');
  t.deepEqual(leaf(field(entry.value, 'count')), { kind: 'leaf', type: 'u32', value: 7, writer: a2.toString(), opaque: false });
  t.is(leaf(field(entry.value, 'label')).writer, a2.toString());
  t.false(JSON.stringify(items).includes(b.toString()), 'the deleted entry and its writer are gone');
  await db.close();
});

test('lists give items, the length writer and the clear writer; opaque lists and opaque leaves are marked', async (t) => {
  const db = await open();
  const x = await db.append({ tag: 'x' });
  const y = await db.append({ tag: 'y' });
  let tags = field(db.inspectView(), 'tags');
  if (tags.kind !== 'list') throw new Error('tags is not a list');
  t.is(tags.length, 2);
  t.is(tags.writer, y.toString());
  t.deepEqual(tags.items.map((n) => leaf(n).value), ['x', 'y']);
  t.deepEqual(tags.items.map((n) => leaf(n).writer), [x.toString(), y.toString()]);
  const cleared = await db.append({ clearTags: true });
  tags = field(db.inspectView(), 'tags');
  if (tags.kind !== 'list') throw new Error('tags is not a list');
  t.is(tags.length, 0);
  t.is(tags.clearedBy, cleared.toString());

  const logged = await db.append({ log: 'hello' });
  const secret = await db.append({ secret: 's3' });
  const tree = db.inspectView();
  const log = field(tree, 'log');
  if (log.kind !== 'opaqueList') throw new Error('log is not an opaque list');
  t.is(log.length, 1);
  t.is(log.writer, null);
  t.deepEqual(leaf(log.items[0]!), { kind: 'leaf', type: 'string', value: 'hello', writer: logged.toString(), opaque: false });
  t.deepEqual(leaf(field(tree, 'secret')), { kind: 'leaf', type: 'opaque(string)', value: 's3', writer: secret.toString(), opaque: true });
  await db.close();
});

test('optional, messageId, bytes and u64 values are JSON-able', async (t) => {
  const db = await open();
  let tree = db.inspectView();
  const empty = field(tree, 'note');
  t.deepEqual(empty, { kind: 'optional', type: 'optional(string)', present: false, writer: null, value: null });
  const note = await db.append({ note: 'hi' });
  const ref = await db.append({ ref: true });
  const raw = await db.append({ raw: [1, 2, 255] });
  const big = await db.append({ big: '18446744073709551615' });
  tree = db.inspectView();
  const set = field(tree, 'note');
  if (set.kind !== 'optional') throw new Error('note is not optional');
  t.true(set.present);
  t.is(set.writer, note.toString());
  t.is(leaf(set.value!).value, 'hi');
  const refNode = field(tree, 'ref');
  if (refNode.kind !== 'optional') throw new Error('ref is not optional');
  t.is(leaf(refNode.value!).value, ref.toString(), 'a MessageId value shows as its hex string');
  t.deepEqual(leaf(field(tree, 'raw')), { kind: 'leaf', type: 'bytes', value: '0102ff', writer: raw.toString(), opaque: false });
  t.is(leaf(field(tree, 'big')).value, '18446744073709551615');
  t.is(leaf(field(tree, 'big')).writer, big.toString());
  // The whole tree survives a JSON round trip unchanged.
  t.deepEqual(JSON.parse(JSON.stringify(tree)) as ObjectNode, tree);
  await db.close();
});

test('maxEntries cuts maps and lists and counts what it left out', async (t) => {
  const db = await open();
  await db.transaction((tx) => {
    for (let i = 0; i < 10; i++) tx.append({ item: `k${i}`, count: i });
    for (let i = 0; i < 5; i++) tx.append({ tag: `t${i}` });
  });
  const tree = db.inspectView({ maxEntries: 3 });
  const items = field(tree, 'items');
  const tags = field(tree, 'tags');
  if (items.kind !== 'map' || tags.kind !== 'list') throw new Error('wrong kinds');
  t.is(items.entries.length, 3);
  t.is(items.truncated, 7);
  t.is(items.size, 10);
  t.is(tags.items.length, 3);
  t.is(tags.truncated, 2);
  t.is(field(db.inspectView({ maxEntries: 0 }), 'items').kind, 'map');
  t.throws(() => db.inspectView({ maxEntries: -1 }), { code: 'INVALID_ARGUMENT' });
  await db.close();
});

test('the writers survive a reopen and a compaction (ordinals map to the same ids)', async (t) => {
  const path = tempDir();
  let db = await open(path);
  await db.append({ add: 1 });
  const last = await db.append({ add: 1 });
  await db.close();
  db = await open(path);
  t.is(leaf(field(db.inspectView(), 'total')).writer, last.toString());
  await db.compact();
  t.is(leaf(field(db.inspectView(), 'total')).writer, last.toString());
  await db.close();
});

test('inspectView is read-only and refuses to run inside another view callback', async (t) => {
  const db = await open();
  await db.append({ item: 'a', count: 1 });
  const before = db.read((root) => root.items.export());
  const stats = db.stats();
  db.inspectView();
  t.deepEqual(db.read((root) => root.items.export()), before);
  t.is(db.stats().viewBytes, stats.viewBytes);
  t.throws(() => db.read(() => db.inspectView()), { code: 'SESSION_NESTED' });
  await db.close();
  t.throws(() => db.inspectView(), { code: 'CLOSED' });
});
