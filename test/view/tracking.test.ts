/**
 * What the view reports to its tracking context: the reads and writes the engine's pruning is
 * built on.
 */
import test from 'ava';
import * as s from '../../src/view/schema.js';
import { removeTempDirs } from '../helpers/temp.js';
import { openView, Recorder } from './view-helpers.js';

test.after.always(removeTempDirs);

const Root = s.object({
  n: s.u32(),
  text: s.string(),
  secret: s.opaque(s.u32()),
  log: s.opaqueList(s.object({ at: s.u32() })),
  m: s.map(s.string(), s.u32()),
  l: s.list(s.u32()),
  o: s.optional(s.f64()),
});

test('a write makes the event the owner; the previous owner is reported once', (t) => {
  const view = openView(Root);
  const one = new Recorder(1);
  view.write(one, (root) => {
    root.n = 5;
    root.n = 6; // already owned: nothing more to report
  });
  t.deepEqual(one.writes, [{ previous: 0, opaque: false }]);
  const two = new Recorder(2);
  view.write(two, (root) => {
    root.n += 1; // a read of event 1's datum, then a write taking it over
  });
  t.deepEqual(two.reads, [1]);
  t.deepEqual(two.writes, [{ previous: 1, opaque: false }]);
  const reader = new Recorder(3);
  view.write(reader, (root) => {
    void root.n;
  });
  t.deepEqual(reader.reads, [2]);
  t.deepEqual(reader.writes, []);
  view.close();
});

test('reading data the event owns itself is not reported', (t) => {
  const view = openView(Root);
  const one = new Recorder(1);
  view.write(one, (root) => {
    root.n = 1;
    void root.n;
  });
  t.deepEqual(one.reads, []);
  view.close();
});

test('opaque writes are flagged, also for elements pushed to an opaque list, and push reads nothing', (t) => {
  const view = openView(Root);
  const one = new Recorder(1);
  view.write(one, (root) => {
    root.secret = 1;
    root.log.push({ at: 5 });
  });
  t.true(one.writes.length >= 2);
  t.true(one.writes.every((w) => w.opaque));
  t.deepEqual(one.reads, []);
  view.close();
});

test('a map lookup that finds nothing reads the membership; inserting takes it over', (t) => {
  const view = openView(Root);
  const one = new Recorder(1);
  view.write(one, (root) => {
    t.false(root.m.has('k'));
    t.is(root.m.get('k'), undefined);
  });
  t.deepEqual(one.reads, [0, 0]);
  const two = new Recorder(2);
  view.write(two, (root) => root.m.set('k', 1));
  t.true(two.writes.some((w) => w.previous === 0));
  const three = new Recorder(3);
  view.write(three, (root) => {
    t.is(root.m.get('other'), undefined);
    t.true(root.m.has('k'));
  });
  t.deepEqual(three.reads, [2, 2]);
  view.close();
});

test('deleting a missing key reports a destroy of nobody (a tombstone); deleting a present one destroys its owners', (t) => {
  const view = openView(Root);
  const one = new Recorder(1);
  view.write(one, (root) => root.m.delete('nothing'));
  t.deepEqual(one.destroys, [0]);
  view.write(new Recorder(2), (root) => root.m.set('k', 1));
  const three = new Recorder(3);
  view.write(three, (root) => root.m.delete('k'));
  t.deepEqual(three.destroys, [2, 2]); // the key and the value
  view.close();
});

test('list push reads and writes the length; pop and clear destroy elements', (t) => {
  const view = openView(Root);
  view.write(new Recorder(1), (root) => root.l.push(1));
  const two = new Recorder(2);
  view.write(two, (root) => root.l.push(2));
  t.deepEqual(two.reads, [1]);
  t.true(two.writes.some((w) => w.previous === 1 && !w.opaque));
  const three = new Recorder(3);
  view.write(three, (root) => root.l.pop());
  // The element's value and its existence, both the pusher's.
  t.deepEqual(three.destroys, [2, 2]);
  view.write(new Recorder(5), (root) => root.l.set(0, 9));
  const four = new Recorder(4);
  view.write(four, (root) => root.l.clear());
  // The value is the setter's; the element's existence stays with its pusher.
  t.deepEqual(four.destroys, [5, 1]);
  t.true(four.writes.some((w) => w.opaque)); // the clear marker
  view.close();
});

test('an optional: its presence stays with the event that made it present; null destroys value and presence', (t) => {
  const view = openView(Root);
  view.write(new Recorder(1), (root) => {
    root.o = 1.5;
  });
  const two = new Recorder(2);
  view.write(two, (root) => {
    root.o = 2.5;
  });
  t.deepEqual(two.reads, [1]); // the presence, not taken
  t.deepEqual(
    two.writes.map((w) => w.previous),
    [1],
  );
  const three = new Recorder(3);
  view.write(three, (root) => {
    root.o = null;
  });
  t.deepEqual(three.destroys, [2, 1]);
  t.deepEqual(
    three.writes.map((w) => w.previous),
    [0],
  ); // owns the absence
  const four = new Recorder(4);
  view.write(four, (root) => {
    root.o = 4.5;
  });
  t.deepEqual(
    four.writes.map((w) => w.previous),
    [3, 0],
  ); // takes the absence, then a fresh value
  t.deepEqual(four.destroys, []);
  view.close();
});

test('trackers hold the ordinal of the last writer across a reopen', (t) => {
  const view = openView(Root);
  const dir = view.directory;
  view.write(new Recorder(7), (root) => {
    root.text = 'seven';
  });
  view.close();
  const again = openView(Root, dir);
  const reader = new Recorder(8);
  again.write(reader, (root) => {
    void root.text;
  });
  t.deepEqual(reader.reads, [7]);
  again.close();
});
