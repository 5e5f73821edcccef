/**
 * Maps iterate in insertion order, as a JS `Map` does, and behave like one when changed during
 * iteration. Each randomized test replays the same operations on a view map and a JS `Map` and
 * compares every step (the seed is printed on failure).
 */
import test from 'ava';
import { s } from '../../src/index.js';
import { untracked } from '../../src/view/tracking.js';
import { prng, testSeed } from '../helpers/temp.js';
import { openView } from './view-helpers.js';

const Root = s.object({ m: s.map(s.string(), s.u32()), n: s.map(s.u32(), s.object({ v: s.f64() })) });
type MapLike = {
  set(k: string, v: number): unknown;
  delete(k: string): boolean;
  clear(): void;
  get(k: string): number | undefined;
  keys(): IterableIterator<string>;
  entries(): IterableIterator<[string, number]>;
  readonly size: number;
};

/** One random change (set, delete or — rarely — clear), applied to both maps. */
function change(random: () => number, keys: number, a: MapLike, b: MapLike): string {
  const key = `k${Math.floor(random() * keys)}`;
  const r = random();
  if (r < 0.5) {
    const v = Math.floor(random() * 1000);
    a.set(key, v);
    b.set(key, v);
    return `set ${key}`;
  }
  if (r < 0.98) {
    a.delete(key);
    b.delete(key);
    return `delete ${key}`;
  }
  a.clear();
  b.clear();
  return 'clear';
}

test('keys come in insertion order; re-setting keeps the place, delete and re-insert moves to the end', (t) => {
  const view = openView(Root);
  view.write(untracked, (root) => {
    for (const k of ['c', 'a', 'b']) root.m.set(k, 1);
    root.m.set('a', 2);
    t.deepEqual([...root.m.keys()], ['c', 'a', 'b']);
    root.m.delete('c');
    root.m.set('c', 3);
    t.deepEqual([...root.m.entries()], [['a', 2], ['b', 1], ['c', 3]]);
    t.deepEqual([...root.m.export().keys()], ['a', 'b', 'c']);
    root.m.clear();
    root.m.set('z', 0);
    t.deepEqual([...root.m.keys()], ['z']);
  });
  view.close();
});

test('random sets, deletes and clears keep the order of a JS Map, whatever the table has been through', (t) => {
  const seed = testSeed();
  const random = prng(seed);
  const view = openView(Root);
  const model = new Map<string, number>();
  view.write(untracked, (root) => {
    for (let step = 0; step < 20_000; step++) {
      const op = change(random, 1 + (step % 300), root.m as MapLike, model);
      if (step % 97 === 0 || op === 'clear') {
        t.deepEqual([...root.m.entries()], [...model.entries()], `seed ${seed} step ${step} after ${op}`);
      }
    }
    t.is(root.m.size, model.size);
  });
  view.close();
});

test('changing a map while iterating it visits what a JS Map iterator visits', (t) => {
  const seed = testSeed();
  const random = prng(seed);
  const view = openView(Root);
  view.write(untracked, (root) => {
    for (let round = 0; round < 400; round++) {
      const model = new Map<string, number>();
      root.m.clear();
      const size = Math.floor(random() * 40);
      for (let i = 0; i < size; i++) {
        const k = `k${Math.floor(random() * 60)}`;
        root.m.set(k, i);
        model.set(k, i);
      }
      const keys = 1 + Math.floor(random() * 80);
      const a = root.m.entries();
      const b = model.entries();
      const visited: string[] = [];
      for (let step = 0; step < 300; step++) {
        const x = a.next();
        const y = b.next();
        t.deepEqual(x, y, `seed ${seed} round ${round} step ${step}: visited ${visited.join(',')}`);
        if (y.done === true) break;
        visited.push(y.value[0]);
        // Several changes between steps, sometimes enough to move the entries to a new block.
        const changes = random() < 0.1 ? 30 : Math.floor(random() * 3);
        for (let c = 0; c < changes; c++) change(random, keys, root.m as MapLike, model);
      }
    }
  });
  view.close();
});

test('sweeping keys in a for…of loop deletes every one of them', (t) => {
  const view = openView(Root);
  view.write(untracked, (root) => {
    for (let i = 0; i < 200; i++) root.m.set(i % 3 === 0 ? `x${i}` : `y${i}`, i);
    for (const [k] of root.m) if (k.startsWith('x')) root.m.delete(k);
    t.deepEqual([...root.m.keys()].filter((k) => k.startsWith('x')), []);
    // Inserting while iterating visits the new keys too, and the loop ends.
    let visits = 0;
    for (const [k, v] of root.m) {
      visits++;
      if (v < 1000 && visits < 500) root.m.set(`z${k}`, v + 1000);
    }
    t.is(root.m.size, 266);
    t.is(visits, 266);
  });
  view.close();
});

test('a map of objects keeps its value accessors valid while entries move', (t) => {
  const view = openView(Root);
  view.write(untracked, (root) => {
    root.n.set(1, { v: 0.5 });
    const first = root.n.get(1)!;
    for (let i = 2; i < 1000; i++) root.n.set(i, { v: i });
    for (let i = 2; i < 900; i++) root.n.delete(i);
    first.v += 1;
    t.is(root.n.get(1)!.v, 1.5);
    t.deepEqual([...root.n.keys()].slice(0, 3), [1, 900, 901]);
  });
  view.close();
});

/** The u32 whose unseeded hash (the murmur3 finalizer) is `hash`: the finalizer run backwards. */
function unmix(hash: number): number {
  let x = hash >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7ed1b41d); // the inverse of 0xc2b2ae35 modulo 2^32
  x ^= (x >>> 13) ^ (x >>> 26);
  x = Math.imul(x, 0xa5cb9243); // the inverse of 0x85ebca6b
  x ^= x >>> 16;
  return x >>> 0;
}

test('map keys chosen to share a table position without the seed do not share one: each view hashes with a secret of its own', (t) => {
  t.is(Math.imul(0xc2b2ae35, 0x7ed1b41d) >>> 0, 1);
  t.is(Math.imul(0x85ebca6b, 0xa5cb9243) >>> 0, 1);
  // 4,000 keys whose fixed hashes all end in the same 16 bits: in any table up to 65,536 buckets
  // they would all probe from one place (inserts and lookups as slow as the table is full).
  const keys = Array.from({ length: 4000 }, (_, i) => unmix(((i + 1) << 16) | 0x1234));
  const U32 = s.u32() as unknown as { prepare(key: number, seed: number): number };
  t.true(keys.every((key) => (U32.prepare(key, 0) & 0xffff) === 0x1234), 'the keys collide without a seed');
  const Keys = s.object({ m: s.map(s.u32(), s.u32()), t: s.map(s.string(), s.u32()) });
  const seeds = [openView(Keys), openView(Keys)].map((view) => {
    const seed = view.arena.hashSeed;
    view.write(untracked, (root) => {
      for (const key of keys) root.m.set(key, key & 0xff);
      for (const key of keys) root.t.set(String(key), 1);
    });
    t.is(view.read((root) => keys.filter((key) => root.m.get(key) === (key & 0xff)).length), keys.length);
    t.is(view.read((root) => root.t.size), keys.length);
    view.close();
    return seed;
  });
  t.true(seeds[0] !== 0 && seeds[1] !== 0, 'a new view has a seed');
  t.not(seeds[0], seeds[1], 'each view its own');
  const positions = new Set(keys.map((key) => U32.prepare(key, seeds[0]!) & 0xffff));
  t.true(positions.size > keys.length * 0.9, `${positions.size} positions of ${keys.length} keys`);
});
