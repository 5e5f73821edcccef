/**
 * The "catalog" test app: what real apps do with maps and lists, with results that depend on
 * iteration order. Items (a float price, an expiry time and a nested map of tags) are put,
 * re-put (a re-set key keeps its place), moved to the end (delete and re-insert), repriced and
 * claimed conditionally, swept when expired in a `for…of` loop that deletes as it goes, purged by
 * prefix in one loop, evicted oldest-first (the first key), spread (inserts during a loop, which
 * the loop must visit), shuffled (each key deleted and re-inserted during the loop, so visited
 * again), thinned (deleting entries not yet visited, which the loop must skip) and reset
 * (`clear()` in the middle of a loop, then `set()`: the loop visits the new entries). Derived
 * values record the order: the first key, the keys joined into a string, a float sum in
 * iteration order and the keys each loop visited. A list takes pushes and pops; a charge that
 * overdraws throws after writing, so its apply fails and its writes roll back.
 *
 * `apply` is written once against the few operations a view accessor and a plain JS `Map` (plus
 * {@link PlainList}) share, and {@link replayCatalog} runs it over plain JS values in id order:
 * that is the model the simulator compares against, with JS `Map` iteration semantics as the
 * definition of right.
 */
import { s } from '../../src/index.js';

export const Item = s.object({ price: s.f64(), expires: s.time(), tags: s.map(s.string(), s.u32()) });
export const Catalog = s.object({
  items: s.map(s.string(), Item),
  recent: s.list(s.string()),
  first: s.string(),
  joined: s.string(),
  sum: s.f64(),
  visited: s.string(),
  evicted: s.u32(),
});

export type CatalogEvent =
  | { put: string; price: number; ttl: number }
  | { claim: string; price: number }
  | { reprice: string; price: number }
  | { del: string }
  | { move: string }
  | { tag: string; name: string; n: number }
  | { untag: string; name: string }
  | { derive: true }
  | { sweep: true }
  | { purge: string }
  | { evict: number }
  | { spread: number }
  | { shuffle: number }
  | { thin: number }
  | { reset: true }
  | { clear: true }
  | { push: string }
  | { pop: true }
  | { charge: string; amount: number };

/** What `apply` uses of a map: a view's map accessor and a JS `Map` both have it. */
interface MapLike<K, V> {
  get(key: K): V | undefined;
  has(key: K): boolean;
  set(key: K, value: never): unknown;
  delete(key: K): boolean;
  clear(): void;
  readonly size: number;
  keys(): IterableIterator<K>;
  entries(): IterableIterator<[K, V]>;
  [Symbol.iterator](): IterableIterator<[K, V]>;
}

interface ItemLike {
  price: number;
  expires: number;
  readonly tags: MapLike<string, number>;
}

interface ListLike<T> {
  readonly length: number;
  get(index: number): T | undefined;
  push(value: T): number;
  pop(): T | undefined;
}

interface CatalogLike {
  readonly items: MapLike<string, ItemLike>;
  readonly recent: ListLike<string>;
  first: string;
  joined: string;
  sum: number;
  visited: string;
  evicted: number;
}

interface PlainItem {
  price: number;
  expires: number;
  tags: Map<string, number>;
}

function item(price: number, expires: number, tags: Iterable<[string, number]> = []): PlainItem {
  return { price, expires, tags: new Map(tags) };
}

/** A plain copy of an item, made through the shared interface (so the same code runs on both). */
function copyOf(it: ItemLike): PlainItem {
  return item(it.price, it.expires, it.tags.entries());
}

/** The key after `key` in its family (`a3` → `a4`, `b7` → `b0`). */
function nextKey(key: string): string {
  return `${key[0]}${(Number(key.slice(1)) + 1) % 8}`;
}

/** The fold, on a view root or on the plain model alike. */
export function applyCatalog(event: CatalogEvent, r: unknown, ctx: { readonly time: number }): void {
  const root = r as CatalogLike;
  const items = root.items;
  const set = (key: string, value: PlainItem) => items.set(key, value as never);
  if ('put' in event) set(event.put, item(event.price, ctx.time + event.ttl));
  else if ('claim' in event) {
    if (!items.has(event.claim)) {
      set(event.claim, item(event.price, ctx.time + 60_000));
      root.recent.push(event.claim);
    }
  } else if ('reprice' in event) {
    const it = items.get(event.reprice);
    if (it !== undefined) it.price = event.price;
  } else if ('del' in event) items.delete(event.del);
  else if ('move' in event) {
    const it = items.get(event.move);
    if (it !== undefined) {
      const copy = copyOf(it);
      items.delete(event.move);
      set(event.move, copy);
    }
  } else if ('tag' in event) {
    const it = items.get(event.tag);
    if (it !== undefined) it.tags.set(event.name, ((it.tags.get(event.name) ?? 0) + event.n) as never);
  } else if ('untag' in event) {
    items.get(event.untag)?.tags.delete(event.name);
  } else if ('derive' in event) {
    let first: string | undefined;
    const parts: string[] = [];
    let sum = 0;
    for (const [key, it] of items) {
      first ??= key;
      const tags: string[] = [];
      for (const name of it.tags.keys()) tags.push(name);
      parts.push(tags.length === 0 ? key : `${key}:${tags.join('+')}`);
      sum += it.price;
    }
    root.first = first ?? '';
    root.joined = parts.join(',');
    root.sum = sum;
  } else if ('sweep' in event) {
    // The everyday pattern: delete expired entries while iterating.
    const seen: string[] = [];
    for (const [key, it] of items) {
      seen.push(key);
      if (it.expires <= ctx.time) items.delete(key);
    }
    root.visited = seen.join(',');
  } else if ('purge' in event) {
    const seen: string[] = [];
    for (const key of items.keys()) {
      seen.push(key);
      if (key.startsWith(event.purge)) items.delete(key);
    }
    root.visited = seen.join(',');
  } else if ('evict' in event) {
    // Oldest first: the first key in iteration order goes.
    while (items.size > event.evict) {
      const oldest = items.keys().next().value as string;
      items.delete(oldest);
      root.evicted += 1;
    }
  } else if ('spread' in event) {
    // Inserts during the loop: a JS Map visits them too.
    const seen: string[] = [];
    let added = 0;
    for (const [key, it] of items) {
      seen.push(key);
      const next = nextKey(key);
      if (added < event.spread && !items.has(next)) {
        const price = it.price / 2;
        set(next, item(price, ctx.time + 30_000));
        added++;
      }
    }
    root.visited = seen.join(',');
  } else if ('shuffle' in event) {
    // Each key deleted and re-inserted once during the loop: it moves to the end and is visited again.
    const seen: string[] = [];
    const moved = new Set<string>();
    for (const key of items.keys()) {
      seen.push(key);
      if (moved.size < event.shuffle && !moved.has(key)) {
        moved.add(key);
        const copy = copyOf(items.get(key)!);
        items.delete(key);
        set(key, copy);
      }
    }
    root.visited = seen.join(',');
  } else if ('thin' in event) {
    // Deletes entries not yet visited (the current last one): the loop must skip them.
    const seen: string[] = [];
    let deleted = 0;
    for (const key of items.keys()) {
      seen.push(key);
      if (deleted < event.thin) {
        let last: string | undefined;
        for (const other of items.keys()) last = other;
        if (last !== undefined && last !== key) {
          items.delete(last);
          deleted++;
        }
      }
    }
    root.visited = seen.join(',');
  } else if ('reset' in event) {
    // clear() in the middle of a loop, then set(): the loop goes on with the new entries.
    const seen: string[] = [];
    let cleared = false;
    for (const key of items.keys()) {
      seen.push(key);
      if (!cleared && seen.length === 2) {
        cleared = true;
        items.clear();
        set('z0', item(1.5, ctx.time + 60_000));
        set('z1', item(2.25, ctx.time + 60_000));
      }
    }
    root.visited = seen.join(',');
  } else if ('clear' in event) items.clear();
  else if ('push' in event) root.recent.push(event.push);
  else if ('pop' in event) {
    if (root.recent.length > 0) root.first = root.recent.pop() ?? '';
  } else {
    // Writes first, then the check: a failing apply must leave nothing behind.
    root.first = `charging ${event.charge}`;
    const it = items.get(event.charge);
    if (it === undefined) throw new Error(`no item ${event.charge}`);
    it.price -= event.amount;
    if (it.price < 0) throw new Error(`${event.charge} would cost ${it.price}`);
  }
}

const FAMILIES = ['a', 'b', 'x'];

export function randomCatalogEvent(random: () => number): CatalogEvent {
  const key = `${FAMILIES[Math.floor(random() * FAMILIES.length)]}${Math.floor(random() * 8)}`;
  const price = Math.round(random() * 100_000) / 1000 + 0.1;
  const r = random();
  if (r < 0.2) return { put: key, price, ttl: Math.floor(random() * 120_000) };
  if (r < 0.28) return { claim: key, price };
  if (r < 0.34) return { reprice: key, price };
  if (r < 0.42) return { del: key };
  if (r < 0.48) return { move: key };
  if (r < 0.55) return { tag: key, name: `t${Math.floor(random() * 4)}`, n: 1 + Math.floor(random() * 3) };
  if (r < 0.58) return { untag: key, name: `t${Math.floor(random() * 4)}` };
  if (r < 0.66) return { derive: true };
  if (r < 0.71) return { sweep: true };
  if (r < 0.74) return { purge: FAMILIES[Math.floor(random() * FAMILIES.length)]! };
  if (r < 0.77) return { evict: 4 + Math.floor(random() * 12) };
  if (r < 0.8) return { spread: 1 + Math.floor(random() * 6) };
  if (r < 0.83) return { shuffle: 1 + Math.floor(random() * 6) };
  if (r < 0.86) return { thin: 1 + Math.floor(random() * 3) };
  if (r < 0.875) return { reset: true };
  if (r < 0.885) return { clear: true };
  if (r < 0.93) return { push: key };
  if (r < 0.96) return { pop: true };
  return { charge: key, amount: Math.round(random() * 60_000) / 1000 };
}

/** A list over a JS array with the methods of a view's list accessor that `apply` uses. */
export class PlainList<T> {
  readonly items: T[];

  constructor(items: T[] = []) {
    this.items = items;
  }

  get length(): number {
    return this.items.length;
  }

  get(index: number): T | undefined {
    return this.items[index];
  }

  push(value: T): number {
    return this.items.push(value);
  }

  pop(): T | undefined {
    return this.items.pop();
  }

  export(): T[] {
    return [...this.items];
  }
}

interface PlainCatalog {
  items: Map<string, PlainItem>;
  recent: PlainList<string>;
  first: string;
  joined: string;
  sum: number;
  visited: string;
  evicted: number;
}

function cloneCatalog(state: PlainCatalog): PlainCatalog {
  return {
    ...state,
    items: new Map([...state.items].map(([key, it]) => [key, item(it.price, it.expires, it.tags)])),
    recent: new PlainList([...state.recent.items]),
  };
}

/**
 * The model: `applyCatalog` over a JS `Map` and a {@link PlainList}, events in id order, a failing
 * event leaving no trace. Returns the shape `root.export()` gives (maps as JS `Map`s).
 */
export function replayCatalog(events: Iterable<{ readonly event: CatalogEvent; readonly time: number }>): unknown {
  let state: PlainCatalog = { items: new Map(), recent: new PlainList(), first: '', joined: '', sum: 0, visited: '', evicted: 0 };
  for (const { event, time } of events) {
    const before = cloneCatalog(state);
    try {
      applyCatalog(event, state, { time });
    } catch {
      state = before;
    }
  }
  return { ...state, recent: state.recent.export() };
}
