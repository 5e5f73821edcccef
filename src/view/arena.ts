/**
 * The arena: the view file as typed arrays, a bump allocator, journaled writes, tracked reads and
 * writes, and sessions.
 *
 * Layout. The file starts with a {@link VIEW_HEADER_BYTES}-byte header, then bump-allocated
 * blocks. Everything is addressed by 32-bit *word* indices (4-byte units), so one word pointer
 * reaches 16 GiB; blocks are 8-byte aligned so that float64 and 64-bit integer values index their
 * typed arrays at `word >> 1`. Words are little-endian (typed arrays read them directly).
 *
 * Undo. Every write below the allocation top as it was at the last event mark is journaled
 * first; memory allocated after the mark needs no journaling, because rewinding the allocation
 * top zero-fills it. Rewinding the journal to a mark therefore restores the arena byte for byte.
 *
 * Sessions. Accessors remember the session they were made in and check it on every access, so an
 * accessor kept past its callback throws instead of reading memory that may since have been
 * rewound, grown or unmapped.
 */
import { CorruptFileError, ErrorCode, NoatunError, SchemaMismatchError } from '../errors.js';
import { ALLOCATION_WORDS, INITIAL_FILE_BYTES, PAGE_BYTES, VIEW_HEADER_BYTES, WORD_BYTES } from './constants.js';
import {
  ADDED_ONE,
  COMPACT_WORDS,
  JOURNAL_HEADER_WORDS,
  type JournalMark,
  JournalTag,
  SHORT_SET,
  SHORT_SET2,
  TAKEN_ONE,
  type UndoJournal,
} from './journal.js';
import { checksum, checksumFile, MappedFile } from './mapped-file.js';
import type { Ordinal, TrackingContext } from './tracking.js';

/** A word index into the arena. */
export type WordOffset = number;

const MAGIC0 = 0x4e54414e; // bytes "NATNVEW1"
const MAGIC1 = 0x31574556;
/**
 * Version of the view file format; bump when the layout of any type changes. A view of another
 * version is rebuilt from the log at open (the log is the truth; the view is derived). 4: the
 * pruning records in chunks behind an index (5 Dec 2026). 5: records of 48 bytes with up to two
 * reads inline, allocated one by one, behind an index of 4-byte slots; 6: records of 40 bytes
 * keeping the first 8 bytes of the id (6 Dec 2026). 7: list elements with an existence tracker,
 * optionals whose presence stays with the event that made them present (7 Dec 2026). 8: pruning
 * records of 32 bytes, the use count sharing its word with the time it reached 0 (7 Dec 2026).
 */
export const VIEW_FORMAT_VERSION = 8;

/** Word indices of the header fields. */
export const Header = {
  MAGIC0: 0,
  MAGIC1: 1,
  VERSION: 2,
  FLAGS: 3,
  /** 4 words: the first 16 bytes of the schema hash. */
  SCHEMA_HASH: 4,
  LAST_APPLIED: 8,
  ROOT: 9,
  TOP: 10,
  /**
   * The secret mixed into every map key's hash (see key-hash.ts), chosen at random when the file is
   * made; 0 in a view made before there was one (its keys are hashed as they were then).
   */
  HASH_SEED: 11,
  /** 4 words: the 128-bit checksum of the view (native, see `checksum` in mapped-file.ts), written when it is sealed. */
  CHECKSUM: 12,
  /** 16 words (64 bytes) the engine may use for its own roots; not journaled. */
  ENGINE: 16,
  ENGINE_WORDS: 16,
} as const;

/** Header flag bits. */
export const HeaderFlag = {
  /** Set while the view may not match its last applied ordinal (writes in progress). */
  DIRTY: 1,
} as const;

/** Words of the view file header; the root object follows it. */
export const HEADER_WORDS = VIEW_HEADER_BYTES / WORD_BYTES;

/** Options of {@link Arena.open}. */
export interface ArenaOptions {
  readonly path: string;
  readonly reserveBytes: number;
  /** 16 bytes identifying the schema; a file made for another schema is refused. */
  readonly schemaHash: Uint8Array;
  /** Words of the root object, allocated (zeroed) when the file is new. */
  readonly rootWords: number;
  readonly journal: UndoJournal;
}

/**
 * Per arena, set by its view: whether the open session is stuck (it could not start, and was never
 * closed) and is closed now (see `MaterializedView`'s #unstick). Kept outside the arena: a field
 * more in it slowed every query (its fields are read by each).
 */
export const stuckSessions = new WeakMap<Arena, () => boolean>();

/** Above this, memory a rewind clears is given back to the file system (see `Arena.#clearAbove`). */
const GIVE_BACK_BYTES = 16 * 2 ** 20;

/** The memory of a view. Used by the generated accessors and by the engine's bookkeeping. */
export class Arena {
  readonly file: MappedFile;
  readonly journal: UndoJournal;
  /** True when the file was created by this open (the root is freshly zeroed). */
  readonly created: boolean;
  u8: Uint8Array;
  u32: Uint32Array;
  i32: Int32Array;
  f64: Float64Array;
  u64: BigUint64Array;
  i64: BigInt64Array;
  /** A Buffer over the same memory, for UTF-8 encoding and decoding in place. */
  buf: Buffer;
  /** Words currently in the file. */
  capacity: number;
  /**
   * Blocks may be allocated below this word (never past {@link capacity}): up to there the file
   * has its blocks on disk (see `MappedFile`: a write into a page without one raises SIGBUS when
   * the disk is full). Everything below the top is written as it is allocated (zeroed), so the
   * pages below the top have blocks, but for retired blocks given back, which nothing writes.
   */
  #limit: number;
  /** Allocation top (word index): everything at or above it is zero. */
  top: number;
  /** Writes below this word are journaled: the top at the last mark. */
  floor: number;
  #topRecorded: boolean;
  /** Current session number; accessors compare theirs against it. */
  session: number;
  /** True while a session runs. */
  active: boolean;
  /** True once closed (the file's own flag, kept here so a session's start reads one field). */
  closed: boolean;
  /** The running event's tracking context, or null outside apply (read-only). */
  ctx: TrackingContext | null;
  /** While true (inside an opaque list's push), every write is reported as opaque. */
  opaqueWrites: boolean;
  /** The secret of this view's map key hashes ({@link Header.HASH_SEED}). */
  hashSeed: number;

  private constructor(file: MappedFile, journal: UndoJournal) {
    this.file = file;
    this.journal = journal;
    this.created = file.created;
    this.u8 = new Uint8Array(0);
    this.u32 = new Uint32Array(0);
    this.i32 = new Int32Array(0);
    this.f64 = new Float64Array(0);
    this.u64 = new BigUint64Array(0);
    this.i64 = new BigInt64Array(0);
    this.buf = Buffer.alloc(0);
    this.capacity = 0;
    this.#limit = 0;
    this.top = 0;
    this.floor = 0;
    this.#topRecorded = false;
    this.session = 1;
    this.active = false;
    this.closed = false;
    this.ctx = null;
    this.opaqueWrites = false;
    this.hashSeed = 0;
    this.#remap();
  }

  /**
   * Opens or creates a view file. A new file gets a header and a zeroed root object; an existing
   * one is checked: foreign or damaged headers throw `CORRUPT_FILE`, another schema's file
   * throws `SCHEMA_MISMATCH`.
   */
  static open(options: ArenaOptions): Arena {
    const file = MappedFile.open(options.path, { reserveBytes: options.reserveBytes, initialBytes: INITIAL_FILE_BYTES });
    const arena = new Arena(file, options.journal);
    try {
      if (file.created) arena.#initialize(options);
      else arena.#validate(options);
    } catch (error) {
      file.close();
      throw error;
    }
    arena.hashSeed = arena.u32[Header.HASH_SEED]!;
    arena.floor = arena.top;
    // Past the top the file may have no blocks (it grew without them, or was made by an older
    // version); below it, it has (see #limit).
    arena.#limit = arena.top;
    return arena;
  }

  #initialize(options: ArenaOptions): void {
    const u32 = this.u32;
    u32[Header.MAGIC0] = MAGIC0;
    u32[Header.MAGIC1] = MAGIC1;
    u32[Header.VERSION] = VIEW_FORMAT_VERSION;
    u32[Header.FLAGS] = 0;
    this.u8.set(options.schemaHash.subarray(0, 16), Header.SCHEMA_HASH * WORD_BYTES);
    // Peers may choose map keys (an event's payload): with a hash they cannot know, they cannot
    // choose keys that all land in one place of a table (a flood that makes each insert cost
    // the table's size). Never 0, which means a view made before the seed.
    u32[Header.HASH_SEED] = crypto.getRandomValues(new Uint32Array(1))[0]! || 1;
    this.top = HEADER_WORDS;
    const root = this.top;
    this.top += (options.rootWords + 1) & ~1;
    // (The new file's first 64 KiB have their blocks: only a larger root needs more.)
    if (this.top > this.capacity) this.#allocateTo(this.top);
    this.u32[Header.ROOT] = root;
    this.u32[Header.TOP] = this.top;
  }

  #validate(options: ArenaOptions): void {
    const path = this.file.path;
    const u32 = this.u32;
    if (this.file.byteLength < VIEW_HEADER_BYTES || u32[Header.MAGIC0] !== MAGIC0 || u32[Header.MAGIC1] !== MAGIC1) {
      throw new CorruptFileError(path, 'not a Noatun view file (bad magic)', 0);
    }
    if (u32[Header.VERSION] !== VIEW_FORMAT_VERSION) {
      throw new CorruptFileError(path, `unknown view format version ${u32[Header.VERSION]}`, Header.VERSION * WORD_BYTES);
    }
    const stored = this.u8.subarray(Header.SCHEMA_HASH * WORD_BYTES, Header.SCHEMA_HASH * WORD_BYTES + 16);
    if (!equalBytes(stored, options.schemaHash.subarray(0, 16))) {
      throw new SchemaMismatchError(path, hex(options.schemaHash.subarray(0, 16)), hex(stored));
    }
    const top = u32[Header.TOP]!;
    const root = u32[Header.ROOT]!;
    if (top < HEADER_WORDS || top > this.capacity || (top & 1) !== 0) {
      throw new CorruptFileError(path, `allocation top ${top} outside the file`, Header.TOP * WORD_BYTES);
    }
    if (root !== HEADER_WORDS || root + options.rootWords > top) {
      throw new CorruptFileError(path, `root object at word ${root} is invalid`, Header.ROOT * WORD_BYTES);
    }
    this.top = top;
  }

  /** Word index of the root object. */
  get root(): WordOffset {
    return this.u32[Header.ROOT]!;
  }

  /** The ordinal of the last event the view reflects (engine-maintained, not journaled). */
  get lastApplied(): number {
    return this.u32[Header.LAST_APPLIED]!;
  }

  set lastApplied(ordinal: number) {
    this.u32[Header.LAST_APPLIED] = ordinal;
  }

  /** Header flags ({@link HeaderFlag}); not journaled. */
  get flags(): number {
    return this.u32[Header.FLAGS]!;
  }

  set flags(value: number) {
    this.u32[Header.FLAGS] = value;
  }

  /**
   * The checksum (16 bytes, see {@link checksum}) of the view in use: the header before the
   * checksum words, then everything from the engine words up to the allocation top. Memory above
   * the top is not covered: allocation zeroes it.
   */
  computeChecksum(source: 'memory' | 'file' = 'memory'): Buffer {
    const part =
      source === 'file'
        ? (from: number, to: number) => checksumFile(this.file.path, from, to - from)
        : (from: number, to: number) => checksum(this.u8.subarray(from, to));
    const head = part(0, Header.CHECKSUM * WORD_BYTES);
    const body = part(Header.ENGINE * WORD_BYTES, this.top * WORD_BYTES);
    return checksum(Buffer.concat([head, body]));
  }

  /** Stores the checksum of the current contents in the header. */
  seal(): void {
    this.u8.set(this.computeChecksum(), Header.CHECKSUM * WORD_BYTES);
  }

  /**
   * True when the stored checksum matches the contents (the file was not damaged since sealed).
   * Reads the file, not the mapping: right after an open that is several times faster (see
   * {@link checksumFile}); the two hold the same bytes (a shared mapping is the page cache).
   */
  verify(): boolean {
    const stored = this.u8.subarray(Header.CHECKSUM * WORD_BYTES, (Header.CHECKSUM + 4) * WORD_BYTES);
    return Buffer.compare(stored, this.computeChecksum('file')) === 0;
  }

  /** Bytes in use (header plus allocated blocks). */
  get usedBytes(): number {
    return this.top * WORD_BYTES;
  }

  // ---------------------------------------------------------------- sessions

  /**
   * Starts a session. With a tracking context the session may write (an event's apply); without
   * one it is read-only. Sessions do not nest.
   */
  begin(ctx: TrackingContext | null): number {
    // The refusals are a call of their own: this runs before every query and every event's apply,
    // and V8 inlines a function by its size, throws included.
    if (this.active || this.closed) this.refuseSession();
    this.active = true;
    this.ctx = ctx;
    return ++this.session;
  }

  /**
   * Throws why a session cannot begin (closed, or one is running); returns when the session open
   * was a stuck one, closed now (see {@link stuckSessions}).
   */
  refuseSession(): void {
    if (this.closed) throw new NoatunError(ErrorCode.CLOSED, 'the view is closed');
    if (this.unstuck()) return;
    throw new NoatunError(ErrorCode.SESSION_NESTED, 'a view session is already running (read/apply callbacks do not nest)');
  }

  /** Whether the open session was a stuck one, closed now (see {@link stuckSessions}). */
  unstuck(): boolean {
    return stuckSessions.get(this)?.() === true;
  }

  /** Ends the session: every accessor made in it becomes unusable. */
  end(): void {
    this.active = false;
    this.ctx = null;
    this.session++;
  }

  /** Throws the error for an accessor used outside its session. */
  stale(): never {
    throw new NoatunError(
      ErrorCode.VIEW_ACCESS_OUTSIDE_SESSION,
      'a view accessor was used after the callback that produced it returned; copy values out (export()) instead',
    );
  }

  // ---------------------------------------------------------------- tracking

  /** Reports a read of the datum whose tracker is at word `tw` (inside apply only). */
  read(tw: WordOffset): void {
    // Kept this small (queries call it at every step and V8 inlines by size); apply's part is
    // a call of its own.
    if (this.ctx !== null) this.readInApply(tw);
  }

  /**
   * {@link read} inside apply (a tracking context is set): reports the tracker's owner unless it
   * is the running event. Generated accessors call it after checking `ctx` themselves.
   */
  readInApply(tw: WordOffset): void {
    const ctx = this.ctx!;
    const owner = this.u32[tw]!;
    if (owner !== ctx.ordinal) ctx.onRead(owner as Ordinal);
  }

  /** Throws unless the session may write; returns the tracking context. */
  writer(): TrackingContext {
    const ctx = this.ctx;
    if (ctx === null) {
      if (!this.active) this.stale();
      throw new NoatunError(ErrorCode.VIEW_READ_ONLY, 'the view can only be changed inside apply');
    }
    return ctx;
  }

  /** Makes the running event the owner of the tracker at `tw`, reporting the previous owner. */
  own(tw: WordOffset, opaque: boolean): void {
    const ctx = this.writer();
    const previous = this.u32[tw]!;
    if (previous !== ctx.ordinal) {
      ctx.onWrite(previous as Ordinal, opaque || this.opaqueWrites);
      this.j1(tw);
      this.u32[tw] = ctx.ordinal;
    }
  }

  /**
   * Journals the one-word value at `w` and its tracker at `w + 1` in one entry, and makes the
   * running event the owner of the tracker (as {@link own}); the caller writes the value.
   */
  ownValue(w: WordOffset, opaque: boolean): void {
    const ctx = this.writer();
    const tw = w + 1;
    const previous = this.u32[tw]!;
    if (previous !== ctx.ordinal) {
      ctx.onWrite(previous as Ordinal, opaque || this.opaqueWrites);
      this.j2(w);
      this.u32[tw] = ctx.ordinal;
    } else {
      this.j1(w);
    }
  }

  /** Releases the tracker at `tw` (the datum is destroyed) and clears it. */
  release(tw: WordOffset): void {
    const ctx = this.writer();
    const previous = this.u32[tw]!;
    ctx.onDestroy(previous as Ordinal);
    if (previous !== 0) {
      this.j1(tw);
      this.u32[tw] = 0;
    }
  }

  /** Throws `OPAQUE_READ_IN_APPLY` inside apply. */
  opaqueRead(): void {
    if (this.ctx !== null) {
      throw new NoatunError(
        ErrorCode.OPAQUE_READ_IN_APPLY,
        'opaque data cannot be read inside apply (it is never a read dependency); read it in db.read()',
      );
    }
  }

  // ---------------------------------------------------------------- journaled writes

  /** Journals word `w` before it is overwritten. */
  j1(w: WordOffset): void {
    if (w < this.floor) {
      const journal = this.journal;
      if (journal.end + 3 > journal.limit) journal.reserve(3);
      const j = journal.words;
      const e = journal.end;
      j[e] = this.u32[w]!;
      if (w < SHORT_SET) {
        j[e + 1] = SHORT_SET + w;
        journal.end = e + 2;
      } else {
        j[e + 1] = w;
        j[e + 2] = JournalTag.SET1;
        journal.end = e + 3;
      }
    }
  }

  /** Journals words `w` and `w + 1` before they are overwritten. */
  j2(w: WordOffset): void {
    if (w < this.floor) {
      const journal = this.journal;
      if (journal.end + 4 > journal.limit) journal.reserve(4);
      const j = journal.words;
      const e = journal.end;
      const u32 = this.u32;
      j[e] = u32[w]!;
      j[e + 1] = u32[w + 1]!;
      if (w < COMPACT_WORDS) {
        j[e + 2] = SHORT_SET2 + w;
        journal.end = e + 3;
      } else {
        j[e + 2] = w;
        j[e + 3] = JournalTag.SET2;
        journal.end = e + 4;
      }
    }
  }

  /**
   * Adds `delta` (+1 or -1) to word `w` with journaling: one word of journal, which says which
   * way the word moved.
   */
  add32(w: WordOffset, delta: 1 | -1): void {
    const u32 = this.u32;
    if (w < this.floor) {
      if (w >= COMPACT_WORDS) {
        this.j1(w);
      } else {
        const journal = this.journal;
        if (journal.end + 1 > journal.limit) journal.reserve(1);
        journal.words[journal.end++] = (delta === 1 ? ADDED_ONE : TAKEN_ONE) + w;
      }
    }
    u32[w] = u32[w]! + delta;
  }

  /** Journals `n` words from `w` before they are overwritten. */
  jn(w: WordOffset, n: number): void {
    if (n === 0 || w >= this.floor) return;
    const journal = this.journal;
    journal.reserve(n + 3);
    const j = journal.words;
    const e = journal.end;
    j.set(this.u32.subarray(w, w + n), e);
    j[e + n] = w;
    j[e + n + 1] = n;
    j[e + n + 2] = JournalTag.SETN;
    journal.end = e + n + 3;
  }

  /**
   * Journals `n` words from `w` that are usually all zero (a fresh slot in a table): as one short
   * entry when they are, as {@link jn} otherwise.
   */
  jnZero(w: WordOffset, n: number): void {
    if (n === 0 || w >= this.floor) return;
    const u32 = this.u32;
    for (let i = 0; i < n; i++) {
      if (u32[w + i] !== 0) {
        this.jn(w, n);
        return;
      }
    }
    const journal = this.journal;
    if (journal.end + 3 > journal.limit) journal.reserve(3);
    const j = journal.words;
    const e = journal.end;
    j[e] = w;
    j[e + 1] = n;
    j[e + 2] = JournalTag.ZERON;
    journal.end = e + 3;
  }

  /** Writes word `w` with journaling. */
  set32(w: WordOffset, value: number): void {
    this.j1(w);
    this.u32[w] = value;
  }

  /** Zeroes `n` words from `w` with journaling. */
  zero(w: WordOffset, n: number): void {
    this.jn(w, n);
    this.u32.fill(0, w, w + n);
  }

  /** Copies `n` words from `from` to `to` with journaling of the destination. */
  copyWords(to: WordOffset, from: WordOffset, n: number): void {
    this.jn(to, n);
    this.u32.copyWithin(to, from, from + n);
  }

  /**
   * Allocates `words` zeroed words, 8-byte aligned. Typed arrays may be re-created: reload
   * `this.u32` etc. after calling.
   */
  alloc(words: number): WordOffset {
    const at = this.top;
    const next = at + ((words + 1) & ~1);
    if (next > this.#limit) this.#allocateTo(next);
    if (!this.#topRecorded) {
      const journal = this.journal;
      journal.reserve(2);
      journal.words[journal.end] = at;
      journal.words[journal.end + 1] = JournalTag.TOP;
      journal.end += 2;
      this.#topRecorded = true;
    }
    this.top = next;
    this.u32[Header.TOP] = next;
    // Memory above the top is zero by construction; zeroing again costs little and keeps a
    // damaged tail of the file from ever leaking into new blocks.
    this.u32.fill(0, at, next);
    return at;
  }

  // ---------------------------------------------------------------- undo

  /**
   * Marks the start of an event: the returned position is what {@link rewindTo} takes to undo
   * the event and everything after it. The ordinal is recorded so the journal can be searched.
   */
  mark(ordinal: number): JournalMark {
    const journal = this.journal;
    const position = journal.position;
    journal.reserve(2);
    journal.words[journal.end] = ordinal;
    journal.words[journal.end + 1] = JournalTag.MARK;
    journal.end += 2;
    journal.persist();
    journal.noteMark(ordinal, position);
    this.floor = this.top;
    this.#topRecorded = false;
    return position;
  }

  /** The journal's current end: a mark with no event behind it. */
  get position(): JournalMark {
    return this.journal.position;
  }

  /**
   * Blocks the current state no longer uses (a table that grew into a new one), each with the
   * journal position after it was let go: a rewind to before that uses it again, so its pages go
   * back to the file system only once the history no longer reaches back there (see
   * {@link truncateBefore}). In memory only: blocks retired before a reopen stay on disk until a
   * compaction.
   */
  #retired: { readonly w: WordOffset; readonly words: number; readonly position: JournalMark }[] = [];
  /**
   * Rewinds so far. What is derived from the arena's contents outside it (counts kept in memory)
   * is valid while this stays the same: a rewind restores words without telling anyone which.
   */
  rewinds = 0;

  /**
   * Notes that the block of `words` words at `w` is garbage from now on (the bump allocator never
   * reuses it). Its disk is given back once no kept history reaches back before now.
   */
  retire(w: WordOffset, words: number): void {
    this.#retired.push({ w, words, position: this.position });
  }

  /**
   * Restores the arena to exactly what it was at `mark`, undoing every journaled write,
   * allocation and tracker change made since.
   */
  rewindTo(mark: JournalMark): void {
    this.rewinds++;
    // Blocks let go after the mark are in use again once it is restored.
    if (this.#retired.length !== 0) this.#retired = this.#retired.filter((block) => block.position <= mark);
    const journal = this.journal;
    if (mark < journal.oldest || mark > journal.position) {
      throw new NoatunError(
        ErrorCode.INTERNAL,
        `cannot rewind to journal position ${mark}: history is kept from ${journal.oldest} to ${journal.position}`,
      );
    }
    if (journal.wrapped && mark < journal.dropped) {
      // Back into the older stretch of the ring: all of the newer one first.
      journal.end = this.#undo(journal.end, JOURNAL_HEADER_WORDS, mark);
      journal.unwrap();
    }
    journal.end = this.#undo(journal.end, journal.physical(mark), mark);
    journal.persist();
    journal.forgetMarksFrom(mark);
    this.floor = this.top;
    this.#topRecorded = false;
  }

  /**
   * Undoes the journal's entries from physical word `end` back to `target` (the caller's
   * rewind to `mark`, for the error), newest first; returns `target`.
   */
  #undo(end: number, target: number, mark: JournalMark): number {
    const journal = this.journal;
    const j = journal.words;
    const u32 = this.u32;
    let e = end;
    while (e > target) {
      const tag = j[e - 1]!;
      if (tag >= SHORT_SET) {
        u32[tag - SHORT_SET] = j[e - 2]!;
        e -= 2;
        continue;
      }
      if (tag >= TAKEN_ONE) {
        if (tag >= SHORT_SET2) {
          const w = tag - SHORT_SET2;
          u32[w] = j[e - 3]!;
          u32[w + 1] = j[e - 2]!;
          e -= 3;
        } else if (tag >= ADDED_ONE) {
          u32[tag - ADDED_ONE]--;
          e -= 1;
        } else {
          u32[tag - TAKEN_ONE]++;
          e -= 1;
        }
        continue;
      }
      switch (tag) {
        case JournalTag.SET1:
          u32[j[e - 2]!] = j[e - 3]!;
          e -= 3;
          break;
        case JournalTag.SET2: {
          const w = j[e - 2]!;
          u32[w] = j[e - 4]!;
          u32[w + 1] = j[e - 3]!;
          e -= 4;
          break;
        }
        case JournalTag.SETN: {
          const n = j[e - 2]!;
          const w = j[e - 3]!;
          const from = e - 3 - n;
          u32.set(j.subarray(from, from + n), w);
          e = from;
          break;
        }
        case JournalTag.ZERON: {
          const w = j[e - 3]!;
          u32.fill(0, w, w + j[e - 2]!);
          e -= 3;
          break;
        }
        case JournalTag.TOP: {
          const old = j[e - 2]!;
          this.#clearAbove(old, this.top);
          this.top = old;
          u32[Header.TOP] = old;
          e -= 2;
          break;
        }
        case JournalTag.MARK:
          e -= 2;
          break;
        default:
          throw new CorruptFileError(journal.file.path, `unknown journal entry tag ${j[e - 1]}`, (e - 1) * WORD_BYTES);
      }
    }
    if (e !== target) {
      throw new NoatunError(ErrorCode.INTERNAL, `journal position ${mark} is not an entry boundary`);
    }
    return e;
  }

  /**
   * The position of the mark recorded for `ordinal`, or -1 when that mark is no longer (or was
   * never) in the journal (see {@link UndoJournal.findMark}).
   */
  findMark(ordinal: number): JournalMark | -1 {
    return this.journal.findMark(ordinal);
  }

  /**
   * The words changed since journal position `from` (which must still be kept), with their current
   * values: one map per event, split at the marks, oldest first (a map before the first mark holds
   * changes made between `from` and it). Memory allocated since is not journaled and not listed:
   * compare it as the range up to {@link top}.
   */
  changesSince(from: JournalMark): Map<number, number>[] {
    const journal = this.journal;
    const segments: Map<number, number>[] = [new Map()];
    // The newer stretch of a wrapped ring first, when `from` is in the older one.
    if (journal.wrapped && from < journal.dropped) {
      this.#changesIn(JOURNAL_HEADER_WORDS, journal.end, segments);
      this.#changesIn(journal.physical(from), journal.wrapEnd, segments);
    } else this.#changesIn(journal.physical(from), journal.end, segments);
    return segments.reverse();
  }

  /** Adds the changes of the entries in physical `[target, end)` to `segments` (see {@link changesSince}). */
  #changesIn(target: number, end: number, segments: Map<number, number>[]): void {
    const journal = this.journal;
    const j = journal.words;
    const u32 = this.u32;
    let current = segments[segments.length - 1]!;
    let e = end;
    while (e > target) {
      const tag = j[e - 1]!;
      if (tag >= SHORT_SET) {
        current.set(tag - SHORT_SET, u32[tag - SHORT_SET]!);
        e -= 2;
        continue;
      }
      if (tag >= TAKEN_ONE) {
        if (tag >= SHORT_SET2) {
          const w = tag - SHORT_SET2;
          current.set(w, u32[w]!);
          current.set(w + 1, u32[w + 1]!);
          e -= 3;
        } else {
          const w = tag - (tag >= ADDED_ONE ? ADDED_ONE : TAKEN_ONE);
          current.set(w, u32[w]!);
          e -= 1;
        }
        continue;
      }
      switch (tag) {
        case JournalTag.SET1:
          current.set(j[e - 2]!, u32[j[e - 2]!]!);
          e -= 3;
          break;
        case JournalTag.SET2: {
          const w = j[e - 2]!;
          current.set(w, u32[w]!);
          current.set(w + 1, u32[w + 1]!);
          e -= 4;
          break;
        }
        case JournalTag.SETN: {
          const n = j[e - 2]!;
          const w = j[e - 3]!;
          for (let i = 0; i < n; i++) current.set(w + i, u32[w + i]!);
          e -= 3 + n;
          break;
        }
        case JournalTag.ZERON: {
          const n = j[e - 2]!;
          const w = j[e - 3]!;
          for (let i = 0; i < n; i++) current.set(w + i, u32[w + i]!);
          e -= 3;
          break;
        }
        case JournalTag.TOP:
          e -= 2;
          break;
        case JournalTag.MARK:
          current = new Map();
          segments.push(current);
          e -= 2;
          break;
        default:
          throw new CorruptFileError(journal.file.path, `unknown journal entry tag ${j[e - 1]}`, (e - 1) * WORD_BYTES);
      }
    }
  }

  /**
   * Zeroes words [`from`, `to`), memory above the top a rewind restores (everything above the top
   * is zero). A stretch of {@link GIVE_BACK_BYTES} or more — a refused batch that filled the view
   * — is given back to the file system instead, in whole pages (they read as zeros, and the
   * allocator gets their blocks again before it hands them out: see {@link #limit}): it kept the
   * disk it took until the next compaction or close (a runaway apply, 5.6 GB of a view of 8 GiB),
   * and zeroing it wrote all of it once more.
   */
  #clearAbove(from: number, to: number): void {
    const pageWords = PAGE_BYTES / WORD_BYTES;
    const firstPage = Math.ceil(from / pageWords) * pageWords;
    const lastPage = Math.floor(to / pageWords) * pageWords;
    if ((lastPage - firstPage) * WORD_BYTES >= GIVE_BACK_BYTES && this.file.discard(firstPage * WORD_BYTES, lastPage * WORD_BYTES)) {
      this.u32.fill(0, from, firstPage);
      this.u32.fill(0, lastPage, to);
      if (this.#limit > firstPage) this.#limit = firstPage;
      return;
    }
    this.u32.fill(0, from, to);
  }

  /** True when the oldest entry kept in the journal is the mark of `ordinal`. */
  historyStartsAt(ordinal: number): boolean {
    const journal = this.journal;
    return (
      journal.byteLength >= 2 * WORD_BYTES &&
      journal.words[journal.start + 1] === JournalTag.MARK &&
      journal.words[journal.start] === ordinal
    );
  }

  /** Drops undo history before `mark` (see {@link UndoJournal.truncateBefore}). */
  truncateBefore(mark: JournalMark): void {
    this.journal.truncateBefore(mark);
    if (this.#retired.length === 0) return;
    // No kept mark lies before these blocks were let go: no rewind can bring them back. Their
    // pages go back to the file system (they read as zeros; the bump allocator never hands them
    // out again, and nothing points to them).
    const oldest = this.journal.oldest;
    this.#retired = this.#retired.filter((block) => {
      if (block.position > oldest) return true;
      this.file.discard(block.w * WORD_BYTES, (block.w + block.words) * WORD_BYTES);
      return false;
    });
  }

  // ---------------------------------------------------------------- lifecycle

  /** Flushes the view file to disk (msync). */
  sync(): void {
    this.file.sync(0, this.top * WORD_BYTES);
  }

  /** Unmaps the file; every accessor and typed array becomes unusable. Idempotent. */
  close(): void {
    if (this.file.closed) return;
    this.active = false;
    this.closed = true;
    this.ctx = null;
    this.session++;
    this.file.close();
    this.#remapEmpty();
  }

  #growTo(words: number): void {
    this.file.grow(words * WORD_BYTES);
    this.#remap();
  }

  /**
   * Gives the file blocks on disk up to word `words` at least (growing it first if needed), ahead
   * by {@link ALLOCATION_WORDS} past that, their pages made present in the background (see
   * `MappedFile.allocateAhead`). Throws `DISK_FULL` (nothing changed) when the file system has no
   * room.
   */
  #allocateTo(words: number): void {
    if (words > this.capacity) this.#growTo(words);
    this.#limit = this.file.allocateAhead(this.#limit * WORD_BYTES, words * WORD_BYTES, ALLOCATION_WORDS * WORD_BYTES) / WORD_BYTES;
  }

  #remap(): void {
    const buffer = this.file.buffer;
    const bytes = this.file.byteLength;
    this.capacity = bytes / WORD_BYTES;
    this.u8 = new Uint8Array(buffer, 0, bytes);
    this.u32 = new Uint32Array(buffer, 0, this.capacity);
    this.i32 = new Int32Array(buffer, 0, this.capacity);
    this.f64 = new Float64Array(buffer, 0, bytes / 8);
    this.u64 = new BigUint64Array(buffer, 0, bytes / 8);
    this.i64 = new BigInt64Array(buffer, 0, bytes / 8);
    this.buf = Buffer.from(buffer, 0, bytes);
  }

  #remapEmpty(): void {
    this.capacity = 0;
    this.u8 = new Uint8Array(0);
    this.u32 = new Uint32Array(0);
    this.i32 = new Int32Array(0);
    this.f64 = new Float64Array(0);
    this.u64 = new BigUint64Array(0);
    this.i64 = new BigInt64Array(0);
    this.buf = Buffer.alloc(0);
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
