/**
 * The accessor classes generated per type. Queries (read sessions) go through classes of their own
 * that report no reads and keep no children, apply (write sessions) through classes that track;
 * the root's accessors are reused from session to session. These tests hold both kinds to the
 * same answers, on every key type and every kind of value, against a plain JS model, with keys
 * and indices a caller may get wrong, and hold the reused root to the session rules.
 */
import test from 'ava';
import type { NoatunError } from '../../src/errors.js';
import * as s from '../../src/view/schema.js';
import { untracked } from '../../src/view/tracking.js';
import { prng, removeTempDirs } from '../helpers/temp.js';
import { openView, Recorder } from './view-helpers.js';

test.after.always(removeTempDirs);

const Item = s.object({ n: s.u32(), tags: s.list(s.string()), more: s.map(s.string(), s.u8()) });
const Root = s.object({
  byU8: s.map(s.u8(), s.u32()),
  byU16: s.map(s.u16(), s.string()),
  byU32: s.map(s.u32(), Item),
  byI32: s.map(s.i32(), s.list(s.i32())),
  byString: s.map(s.string(), s.optional(s.u32())),
  byBytes: s.map(s.bytes(3), s.map(s.u32(), s.f64())),
  byBig: s.map(s.u64(), s.bool()),
  items: s.list(Item),
  counts: s.list(s.u16()),
  inner: s.object({ deep: s.map(s.u32(), s.u32()), list: s.list(s.u32()) }),
});

type MapName = 'byU8' | 'byU16' | 'byU32' | 'byI32' | 'byString' | 'byBytes' | 'byBig';

/** A random key of each map (from a small range, so keys repeat and deletes hit). */
const randomKey: Record<MapName, (r: () => number) => unknown> = {
  byU8: (r) => Math.floor(r() * 40) * 6,
  byU16: (r) => Math.floor(r() * 40) * 1500,
  byU32: (r) => (Math.floor(r() * 40) * 0x7ffffff) >>> 0,
  byI32: (r) => (Math.floor(r() * 40) - 20) * 100_000_000,
  byString: (r) => `k${Math.floor(r() * 40)}`,
  byBytes: (r) => new Uint8Array([Math.floor(r() * 4), Math.floor(r() * 10), 7]),
  byBig: (r) => BigInt(Math.floor(r() * 40)) * 2n ** 58n,
};

/** A random value of each map. */
const randomValue: Record<MapName, (r: () => number) => unknown> = {
  byU8: (r) => Math.floor(r() * 2 ** 32),
  byU16: (r) => 'v'.repeat(Math.floor(r() * 5)),
  byU32: (r) => ({ n: Math.floor(r() * 100), tags: ['a', 'b'].slice(0, Math.floor(r() * 3)), more: new Map([['x', Math.floor(r() * 256)]]) }),
  byI32: (r) => Array.from({ length: Math.floor(r() * 4) }, () => Math.floor(r() * 200) - 100),
  byString: (r) => (r() < 0.3 ? null : Math.floor(r() * 1000)),
  byBytes: (r) => new Map([[Math.floor(r() * 9), r()]]),
  byBig: (r) => r() < 0.5,
};

/** Keys a caller may get wrong: each must be refused the same way by both kinds of accessor. */
const wrongKeys: Record<MapName, unknown[]> = {
  byU8: [-1, 256, 1.5, Number.NaN, '1', null, 1n],
  byU16: [-1, 65536, 0.5, '0', Symbol('k')],
  byU32: [-1, 2 ** 32, 1.25, Number.POSITIVE_INFINITY, '7', undefined, 7n, Symbol('k')],
  byI32: [2 ** 31, -(2 ** 31) - 1, 0.5, '1', -1n],
  byString: [1, null, new Uint8Array(1)],
  byBytes: [new Uint8Array(2), 'abc', 3],
  byBig: [-1n, 2n ** 64n, 1],
};

const names = Object.keys(randomKey) as MapName[];

/** A map key as a string, for the JS model (bytes and bigints are not equal by value in a Map). */
function modelKey(key: unknown): string {
  if (key instanceof Uint8Array) return `bytes:${[...key].join(',')}`;
  return `${typeof key}:${String(key)}`;
}

/** What a lookup gave, as plain JS (`export()` of an accessor), or the code it threw. */
function outcome(read: () => unknown): unknown {
  try {
    const value = read();
    if (value !== null && typeof value === 'object' && 'export' in value) return { value: (value as { export(): unknown }).export() };
    return { value };
  } catch (error) {
    return { code: (error as NoatunError).code ?? String(error) };
  }
}

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`seed ${seed}: read-session and apply accessors answer every lookup the same, and as a JS model does`, (t) => {
    t.log(`seed ${seed}`);
    const r = prng(seed);
    const view = openView(Root);
    const model = new Map<MapName, Map<string, unknown>>(names.map((name) => [name, new Map()]));
    const plainOf = (name: MapName, value: unknown) => view.read((root) => outcome(() => root[name].get(value as never)));
    for (let step = 0; step < 400; step++) {
      const name = names[Math.floor(r() * names.length)]!;
      const key = randomKey[name](r);
      if (r() < 0.25) {
        view.write(untracked, (root) => (root[name] as { delete(k: unknown): boolean }).delete(key));
        model.get(name)!.delete(modelKey(key));
      } else {
        const value = randomValue[name](r);
        view.write(untracked, (root) => (root[name] as { set(k: unknown, v: unknown): void }).set(key, value));
        // The model keeps what the view gives back for the value (its plain form).
        model.get(name)!.set(modelKey(key), (plainOf(name, key) as { value: unknown }).value);
      }
      if (step % 20 !== 19) continue;
      for (const mapName of names) {
        const probes = [...Array.from({ length: 12 }, () => randomKey[mapName](r)), ...wrongKeys[mapName]];
        for (const probe of probes) {
          const inRead = view.read((root) => outcome(() => root[mapName].get(probe as never)));
          const inApply = view.write(new Recorder(1), (root) => outcome(() => root[mapName].get(probe as never)));
          t.deepEqual(inRead, inApply, `${mapName}.get(${String(probe)}) at step ${step}`);
          if ('code' in (inRead as object)) {
            t.true(wrongKeys[mapName].includes(probe), `${mapName}.get(${String(probe)}) threw ${JSON.stringify(inRead)}`);
            // A code of ours (VALUE_INVALID), not a TypeError of the language (a bigint or a symbol met `>>>`).
            t.regex((inRead as { code: string }).code, /^[A-Z_]+$/, `${mapName}.get(${String(probe)})`);
          } else {
            const expected = model.get(mapName)!.get(modelKey(probe));
            t.deepEqual((inRead as { value: unknown }).value, expected, `${mapName}.get(${String(probe)}) against the model`);
          }
        }
      }
    }
    view.close();
  });
}

test('values reached through maps and lists read the same in both kinds of session, down every level', (t) => {
  const view = openView(Root);
  view.write(untracked, (root) => {
    root.byU32.set(5, { n: 1, tags: ['x', 'y'], more: new Map([['m', 9]]) });
    root.items.push({ n: 2, tags: ['z'], more: new Map() });
    root.counts.push(65535);
    root.counts.push(0);
    root.inner.deep.set(3, 4);
    root.inner.list.push(8);
  });
  const walk = (root: s.View<typeof Root>) => {
    const item = root.byU32.get(5)!;
    const first = root.items.get(0)!;
    return {
      n: item.n,
      tags: [item.tags.length, item.tags.get(0), item.tags.get(1), item.tags.get(2)],
      more: [item.more.get('m'), item.more.get('none')],
      first: [first.n, first.tags.get(0), first.more.get('m')],
      counts: [root.counts.length, root.counts.get(0), root.counts.get(1), root.counts.get(2)],
      inner: [root.inner.deep.get(3), root.inner.deep.get(4), root.inner.list.length, root.inner.list.get(0)],
      wrongIndices: [-1, 0.5, Number.NaN, 2 ** 32, '0', 0n].map((index) => root.counts.get(index as never)),
    };
  };
  const expected = {
    n: 1,
    tags: [2, 'x', 'y', undefined],
    more: [9, undefined],
    first: [2, 'z', undefined],
    counts: [2, 65535, 0, undefined],
    inner: [4, undefined, 1, 8],
    wrongIndices: [undefined, undefined, undefined, undefined, undefined, undefined],
  };
  t.deepEqual(view.read(walk), expected);
  t.deepEqual(view.write(new Recorder(1), walk), expected);
  view.close();
});

test('a lookup in apply reports the reads it depends on; a query reports nothing and needs no context', (t) => {
  const view = openView(Root);
  const writer = new Recorder(7);
  view.write(writer, (root) => root.byU8.set(6, 60));
  const reader = new Recorder(8);
  view.write(reader, (root) => {
    root.byU8.get(6); // a hit: the key's and the value's trackers, both owned by event 7
    root.byU8.get(12); // a miss: the membership tracker, owned by event 7
  });
  t.deepEqual(reader.reads, [7, 7, 7]);
  t.is(
    view.read((root) => root.byU8.get(6)),
    60,
  );
  view.close();
});

test("the root's accessors are reused from session to session, and hold the session rules", (t) => {
  const view = openView(Root);
  view.write(untracked, (root) => {
    root.byU32.set(1, { n: 10, tags: ['a'], more: new Map() });
    root.inner.list.push(3);
  });
  // Kept past their session, accessors throw on use, the reused root and its children included.
  const kept = view.read((root) => ({ root, map: root.byU32, item: root.byU32.get(1)!, inner: root.inner, list: root.inner.list }));
  for (const use of [
    () => kept.root.byU32.get(1),
    () => kept.map.get(1),
    () => kept.item.n,
    () => kept.item.tags.length,
    () => kept.item.more.get('x'),
    () => kept.inner.list.get(0),
    () => kept.list.length,
  ]) {
    t.is((t.throws(use) as NoatunError).code, 'VIEW_ACCESS_OUTSIDE_SESSION');
  }
  // Each new session reads the view as it is now, through a root moved into that session.
  view.write(untracked, (root) => root.byU32.set(1, { n: 11, tags: [], more: new Map() }));
  t.is(
    view.read((root) => root.byU32.get(1)!.n),
    11,
  );
  t.is(
    view.read((root) => root.inner.list.get(0)),
    3,
  );
  // A query may not write, whichever accessor it goes through.
  for (const write of [
    (root: s.View<typeof Root>) => root.byU32.set(2, { n: 1, tags: [], more: new Map() }),
    (root: s.View<typeof Root>) => {
      root.byU32.get(1)!.n = 5;
    },
    (root: s.View<typeof Root>) => root.byU32.get(1)!.tags.push('x'),
    (root: s.View<typeof Root>) => root.inner.deep.set(1, 1),
  ]) {
    t.is((t.throws(() => view.read(write)) as NoatunError).code, 'VIEW_READ_ONLY');
  }
  // A throwing query ends its session: the next one runs.
  t.throws(() =>
    view.read(() => {
      throw new Error('boom');
    }),
  );
  t.is(
    view.read((root) => root.byU32.get(1)!.n),
    11,
  );
  view.close();
  t.is((t.throws(() => view.read((root) => root.byU32)) as NoatunError).code, 'CLOSED');
});
