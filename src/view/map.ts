/**
 * Maps: hash tables inside the arena that iterate in insertion order, as a JS `Map` does.
 *
 * Why insertion order: every peer must derive the same values from the same events, and an
 * `apply` that takes "the first key", joins keys or sums floats in iteration order derives values
 * from that order. An order that depends on the table's capacity or history (as slot order of an
 * open-addressing table does) differs between a peer that applied every event in time and one
 * that rebuilt, compacted or joined later. Insertion order is a function of the map's contents
 * and of the order of the events that inserted them, so it is the same everywhere.
 *
 * Layout. The header (inside the parent) is
 * `[block, count, used, capacity, membership tracker, clear tracker]`. The block holds
 * `[forward, pad]`, then `capacity` entries in insertion order, then an index of `2 × capacity`
 * one-word slots (linear probing, backward-shift deletion). An entry is
 * `[state, key slot, value slot]` where state is the key's hash with the top bit set, or 0 once
 * the entry is deleted. An index slot holds an entry number plus one (0 = empty). Deleting marks
 * the entry dead and unlinks it from the index; an insert appends at `used`. When the entries are
 * used up, the live ones are copied, in order, into a fresh block sized for them (so a table may
 * also shrink), and the old block's `forward` word points at the new one.
 *
 * Changing a map while iterating it behaves like a JS `Map`: a cursor walks entry numbers and
 * skips dead entries, reads `used` afresh at every step (so entries added during the loop are
 * visited) and, when the block was replaced under it, follows the `forward` chain, translating
 * its position into the number of live entries before it (the old block is never written again,
 * so that count is still what it was when the entries moved). A `clear()` marks the old block
 * {@link CLEARED}, and a cursor then goes on with whatever was inserted after the clear.
 *
 * Tracking: a lookup that finds a key reads what it returns (the value's tracker, or the key's
 * tracker for `has`); a lookup that finds nothing reads the membership tracker, which every insert
 * and delete writes, so "k is absent" is a dependency like any other read. Iterating reads the
 * membership and every visited key.
 */
import { ErrorCode, NoatunError, ValueError } from '../errors.js';
import type { Arena, WordOffset } from './arena.js';
import {
  alignUp,
  type AnyType,
  type CompositeType,
  describeValue,
  isPlainRecord,
  jsonify,
  slotAlign,
  slotAssign,
  slotDestroy,
  slotExport,
  slotGet,
  slotInit,
  slotWords,
} from './composite.js';
import { MAP_INITIAL_CAPACITY, NO_OWNER } from './constants.js';
import type { KeyType } from './leaf.js';
import type { Ordinal } from './tracking.js';

/** Words of a map's header, relative to the map. */
export const MapWord = {
  /** The block of entries and index, 0 while the map has never held an entry since a clear. */
  BLOCK: 0,
  /** Live entries. */
  COUNT: 1,
  /** Entries used in the block, dead ones included: the next insert goes at this number. */
  USED: 2,
  /** Entries the block has room for (a power of two); the index has twice as many slots. */
  CAPACITY: 3,
  /** Owned by the last insert, delete or clear: a lookup that misses reads it. */
  MEMBERSHIP: 4,
  /** Owned (opaquely) by the last clear. */
  CLEAR_TRACKER: 5,
} as const;

/** Words of the block before the first entry: `[forward, pad]` (keeps entries 8-byte aligned). */
const BLOCK_HEADER = 2;
/** The `forward` value of a block emptied by `clear()` (no block starts at word 1: the header does). */
const CLEARED = 1;
/** Entry state bit: the entry is live; the other 31 bits are the key's hash. */
const OCCUPIED = 0x80000000;

/**
 * `map(K, V)`: see the module comment for layout, order and tracking.
 */
export class MapType implements CompositeType {
  readonly kind = 'map';
  readonly leaf = false as const;
  readonly words = 6;
  readonly align = 1 as const;
  readonly key: KeyType<unknown>;
  readonly value: AnyType;
  /** Word offset of the key slot inside an entry. */
  readonly keyOffset: number;
  /** Word offset of the value slot inside an entry. */
  readonly valueOffset: number;
  /** Words of one entry (even, so 8-byte values stay aligned). */
  readonly entryWords: number;
  readonly description: string;
  /** The index slot of the entry the last successful {@link find} returned. */
  foundSlot = -1;
  /** The empty index slot where the last unsuccessful {@link find} stopped (-1: no block). */
  freeSlot = -1;

  constructor(key: KeyType<unknown>, value: AnyType) {
    if (!key.leaf || !key.keyable) {
      throw new NoatunError(
        ErrorCode.SCHEMA_INVALID,
        `${key.description ?? String(key)} cannot be a map key (use string, an integer type, messageId or bytes(n))`,
      );
    }
    this.key = key;
    this.value = value;
    this.keyOffset = alignUp(1, key.align);
    this.valueOffset = alignUp(this.keyOffset + key.words, slotAlign(value));
    this.entryWords = alignUp(this.valueOffset + slotWords(value), 2);
    this.description = `map(${key.description},${value.description})`;
  }

  get(a: Arena, session: number, w: WordOffset): MapAccessor<unknown, unknown, unknown> {
    return new MapAccessor(this, a, session, w);
  }

  /** Word of entry number `n` of `block`. */
  entryAt(block: WordOffset, n: number): WordOffset {
    return block + BLOCK_HEADER + n * this.entryWords;
  }

  /**
   * Finds the staged key (see {@link KeyType.prepare}) with hash `hash`; returns its entry's
   * word (and sets {@link foundSlot}), or -1 (and sets {@link freeSlot}).
   */
  find(a: Arena, w: WordOffset, hash: number): WordOffset {
    const u32 = a.u32;
    const capacity = u32[w + MapWord.CAPACITY]!;
    if (capacity === 0) {
      this.freeSlot = -1;
      return -1;
    }
    const entryWords = this.entryWords;
    const entries = u32[w + MapWord.BLOCK]! + BLOCK_HEADER;
    const index = entries + capacity * entryWords;
    const mask = capacity * 2 - 1;
    const state = (hash | OCCUPIED) >>> 0;
    const key = this.key;
    const keyOffset = this.keyOffset;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const n = u32[index + i]!;
      if (n === 0) {
        this.freeSlot = index + i;
        return -1;
      }
      const entry = entries + (n - 1) * entryWords;
      if (u32[entry] === state && key.matches(a, entry + keyOffset)) {
        this.foundSlot = index + i;
        return entry;
      }
    }
  }

  /** Inserts or replaces the value under `key`. */
  setAt(a: Arena, w: WordOffset, key: unknown, value: unknown): void {
    const hash = this.key.prepare(key);
    const found = this.find(a, w, hash);
    if (found >= 0) {
      // Replacing the value of an existing key observes that the key exists: a read of the
      // key's tracker (its inserter). Without it, a replay without the inserter and the event
      // that later deleted the key would see this event create the key, and keep it.
      a.read(found + this.keyOffset + this.key.tracker);
      slotAssign(this.value, a, found + this.valueOffset, value);
      return;
    }
    a.writer();
    const count = a.u32[w + MapWord.COUNT]!;
    if (a.u32[w + MapWord.USED] === a.u32[w + MapWord.CAPACITY]) {
      this.#moveEntries(a, w, count + 1);
      this.find(a, w, hash);
    }
    const slot = this.freeSlot;
    const u32 = a.u32;
    const used = u32[w + MapWord.USED]!;
    const entry = this.entryAt(u32[w + MapWord.BLOCK]!, used);
    const state = (hash | OCCUPIED) >>> 0;
    a.set32(entry, state);
    // The key goes in before the value: importing the value may stage other keys.
    this.key.store(a, entry + this.keyOffset);
    a.set32(slot, used + 1);
    a.set32(w + MapWord.USED, used + 1);
    a.set32(w + MapWord.COUNT, count + 1);
    a.own(w + MapWord.MEMBERSHIP, false);
    slotInit(this.value, a, entry + this.valueOffset, value);
  }

  /** Removes `key`; returns whether it was present. Always makes the running event a tombstone. */
  deleteAt(a: Arena, w: WordOffset, key: unknown): boolean {
    const entry = this.find(a, w, this.key.prepare(key));
    if (entry < 0) {
      a.read(w + MapWord.MEMBERSHIP);
      a.writer().onDestroy(NO_OWNER as Ordinal);
      return false;
    }
    const slot = this.foundSlot;
    // Finding the key observes that it exists (and `delete` returns it): a read of its tracker.
    // Without it, a replay without the inserter would see this delete miss: it would not take the
    // membership, would own nothing and be pruned, and an apply that branches on the result would
    // do something else.
    a.read(entry + this.keyOffset + this.key.tracker);
    this.key.destroy(a, entry + this.keyOffset);
    slotDestroy(this.value, a, entry + this.valueOffset);
    a.set32(entry, 0);
    this.#unlink(a, w, slot);
    a.set32(w + MapWord.COUNT, a.u32[w + MapWord.COUNT]! - 1);
    a.own(w + MapWord.MEMBERSHIP, false);
    return true;
  }

  /** Removes every entry. */
  clearAt(a: Arena, w: WordOffset): void {
    a.own(w + MapWord.CLEAR_TRACKER, true);
    a.own(w + MapWord.MEMBERSHIP, false);
    this.#destroyEntries(a, w);
    this.#detach(a, w);
  }

  /** Destroys every live entry's key and value. */
  #destroyEntries(a: Arena, w: WordOffset): void {
    const used = a.u32[w + MapWord.USED]!;
    const block = a.u32[w + MapWord.BLOCK]!;
    for (let n = 0; n < used; n++) {
      const entry = this.entryAt(block, n);
      if (a.u32[entry] !== 0) {
        this.key.destroy(a, entry + this.keyOffset);
        slotDestroy(this.value, a, entry + this.valueOffset);
      }
    }
  }

  /** Leaves the map empty with no block; cursors on the old block go on after the clear. */
  #detach(a: Arena, w: WordOffset): void {
    const block = a.u32[w + MapWord.BLOCK]!;
    if (block === 0) return;
    a.set32(block, CLEARED);
    a.set32(w + MapWord.BLOCK, 0);
    a.set32(w + MapWord.COUNT, 0);
    a.set32(w + MapWord.USED, 0);
    a.set32(w + MapWord.CAPACITY, 0);
  }

  /**
   * Copies the live entries, in order, into a fresh block with room for at least `needed` entries
   * and half as many again (so churn of inserts and deletes copies each entry at most twice on
   * average), and points the old block at it.
   */
  #moveEntries(a: Arena, w: WordOffset, needed: number): void {
    let capacity = MAP_INITIAL_CAPACITY;
    while (capacity < needed + (needed >>> 1)) capacity *= 2;
    const entryWords = this.entryWords;
    const fresh = a.alloc(BLOCK_HEADER + capacity * entryWords + capacity * 2);
    const u32 = a.u32;
    const old = u32[w + MapWord.BLOCK]!;
    const oldUsed = u32[w + MapWord.USED]!;
    const entries = fresh + BLOCK_HEADER;
    const index = entries + capacity * entryWords;
    const mask = capacity * 2 - 1;
    // The new block is fresh memory: filling it needs no journal.
    let n = 0;
    for (let p = 0; p < oldUsed; p++) {
      const from = this.entryAt(old, p);
      const state = u32[from]!;
      if (state === 0) continue;
      u32.copyWithin(entries + n * entryWords, from, from + entryWords);
      let i = state & mask;
      while (u32[index + i] !== 0) i = (i + 1) & mask;
      u32[index + i] = ++n;
    }
    if (old !== 0) a.set32(old, fresh);
    a.set32(w + MapWord.BLOCK, fresh);
    a.set32(w + MapWord.CAPACITY, capacity);
    a.set32(w + MapWord.USED, n);
  }

  /** Removes index slot `slot` (backward-shift deletion, so probes stay correct). */
  #unlink(a: Arena, w: WordOffset, slot: WordOffset): void {
    const u32 = a.u32;
    const capacity = u32[w + MapWord.CAPACITY]!;
    const entries = u32[w + MapWord.BLOCK]! + BLOCK_HEADER;
    const index = entries + capacity * this.entryWords;
    const mask = capacity * 2 - 1;
    let hole = slot - index;
    let j = hole;
    for (;;) {
      j = (j + 1) & mask;
      const n = u32[index + j]!;
      if (n === 0) break;
      const home = u32[entries + (n - 1) * this.entryWords]! & mask;
      // The slot at j may move into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!stays) {
        a.set32(index + hole, n);
        hole = j;
      }
    }
    a.set32(index + hole, 0);
  }

  assign(a: Arena, w: WordOffset, value: unknown): void {
    const entries = value instanceof Map ? [...value] : isPlainRecord(value) ? Object.entries(value) : undefined;
    if (entries === undefined) throw new ValueError(`expected a Map for ${this.description}, got ${describeValue(value)}`);
    this.clearAt(a, w);
    for (const [k, v] of entries) this.setAt(a, w, k, v);
  }

  exportAt(a: Arena, w: WordOffset): Map<unknown, unknown> {
    a.read(w + MapWord.MEMBERSHIP);
    const out = new Map<unknown, unknown>();
    const used = a.u32[w + MapWord.USED]!;
    const block = a.u32[w + MapWord.BLOCK]!;
    const keyTracker = this.keyOffset + this.key.tracker;
    for (let n = 0; n < used; n++) {
      const entry = this.entryAt(block, n);
      if (a.u32[entry] === 0) continue;
      a.read(entry + keyTracker);
      out.set(this.key.get(a, entry + this.keyOffset), slotExport(this.value, a, entry + this.valueOffset));
    }
    return out;
  }

  destroy(a: Arena, w: WordOffset): void {
    this.#destroyEntries(a, w);
    const block = a.u32[w + MapWord.BLOCK]!;
    if (block !== 0) a.set32(block, CLEARED);
    a.release(w + MapWord.MEMBERSHIP);
    a.release(w + MapWord.CLEAR_TRACKER);
    a.zero(w, this.words);
  }

  /** A cursor over the live entries of the map at `w`, in insertion order (untracked). */
  cursor(a: Arena, w: WordOffset, session: number): MapCursor {
    return new MapCursor(this, a, w, session);
  }
}

/**
 * Walks a map's entries in insertion order, with the semantics of a JS `Map` iterator when the
 * map changes under it (see the module comment). Untracked: callers report reads.
 */
export class MapCursor {
  readonly #type: MapType;
  readonly #a: Arena;
  readonly #w: WordOffset;
  readonly #session: number;
  #block: WordOffset;
  #position = 0;

  constructor(type: MapType, a: Arena, w: WordOffset, session: number) {
    this.#type = type;
    this.#a = a;
    this.#w = w;
    this.#session = session;
    this.#block = a.u32[w + MapWord.BLOCK]!;
  }

  /** The word of the next live entry, or -1 at the end. */
  next(): WordOffset {
    const a = this.#a;
    if (this.#session !== a.session) a.stale();
    const u32 = a.u32;
    const w = this.#w;
    const current = u32[w + MapWord.BLOCK]!;
    if (current !== this.#block) this.#follow(current);
    const block = this.#block;
    if (block === 0) return -1;
    const used = u32[w + MapWord.USED]!;
    const type = this.#type;
    while (this.#position < used) {
      const entry = type.entryAt(block, this.#position++);
      if (u32[entry] !== 0) return entry;
    }
    return -1;
  }

  /** The block was replaced: follow the forward chain to `current`, translating the position. */
  #follow(current: WordOffset): void {
    const u32 = this.#a.u32;
    const type = this.#type;
    let block = this.#block;
    let position = this.#position;
    while (block !== current) {
      const forward = block === 0 ? 0 : u32[block]!;
      if (forward === 0 || forward === CLEARED) {
        // Cleared (or destroyed): everything in the current block came after.
        block = current;
        position = 0;
        break;
      }
      // The old block is frozen since its entries moved: its live entries before the position
      // are the ones already visited, and they lead the new block in the same order.
      let live = 0;
      for (let n = 0; n < position; n++) if (u32[type.entryAt(block, n)] !== 0) live++;
      block = forward;
      position = live;
    }
    this.#block = block;
    this.#position = position;
  }
}

/**
 * The accessor of a map. `K` is the key type, `E` what values read as (plain for leaves, an
 * accessor for composites), `P` the plain value `set` takes. Iteration is in insertion order.
 */
export class MapAccessor<K, E, P> {
  readonly #type: MapType;
  readonly #a: Arena;
  readonly #s: number;
  readonly #w: WordOffset;

  constructor(type: MapType, a: Arena, session: number, w: WordOffset) {
    this.#type = type;
    this.#a = a;
    this.#s = session;
    this.#w = w;
  }

  #arena(): Arena {
    const a = this.#a;
    if (this.#s !== a.session) a.stale();
    return a;
  }

  /** The value under `key` (an accessor for composite values), or `undefined`. */
  get(key: K): E | undefined {
    const a = this.#arena();
    const type = this.#type;
    const entry = type.find(a, this.#w, type.key.prepare(key));
    if (entry < 0) {
      a.read(this.#w + MapWord.MEMBERSHIP);
      return undefined;
    }
    // Finding the key observes that it exists: a read of its tracker (its inserter).
    a.read(entry + type.keyOffset + type.key.tracker);
    return slotGet(type.value, a, this.#s, entry + type.valueOffset) as E;
  }

  /** Whether `key` is present (a tracked read either way). */
  has(key: K): boolean {
    const a = this.#arena();
    const type = this.#type;
    const entry = type.find(a, this.#w, type.key.prepare(key));
    if (entry < 0) {
      a.read(this.#w + MapWord.MEMBERSHIP);
      return false;
    }
    a.read(entry + type.keyOffset + type.key.tracker);
    return true;
  }

  /** Inserts or replaces the value under `key` (imported from a plain value); a new key goes last. */
  set(key: K, value: P): this {
    this.#type.setAt(this.#arena(), this.#w, key, value);
    return this;
  }

  /** Removes `key`; returns whether it was present. Always makes the event a tombstone. */
  delete(key: K): boolean {
    return this.#type.deleteAt(this.#arena(), this.#w, key);
  }

  /** Removes every entry. */
  clear(): void {
    this.#type.clearAt(this.#arena(), this.#w);
  }

  /** Replaces the contents with the entries of a `Map` (or a plain object for string keys), in their order. */
  assign(entries: Map<K, P> | Record<string, P>): void {
    this.#type.assign(this.#arena(), this.#w, entries);
  }

  /**
   * Number of entries. Inside apply it is a tracked read of the membership and of every key (the
   * count depends on each present key's insertion), so it costs O(size) there.
   */
  get size(): number {
    const a = this.#arena();
    const w = this.#w;
    a.read(w + MapWord.MEMBERSHIP);
    if (a.ctx !== null) {
      const type = this.#type;
      const keyTracker = type.keyOffset + type.key.tracker;
      const cursor = type.cursor(a, w, this.#s);
      for (let entry = cursor.next(); entry !== -1; entry = cursor.next()) a.read(entry + keyTracker);
    }
    return a.u32[w + MapWord.COUNT]!;
  }

  /**
   * The live entries' words, in insertion order; each visited key is a tracked read (iterating
   * observes which keys exist). Changes made during the loop behave as on a JS `Map`.
   */
  *#entryWords(): Generator<WordOffset, void, undefined> {
    const a = this.#arena();
    const type = this.#type;
    a.read(this.#w + MapWord.MEMBERSHIP);
    const keyTracker = type.keyOffset + type.key.tracker;
    const cursor = type.cursor(a, this.#w, this.#s);
    for (let entry = cursor.next(); entry !== -1; entry = cursor.next()) {
      a.read(entry + keyTracker);
      yield entry;
    }
  }

  /** Keys in insertion order. */
  *keys(): IterableIterator<K> {
    const a = this.#a;
    const type = this.#type;
    for (const entry of this.#entryWords()) yield type.key.peek(a, entry + type.keyOffset) as K;
  }

  /** Values in insertion order. */
  *values(): IterableIterator<E> {
    const a = this.#a;
    const type = this.#type;
    for (const entry of this.#entryWords()) yield slotGet(type.value, a, this.#s, entry + type.valueOffset) as E;
  }

  /** `[key, value]` pairs in insertion order. */
  *entries(): IterableIterator<[K, E]> {
    const a = this.#a;
    const type = this.#type;
    for (const entry of this.#entryWords()) {
      yield [type.key.peek(a, entry + type.keyOffset) as K, slotGet(type.value, a, this.#s, entry + type.valueOffset) as E];
    }
  }

  [Symbol.iterator](): IterableIterator<[K, E]> {
    return this.entries();
  }

  /** Calls `fn` for every entry in insertion order, as `Map.prototype.forEach` does. */
  forEach(fn: (value: E, key: K, map: this) => void): void {
    for (const [key, value] of this.entries()) fn(value, key, this);
  }

  /** The entries as a JS `Map` of plain values, in insertion order. */
  export(): Map<K, P> {
    return this.#type.exportAt(this.#arena(), this.#w) as Map<K, P>;
  }

  toJSON(): unknown {
    return jsonify(this.export());
  }
}
