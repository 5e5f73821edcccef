/**
 * Test apps with random workloads, shared by the pruning property test and the simulator: the
 * bank app (with a plain-JS model), an overwrite-heavy "positions" app, a delete-heavy "registry"
 * app, a "warehouse" of nested boxes whose applies sometimes fail, and the "catalog" whose results
 * depend on map iteration order (with a plain-JS model; see `catalog-app.ts`).
 *
 * Views are compared with {@link ordered}: maps stay in their iteration order, so a peer that
 * iterates a map in another order than its peers shows. `normalize` (maps sorted by key) is for
 * comparisons that are about contents only.
 */
import { messagePackCodec, s } from '../../src/index.js';
import {
  applyModel,
  applyOp,
  normalize as normalizeBank,
  type Op as BankOp,
  type Plain as BankPlain,
  Root as BankRoot,
  randomOp as randomBankOp,
} from './bank-app.js';
import { applyCatalog, Catalog, type CatalogEvent, randomCatalogEvent, replayCatalog } from './catalog-app.js';

/** An event as a model replays it: decoded, with its time (`ctx.time`, the id's timestamp). */
export interface TimedEvent<E> {
  readonly event: E;
  readonly time: number;
}

export interface App<E> {
  readonly name: string;
  readonly root: ReturnType<typeof s.object>;
  apply(event: E, root: never, ctx: { readonly time: number }): void;
  random(random: () => number): E;
  normalize(view: unknown): unknown;
  /**
   * A plain-JS replay of events in id order (a failing event leaves no trace), in the shape
   * `root.export()` gives; compare with {@link ordered}.
   */
  readonly model?: (events: Iterable<TimedEvent<E>>) => unknown;
}

/**
 * A view export made comparable without losing order: maps become `[key, value]` pairs in
 * iteration order, object fields are sorted by name (their order means nothing), bigints become
 * strings. `JSON.stringify(ordered(a)) === JSON.stringify(ordered(b))` then says the views are
 * equal and iterate alike.
 */
export function ordered(value: unknown): unknown {
  if (value instanceof Map) return { map: [...value].map(([k, v]) => [ordered(k), ordered(v)]) };
  if (Array.isArray(value)) return value.map(ordered);
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = ordered((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

/** The ordered export of a database's whole view, as a string (see {@link ordered}). */
export function orderedView(db: object): string {
  const readable = db as { read<T>(fn: (root: { export(): unknown }) => T): T };
  return JSON.stringify(ordered(readable.read((root) => root.export())));
}

/** Decodes stored messages (MessagePack, the default codec) into timed events for a model. */
export function timedEvents<E>(messages: Iterable<{ readonly id: { readonly timestamp: number }; readonly payload: Uint8Array }>): TimedEvent<E>[] {
  const codec = messagePackCodec<E>();
  return [...messages].map((m) => ({ event: codec.decode(m.payload), time: m.id.timestamp }));
}

export const bank: App<BankOp> = {
  name: 'bank',
  root: BankRoot,
  apply: applyOp as (event: BankOp, root: never) => void,
  random: randomBankOp,
  normalize: normalizeBank,
  model(events) {
    const model: BankPlain = { total: 0, accounts: new Map(), counters: new Map(), audit: [], lastNote: null };
    for (const { event } of events) applyModel(event, model);
    return model;
  },
};

export const catalog: App<CatalogEvent> = {
  name: 'catalog',
  root: Catalog,
  apply: applyCatalog,
  random: randomCatalogEvent,
  normalize: ordered,
  model: replayCatalog,
};

// Positions: 12 keys overwritten constantly; rarely a read of one key or of all.
export const Positions = s.object({
  at: s.map(s.u32(), s.object({ x: s.i32(), y: s.i32() })),
  seen: s.i32(),
  total: s.i32(),
});
export type PositionEvent = { move: number; x: number; y: number } | { nudge: number } | { sum: true } | { drop: number };
export const positions: App<PositionEvent> = {
  name: 'positions',
  root: Positions,
  apply(event, r) {
    const root = r as s.View<typeof Positions>;
    if ('move' in event) root.at.set(event.move, { x: event.x, y: event.y });
    else if ('nudge' in event) {
      const p = root.at.get(event.nudge);
      if (p !== undefined) p.x += 1;
      root.seen = event.nudge;
    } else if ('sum' in event) {
      let total = 0;
      for (const p of root.at.values()) total += p.x + p.y;
      root.total = total;
    } else root.at.delete(event.drop);
  },
  random(random) {
    const key = Math.floor(random() * 12);
    const r = random();
    if (r < 0.8) return { move: key, x: Math.floor(random() * 1000), y: Math.floor(random() * 1000) };
    if (r < 0.9) return { nudge: key };
    if (r < 0.95) return { sum: true };
    return { drop: key };
  },
  normalize(view) {
    const v = view as { at: Map<number, unknown>; seen: number; total: number };
    return { ...v, at: [...v.at.entries()].sort(([a], [b]) => a - b) };
  },
};

// Registry: inserts and deletes of 20 names, conditional inserts, rare clears, an opaque log.
export const Registry = s.object({
  names: s.map(s.string(), s.string()),
  log: s.opaqueList(s.u32()),
  clears: s.u32(),
});
export type RegistryEvent = { put: string; value: string } | { claim: string; value: string } | { del: string } | { clear: true };
export const registry: App<RegistryEvent> = {
  name: 'registry',
  root: Registry,
  apply(event, r) {
    const root = r as s.View<typeof Registry>;
    if ('put' in event) root.names.set(event.put, event.value);
    else if ('claim' in event) {
      if (!root.names.has(event.claim)) root.names.set(event.claim, event.value);
    } else if ('del' in event) {
      root.names.delete(event.del);
      root.log.push(1);
    } else {
      root.names.clear();
      root.clears = 1;
    }
  },
  random(random) {
    const name = `n${Math.floor(random() * 20)}`;
    const value = `v${Math.floor(random() * 100)}`;
    const r = random();
    if (r < 0.4) return { put: name, value };
    if (r < 0.6) return { claim: name, value };
    if (r < 0.97) return { del: name };
    return { clear: true };
  },
  normalize(view) {
    const v = view as { names: Map<string, string>; log: number[]; clears: number };
    return { ...v, names: [...v.names.entries()].sort(([a], [b]) => (a < b ? -1 : 1)) };
  },
};

// Warehouse: 8 boxes in a tree (optional parent, list of children), stock per article; taking
// more than is in stock throws, so the apply fails and its writes roll back.
export const Warehouse = s.object({
  boxes: s.map(
    s.u32(),
    s.object({ parent: s.optional(s.u32()), children: s.list(s.u32()), stock: s.map(s.u32(), s.u32()) }),
  ),
});
export type WarehouseEvent =
  | { create: number }
  | { move: number; to: number | null }
  | { put: number; article: number; count: number }
  | { take: number; article: number; count: number };
export const warehouse: App<WarehouseEvent> = {
  name: 'warehouse',
  root: Warehouse,
  apply(event, r) {
    const boxes = (r as s.View<typeof Warehouse>).boxes;
    if ('create' in event) {
      if (!boxes.has(event.create)) boxes.set(event.create, { parent: null, children: [], stock: new Map() });
    } else if ('move' in event) {
      const box = boxes.get(event.move);
      if (box === undefined || event.to === event.move) return;
      if (event.to !== null) {
        // Never under one of its own descendants: that would make a cycle.
        let up: number | null = event.to;
        while (up !== null) {
          if (up === event.move) return;
          const above = boxes.get(up);
          if (above === undefined) return;
          up = above.parent;
        }
      }
      const old = box.parent;
      if (old !== null) {
        const siblings = boxes.get(old)!.children;
        for (let i = 0; i < siblings.length; i++) {
          if (siblings.get(i) === event.move) {
            siblings.set(i, siblings.get(siblings.length - 1)!);
            siblings.pop();
            break;
          }
        }
      }
      box.parent = event.to;
      if (event.to !== null) boxes.get(event.to)!.children.push(event.move);
    } else {
      const box = boxes.get('put' in event ? event.put : event.take);
      if (box === undefined) return;
      const have = box.stock.get(event.article) ?? 0;
      if ('put' in event) box.stock.set(event.article, have + event.count);
      else {
        // Writes first, then the check: a failing apply must leave nothing behind.
        box.stock.set(event.article, have - Math.min(have, event.count));
        if (event.count > have) throw new Error(`box ${event.take} holds ${have} of article ${event.article}`);
        if (have === event.count) box.stock.delete(event.article);
      }
    }
  },
  random(random) {
    const box = Math.floor(random() * 8);
    const r = random();
    if (r < 0.15) return { create: box };
    if (r < 0.35) return { move: box, to: random() < 0.2 ? null : Math.floor(random() * 8) };
    const article = Math.floor(random() * 4);
    const count = 1 + Math.floor(random() * 5);
    return r < 0.7 ? { put: box, article, count } : { take: box, article, count };
  },
  normalize(view) {
    const v = view as { boxes: Map<number, { parent: number | null; children: number[]; stock: Map<number, number> }> };
    return [...v.boxes.entries()]
      .sort(([a], [b]) => a - b)
      .map(([id, box]) => [id, box.parent, box.children, [...box.stock.entries()].sort(([a], [b]) => a - b)]);
  },
};

// Shelves: lists whose elements are set, popped and cleared, optionals set again and set to null,
// the same inside map entries, and a note some of those writers leave for a later reader (so a
// writer stays for other reasons than its datum). Data written by several events and then
// destroyed, with the earlier writer still stored: what a rebuild once credited differently.
export const Shelves = s.object({
  shelf: s.list(s.u32()),
  pinned: s.optional(s.string()),
  labels: s.map(s.u32(), s.object({ tags: s.list(s.u32()), title: s.optional(s.f64()) })),
  note: s.u32(),
  seen: s.u32(),
});
export type ShelvesEvent =
  | { push: number }
  | { setAt: number; v: number }
  | { pop: true }
  | { clear: true }
  | { pin: string | null }
  | { label: number; tag: number }
  | { retag: number; at: number; v: number }
  | { untag: number }
  | { title: number; v: number | null }
  | { drop: number }
  | { look: true };
interface ShelvesPlain {
  shelf: number[];
  pinned: string | null;
  labels: Map<number, { tags: number[]; title: number | null }>;
  note: number;
  seen: number;
}
/** Shelves' apply, over the view or over a plain model of the same shape (they behave alike). */
function applyShelves(event: ShelvesEvent, root: ShelvesPlain, list: <T>(items: T[]) => ListLike<T>): void {
  const shelf = list(root.shelf);
  if ('push' in event) {
    shelf.push(event.push);
    if (event.push % 3 === 0) root.note = event.push;
  } else if ('setAt' in event) {
    if (event.setAt < shelf.length) shelf.set(event.setAt, event.v);
  } else if ('pop' in event) shelf.pop();
  else if ('clear' in event) shelf.clear();
  else if ('pin' in event) {
    root.pinned = event.pin;
    if (event.pin !== null) root.note = event.pin.length;
  } else if ('label' in event) {
    const entry = root.labels.get(event.label);
    if (entry === undefined) root.labels.set(event.label, { tags: [event.tag], title: null });
    else list(entry.tags).push(event.tag);
    root.note = event.label;
  } else if ('retag' in event) {
    const tags = root.labels.get(event.retag)?.tags;
    if (tags !== undefined && event.at < list(tags).length) list(tags).set(event.at, event.v);
  } else if ('untag' in event) {
    const tags = root.labels.get(event.untag)?.tags;
    if (tags !== undefined) list(tags).clear();
  } else if ('title' in event) {
    const entry = root.labels.get(event.title);
    if (entry !== undefined) entry.title = event.v;
  } else if ('drop' in event) root.labels.delete(event.drop);
  else root.seen = root.note + shelf.length;
}
interface ListLike<T> {
  readonly length: number;
  push(value: T): void;
  set(index: number, value: T): void;
  pop(): void;
  clear(): void;
}
function plainList<T>(items: T[]): ListLike<T> {
  return {
    get length() {
      return items.length;
    },
    push: (value) => void items.push(value),
    set(index, value) {
      items[index] = value;
    },
    pop: () => void items.pop(),
    clear: () => void items.splice(0),
  };
}
export const shelves: App<ShelvesEvent> = {
  name: 'shelves',
  root: Shelves,
  apply(event, root) {
    // The view's lists have these methods themselves.
    applyShelves(event, root as unknown as ShelvesPlain, (items) => items as unknown as ListLike<never>);
  },
  random(random) {
    const r = random();
    const small = Math.floor(random() * 4);
    if (r < 0.2) return { push: Math.floor(random() * 10) };
    if (r < 0.32) return { setAt: small, v: Math.floor(random() * 10) };
    if (r < 0.38) return { pop: true };
    if (r < 0.44) return { clear: true };
    if (r < 0.54) return { pin: random() < 0.3 ? null : 'abcdef'.slice(0, 1 + small) };
    if (r < 0.64) return { label: small, tag: Math.floor(random() * 10) };
    if (r < 0.72) return { retag: small, at: Math.floor(random() * 3), v: Math.floor(random() * 10) };
    if (r < 0.77) return { untag: small };
    if (r < 0.85) return { title: small, v: random() < 0.3 ? null : Math.floor(random() * 100) / 4 };
    if (r < 0.9) return { drop: small };
    return { look: true };
  },
  normalize: ordered,
  model(events) {
    const root: ShelvesPlain = { shelf: [], pinned: null, labels: new Map(), note: 0, seen: 0 };
    for (const { event } of events) applyShelves(event, root, plainList);
    return root;
  },
};

/** Every app, by name. */
export const apps = { bank, positions, registry, warehouse, catalog, shelves } as Record<string, App<unknown>>;
