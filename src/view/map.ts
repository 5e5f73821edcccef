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
 * `[block, count, capacity, membership tracker, clear tracker, table]`. The block holds
 * `[forward, used]`, then the *order* — one word per insertion, three quarters as many as
 * buckets: the bucket number (plus one) of the entry inserted at that position, or 0 once it is
 * deleted — then the *table*: an open-addressing hash table (linear probing, backward-shift
 * deletion) of `capacity` buckets `[state, key slot, value slot, order position]`, state being
 * the key's hash with the top bit set (0: empty). Lookups probe the table directly, as a plain
 * hash table does; iteration walks the order. A bucket that moves (backward shift) updates its
 * order word. When the order is used up, the live entries are copied, in order, into a fresh block
 * sized for them (so a table may also shrink), and the old block's `forward` word points at it.
 *
 * Changing a map while iterating it behaves like a JS `Map`: a cursor walks order positions and
 * skips dead ones, reads `used` afresh at every step (so entries added during the loop are
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
  AccessorClasses,
  type AnyType,
  detach,
  IS_ACCESSOR,
  alignUp,
  type CompositeType,
  describeKey,
  ObjectType,
  describeValue,
  ENTER,
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
import { BigLeaf, I32Leaf, type KeyType, UintLeaf } from './leaf.js';
import type { Ordinal } from './tracking.js';

/** Words of a map's header, relative to the map. */
export const MapWord = {
  /** The block of order and table, 0 while the map has held no entry since it was made or cleared. */
  BLOCK: 0,
  /** Live entries. */
  COUNT: 1,
  /** Buckets in the table (a power of two). */
  CAPACITY: 2,
  /** Owned by the last insert, delete or clear: a lookup that misses reads it. */
  MEMBERSHIP: 3,
  /** Owned (opaquely) by the last clear. */
  CLEAR_TRACKER: 4,
  /** The table inside the block (kept here so a lookup reads it directly). */
  TABLE: 5,
} as const;

// The same header words as plain constants: the hot paths read these (a constant folds into the
// load; a property of MapWord is a load of its own).
const H_BLOCK = MapWord.BLOCK;
const H_COUNT = MapWord.COUNT;
const H_CAPACITY = MapWord.CAPACITY;
const H_MEMBERSHIP = MapWord.MEMBERSHIP;
const H_CLEAR_TRACKER = MapWord.CLEAR_TRACKER;
const H_TABLE = MapWord.TABLE;

/** Words of a block before the order: `[forward, used]`. */
const BLOCK_HEADER = 2;
/** Word of the block: where the entries went when they moved to another block (see below). */
const B_FORWARD = 0;
/** Word of the block: order positions used, dead ones included; the next insert takes this one. */
const B_USED = 1;
/** The `forward` value of a block emptied by `clear()` (no block starts at word 1: the header does). */
const CLEARED = 1;
/** Bucket state bit: the bucket is occupied; the other 31 bits are the key's hash. */
const OCCUPIED = 0x80000000;

/** Order positions of a table of `capacity` buckets: the table's maximum load (three quarters). */
function orderCapacity(capacity: number): number {
  return (capacity * 3) >>> 2;
}

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
  /** Word offset of the key slot inside a bucket. */
  readonly keyOffset: number;
  /** Word offset of the value slot inside a bucket. */
  readonly valueOffset: number;
  /** Word offset of the bucket's order position (after the value: often the alignment pad). */
  readonly orderOffset: number;
  /** Words of one bucket (even, so 8-byte values stay aligned). */
  readonly bucketWords: number;
  readonly description: string;
  /** The accessor classes generated for this map type ({@link generateMapAccessor}). */
  readonly #classes = new AccessorClasses<MapAccessorClass>((readOnly) => generateMapAccessor(this, readOnly));
  /** Where the last unsuccessful {@link find} stopped: the empty bucket an insert takes (-1: no table). */
  freeBucket = -1;
  /** The bucket number of {@link freeBucket}. */
  freeIndex = -1;
  /**
   * Whether writing a leaf value may overwrite the staged key: keys of strings, bytes and fixed
   * codecs are staged in the module's one buffer, where string and byte values are staged too
   * (numbers keep theirs in their own type).
   */
  readonly #keyStagedShared: boolean;

  constructor(key: KeyType<unknown>, value: AnyType) {
    if (!key.leaf || !key.keyable) {
      throw new NoatunError(
        ErrorCode.SCHEMA_INVALID,
        `${key.description ?? String(key)} cannot be a map key (use string, an integer type, messageId or bytes(n))`,
      );
    }
    this.key = key;
    this.value = value;
    this.#keyStagedShared = !(key instanceof UintLeaf || key instanceof I32Leaf || key instanceof BigLeaf);
    this.keyOffset = alignUp(1, key.align);
    this.valueOffset = alignUp(this.keyOffset + key.words, slotAlign(value));
    this.orderOffset = this.valueOffset + slotWords(value);
    this.bucketWords = alignUp(this.orderOffset + 1, 2);
    this.description = `map(${key.description},${value.description})`;
  }

  get(a: Arena, session: number, w: WordOffset): MapAccessor<unknown, unknown, unknown> {
    const Accessor = this.#classes.write ?? this.#classes.of(false);
    return new Accessor(a, session, w);
  }

  /** The accessor class generated for this map type ({@link generateMapAccessor}), or its read-session class. */
  accessorClass(readOnly = false): MapAccessorClass {
    return this.#classes.of(readOnly);
  }

  /** The bucket at order position `position` of the map at `w` (current block), or -1 if dead. */
  bucketAt(a: Arena, w: WordOffset, position: number): WordOffset {
    const u32 = a.u32;
    const slot = u32[u32[w + H_BLOCK]! + BLOCK_HEADER + position]!;
    if (slot === 0) return -1;
    return u32[w + H_TABLE]! + (slot - 1) * this.bucketWords;
  }

  /**
   * Finds the staged key (see {@link KeyType.prepare}) with hash `hash`; returns its bucket's word,
   * or -1 with {@link freeBucket} set to where it would be inserted.
   */
  find(a: Arena, w: WordOffset, hash: number): WordOffset {
    const u32 = a.u32;
    const capacity = u32[w + H_CAPACITY]!;
    if (capacity === 0) {
      this.freeBucket = -1;
      return -1;
    }
    const table = u32[w + H_TABLE]!;
    const mask = capacity - 1;
    const state = (hash | OCCUPIED) >>> 0;
    const bucketWords = this.bucketWords;
    const key = this.key;
    const keyOffset = this.keyOffset;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const bucket = table + i * bucketWords;
      const s = u32[bucket]!;
      if (s === 0) {
        this.freeBucket = bucket;
        this.freeIndex = i;
        return -1;
      }
      if (s === state && key.matches(a, bucket + keyOffset)) return bucket;
    }
  }

  /** Inserts or replaces the value under `key`. */
  setAt(a: Arena, w: WordOffset, key: unknown, value: unknown): void {
    const hash = this.key.prepare(key, a.hashSeed);
    const found = this.find(a, w, hash);
    if (found >= 0) {
      // Replacing the value of an existing key observes that the key exists: a read of the
      // key's tracker (its inserter). Without it, a replay without the inserter and the event
      // that later deleted the key would see this event create the key, and keep it.
      a.read(found + this.keyOffset + this.key.tracker);
      try {
        slotAssign(this.value, a, found + this.valueOffset, value);
      } catch (error) {
        throw ValueError.within(error, `[${describeKey(key)}]`);
      }
      return;
    }
    a.writer();
    let u32 = a.u32;
    const count = u32[w + H_COUNT]!;
    const capacity = u32[w + H_CAPACITY]!;
    if (capacity === 0 || u32[u32[w + H_BLOCK]! + B_USED] === orderCapacity(capacity)) {
      this.#moveEntries(a, w, count + 1);
      this.find(a, w, hash);
      u32 = a.u32;
    }
    const bucket = this.freeBucket;
    const index = this.freeIndex;
    const valueType = this.value;
    if (valueType.leaf) {
      // A leaf value goes in first: one refused leaves no key behind (the bucket stays free; a
      // key went in with the type's zero, and an apply that caught the error kept it). Writing
      // a string stages it where a string key is staged: such a key is staged again after.
      try {
        valueType.set(a, bucket + this.valueOffset, value);
      } catch (error) {
        throw ValueError.within(error, `[${describeKey(key)}]`);
      }
      if (this.#keyStagedShared) this.key.prepare(key, a.hashSeed);
      // (A string's bytes may have grown the arena: its words are read afresh.)
      u32 = a.u32;
    }
    const block = u32[w + H_BLOCK]!;
    const used = u32[block + B_USED]!;
    a.set32(bucket, (hash | OCCUPIED) >>> 0);
    a.set32(bucket + this.orderOffset, used);
    // The key goes in before a composite value: importing the value may stage other keys.
    this.key.store(a, bucket + this.keyOffset);
    a.set32(block + BLOCK_HEADER + used, index + 1);
    a.add32(block + B_USED, 1);
    a.add32(w + H_COUNT, 1);
    a.own(w + H_MEMBERSHIP, false);
    if (valueType.leaf) return;
    try {
      slotInit(valueType, a, bucket + this.valueOffset, value);
    } catch (error) {
      throw ValueError.within(error, `[${describeKey(key)}]`);
    }
  }

  /** Removes `key`; returns whether it was present. Always makes the running event a tombstone. */
  deleteAt(a: Arena, w: WordOffset, key: unknown): boolean {
    const bucket = this.find(a, w, this.key.prepare(key, a.hashSeed));
    if (bucket < 0) {
      a.read(w + H_MEMBERSHIP);
      a.writer().onDestroy(NO_OWNER as Ordinal);
      return false;
    }
    // Finding the key observes that it exists (and `delete` returns it): a read of its tracker.
    // Without it, a replay without the inserter would see this delete miss: it would not take the
    // membership, would own nothing and be pruned, and an apply that branches on the result would
    // do something else.
    a.read(bucket + this.keyOffset + this.key.tracker);
    this.key.destroy(a, bucket + this.keyOffset);
    slotDestroy(this.value, a, bucket + this.valueOffset);
    const block = a.u32[w + H_BLOCK]!;
    a.set32(block + BLOCK_HEADER + a.u32[bucket + this.orderOffset]!, 0);
    this.#removeBucket(a, w, bucket);
    a.add32(w + H_COUNT, -1);
    a.own(w + H_MEMBERSHIP, false);
    return true;
  }

  /** Removes every entry. */
  clearAt(a: Arena, w: WordOffset): void {
    a.own(w + H_CLEAR_TRACKER, true);
    a.own(w + H_MEMBERSHIP, false);
    this.#destroyEntries(a, w);
    this.#detach(a, w);
  }

  /** Destroys every live entry's key and value. */
  #destroyEntries(a: Arena, w: WordOffset): void {
    const block = a.u32[w + H_BLOCK]!;
    if (block === 0) return;
    const used = a.u32[block + B_USED]!;
    for (let p = 0; p < used; p++) {
      const bucket = this.bucketAt(a, w, p);
      if (bucket === -1) continue;
      this.key.destroy(a, bucket + this.keyOffset);
      slotDestroy(this.value, a, bucket + this.valueOffset);
    }
  }

  /** Leaves the map empty with no block; cursors on the old block go on after the clear. */
  #detach(a: Arena, w: WordOffset): void {
    const block = a.u32[w + H_BLOCK]!;
    if (block === 0) return;
    a.set32(block + B_FORWARD, CLEARED);
    a.retire(block, this.#blockWords(a.u32[w + H_CAPACITY]!));
    a.set32(w + H_BLOCK, 0);
    a.set32(w + H_COUNT, 0);
    a.set32(w + H_CAPACITY, 0);
    a.set32(w + H_TABLE, 0);
  }

  /**
   * Copies the live entries, in order, into a fresh block whose table holds `needed` entries at
   * half load (so churn of inserts and deletes copies each entry at most twice on average, and a
   * table may shrink), and points the old block at it.
   */
  #moveEntries(a: Arena, w: WordOffset, needed: number): void {
    let capacity = MAP_INITIAL_CAPACITY;
    while (capacity < needed * 2) capacity *= 2;
    const bucketWords = this.bucketWords;
    const orderWords = alignUp(orderCapacity(capacity), 2);
    const fresh = a.alloc(BLOCK_HEADER + orderWords + capacity * bucketWords);
    const u32 = a.u32;
    const old = u32[w + H_BLOCK]!;
    const oldTable = u32[w + H_TABLE]!;
    const table = fresh + BLOCK_HEADER + orderWords;
    const mask = capacity - 1;
    // The new block is fresh memory: filling it needs no journal. The old table is read in
    // bucket order (sequential memory, unlike the order's random jumps); each entry's new order
    // position is the number of live positions before its old one.
    const count = u32[w + H_COUNT]!;
    const n = old === 0 ? 0 : count;
    if (old !== 0) {
      const oldUsed = u32[old + B_USED]!;
      let rank: Uint32Array | undefined;
      if (oldUsed !== count) {
        rank = new Uint32Array(oldUsed);
        let live = 0;
        for (let p = 0; p < oldUsed; p++) {
          rank[p] = live;
          if (u32[old + BLOCK_HEADER + p] !== 0) live++;
        }
      }
      const oldCapacity = u32[w + H_CAPACITY]!;
      for (let b = 0; b < oldCapacity; b++) {
        const from = oldTable + b * bucketWords;
        const state = u32[from]!;
        if (state === 0) continue;
        const oldPosition = u32[from + this.orderOffset]!;
        const position = rank === undefined ? oldPosition : rank[oldPosition]!;
        let i = state & mask;
        while (u32[table + i * bucketWords] !== 0) i = (i + 1) & mask;
        const to = table + i * bucketWords;
        u32.copyWithin(to, from, from + bucketWords);
        u32[to + this.orderOffset] = position;
        u32[fresh + BLOCK_HEADER + position] = i + 1;
      }
      a.set32(old + B_FORWARD, fresh);
      a.retire(old, this.#blockWords(oldCapacity));
    }
    u32[fresh + B_USED] = n;
    a.set32(w + H_BLOCK, fresh);
    a.set32(w + H_CAPACITY, capacity);
    a.set32(w + H_TABLE, table);
  }

  /** Words of a block whose table has `capacity` buckets. */
  #blockWords(capacity: number): number {
    return BLOCK_HEADER + alignUp(orderCapacity(capacity), 2) + capacity * this.bucketWords;
  }

  /**
   * Empties `bucket` with backward-shift deletion (so probes stay correct); a bucket that moves
   * takes its order position along.
   */
  #removeBucket(a: Arena, w: WordOffset, bucket: WordOffset): void {
    const u32 = a.u32;
    const block = u32[w + H_BLOCK]!;
    const capacity = u32[w + H_CAPACITY]!;
    const table = u32[w + H_TABLE]!;
    const mask = capacity - 1;
    const bucketWords = this.bucketWords;
    let hole = (bucket - table) / bucketWords;
    let j = hole;
    for (;;) {
      j = (j + 1) & mask;
      const at = table + j * bucketWords;
      const state = u32[at]!;
      if (state === 0) break;
      const home = state & mask;
      // The bucket at j may move into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!stays) {
        a.copyWords(table + hole * bucketWords, at, bucketWords);
        a.set32(block + BLOCK_HEADER + u32[at + this.orderOffset]!, hole + 1);
        hole = j;
      }
    }
    a.zero(table + hole * bucketWords, bucketWords);
  }

  assign(a: Arena, w: WordOffset, value: unknown): void {
    const entries = value instanceof Map ? [...value] : isPlainRecord(value) ? Object.entries(value) : undefined;
    if (entries === undefined) throw new ValueError(`expected a Map for ${this.description}, got ${describeValue(value)}`);
    this.clearAt(a, w);
    for (const [k, v] of entries) this.setAt(a, w, k, v);
  }

  exportAt(a: Arena, w: WordOffset): Map<unknown, unknown> {
    a.read(w + H_MEMBERSHIP);
    const out = new Map<unknown, unknown>();
    const block = a.u32[w + H_BLOCK]!;
    if (block === 0) return out;
    const used = a.u32[block + B_USED]!;
    const keyTracker = this.keyOffset + this.key.tracker;
    for (let p = 0; p < used; p++) {
      const bucket = this.bucketAt(a, w, p);
      if (bucket === -1) continue;
      a.read(bucket + keyTracker);
      out.set(this.key.get(a, bucket + this.keyOffset), slotExport(this.value, a, bucket + this.valueOffset));
    }
    return out;
  }

  destroy(a: Arena, w: WordOffset): void {
    this.#destroyEntries(a, w);
    const block = a.u32[w + H_BLOCK]!;
    if (block !== 0) {
      a.set32(block + B_FORWARD, CLEARED);
      a.retire(block, this.#blockWords(a.u32[w + H_CAPACITY]!));
    }
    a.release(w + H_MEMBERSHIP);
    a.release(w + H_CLEAR_TRACKER);
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
    this.#block = a.u32[w + H_BLOCK]!;
  }

  /** The word of the next live entry's bucket, or -1 at the end. */
  next(): WordOffset {
    const a = this.#a;
    if (this.#session !== a.session) a.stale();
    const u32 = a.u32;
    const w = this.#w;
    const current = u32[w + H_BLOCK]!;
    if (current !== this.#block) this.#follow(current);
    const block = this.#block;
    if (block === 0) return -1;
    const used = u32[block + B_USED]!;
    const type = this.#type;
    while (this.#position < used) {
      const bucket = type.bucketAt(a, w, this.#position++);
      if (bucket !== -1) return bucket;
    }
    return -1;
  }

  /** The block was replaced: follow the forward chain to `current`, translating the position. */
  #follow(current: WordOffset): void {
    const u32 = this.#a.u32;
    let block = this.#block;
    let position = this.#position;
    while (block !== current) {
      const forward = block === 0 ? 0 : u32[block + B_FORWARD]!;
      if (forward === 0 || forward === CLEARED) {
        // Cleared (or destroyed): everything in the current block came after.
        block = current;
        position = 0;
        break;
      }
      // The old block is frozen since its entries moved: its live order positions before ours
      // are the entries already visited, and they lead the new order in the same sequence.
      let live = 0;
      for (let p = 0; p < position; p++) if (u32[block + BLOCK_HEADER + p] !== 0) live++;
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
export abstract class MapAccessor<K, E, P> {
  // Every map accessor is made by the class generated for its map type (generateMapAccessor),
  // whose prototype is this one: its constructor sets these (the type is on its prototype), so
  // they are declared here, not #private.
  private declare readonly $type: MapType;
  private declare readonly $a: Arena;
  private declare $s: number;
  private declare readonly $w: WordOffset;

  private $arena(): Arena {
    const a = this.$a;
    if (this.$s !== a.session) a.stale();
    return a;
  }

  /** See `ENTER`: a map inline in the root is reused for every session. */
  [ENTER](session: number): void {
    this.$s = session;
  }

  /**
   * The value under `key` (an accessor for composite values), or `undefined`. Written out per
   * map type (generateMapAccessor); in apply, finding the key reads its tracker (its inserter) and
   * missing it reads the membership tracker.
   */
  abstract get(key: K): E | undefined;

  /** Whether `key` is present (a tracked read either way). */
  has(key: K): boolean {
    const a = this.$arena();
    const type = this.$type;
    const entry = type.find(a, this.$w, type.key.prepare(key, a.hashSeed));
    if (entry < 0) {
      a.read(this.$w + H_MEMBERSHIP);
      return false;
    }
    a.read(entry + type.keyOffset + type.key.tracker);
    return true;
  }

  /** Inserts or replaces the value under `key` (imported from a plain value); a new key goes last. */
  set(key: K, value: P): this {
    this.$type.setAt(this.$arena(), this.$w, key, detach(this.$type.value, value));
    return this;
  }

  /** See `detach`. */
  get [IS_ACCESSOR](): boolean {
    return true;
  }

  /** Removes `key`; returns whether it was present. Always makes the event a tombstone. */
  delete(key: K): boolean {
    return this.$type.deleteAt(this.$arena(), this.$w, key);
  }

  /** Removes every entry. */
  clear(): void {
    this.$type.clearAt(this.$arena(), this.$w);
  }

  /** Replaces the contents with the entries of a `Map` (or a plain object for string keys), in their order. */
  assign(entries: Map<K, P> | Record<string, P>): void {
    this.$type.assign(this.$arena(), this.$w, detach(this.$type, entries));
  }

  /**
   * Number of entries. Inside apply it is a tracked read of the membership and of every key (the
   * count depends on each present key's insertion), so it costs O(size) there.
   */
  /** A map's size changes by `set`, `delete` and `clear` only. */
  set size(_size: number) {
    throw new NoatunError(ErrorCode.UNKNOWN_FIELD, "a map's size cannot be set: it changes by set(key, value), delete(key) and clear()");
  }

  get size(): number {
    const a = this.$arena();
    const w = this.$w;
    a.read(w + H_MEMBERSHIP);
    if (a.ctx !== null) {
      const type = this.$type;
      const keyTracker = type.keyOffset + type.key.tracker;
      const cursor = type.cursor(a, w, this.$s);
      for (let entry = cursor.next(); entry !== -1; entry = cursor.next()) a.read(entry + keyTracker);
    }
    return a.u32[w + H_COUNT]!;
  }

  /**
   * The live entries' words, in insertion order; each visited key is a tracked read (iterating
   * observes which keys exist). Changes made during the loop behave as on a JS `Map`.
   */
  private *$entryWords(): Generator<WordOffset, void, undefined> {
    const a = this.$arena();
    const type = this.$type;
    a.read(this.$w + H_MEMBERSHIP);
    const keyTracker = type.keyOffset + type.key.tracker;
    const cursor = type.cursor(a, this.$w, this.$s);
    for (let entry = cursor.next(); entry !== -1; entry = cursor.next()) {
      a.read(entry + keyTracker);
      yield entry;
    }
  }

  /** Keys in insertion order. */
  *keys(): IterableIterator<K> {
    const a = this.$a;
    const type = this.$type;
    for (const entry of this.$entryWords()) yield type.key.peek(a, entry + type.keyOffset) as K;
  }

  /** Values in insertion order. */
  *values(): IterableIterator<E> {
    const a = this.$a;
    const type = this.$type;
    for (const entry of this.$entryWords()) yield slotGet(type.value, a, this.$s, entry + type.valueOffset) as E;
  }

  /** `[key, value]` pairs in insertion order. */
  *entries(): IterableIterator<[K, E]> {
    const a = this.$a;
    const type = this.$type;
    for (const entry of this.$entryWords()) {
      yield [type.key.peek(a, entry + type.keyOffset) as K, slotGet(type.value, a, this.$s, entry + type.valueOffset) as E];
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
    return this.$type.exportAt(this.$arena(), this.$w) as Map<K, P>;
  }

  toJSON(): unknown {
    return jsonify(this.export());
  }
}

/** The accessor class of one map type. */
type MapAccessorClass = new (a: Arena, session: number, w: WordOffset) => MapAccessor<unknown, unknown, unknown>;

/**
 * Generates the accessor class of a map type: a class of its own (its prototype is
 * {@link MapAccessor}'s, for every other method; V8 constructs subclasses far slower) whose `get`
 * is the probe of {@link MapType.find} and the value read of `slotGet` written out with this
 * type's bucket offsets as constants, calling this key type's and value type's code directly
 * (integer keys are compared in place, without staging). Each map type then has a `get` of its
 * own, whose calls V8 sees as monomorphic and can inline into the query; a shared `get` is
 * polymorphic as soon as a program has two map types.
 *
 * Tracking as everywhere: in apply, a hit reads the key's tracker (the key exists) and a miss the
 * membership tracker (the key is absent). The class of read sessions (`readOnly`) reports nothing
 * and reads leaves untracked (see ObjectType.ReadAccessor).
 */
function generateMapAccessor(type: MapType, readOnly: boolean): MapAccessorClass {
  const key = type.key;
  const value = type.value;
  const keyTracker = type.keyOffset + key.tracker;
  const valueWord = `b + ${type.valueOffset}`;
  let integer = false;
  let check: string;
  let hash: string;
  // Whether the bucket at b holds the key; integer keys compare in place, so their bucket's hash
  // need not be compared first (an occupied bucket holding the key has the key's hash).
  let same: string;
  // hashU32 written out (the same function of the key): a call to it would count its size once
  // more against V8's inlining budget of the query.
  const mix = (x: string) =>
    `let hash = ${x}; hash ^= hash >>> 16; hash = IMUL(hash, 0x85ebca6b); hash ^= hash >>> 13; hash = IMUL(hash, 0xc2b2ae35); hash ^= hash >>> 16;`;
  if (key instanceof UintLeaf) {
    check = `if (typeof key !== 'number' || key >>> 0 !== key${key.max === 0xffffffff ? '' : ` || key > ${key.max}`}) KEY.prepare(key, 0);`;
    hash = mix('key ^ a.hashSeed');
    same = `u32[b + ${type.keyOffset}] === key`;
    integer = true;
  } else if (key instanceof I32Leaf) {
    check = "if (typeof key !== 'number' || (key | 0) !== key) KEY.prepare(key, 0);";
    hash = mix('key ^ a.hashSeed');
    same = `a.i32[b + ${type.keyOffset}] === key`;
    integer = true;
  } else {
    check = '';
    hash = 'const hash = KEY.prepare(key, a.hashSeed);';
    same = `KEY.matches(a, b + ${type.keyOffset})`;
  }
  let found: string;
  // (A query reads a value of an unsigned integer type in place, not through its type's peek().)
  if (value instanceof UintLeaf && readOnly) found = `u32[${valueWord}]`;
  else if (value.leaf) found = `VALUE.${readOnly ? 'peek' : 'get'}(a, ${valueWord})`;
  // (Apply reports the read first, so it reads the words afresh; a query reports nothing.)
  else if (value instanceof ObjectType) found = `new ACCESSOR(a, this.$s, ${readOnly ? 'u32' : 'a.u32'}[${valueWord}])`;
  else found = `VALUE.get(a, this.$s, ${readOnly ? 'u32' : 'a.u32'}[${valueWord}])`;
  const body = `
    class GeneratedMapAccessor {
      constructor(a, s, w) { this.$a = a; this.$s = s; this.$w = w; }
      get(key) {
        const a = this.$a;
        if (this.$s !== a.session) a.stale();
        ${check}
        ${hash}
        const w = this.$w;
        const u32 = a.u32;
        const mask = u32[w + ${H_CAPACITY}] - 1;
        if (mask >= 0) {
          const table = u32[w + ${H_TABLE}];
          ${integer ? '' : `const state = (hash | ${OCCUPIED}) >>> 0;`}
          for (let i = hash & mask; ; i = (i + 1) & mask) {
            const b = table + i * ${type.bucketWords};
            const s = u32[b];
            if (s === 0) break;
            if (${integer ? '' : 's === state && '}${same}) {
              ${readOnly ? '' : `if (a.ctx !== null) a.readInApply(b + ${keyTracker});`}
              return ${found};
            }
          }
        }
        ${readOnly ? '' : `if (a.ctx !== null) a.readInApply(w + ${H_MEMBERSHIP});`}
        return undefined;
      }
    }
    // The type is the same for every instance: on the prototype, where MapAccessor's methods find it.
    GeneratedMapAccessor.prototype.$type = TYPE;
    Object.setPrototypeOf(GeneratedMapAccessor.prototype, BASE.prototype);
    return GeneratedMapAccessor;`;
  const accessor = value instanceof ObjectType ? (readOnly ? value.ReadAccessor : value.Accessor) : undefined;
  return new Function('BASE', 'TYPE', 'KEY', 'VALUE', 'ACCESSOR', 'IMUL', body)(MapAccessor, type, key, value, accessor, Math.imul) as MapAccessorClass;
}

