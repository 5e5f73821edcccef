/**
 * Pruning bookkeeping: one record per stored event, kept in the view arena so the undo journal
 * covers it (a rewind restores use counts and read edges together with the data they describe).
 *
 * While an event is applied, the book is the view's {@link TrackingContext}: every tracked write
 * moves ownership of a datum to the running event (the previous owner's use count drops), every
 * destroy makes it a tombstone, every read of another event's datum becomes a read edge. When the
 * apply finishes, the event's record is written:
 *
 * - `uses`: data the event still owns. At 0 nothing it wrote is visible any more.
 * - `readers`: live events that read its data. While one exists, the event must stay: removing
 *   it would change what that reader saw on a fresh replay.
 * - `lastEffect`: when its use count reached 0 (the time of the event that overwrote or destroyed
 *   its last datum; its own time if it never owned anything). Once the cutoff is past it, no event
 *   that could still arrive can be ordered before the overwrite, so the event is final history.
 * - `reads` / `victims`: the events it read from, and the events whose data it destroyed. A
 *   tombstone stays while a victim is stored, or a replay without it would bring the data back.
 *
 * Records are allocated one by one from the arena and never move; a removed record's place is
 * reused by the next new one (a free list through their first words). They are found through an
 * index: an open-addressing hash of record words keyed by the ordinal each record holds (linear
 * probing, backward-shift delete). So the view holds records for stored events only and stays
 * bounded when old events are pruned, and a growing index moves and leaves behind 4 bytes per
 * slot, not the records (with the records in the table, its outgrown copies were half the view).
 *
 * Sizes (view format 8): a record is 32 bytes and an index slot 4. A record keeps the first 8
 * bytes of its event's id (timestamp and sequence): with the ordinal they name the event, and the
 * log finds the whole id from them (`EventLog.keysOf`) when pruning or a person needs it. The use
 * count and the time it reached 0 share a word (a count of 0 is the flag {@link RecFlag.DEAD}, and
 * the count's word then holds the time's low bits): the count keeps its 32 bits and the time its
 * 48. Most events read one or two others, and those reads are kept inside the record; longer lists
 * take a block, as does a second read beside the victims' block or a failure's message. Fresh
 * records come from the bump allocator, which journals nothing for memory it hands out during the
 * running event, so a new record costs the journal only its index slot. (Format 7 had records of
 * 40 bytes, with a word of its own for the time's low bits and room for three reads: the
 * warehouse benchmark's view was 1.9 MB larger for 0.8 MB fewer blocks of reads; BENCHMARKS.md,
 * run AI.)
 */
import { ErrorCode, NoatunError } from '../errors.js';
import type { Arena, WordOffset } from '../view/arena.js';
import { Header } from '../view/arena.js';
import type { Ordinal, TrackingContext } from '../view/tracking.js';

/** Engine header words of the record table (after the projector's own, see `EngineWord`). */
export const BookWord = {
  /** Word offset of the index (slots of `[ordinal, record word]`), 0 before the first record. */
  TABLE: Header.ENGINE + 5,
  /** Slots in the index (a power of two). */
  CAPACITY: Header.ENGINE + 6,
  /** Records. */
  COUNT: Header.ENGINE + 7,
  /** The first removed record, whose place the next record takes (0: none); each links the next. */
  FREE: Header.ENGINE + 8,
  // Engine words 9 and 10 held the records' chunk (view format 4); free since format 5. Words 11
  // to 14 are the log's write token (see `EngineWord` in projector.ts).
} as const;

/** Word offsets inside one record. */
export const Rec = {
  ORDINAL: 0,
  /**
   * Until the event owns nothing ({@link RecFlag.DEAD} unset): the data it owns (at least 1).
   * Once it is dead: the low 32 bits of the ms time its count reached 0 (see {@link EventBook.effectTime}).
   */
  USES_OR_EFFECT: 1,
  READERS: 2,
  /** 2 words: the first 8 bytes of the event's id (its timestamp and sequence). */
  ID_PREFIX: 3,
  /**
   * The record's flags ({@link RecFlag}) in the high half; once {@link RecFlag.DEAD}, the high 16
   * bits of the time its count reached 0 in the low half (timestamps have 48, see `MAX_TIMESTAMP`).
   */
  FLAGS_EFFECT_HI: 5,
  /**
   * With {@link RecFlag.READS_INLINE}: the first event this one read (0: none). Without: block
   * `[n, ordinal × n]` of the events it read.
   */
  READS: 6,
  /**
   * With {@link RecFlag.READ2_INLINE} (an event that did not fail and has no victims): the
   * second event it read. Otherwise the block `[n, ordinal × n]` of the events whose data this one
   * destroyed, or 0. For a failed event (it destroyed nothing: its writes were rolled back) the
   * block `[bytes, UTF-8 text…]` of its failure message: every peer and every reopen lists the
   * failure from here.
   */
  SECOND: 7,
} as const;

/** Words of one record (even: the allocator's unit is 8 bytes). */
export const RECORD_WORDS = 8;
/** Bytes of the id a record keeps. */
export const RECORD_ID_BYTES = 8;
/** Where the flags sit in {@link Rec.FLAGS_EFFECT_HI}. */
const FLAGS_SHIFT = 16;
const EFFECT_HI_MASK = 0xffff;

/** Flags of a record. */
export const RecFlag = {
  /** Wrote data that can be read inside apply. */
  NON_OPAQUE: 1,
  /** Wrote opaque data. */
  OPAQUE: 2,
  /** Destroyed data (a delete, pop or clear), even if it found nothing to destroy. */
  TOMBSTONE: 4,
  /** Read anything, including "absent" (an empty map's membership): its effect depends on state. */
  READ: 8,
  /**
   * Its apply threw. What it read is kept (the failure may depend on it); it owns nothing, so it
   * is pruned like a no-op once the cutoff passes it — a failure recorded on every peer alike, and
   * gone from all of them alike, and failing events cannot pile up for ever.
   */
  FAILED: 16,
  /** The first event it read (if any) is in the record itself ({@link Rec.READS}), not in a block. */
  READS_INLINE: 32,
  /** It read two events (both inline), did not fail and has no victims: the second is in {@link Rec.SECOND}. */
  READ2_INLINE: 64,
  /** It owns nothing any more: {@link Rec.USES_OR_EFFECT} holds the time that came to be. */
  DEAD: 128,
} as const;

const MIN_CAPACITY = 1024;
const EMPTY = new Uint32Array(0);
const TWO_32 = 2 ** 32;

/**
 * A small set of ordinals in insertion order: linear search while small, a Set beyond. The first
 * {@link count} of {@link items} are its ordinals: clearing it (twice per event applied) only
 * resets the count, where shortening the array each time cost a call into V8's runtime.
 */
class OrdinalList {
  readonly items: number[] = [];
  count = 0;
  #set: Set<number> | undefined;

  add(ordinal: number): void {
    const items = this.items;
    const count = this.count;
    if (this.#set !== undefined) {
      if (this.#set.has(ordinal)) return;
      this.#set.add(ordinal);
    } else {
      for (let i = 0; i < count; i++) if (items[i] === ordinal) return;
      if (count === 16) this.#set = new Set(items.slice(0, count)).add(ordinal);
    }
    items[count] = ordinal;
    this.count = count + 1;
  }

  clear(): void {
    this.count = 0;
    this.#set = undefined;
  }

  has(ordinal: number): boolean {
    if (this.#set !== undefined) return this.#set.has(ordinal);
    const items = this.items;
    for (let i = 0; i < this.count; i++) if (items[i] === ordinal) return true;
    return false;
  }
}

/** The record table, and the tracking context of the event being applied. */
export class EventBook implements TrackingContext {
  arena: Arena;
  // State of the running event (reset by begin).
  ordinal = 0 as Ordinal;
  #time = 0;
  #uses = 0;
  #flags = 0;
  readonly #reads = new OrdinalList();
  readonly #victims = new OrdinalList();
  /**
   * Hears when an event's use count reaches 0 (the pruner's queue of candidates); `reader`: the
   * running event, when it read the event's data before it took the last of it (0: it did not).
   */
  onZero: (ordinal: number, time: number, reader: number) => void = () => {};
  /**
   * Records whose apply failed, counted once and then kept as records come and go, for as long as
   * {@link #countsOf} is the arena and its rewinds (`stats()` is polled, and a walk over every
   * record per call grew with the database).
   */
  #failed = 0;
  #countsOf: { arena: Arena; rewinds: number } | undefined;
  /** Tombstone records made, and records removed, so far (see {@link tombstoneCount}). */
  #changes = 0;
  /** The last {@link tombstoneCount}, and the state of the records it was counted in. */
  #tombstones: { arena: Arena; rewinds: number; changes: number; count: number } | undefined;

  constructor(arena: Arena) {
    this.arena = arena;
  }

  // ------------------------------------------------------------ tracking of the running event

  /** Starts tracking the event `ordinal` with timestamp `time`. */
  begin(ordinal: number, time: number): void {
    this.ordinal = ordinal as Ordinal;
    this.#time = time;
    this.#uses = 0;
    this.#flags = 0;
    this.#reads.clear();
    this.#victims.clear();
  }

  onRead(owner: Ordinal): void {
    this.#flags |= RecFlag.READ;
    if (owner !== 0) this.#reads.add(owner);
  }

  onWrite(previousOwner: Ordinal, opaque: boolean): void {
    this.#uses++;
    this.#flags |= opaque ? RecFlag.OPAQUE : RecFlag.NON_OPAQUE;
    if (previousOwner !== 0) this.#release(previousOwner);
  }

  onDestroy(previousOwner: Ordinal): void {
    this.#flags |= RecFlag.TOMBSTONE;
    if (previousOwner === 0) return;
    if (previousOwner === this.ordinal) {
      this.#uses--;
      return;
    }
    this.#release(previousOwner);
    this.#victims.add(previousOwner);
  }

  /** The running event took a datum from `owner`: one use less; at 0, remember when. */
  #release(owner: number): void {
    const r = this.find(owner);
    if (r === -1) return; // Pruned owners own nothing; a missing record is not an error here.
    const arena = this.arena;
    const u32 = arena.u32;
    // The count's word holds a time once the event owns nothing: taking a use from it then would
    // change that time without a trace (a counter that wrapped showed itself).
    if ((u32[r + Rec.FLAGS_EFFECT_HI]! & (RecFlag.DEAD << FLAGS_SHIFT)) !== 0) {
      throw new NoatunError(ErrorCode.INTERNAL, `event ${owner} owns nothing, yet a datum was taken from it`);
    }
    if (u32[r + Rec.USES_OR_EFFECT] !== 1) {
      arena.add32(r + Rec.USES_OR_EFFECT, -1);
      return;
    }
    // The last use: the word takes the time instead, and the flags say so.
    const time = this.#time;
    arena.set32(r + Rec.USES_OR_EFFECT, time % TWO_32);
    const w = r + Rec.FLAGS_EFFECT_HI;
    arena.set32(w, ((u32[w]! & ~EFFECT_HI_MASK) | (RecFlag.DEAD << FLAGS_SHIFT) | Math.floor(time / TWO_32)) >>> 0);
    this.onZero(owner, time, this.#reads.has(owner) ? this.ordinal : 0);
  }

  /**
   * Writes the record of the running event (`id`: its id, of which the record keeps the first
   * bytes). `failure`: its apply threw with this message and was rolled back (the caller rewound
   * the arena, which undid the use counts it had taken from others); the reads it made before
   * failing stay, because the failure may depend on them.
   */
  finish(id: Uint8Array, failure?: string): void {
    const failed = failure !== undefined;
    const reads = this.#reads.items;
    const readCount = this.#reads.count;
    const victimCount = this.#victims.count;
    // One read fits in the record, and a second in the victims' word when it is free.
    const second = readCount === 2 && !failed && victimCount === 0;
    const inline = readCount <= 1 || second;
    const uses = failed ? 0 : this.#uses;
    const time = this.#time;
    const flags =
      (failed ? RecFlag.FAILED | (this.#flags & RecFlag.READ) : this.#flags) |
      (inline ? RecFlag.READS_INLINE : 0) |
      (second ? RecFlag.READ2_INLINE : 0) |
      (uses === 0 ? RecFlag.DEAD : 0);
    const arena = this.arena;
    const readsBlock = inline ? 0 : this.#block(reads, readCount);
    const victimsBlock = failed
      ? this.#text(failure)
      : victimCount === 0
        ? 0
        : this.#block(this.#victims.items, victimCount);
    // The record is fresh memory or a removed record's place, zero either way (journaled as such).
    const r = this.#insert(this.ordinal);
    const u32 = arena.u32;
    // The id's first 8 bytes as two little-endian words (as the bytes lie in memory), without a view.
    u32[r + Rec.ID_PREFIX] = (id[0]! | (id[1]! << 8) | (id[2]! << 16) | (id[3]! << 24)) >>> 0;
    u32[r + Rec.ID_PREFIX + 1] = (id[4]! | (id[5]! << 8) | (id[6]! << 16) | (id[7]! << 24)) >>> 0;
    u32[r + Rec.READS] = inline ? (readCount === 0 ? 0 : reads[0]!) : readsBlock;
    u32[r + Rec.SECOND] = second ? reads[1]! : victimsBlock;
    if (uses === 0) {
      u32[r + Rec.USES_OR_EFFECT] = time % TWO_32;
      u32[r + Rec.FLAGS_EFFECT_HI] = ((flags << FLAGS_SHIFT) | Math.floor(time / TWO_32)) >>> 0;
      this.onZero(this.ordinal, time, 0);
    } else {
      u32[r + Rec.USES_OR_EFFECT] = uses;
      u32[r + Rec.FLAGS_EFFECT_HI] = (flags << FLAGS_SHIFT) >>> 0;
    }
    if (this.#countsKept()) this.#count(flags, 1);
    // Only a new tombstone adds to the count; other records leave it as it was (stats() is polled
    // while events are written, and a walk per poll grew with the database).
    if ((flags & RecFlag.TOMBSTONE) !== 0) this.#changes++;
    for (let i = 0; i < readCount; i++) {
      const w = this.find(reads[i]!);
      if (w !== -1) arena.add32(w + Rec.READERS, 1);
    }
  }

  /** Allocates `[bytes, UTF-8 text…]` for a failure message (cut at 1000 characters). */
  #text(message: string): WordOffset {
    const bytes = Buffer.from(message.length > 1000 ? `${message.slice(0, 1000)}…` : message, 'utf8');
    const at = this.arena.alloc(1 + ((bytes.length + 3) >>> 2));
    this.arena.u32[at] = bytes.length;
    this.arena.u8.set(bytes, (at + 1) * 4);
    return at;
  }

  /** The failure message of a failed record ('' for any other). */
  failureOf(r: WordOffset): string {
    if ((this.flagsOf(r) & RecFlag.FAILED) === 0) return '';
    const at = this.arena.u32[r + Rec.SECOND]!;
    if (at === 0) return '';
    return this.arena.buf.toString('utf8', (at + 1) * 4, (at + 1) * 4 + this.arena.u32[at]!);
  }

  /** Allocates `[count, ...the first count ordinals]`. */
  #block(ordinals: readonly number[], count: number): WordOffset {
    const at = this.arena.alloc(count + 1);
    const u32 = this.arena.u32;
    u32[at] = count;
    for (let i = 0; i < count; i++) u32[at + 1 + i] = ordinals[i]!;
    return at;
  }

  // ------------------------------------------------------------ the table

  /** Number of records. */
  get count(): number {
    return this.arena.u32[BookWord.COUNT]!;
  }

  /** The record word of `ordinal`, or -1. */
  find(ordinal: number): WordOffset {
    const u32 = this.arena.u32;
    const capacity = u32[BookWord.CAPACITY]!;
    if (capacity === 0) return -1;
    const table = u32[BookWord.TABLE]!;
    const mask = capacity - 1;
    for (let i = slotOf(ordinal, mask); ; i = (i + 1) & mask) {
      const r = u32[table + i]!;
      if (r === 0) return -1;
      if (u32[r] === ordinal) return r;
    }
  }

  /** Adds an empty record for `ordinal` (new memory or journaled), returning its word. */
  #insert(ordinal: number): WordOffset {
    const arena = this.arena;
    let capacity = arena.u32[BookWord.CAPACITY]!;
    const count = arena.u32[BookWord.COUNT]!;
    if ((count + 1) * 4 > capacity * 3) {
      this.#grow(Math.max(MIN_CAPACITY, capacity * 2));
      capacity = arena.u32[BookWord.CAPACITY]!;
    }
    const r = this.#place();
    const u32 = arena.u32;
    const table = u32[BookWord.TABLE]!;
    const mask = capacity - 1;
    let i = slotOf(ordinal, mask);
    for (let o = u32[table + i]!; o !== 0; o = u32[table + i]!) {
      if (u32[o] === ordinal) throw new NoatunError(ErrorCode.INTERNAL, `event ${ordinal} already has a pruning record`);
      i = (i + 1) & mask;
    }
    arena.set32(table + i, r);
    u32[r] = ordinal;
    arena.add32(BookWord.COUNT, 1);
    return r;
  }

  /**
   * Takes the place of a new record (zeroed, journaled): a removed record's, else fresh memory
   * (which a rewind to before the running event takes back, so it needs no journal).
   */
  #place(): WordOffset {
    const arena = this.arena;
    const u32 = arena.u32;
    const free = u32[BookWord.FREE]!;
    if (free === 0) return arena.alloc(RECORD_WORDS);
    // A removed record is zero but for its first word, the link to the next removed one.
    arena.set32(BookWord.FREE, u32[free]!);
    arena.jnZero(free + 1, RECORD_WORDS - 1);
    arena.set32(free, 0);
    return free;
  }

  /**
   * Makes room for `records` records without growing (a rebuild knows how many it will make, so
   * it does not leave a trail of outgrown indexes behind).
   */
  reserve(records: number): void {
    const needed = Math.max(MIN_CAPACITY, 2 ** Math.ceil(Math.log2((records * 4) / 3 + 1)));
    if (needed > this.arena.u32[BookWord.CAPACITY]!) this.#grow(needed);
  }

  /**
   * Moves every index entry into a new index of `capacity` slots (the records stay where they
   * are). The old index is garbage, retired to the arena, which gives its disk back once no rewind
   * can return to it.
   */
  #grow(capacity: number): void {
    const arena = this.arena;
    const table = arena.alloc(capacity);
    const u32 = arena.u32;
    const oldTable = u32[BookWord.TABLE]!;
    const oldCapacity = u32[BookWord.CAPACITY]!;
    const mask = capacity - 1;
    for (let s = 0; s < oldCapacity; s++) {
      const r = u32[oldTable + s]!;
      if (r === 0) continue;
      let i = slotOf(u32[r]!, mask);
      while (u32[table + i] !== 0) i = (i + 1) & mask;
      u32[table + i] = r;
    }
    arena.set32(BookWord.TABLE, table);
    arena.set32(BookWord.CAPACITY, capacity);
    if (oldTable !== 0) arena.retire(oldTable, oldCapacity);
  }

  /** Deletes the record of `ordinal` (journaled; backward-shift so lookups stay correct). */
  remove(ordinal: number): void {
    const arena = this.arena;
    const u32 = arena.u32;
    const capacity = u32[BookWord.CAPACITY]!;
    if (capacity === 0) return;
    const table = u32[BookWord.TABLE]!;
    const mask = capacity - 1;
    let hole = slotOf(ordinal, mask);
    for (; ; hole = (hole + 1) & mask) {
      const o = u32[table + hole]!;
      if (o === 0) return;
      if (u32[o] === ordinal) break;
    }
    const r = u32[table + hole]!;
    if (this.#countsKept()) this.#count(this.flagsOf(r), -1);
    this.#changes++;
    for (let i = (hole + 1) & mask; ; i = (i + 1) & mask) {
      const moving = u32[table + i]!;
      if (moving === 0) break;
      const home = slotOf(u32[moving]!, mask);
      // Move the entry into the hole unless its home lies cyclically in (hole, i].
      const between = hole <= i ? home > hole && home <= i : home > hole || home <= i;
      if (between) continue;
      arena.set32(table + hole, moving);
      hole = i;
    }
    arena.set32(table + hole, 0);
    // The record's place goes to the next new record: zeroed, its first word linking the others.
    arena.zero(r, RECORD_WORDS);
    arena.set32(r, u32[BookWord.FREE]!);
    arena.set32(BookWord.FREE, r);
    arena.add32(BookWord.COUNT, -1);
  }

  /** Records whose apply failed. */
  get failedCount(): number {
    this.#keepCounts();
    return this.#failed;
  }

  /**
   * Records of events that destroyed data of events still stored (see {@link isTombstone}).
   * Counted by a walk over the records, kept until a tombstone's record is made, a record is
   * removed (a tombstone, or the last stored victim of one), or the view is rewound.
   */
  get tombstoneCount(): number {
    const kept = this.#tombstones;
    const arena = this.arena;
    if (kept !== undefined && kept.arena === arena && kept.rewinds === arena.rewinds && kept.changes === this.#changes) return kept.count;
    let count = 0;
    this.forEach((r) => {
      if (this.isTombstone(r)) count++;
    });
    this.#tombstones = { arena, rewinds: arena.rewinds, changes: this.#changes, count };
    return count;
  }

  /**
   * Whether record `r`'s event destroyed data of an event still stored (one of its victims). Not
   * merely {@link RecFlag.TOMBSTONE}: that says it destroyed something when it was applied, and once
   * its victims are pruned a replay of the same stored events (a rebuild, a compaction, another
   * peer's view made from a copy) finds nothing for it to destroy. So peers with the same stored
   * events counted different tombstones.
   */
  isTombstone(r: WordOffset): boolean {
    if ((this.flagsOf(r) & RecFlag.TOMBSTONE) === 0) return false;
    for (const victim of this.victims(r)) if (this.find(victim) !== -1) return true;
    return false;
  }

  /** Whether the kept counts are those of the arena as it is (no rewind, no other arena since). */
  #countsKept(): boolean {
    const at = this.#countsOf;
    return at !== undefined && at.arena === this.arena && at.rewinds === this.arena.rewinds;
  }

  /** Counts afresh unless the kept counts are current. */
  #keepCounts(): void {
    if (this.#countsKept()) return;
    this.#failed = 0;
    const u32 = this.arena.u32;
    this.forEach((r) => {
      this.#count(u32[r + Rec.FLAGS_EFFECT_HI]! >>> FLAGS_SHIFT, 1);
    });
    this.#countsOf = { arena: this.arena, rewinds: this.arena.rewinds };
  }

  #count(flags: number, by: 1 | -1): void {
    if ((flags & RecFlag.FAILED) !== 0) this.#failed += by;
  }

  /** Calls `fn` with the word of every record (do not change the table while iterating). */
  forEach(fn: (r: WordOffset) => void): void {
    const u32 = this.arena.u32;
    const table = u32[BookWord.TABLE]!;
    const capacity = u32[BookWord.CAPACITY]!;
    for (let s = 0; s < capacity; s++) {
      const r = u32[table + s]!;
      if (r !== 0) fn(r);
    }
  }

  /** Whether a record's event owns nothing any more (see {@link effectTime}). */
  dead(r: WordOffset): boolean {
    return (this.arena.u32[r + Rec.FLAGS_EFFECT_HI]! & (RecFlag.DEAD << FLAGS_SHIFT)) !== 0;
  }

  /** The data a record's event owns (0 once it is {@link dead}). */
  usesOf(r: WordOffset): number {
    return this.dead(r) ? 0 : this.arena.u32[r + Rec.USES_OR_EFFECT]!;
  }

  /** The time a {@link dead} record's uses reached 0, in ms (meaningless for a live one). */
  effectTime(r: WordOffset): number {
    const u32 = this.arena.u32;
    return (u32[r + Rec.FLAGS_EFFECT_HI]! & EFFECT_HI_MASK) * TWO_32 + u32[r + Rec.USES_OR_EFFECT]!;
  }

  /** The flags of a record ({@link RecFlag}). */
  flagsOf(r: WordOffset): number {
    return this.arena.u32[r + Rec.FLAGS_EFFECT_HI]! >>> FLAGS_SHIFT;
  }

  /**
   * The ordinals of the events a record's event read: a view into the arena, valid until the next
   * allocation or write.
   */
  reads(r: WordOffset): Uint32Array {
    const u32 = this.arena.u32;
    const flags = u32[r + Rec.FLAGS_EFFECT_HI]!;
    if ((flags & (RecFlag.READS_INLINE << FLAGS_SHIFT)) === 0) return this.list(u32[r + Rec.READS]!);
    const first = r + Rec.READS;
    // READS and SECOND are consecutive words.
    if ((flags & (RecFlag.READ2_INLINE << FLAGS_SHIFT)) !== 0) return u32.subarray(first, first + 2);
    return u32.subarray(first, first + (u32[first] === 0 ? 0 : 1));
  }

  /**
   * The word of the arena where the ordinals {@link reads} lists begin; {@link readCount} of them
   * follow. Nothing is allocated (the pruner walks these for every candidate).
   */
  readsAt(r: WordOffset): WordOffset {
    const u32 = this.arena.u32;
    if ((u32[r + Rec.FLAGS_EFFECT_HI]! & (RecFlag.READS_INLINE << FLAGS_SHIFT)) === 0) return u32[r + Rec.READS]! + 1;
    return r + Rec.READS;
  }

  /** How many ordinals {@link reads} lists (see {@link readsAt}). */
  readCount(r: WordOffset): number {
    const u32 = this.arena.u32;
    const flags = u32[r + Rec.FLAGS_EFFECT_HI]!;
    if ((flags & (RecFlag.READS_INLINE << FLAGS_SHIFT)) === 0) {
      const at = u32[r + Rec.READS]!;
      return at === 0 ? 0 : u32[at]!;
    }
    if ((flags & (RecFlag.READ2_INLINE << FLAGS_SHIFT)) !== 0) return 2;
    return u32[r + Rec.READS] === 0 ? 0 : 1;
  }

  /** The word where the ordinals {@link victims} lists begin; {@link victimCount} of them follow. */
  victimsAt(r: WordOffset): WordOffset {
    return this.arena.u32[r + Rec.SECOND]! + 1;
  }

  /** How many ordinals {@link victims} lists (see {@link victimsAt}). */
  victimCount(r: WordOffset): number {
    if ((this.flagsOf(r) & (RecFlag.FAILED | RecFlag.READ2_INLINE)) !== 0) return 0;
    const at = this.arena.u32[r + Rec.SECOND]!;
    return at === 0 ? 0 : this.arena.u32[at]!;
  }

  /**
   * The ordinals of the events whose data a record's event destroyed (none for a failed event): a
   * view into the arena, valid until the next allocation or write.
   */
  victims(r: WordOffset): Uint32Array {
    if ((this.flagsOf(r) & (RecFlag.FAILED | RecFlag.READ2_INLINE)) !== 0) return EMPTY;
    return this.list(this.arena.u32[r + Rec.SECOND]!);
  }

  /** The first {@link RECORD_ID_BYTES} bytes of a record's id (a copy). */
  idPrefixOf(r: WordOffset): Uint8Array {
    const prefix = new Uint8Array(RECORD_ID_BYTES);
    this.idPrefixInto(r, prefix, 0);
    return prefix;
  }

  /** Copies the first {@link RECORD_ID_BYTES} bytes of a record's id into `out` at `offset`. */
  idPrefixInto(r: WordOffset, out: Uint8Array, offset: number): void {
    const at = (r + Rec.ID_PREFIX) * 4;
    const u8 = this.arena.u8;
    for (let b = 0; b < RECORD_ID_BYTES; b++) out[offset + b] = u8[at + b]!;
  }

  /** The ordinals in a `[n, ...]` block at word `at` (0 = none), as {@link reads}. */
  list(at: WordOffset): Uint32Array {
    const u32 = this.arena.u32;
    if (at === 0) return EMPTY;
    return u32.subarray(at + 1, at + 1 + u32[at]!);
  }

  /** Decrements the reader count of `ordinal` (its reader was pruned); returns the record or -1. */
  dropReader(ordinal: number): WordOffset {
    const r = this.find(ordinal);
    if (r !== -1) {
      const readers = this.arena.u32[r + Rec.READERS]!;
      if (readers > 0) this.arena.add32(r + Rec.READERS, -1);
    }
    return r;
  }
}

/**
 * Home slot of an ordinal. Multiplying by an odd constant is a bijection modulo the table size,
 * so consecutive ordinals land in distinct slots.
 */
function slotOf(ordinal: number, mask: number): number {
  return Math.imul(ordinal, 0x9e3779b1) & mask;
}
