/**
 * The default codec's `copy` (the value the author's apply gets instead of decoding the payload
 * it has just encoded) against a real round trip. For random values across everything the codec
 * accepts, and every edge the encoder and decoder treat specially: a copy, when given, is fresh,
 * is identical to what its own bytes decode to (types, prototypes, keys in order, holes, numbers
 * by Object.is), and decodes like the original event; a value `validate` refuses is never copied;
 * and a plain value is always copied (the fast path is really taken). Through the public API: the
 * author's apply sees exactly what a peer's apply sees.
 */
import test from 'ava';
import { Packr } from 'msgpackr';
import { type Codec, Database, messagePackCodec, s } from '../../src/index.js';
import { prng, removeTempDirs, tempDir, testSeed } from '../helpers/temp.js';

test.after.always(removeTempDirs);

/**
 * Whether `a` and `b` are the same value down to what an apply could tell apart: Object.is for
 * primitives, the same prototype, the same own keys (Symbols too) in the same order with the same
 * property attributes, the same class of byte arrays and dates.
 */
function identical(a: unknown, b: unknown, at = 'event'): string | undefined {
  if (typeof a !== typeof b) return `${at}: ${typeof a} vs ${typeof b}`;
  if (typeof a !== 'object' || a === null || b === null) return Object.is(a, b) ? undefined : `${at}: ${String(a)} vs ${String(b)}`;
  const x = a as object;
  const y = b as object;
  if (Object.getPrototypeOf(x) !== Object.getPrototypeOf(y)) return `${at}: another prototype`;
  if (x instanceof Date) return (x as Date).getTime() === (y as Date).getTime() ? undefined : `${at}: another date`;
  if (x instanceof Uint8Array) return Buffer.compare(x, y as Uint8Array) === 0 ? undefined : `${at}: other bytes`;
  const keysA = Reflect.ownKeys(x);
  const keysB = Reflect.ownKeys(y);
  if (keysA.length !== keysB.length || keysA.some((k, i) => k !== keysB[i])) {
    return `${at}: keys ${keysA.map(String).join(',')} vs ${keysB.map(String).join(',')}`;
  }
  for (const key of keysA) {
    const da = Object.getOwnPropertyDescriptor(x, key)!;
    const db = Object.getOwnPropertyDescriptor(y, key)!;
    if (da.enumerable !== db.enumerable || da.writable !== db.writable || da.configurable !== db.configurable || (da.get === undefined) !== (db.get === undefined)) {
      return `${at}.${String(key)}: other property attributes`;
    }
    if (da.get !== undefined) return `${at}.${String(key)}: a getter`;
    const why = identical(da.value, db.value, `${at}.${String(key)}`);
    if (why !== undefined) return why;
  }
  return undefined;
}

/** Whether any object inside `copy` is an object of `original` (a copy must share none). */
function shares(copy: unknown, original: unknown): boolean {
  const originals = new Set<unknown>();
  const collect = (v: unknown, depth: number): void => {
    if (typeof v !== 'object' || v === null || originals.has(v) || depth > 600) return;
    originals.add(v);
    for (const key of Reflect.ownKeys(v)) {
      const d = Object.getOwnPropertyDescriptor(v, key)!;
      if (d.get === undefined) collect(d.value, depth + 1);
    }
  };
  collect(original, 0);
  const walk = (v: unknown): boolean => {
    if (typeof v !== 'object' || v === null) return false;
    if (originals.has(v)) return true;
    return Object.values(v).some(walk);
  };
  return walk(copy);
}

const EDGE_NUMBERS = [
  0, -0, 1, -1, 0.5, -0.1, 127, 128, 255, 256, -32, -33, -128, -129, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32,
  -(2 ** 31), -(2 ** 31) - 1, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 2 ** 63, -(2 ** 63), 2 ** 64, 1e300, -1e300, 5e-324, 3.4028234663852886e38,
  1.1754943508222875e-38, 16777217, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.EPSILON,
];
const EDGE_STRINGS = [
  '', 'a', 'é', '日本', '😀', 'a😀b', '\u0000', '__proto__', 'hasOwnProperty', 'constructor', 'toJSON', '0', '1', '4294967295', '-1', '01',
  'x'.repeat(31), 'x'.repeat(32), 'é'.repeat(40), 'x'.repeat(255), 'x'.repeat(256), '😀'.repeat(300), 'x'.repeat(70_000),
  '\ud800', 'a\udc00', '😀'.slice(0, 1), '\udfff\ud800',
];

/** A random value from everything `validate` accepts, and now and then something it refuses. */
function randomValue(random: () => number, depth: number): unknown {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const r = random();
  const leaf = depth >= 5 || r < 0.55;
  if (leaf) {
    const kind = Math.floor(random() * 14);
    switch (kind) {
      case 0:
        return undefined;
      case 1:
        return null;
      case 2:
        return random() < 0.5;
      case 3:
      case 4:
        return pick(EDGE_NUMBERS);
      case 5:
        return Math.floor((random() - 0.5) * 2 ** Math.floor(random() * 60));
      case 6:
        return (random() - 0.5) * 10 ** Math.floor(random() * 40 - 20);
      case 7:
      case 8:
        return pick(EDGE_STRINGS);
      case 9:
        return String.fromCharCode(...Array.from({ length: Math.floor(random() * 40) }, () => Math.floor(random() * 0x10000)));
      case 10:
        // Rare on purpose: values the copy leaves to the bytes (or validate refuses).
        if (random() < 0.5) return pick([10n, -(2n ** 63n), 2n ** 64n - 1n, new Date(random() * 4e12), Uint8Array.of(1, 2, 3), Buffer.from('ab')]);
        return pick([new Map([[1, 2]]), new Set([1]), new Float64Array(2), () => 1, Symbol('s'), new (class Thing {})(), 2n ** 64n, new Date(Number.NaN)]);
      default:
        return Math.floor(random() * 1000);
    }
  }
  const size = Math.floor(random() * 6);
  if (r < 0.75) {
    const array: unknown[] = [];
    for (let i = 0; i < size; i++) array.push(randomValue(random, depth + 1));
    if (random() < 0.1) array.length += 2; // holes at the end
    if (random() < 0.1 && array.length > 1) delete array[0]; // a hole at the start
    return array;
  }
  const object: Record<string, unknown> = random() < 0.15 ? Object.create(null) : {};
  for (let i = 0; i < size; i++) {
    const key = random() < 0.3 ? pick(EDGE_STRINGS.slice(0, 20)) : `k${Math.floor(random() * 20)}`;
    const value = randomValue(random, depth + 1);
    // Own data properties whatever the key (a plain assignment of __proto__ would set the prototype).
    Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
  }
  const extra = random();
  if (extra < 0.05) Object.defineProperty(object, 'hidden', { value: 1, enumerable: false });
  else if (extra < 0.1) {
    let calls = 0;
    Object.defineProperty(object, 'stable', { get: () => 7, enumerable: true });
    Object.defineProperty(object, 'counter', { get: () => ++calls, enumerable: true });
  } else if (extra < 0.12) (object as Record<symbol, unknown>)[Symbol('s')] = 1;
  else if (extra < 0.14 && depth === 0) {
    const shared = { s: 1 };
    object.a = shared;
    object.b = [shared, shared];
  } else if (extra < 0.15) object.self = object;
  return object;
}

/** Whether `v` is made only of what the copy promises to carry (see copyPacked in codec.ts). */
function plain(v: unknown, depth = 0): boolean {
  if (depth > 512) return false;
  switch (typeof v) {
    case 'string':
      return v.isWellFormed();
    case 'number':
    case 'boolean':
    case 'undefined':
      return true;
    case 'object':
      break;
    default:
      return false;
  }
  if (v === null) return true;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!plain(v[i], depth + 1)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(v);
  if ((proto !== Object.prototype && proto !== null) || Object.getOwnPropertySymbols(v).length !== 0) return false;
  for (const key of Object.keys(v)) {
    if (key === '__proto__' || key === 'hasOwnProperty' || key === 'toJSON' || !key.isWellFormed()) return false;
    if (!plain((v as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}

/** Whether reading `v` twice could give different values (a getter that counts). */
function volatile(v: unknown, seen = new Set<unknown>()): boolean {
  if (typeof v !== 'object' || v === null || seen.has(v)) return false;
  seen.add(v);
  if (Object.getOwnPropertyDescriptor(v, 'counter')?.get !== undefined) return true;
  return Object.values(v).some((x) => volatile(x, seen));
}

const codec = messagePackCodec<unknown>() as Required<Codec<unknown>>;

for (const seed of [testSeed(), 1, 2]) {
  test(`the default codec's copy is what its bytes decode to, for random values (seed ${seed})`, (t) => {
    const random = prng(seed);
    let copied = 0;
    let left = 0;
    for (let i = 0; i < 3000; i++) {
      const v = randomValue(random, 0);
      const copy = codec.copy(v);
      if (copy === undefined) {
        left++;
        if (plain(v)) t.fail(`case ${i}: a plain value was not copied`);
        continue;
      }
      copied++;
      if (!plain(v)) t.fail(`case ${i}: a value outside the plain ones was copied`);
      t.notThrows(() => codec.validate(v), `case ${i}: copied, but validate refuses it`);
      const bytes = codec.encode(copy.value);
      // The bytes the copy came with are msgpackr's, byte for byte: what the database stores.
      if (copy.bytes === undefined || Buffer.compare(copy.bytes, bytes) !== 0) {
        t.fail(`case ${i} (seed ${seed}): the copy's bytes are not msgpackr's: ${copy.bytes && Buffer.from(copy.bytes).toString('hex').slice(0, 80)} vs ${Buffer.from(bytes).toString('hex').slice(0, 80)}`);
      }
      const why = identical(copy.value, codec.decode(bytes));
      if (why !== undefined) t.fail(`case ${i} (seed ${seed}): the copy differs from its decoded bytes: ${why}`);
      if (!volatile(v)) {
        const direct = identical(codec.decode(codec.encode(v)), codec.decode(bytes));
        if (direct !== undefined) t.fail(`case ${i} (seed ${seed}): the copy encodes otherwise than the event: ${direct}`);
      }
      if (shares(copy.value, v)) t.fail(`case ${i}: the copy shares an object with the event`);
    }
    t.true(copied > 1000, `copied ${copied}`);
    t.true(left > 100, `left to the bytes ${left}`);
  });
}

test('the copy leaves each edge to the bytes, and reads a getter once', (t) => {
  const refused: unknown[] = [
    '\ud800',
    ['ok', 'a\udc00'],
    JSON.parse('{"__proto__": 1}'),
    { hasOwnProperty: 1 },
    Object.assign(Object.create(null), { toJSON: 'x' }),
    { ['\udc00']: 1 },
    { [Symbol('s')]: 1 },
    10n,
    new Date(0),
    Uint8Array.of(1),
    new (class Thing {})(),
    () => 1,
  ];
  for (const [i, v] of refused.entries()) t.is(codec.copy(v), undefined, `value ${i}`);
  // Nested deeper than the encoder allows, and a cycle: validate says why.
  let deep: unknown = 1;
  for (let i = 0; i < 600; i++) deep = [deep];
  t.is(codec.copy(deep), undefined);
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  t.is(codec.copy(cycle), undefined);
  // Too many slots to copy (each encodes to a byte at least, past the largest payload): left to
  // the encoder, which refuses them with an error, instead of copying a billion holes.
  t.is(codec.copy(new Array(1e9)), undefined);
  const holes = new Array(2 ** 20);
  t.is(codec.copy(Array.from({ length: 17 }, () => holes)), undefined);
  t.not(codec.copy(Array.from({ length: 15 }, () => holes)), undefined);
  t.is(codec.copy(-0)?.value, 0);
  const holey = [1, 2, 3];
  delete holey[1];
  const filled = codec.copy(holey)?.value as unknown[];
  t.true(1 in filled, 'a hole is copied as undefined, as it is decoded');
  t.deepEqual(filled, [1, undefined, 3]);
  let calls = 0;
  const event = Object.defineProperty({}, 'n', { get: () => ++calls, enumerable: true });
  const copy = codec.copy(event)!;
  t.is(calls, 1);
  t.deepEqual(codec.decode(codec.encode(copy.value)), { n: 1 });
});

test("the copy's bytes are msgpackr's at every header size, across pools, and stay as they were", (t) => {
  const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'bigint' });
  const values: unknown[] = [];
  // Strings whose UTF-8 length crosses each header's bound, from one-, two-, three- and four-byte characters.
  for (const unit of ['x', 'é', '日', '😀']) {
    for (const n of [0, 1, 7, 8, 10, 11, 21, 31, 32, 63, 64, 65, 85, 86, 127, 128, 255, 256, 21_845, 21_846, 65_535, 65_536, 70_000]) {
      values.push(unit.repeat(n));
    }
  }
  for (let n = 0; n < 40; n++) values.push(Array.from({ length: n * n }, (_, i) => i - 200));
  values.push(Array.from({ length: 70_000 }, (_, i) => i % 3));
  values.push(Object.fromEntries(Array.from({ length: 0xffff }, (_, i) => [`k${i}`, i])));
  for (const number of EDGE_NUMBERS) values.push(number, [number], { number });
  // A large event (a fresh pool, not kept), then small ones again.
  values.push({ big: 'y'.repeat(3 * 2 ** 20) }, [1, 2, 3]);
  const made: { copy: Uint8Array; expected: Uint8Array }[] = [];
  for (let round = 0; round < 3; round++) {
    for (const [i, v] of values.entries()) {
      const copy = codec.copy(v);
      if (copy?.bytes === undefined) {
        t.fail(`value ${i}: not copied`);
        continue;
      }
      const expected = Uint8Array.prototype.slice.call(packr.pack(v));
      if (Buffer.compare(copy.bytes, expected) !== 0) t.fail(`value ${i} (round ${round}): other bytes than msgpackr's`);
      made.push({ copy: copy.bytes, expected });
    }
  }
  // Every payload handed out is a view of a pool: later copies never overwrite it.
  for (const [i, { copy, expected }] of made.entries()) if (Buffer.compare(copy, expected) !== 0) t.fail(`payload ${i} changed`);
  // msgpackr refuses an object of more than 65535 keys: it is not copied, and the event does not encode.
  const wide = Object.fromEntries(Array.from({ length: 0x10000 }, (_, i) => [`k${i}`, i]));
  t.is(codec.copy(wide), undefined);
  t.throws(() => codec.encode(wide));
  // A getter that copies another event while this one is being written: that one is left to the
  // encoder, and neither's bytes are mixed into the other's.
  const inner: { copy?: ReturnType<typeof codec.copy> | 'unset' } = { copy: 'unset' };
  const outer = Object.defineProperty({ a: 'x'.repeat(100) }, 'b', {
    get: () => {
      inner.copy = codec.copy({ c: [1, 2, 3] });
      return 'y';
    },
    enumerable: true,
  });
  const copy = codec.copy(outer)!;
  t.is(inner.copy, undefined);
  t.deepEqual(Buffer.from(copy.bytes!), Buffer.from(packr.pack({ a: 'x'.repeat(100), b: 'y' })));
  t.pass();
});

test("the author's apply sees what a peer's apply sees", async (t) => {
  const Root = s.object({ n: s.u32() });
  const seen = new Map<string, unknown[]>();
  const open = async (name: string) => {
    const events: unknown[] = [];
    seen.set(name, events);
    return Database.open<unknown, typeof Root>({
      path: tempDir(),
      root: Root,
      apply(event, root) {
        events.push(event);
        root.n = root.n + 1;
      },
    });
  };
  const author = await open('author');
  const peer = await open('peer');
  t.teardown(async () => {
    await author.close();
    await peer.close();
  });
  const random = prng(testSeed());
  let appended = 0;
  for (let i = 0; i < 60; i++) {
    await author.transaction((tx) => {
      for (let j = 0; j < 5; j++) {
        const v = randomValue(random, 0);
        try {
          tx.append(v);
          appended++;
        } catch {
          // Refused by validate: not stored anywhere.
        }
      }
    });
  }
  await peer.ingest([...author.messages()].map((m) => m.bytes));
  const mine = seen.get('author')!;
  const theirs = seen.get('peer')!;
  t.is(mine.length, appended);
  t.is(theirs.length, appended);
  for (let i = 0; i < appended; i++) {
    const why = identical(mine[i], theirs[i]);
    if (why !== undefined) t.fail(`event ${i}: ${why}`);
  }
  t.pass();
});
