/**
 * Every schema type: round trips through set/get/export, validation, and the errors of misuse.
 */
import test from 'ava';
import type { NoatunError } from '../../src/errors.js';
import * as s from '../../src/view/schema.js';
import { untracked } from '../../src/view/tracking.js';
import { prng, removeTempDirs } from '../helpers/temp.js';
import { openView } from './view-helpers.js';

test.after.always(removeTempDirs);

const Point = s.object({ x: s.f64(), y: s.f64() });
const Everything = s.object({
  flag: s.bool(),
  small: s.u8(),
  medium: s.u16(),
  count: s.u32(),
  signed: s.i32(),
  real: s.f64(),
  big: s.u64(),
  bigSigned: s.i64(),
  when: s.time(),
  name: s.string(),
  blob: s.bytes(),
  digest: s.bytes(4),
  point: Point,
  nested: s.object({ inner: s.object({ deep: s.u32(), label: s.string() }) }),
  maybeNumber: s.optional(s.u32()),
  maybePoint: s.optional(Point),
  numbers: s.list(s.i32()),
  points: s.list(Point),
  secret: s.opaque(s.string()),
  events: s.opaqueList(s.string()),
});

const sample = {
  flag: true,
  small: 255,
  medium: 65535,
  count: 4294967295,
  signed: -2147483648,
  real: -1.5e300,
  big: 2n ** 64n - 1n,
  bigSigned: -(2n ** 63n),
  when: Date.UTC(2026, 10, 24),
  name: 'Blåbærsyltetøy 🍓 日本語',
  blob: new Uint8Array([0, 1, 2, 255]),
  digest: new Uint8Array([9, 8, 7, 6]),
  point: { x: 1.25, y: -2 },
  nested: { inner: { deep: 7, label: 'deep' } },
  maybeNumber: 3,
  maybePoint: { x: 0.5, y: 0.25 },
  numbers: [-1, 0, 1],
  points: [
    { x: 1, y: 2 },
    { x: 3, y: 4 },
  ],
  secret: 'hush',
  events: ['a', 'b'],
};

test('every type round-trips through assign and export', (t) => {
  const view = openView(Everything);
  view.write(untracked, (root) => root.assign(sample));
  t.deepEqual(view.export(), sample);
  view.close();
});

test('fields read back what was written, one by one', (t) => {
  const view = openView(Everything);
  view.write(untracked, (root) => {
    root.flag = true;
    root.small = 200;
    root.medium = 40000;
    root.count += 5;
    root.count *= 3;
    root.signed = -7;
    root.real = Math.PI;
    root.big = 12345678901234567890n;
    root.bigSigned = -5n;
    root.when = 1_700_000_000_000;
    root.name = 'æøå';
    root.blob = new Uint8Array([1, 2, 3]);
    root.digest = new Uint8Array([1, 2, 3, 4]);
    root.point.x = 3;
    root.nested.inner.label = 'x';
    root.maybeNumber = 9;
    root.numbers.push(4);
    root.secret = 'opaque';
  });
  view.read((root) => {
    t.true(root.flag);
    t.is(root.small, 200);
    t.is(root.medium, 40000);
    t.is(root.count, 15);
    t.is(root.signed, -7);
    t.is(root.real, Math.PI);
    t.is(root.big, 12345678901234567890n);
    t.is(root.bigSigned, -5n);
    t.is(root.when, 1_700_000_000_000);
    t.is(root.name, 'æøå');
    t.deepEqual(root.blob, new Uint8Array([1, 2, 3]));
    t.deepEqual(root.digest, new Uint8Array([1, 2, 3, 4]));
    t.is(root.point.x, 3);
    t.is(root.point.y, 0);
    t.is(root.nested.inner.label, 'x');
    t.is(root.maybeNumber, 9);
    t.is(root.maybePoint, null);
    t.deepEqual(root.numbers.export(), [4]);
    t.is(root.secret, 'opaque');
  });
  view.close();
});

test('strings: non-ASCII text, empty, shorter rewrite in place and longer rewrite', (t) => {
  const Root = s.object({ text: s.string(), other: s.string() });
  const view = openView(Root);
  const texts = ['', 'a', 'Ærlig talt, på høy tid 😀', '中文字符测试', 'x'.repeat(1000), 'short', ''];
  for (const text of texts) {
    view.write(untracked, (root) => {
      root.text = text;
      root.other = `${text}!`;
    });
    t.is(
      view.read((root) => root.text),
      text,
    );
    t.is(
      view.read((root) => root.other),
      `${text}!`,
    );
  }
  view.close();
});

test('optional values: set, clear to null, set again', (t) => {
  const Root = s.object({ n: s.optional(s.string()), p: s.optional(Point) });
  const view = openView(Root);
  view.write(untracked, (root) => {
    root.n = 'one';
    root.p = { x: 1, y: 2 } as never;
  });
  t.deepEqual(view.export(), { n: 'one', p: { x: 1, y: 2 } });
  view.write(untracked, (root) => {
    root.n = null;
    root.p = null;
  });
  t.deepEqual(view.export(), { n: null, p: null });
  view.write(untracked, (root) => {
    root.p = { x: 5, y: 6 } as never;
  });
  view.write(untracked, (root) => {
    root.p!.y = 7;
  });
  t.deepEqual(view.export(), { n: null, p: { x: 5, y: 7 } });
  view.close();
});

test('lists: push, get, set, pop, clear, length, iteration, out of range', (t) => {
  const Root = s.object({ nums: s.list(s.u32()), objs: s.list(s.object({ name: s.string(), tags: s.list(s.string()) })) });
  const view = openView(Root);
  view.write(untracked, (root) => {
    for (let i = 0; i < 100; i++) root.nums.push(i);
    t.is(root.nums.length, 100);
    t.is(root.nums.get(42), 42);
    t.is(root.nums.get(100), undefined);
    root.nums.set(0, 1000);
    t.is(root.nums.pop(), 99);
    const error = t.throws(() => root.nums.set(99, 1));
    t.is((error as NoatunError).code, 'INDEX_OUT_OF_RANGE');
    root.objs.push({ name: 'a', tags: ['x'] });
    const first = root.objs.get(0)!;
    // Growing the list moves its slots, never the objects: the accessor stays valid.
    for (let i = 0; i < 50; i++) root.objs.push({ name: `n${i}`, tags: [] });
    first.tags.push('y');
    t.deepEqual(first.export(), { name: 'a', tags: ['x', 'y'] });
    t.deepEqual([...root.nums].slice(0, 3), [1000, 1, 2]);
  });
  t.is(
    view.read((root) => root.nums.length),
    99,
  );
  view.write(untracked, (root) => root.nums.clear());
  t.deepEqual(
    view.read((root) => root.nums.export()),
    [],
  );
  t.is(
    view.read((root) => root.objs.length),
    51,
  );
  view.close();
});

test('maps with every key type store, find and delete', (t) => {
  const Root = s.object({
    byString: s.map(s.string(), s.u32()),
    byU8: s.map(s.u8(), s.string()),
    byU16: s.map(s.u16(), s.u32()),
    byU32: s.map(s.u32(), s.u32()),
    byI32: s.map(s.i32(), s.u32()),
    byU64: s.map(s.u64(), s.u32()),
    byI64: s.map(s.i64(), s.u32()),
    byBytes: s.map(s.bytes(3), s.u32()),
  });
  const view = openView(Root);
  view.write(untracked, (root) => {
    root.byString.set('', 1).set('å', 2).set('🙂', 3).set('plain', 4);
    root.byU8.set(0, 'zero').set(255, 'max');
    root.byU16.set(65535, 1);
    root.byU32.set(0, 1).set(4294967295, 2);
    root.byI32.set(-5, 1).set(2147483647, 2);
    root.byU64.set(2n ** 64n - 1n, 1).set(0n, 2);
    root.byI64.set(-(2n ** 63n), 1);
    root.byBytes.set(new Uint8Array([1, 2, 3]), 7);
  });
  view.read((root) => {
    t.is(root.byString.get(''), 1);
    t.is(root.byString.get('å'), 2);
    t.is(root.byString.get('🙂'), 3);
    t.is(root.byString.get('missing'), undefined);
    t.is(root.byU8.get(255), 'max');
    t.is(root.byU16.get(65535), 1);
    t.is(root.byU32.get(4294967295), 2);
    t.is(root.byI32.get(-5), 1);
    t.is(root.byU64.get(2n ** 64n - 1n), 1);
    t.is(root.byI64.get(-(2n ** 63n)), 1);
    t.is(root.byBytes.get(new Uint8Array([1, 2, 3])), 7);
    t.false(root.byBytes.has(new Uint8Array([1, 2, 4])));
    t.is(root.byString.size, 4);
    t.deepEqual([...root.byString.keys()].sort(), ['', 'plain', 'å', '🙂']);
  });
  view.write(untracked, (root) => {
    t.true(root.byString.delete('å'));
    t.false(root.byString.delete('å'));
    root.byU8.clear();
  });
  view.read((root) => {
    t.false(root.byString.has('å'));
    t.is(root.byString.size, 3);
    t.is(root.byU8.size, 0);
  });
  view.close();
});

test('a map of 100k entries grows, finds every key, and deletes half (seeded model check)', (t) => {
  const Root = s.object({ m: s.map(s.u32(), s.u32()), objects: s.map(s.string(), Point) });
  const view = openView(Root);
  const seed = 100_000;
  const random = prng(seed);
  const model = new Map<number, number>();
  view.write(untracked, (root) => {
    for (let i = 0; i < 100_000; i++) {
      const key = (random() * 2 ** 32) >>> 0;
      model.set(key, i);
      root.m.set(key, i);
    }
  });
  const keys = [...model.keys()];
  view.write(untracked, (root) => {
    for (let i = 0; i < keys.length; i += 2) {
      root.m.delete(keys[i]!);
      model.delete(keys[i]!);
    }
  });
  view.read((root) => {
    t.is(root.m.size, model.size);
    let mismatches = 0;
    for (const key of keys) if (root.m.get(key) !== model.get(key)) mismatches++;
    t.is(mismatches, 0, `seed ${seed}`);
    t.deepEqual(new Map([...root.m.export()].sort(([a], [b]) => a - b)), new Map([...model].sort(([a], [b]) => a - b)));
  });
  view.close();
});

test('random inserts and deletes on a small table match a JS Map (backward-shift deletion)', (t) => {
  const Root = s.object({ m: s.map(s.string(), s.object({ v: s.u32(), label: s.string() })) });
  const view = openView(Root);
  const seed = 4242;
  const random = prng(seed);
  const model = new Map<string, number>();
  view.write(untracked, (root) => {
    for (let step = 0; step < 20_000; step++) {
      const key = `k${Math.floor(random() * 64)}`;
      if (random() < 0.45) {
        t.is(root.m.delete(key), model.delete(key));
      } else {
        const v = Math.floor(random() * 1000);
        root.m.set(key, { v, label: `${key}=${v}` });
        model.set(key, v);
      }
      if (step % 997 === 0) {
        for (const [k, v] of model) t.is(root.m.get(k)?.v, v, `seed ${seed} step ${step}`);
      }
    }
    t.is(root.m.size, model.size);
    for (const [k, v] of model) t.is(root.m.get(k)?.label, `${k}=${v}`);
  });
  view.close();
});

test('values that do not fit their type throw VALUE_INVALID', (t) => {
  const Root = s.object({
    u: s.u32(),
    b: s.u8(),
    i: s.i32(),
    big: s.u64(),
    flag: s.bool(),
    digest: s.bytes(4),
    when: s.time(),
    text: s.string(),
    list: s.list(s.u32()),
    map: s.map(s.u32(), s.u32()),
  });
  const view = openView(Root);
  const bad: [string, (root: s.View<typeof Root>) => void][] = [
    ['u32 -1', (r) => (r.u = -1)],
    ['u32 2^32', (r) => (r.u = 2 ** 32)],
    ['u32 1.5', (r) => (r.u = 1.5)],
    ['u32 string', (r) => (r.u = '5' as never)],
    ['u8 256', (r) => (r.b = 256)],
    ['i32 2^31', (r) => (r.i = 2 ** 31)],
    ['u64 negative', (r) => (r.big = -1n)],
    ['u64 number', (r) => (r.big = 1 as never)],
    ['bool number', (r) => (r.flag = 1 as never)],
    ['bytes(4) short', (r) => (r.digest = new Uint8Array(3))],
    ['time negative', (r) => (r.when = -1)],
    ['string number', (r) => (r.text = 5 as never)],
    ['list not array', (r) => r.list.assign('x' as never)],
    ['map key', (r) => r.map.set(-1, 1)],
    ['u32 decremented below 0', (r) => (r.u -= 1)],
    // A bigint or a symbol where a number goes (a TypeError of the language before).
    ['u32 bigint', (r) => (r.u = 5n as never)],
    ['u8 symbol', (r) => (r.b = Symbol('x') as never)],
    ['i32 bigint', (r) => (r.i = -1n as never)],
    ['map bigint key', (r) => r.map.set(1n as never, 1)],
    ['map bigint value', (r) => r.map.set(1, 1n as never)],
    ['list bigint element', (r) => r.list.push(1n as never)],
  ];
  for (const [what, write] of bad) {
    const error = t.throws(() => view.write(untracked, write), undefined, what);
    t.is((error as NoatunError).code, 'VALUE_INVALID', what);
  }
  // A long string is quoted in part: the message stays readable.
  const long = t.throws(() => view.write(untracked, (r) => (r.u = 'x'.repeat(100_000) as never)));
  t.regex((long as Error).message, /… \(100000 characters\) is not a valid u32$/);
  t.true((long as Error).message.length < 200);
  t.deepEqual(view.read((root) => root.u), 0);
  view.close();
});

test('bad schemas throw SCHEMA_INVALID', (t) => {
  for (const make of [
    () => s.object({ export: s.u32() }),
    () => s.object({ $hidden: s.u32() }),
    // (It set the prototype of the fields' object: the field vanished, and every write failed.)
    () => s.object(JSON.parse('{"__proto__": 1}') as never),
    () => s.object(Object.defineProperty({}, '__proto__', { value: s.u32(), enumerable: true })),
    () => s.map(s.f64() as never, s.u32()),
    () => s.map(s.bool() as never, s.u32()),
    () => s.object({ x: 5 as never }),
    () => s.opaque(Point as never),
    () => s.bytes(0),
    // A codec missing its functions (it failed only when a value was first written or read).
    () => s.fixed({ name: 'point', size: 4 } as never),
    () => s.fixed({ size: 4, encode: () => undefined, decode: () => 0 } as never),
    // Nested past 64 levels (about a thousand overflowed the stack in Database.open: a bare RangeError).
    () => {
      let type: s.AnySchema = s.u32();
      for (let i = 0; i < 65; i++) type = i % 4 === 0 ? s.object({ c: type }) : i % 4 === 1 ? s.list(type) : i % 4 === 2 ? s.map(s.u32(), type) : s.optional(type);
      return type;
    },
  ]) {
    const error = t.throws(make);
    t.is((error as NoatunError).code, 'SCHEMA_INVALID');
  }
  // 64 levels are a schema.
  let deep: s.AnySchema = s.u32();
  for (let i = 0; i < 63; i++) deep = s.object({ c: deep });
  t.notThrows(() => openView(s.object({ c: deep })));
});

test('writes outside apply throw VIEW_READ_ONLY', (t) => {
  const view = openView(Everything);
  const error = t.throws(() =>
    view.read((root) => {
      root.count = 1;
    }),
  );
  t.is((error as NoatunError).code, 'VIEW_READ_ONLY');
  const viaMap = t.throws(() => view.read((root) => root.numbers.push(1)));
  t.is((viaMap as NoatunError).code, 'VIEW_READ_ONLY');
  view.close();
});

test('accessors used after their callback throw VIEW_ACCESS_OUTSIDE_SESSION', (t) => {
  const Root = s.object({ n: s.u32(), m: s.map(s.string(), Point), l: s.list(s.u32()), o: s.object({ x: s.u32() }) });
  const view = openView(Root);
  view.write(untracked, (root) => root.m.set('a', { x: 1, y: 2 }));
  const kept = view.read((root) => ({ root, map: root.m, list: root.l, nested: root.o, value: root.m.get('a')! }));
  for (const use of [
    () => kept.root.n,
    () => kept.map.get('a'),
    () => kept.list.length,
    () => kept.nested.x,
    () => kept.value.x,
    () => kept.map.size,
  ]) {
    const error = t.throws(use);
    t.is((error as NoatunError).code, 'VIEW_ACCESS_OUTSIDE_SESSION');
  }
  view.close();
});

test('sessions do not nest', (t) => {
  const view = openView(Everything);
  const error = t.throws(() => view.read(() => view.read((root) => root.count)));
  t.is((error as NoatunError).code, 'SESSION_NESTED');
  t.is(
    view.read((root) => root.count),
    0,
  );
  view.close();
});

test('opaque data is write-only inside apply and readable outside', (t) => {
  const view = openView(Everything);
  view.write(untracked, (root) => {
    root.secret = 'x';
    root.events.push('e1');
    for (const read of [() => root.secret, () => root.events.length, () => root.events.export(), () => root.events.get(0)]) {
      const error = t.throws(read);
      t.is((error as NoatunError).code, 'OPAQUE_READ_IN_APPLY');
    }
  });
  view.read((root) => {
    t.is(root.secret, 'x');
    t.is(root.events.length, 1);
    t.deepEqual([...root.events], ['e1']);
  });
  view.close();
});

test('toJSON gives plain JSON-able values', (t) => {
  const Root = s.object({ n: s.u32(), m: s.map(s.string(), s.u32()), l: s.list(s.string()) });
  const view = openView(Root);
  view.write(untracked, (root) => {
    root.n = 1;
    root.m.set('k', 2);
    root.l.push('v');
  });
  t.is(
    view.read((root) => JSON.stringify(root)),
    '{"n":1,"m":{"k":2},"l":["v"]}',
  );
  view.close();
});
