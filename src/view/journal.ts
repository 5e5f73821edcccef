/**
 * The undo journal: an append-only stack of what each write in the view overwrote, in its own
 * memory-mapped file (`journal.bin`), so that the view can be rewound to the state before any
 * recent event, also after a restart.
 *
 * Entries are runs of 32-bit words, read backwards: the last word of an entry is its tag.
 *
 * | entry            | words (in file order)              | tag |
 * |------------------|------------------------------------|-----|
 * | one word, short  | old, word + 2^31 (word < 2^31)     | the last word itself (≥ 2^31; version 4) |
 * | two words, short | old0, old1, word + 3 · 2^29 (word < 2^29) | the last word (version 5) |
 * | one added        | word + 2^30 (word < 2^29)          | the last word: the word was incremented (version 5) |
 * | one taken        | word + 2^29 (word < 2^29)          | the last word: the word was decremented (version 5) |
 * | one word         | old, word                          | 1   |
 * | two words        | old0, old1, word                   | 2   |
 * | n words          | old0 … old(n-1), word, n           | 3   |
 * | allocation top   | oldTop                             | 4   |
 * | event mark       | ordinal                            | 5   |
 *
 * Most entries are single words (a field, a counter, a hash slot): the short form takes two words
 * where the tagged one takes three, a quarter of the journal. A value with its tracker next to it
 * takes three words, and a counter moved by one (a use or reader count, a map's size) one word: its
 * old value is the new one minus or plus one. Words at or past 2^31 (a view over 8 GiB; 2^29 and
 * 2 GiB for the forms of version 5) take the tagged forms.
 *
 * Positions ({@link JournalMark}) are logical word counts since the journal was created, so they
 * stay valid when old history is dropped by {@link UndoJournal.truncateBefore}.
 *
 * The file is a ring (format version 6): once history was dropped from its front, new entries go
 * there instead of past the end, and the history is two stretches, the older from `start` to
 * `wrapEnd` and the newer from the first entry word to `end`. No entry is split between them.
 * Before the ring, the kept history was moved to the front of the file whenever an eighth of it
 * had been dropped, and the pages it left were given back and then faulted in again as the
 * history grew into them: about 5% of the warehouse benchmark's writes (BENCHMARKS.md, run AA).
 */
import { CorruptFileError, ErrorCode, NoatunError } from '../errors.js';
import { ALLOCATION_WORDS, INITIAL_FILE_BYTES, JOURNAL_HEADER_BYTES, WORD_BYTES } from './constants.js';
import { checksum, MappedFile } from './mapped-file.js';

/** A position in the journal, as returned by `mark()`; rewinding to it undoes everything after. */
export type JournalMark = number & { readonly __brand: 'JournalMark' };

/** Entry tags; numbers are part of the file format and never reused. */
export const JournalTag = {
  SET1: 1,
  SET2: 2,
  SETN: 3,
  TOP: 4,
  MARK: 5,
  /** `[w, n, ZERON]`: `n` words from `w` were all zero (a fresh record slot; format version 3). */
  ZERON: 6,
} as const;

/**
 * A last word at or above this is a short one-word entry `[old, SHORT_SET + w]` (format version 4):
 * every tag is below it, and so is every word offset it is used for.
 */
export const SHORT_SET = 0x80000000;
/** A last word in `[SHORT_SET2, SHORT_SET)` is a short two-word entry `[old0, old1, SHORT_SET2 + w]` (version 5). */
export const SHORT_SET2 = 0x60000000;
/** A last word in `[ADDED_ONE, SHORT_SET2)` is the one-word entry of a word incremented by one (version 5). */
export const ADDED_ONE = 0x40000000;
/** A last word in `[TAKEN_ONE, ADDED_ONE)` is the one-word entry of a word decremented by one (version 5). */
export const TAKEN_ONE = 0x20000000;
/** Words below this can take the entries of version 5 (the view's first 2 GiB). */
export const COMPACT_WORDS = 0x20000000;

const MAGIC0 = 0x4e54414e; // "NATN" little-endian words spell "NATNJRN1"
const MAGIC1 = 0x314e524a;
/**
 * Version 3 added {@link JournalTag.ZERON}, version 4 the short entries ({@link SHORT_SET}), version
 * 5 the short two-word and counter entries ({@link SHORT_SET2}, {@link ADDED_ONE}, {@link TAKEN_ONE}),
 * version 6 the ring (`wrapEnd`). Journals of versions 2 to 5 (without them; no last word of theirs
 * falls in those ranges, and none is wrapped) are read as they are.
 */
const FORMAT_VERSION = 6;
const OLDEST_READABLE_VERSION = 2;
/** The first version whose header may hold a wrapped ring's `wrapEnd`. */
const RING_VERSION = 6;
/** Physical word index of the first entry word. */
export const JOURNAL_HEADER_WORDS = JOURNAL_HEADER_BYTES / WORD_BYTES;
const HEADER_WORDS = JOURNAL_HEADER_WORDS;
/**
 * New entries go to the front of the file (the ring wraps) once the history dropped there is at
 * least this fraction's inverse of what is kept (an eighth), so the file's blocks hold about 1.125
 * times the history; with less room there, the file grows instead.
 */
const WRAP_RATIO = 8;
// Header word indices. Positions are stored as float64 (exact up to 2^53 words).
const H_MAGIC0 = 0;
const H_MAGIC1 = 1;
const H_VERSION = 2;
const H_DROPPED_F64 = 2; // float64 index: bytes 16..24
const H_START_F64 = 3; // bytes 24..32
const H_END_F64 = 4; // bytes 32..40
const H_CHECKSUM = 10; // 4 words: bytes 40..56
const H_WRAP_END_F64 = 7; // bytes 56..64 (version 6)

/** The undo journal's storage. The arena appends and pops entries through {@link words}. */
export class UndoJournal {
  readonly file: MappedFile;
  /** The file as words; re-created on growth. Entries start at word {@link HEADER_WORDS}. */
  words: Uint32Array;
  #f64: Float64Array;
  /** Physical word index one past the last entry. */
  end: number;
  /** Physical word index of the first entry still kept. */
  start: number;
  /**
   * 0 while the history is one stretch, `[start, end)`. Once the ring has wrapped, the physical
   * word index one past the older stretch, `[start, wrapEnd)`; the newer is `[HEADER_WORDS, end)`,
   * and `end <= start`.
   */
  wrapEnd: number;
  /**
   * The logical position of the first entry word (of the newer stretch's, once wrapped): logical
   * = physical - HEADER_WORDS + dropped there, and in the older stretch of a wrapped ring logical
   * = physical - wrapEnd + dropped. The words of history dropped from the file before it, until the
   * older stretch moved on (see `#widen`): then it may be below 0.
   */
  dropped: number;
  /** Physical capacity in words. */
  capacity: number;
  /**
   * Entries may be written below this physical word index (never past {@link capacity}): up to
   * there the file has its blocks on disk (see `MappedFile`: a write into a page without one
   * raises SIGBUS when the disk is full). Writers check against it and call {@link reserve}.
   */
  limit: number;
  /**
   * The marks in the journal, oldest first, as (ordinal, logical position) pairs in
   * `[#marksFirst, #marksEnd)`; built on first use by one backward scan, then kept up to date by
   * {@link noteMark} and {@link forgetMarksFrom}. Without it, finding the first event of the window
   * at every cutoff step scanned the whole window backwards.
   */
  #markOrdinals = new Uint32Array(0);
  #markPositions = new Float64Array(0);
  #marksFirst = 0;
  #marksEnd = 0;
  #marksKnown = false;

  constructor(path: string, reserveBytes: number) {
    this.file = MappedFile.open(path, { reserveBytes, initialBytes: INITIAL_FILE_BYTES, limitOption: 'maxUndoBytes' });
    this.words = new Uint32Array(0);
    this.#f64 = new Float64Array(0);
    this.capacity = 0;
    this.limit = 0;
    // (A file cut shorter than its header has no room for the header's views: checked first.)
    if (!this.file.created && this.file.byteLength < JOURNAL_HEADER_BYTES) {
      this.file.close();
      throw new CorruptFileError(path, `cut short to ${this.file.byteLength} bytes, less than its header`, 0);
    }
    this.#remap();
    if (this.file.created) {
      this.words[H_MAGIC0] = MAGIC0;
      this.words[H_MAGIC1] = MAGIC1;
      this.words[H_VERSION] = FORMAT_VERSION;
      this.dropped = 0;
      this.start = HEADER_WORDS;
      this.end = HEADER_WORDS;
      this.wrapEnd = 0;
      this.persist();
    } else {
      if (this.file.byteLength < JOURNAL_HEADER_BYTES || this.words[H_MAGIC0] !== MAGIC0 || this.words[H_MAGIC1] !== MAGIC1) {
        this.file.close();
        throw new CorruptFileError(path, 'not a Noatun undo journal (bad magic)', 0);
      }
      const version = this.words[H_VERSION]!;
      if (version < OLDEST_READABLE_VERSION || version > FORMAT_VERSION) {
        this.file.close();
        throw new CorruptFileError(path, `unknown journal format version ${version}`, 8);
      }
      // From here on this code may write the entries of version 5 and wrap the ring: an older
      // version must not read them.
      this.words[H_VERSION] = FORMAT_VERSION;
      this.dropped = this.#f64[H_DROPPED_F64]!;
      this.start = this.#f64[H_START_F64]!;
      this.end = this.#f64[H_END_F64]!;
      this.wrapEnd = version >= RING_VERSION ? this.#f64[H_WRAP_END_F64]! : 0;
      const stretches =
        this.wrapEnd === 0
          ? this.start >= HEADER_WORDS && this.start <= this.end && this.end <= this.capacity
          : this.end >= HEADER_WORDS && this.end <= this.start && this.start < this.wrapEnd && this.wrapEnd <= this.capacity;
      if (!Number.isSafeInteger(this.dropped) || !Number.isSafeInteger(this.wrapEnd) || !stretches || this.oldest < 0) {
        this.file.close();
        throw new CorruptFileError(path, 'journal positions out of range', 16);
      }
    }
    // A new file has its blocks (MappedFile.open); a closed journal gave back those outside its
    // history (#discardUnused), and a grown one never had blocks past what it wrote.
    this.limit = this.file.created ? this.capacity : this.end;
  }

  /** Whether the history is in two stretches (see {@link wrapEnd}). */
  get wrapped(): boolean {
    return this.wrapEnd !== 0;
  }

  /** Logical position of the end of the journal. */
  get position(): JournalMark {
    return (this.end - HEADER_WORDS + this.dropped) as JournalMark;
  }

  /** Logical position of the oldest entry still kept; rewinding before it is impossible. */
  get oldest(): JournalMark {
    return (this.start - (this.wrapEnd === 0 ? HEADER_WORDS : this.wrapEnd) + this.dropped) as JournalMark;
  }

  /**
   * Physical index of a logical position of the kept history. The end of the older stretch of a
   * wrapped ring is the start of the newer (the position `dropped`): this gives the newer's.
   */
  physical(mark: JournalMark): number {
    return mark >= this.dropped || this.wrapEnd === 0 ? mark - this.dropped + HEADER_WORDS : mark - this.dropped + this.wrapEnd;
  }

  /** Bytes of history kept. */
  get byteLength(): number {
    return (this.wrapEnd === 0 ? this.end - this.start : this.end - HEADER_WORDS + this.wrapEnd - this.start) * WORD_BYTES;
  }

  /**
   * Makes the history one stretch again when the newer one is empty (a rewind went back into the
   * older one): the older stretch's positions then follow the rule of one stretch. The caller
   * moves `end` into the older stretch next.
   */
  unwrap(): void {
    if (this.wrapEnd === 0 || this.end !== HEADER_WORDS) {
      throw new NoatunError(ErrorCode.INTERNAL, 'the journal can only be unwrapped with nothing in its newer stretch');
    }
    this.dropped -= this.wrapEnd - HEADER_WORDS;
    this.end = this.wrapEnd;
    this.wrapEnd = 0;
    // Blocks past the old stretch's end are not known to be there.
    this.limit = this.end;
  }

  /**
   * Makes room for `words` more words at the end, with blocks on disk. Throws `DISK_FULL` when the
   * file system has no room for them (the journal is as it was), `VIEW_FULL` past its reservation.
   */
  reserve(words: number): void {
    if (this.end + words <= this.limit) return;
    // The newer stretch reached the older one: the history grew past the ring.
    if (this.wrapEnd !== 0 && this.end + words > this.start) this.#widen(words);
    if (this.wrapEnd === 0) {
      const front = this.start - HEADER_WORDS;
      const kept = this.end - this.start;
      // The front has room enough to be worth going round to (or growing would pass the
      // reservation, whose half is the history's byte budget).
      if (front >= words && (front * WRAP_RATIO >= kept || (this.end + words) * WORD_BYTES > this.file.reserveBytes)) {
        this.#wrap();
      } else if (this.end + words > this.capacity) {
        this.file.grow((this.end + words) * WORD_BYTES);
        this.#remap();
      }
    }
    if (this.end + words <= this.limit) return;
    // Blocks ahead, so that the next entries need no system call and take no page fault (see
    // `MappedFile.allocateAhead`): at most twice this much of the file is on disk beyond the
    // history; a wrapped ring's newer stretch never reaches into the older.
    const cap = this.wrapEnd === 0 ? this.capacity : this.start;
    this.limit =
      this.file.allocateAhead(this.limit * WORD_BYTES, (this.end + words) * WORD_BYTES, ALLOCATION_WORDS * WORD_BYTES, cap * WORD_BYTES) /
      WORD_BYTES;
  }

  /** Goes round: new entries go to the front of the file, before the history's start. */
  #wrap(): void {
    this.wrapEnd = this.end;
    this.dropped += this.end - HEADER_WORDS;
    this.end = HEADER_WORDS;
    // The front's blocks may have been given back at a close: allocated as it is written.
    this.limit = HEADER_WORDS;
    this.persist();
  }

  /**
   * Makes room in a wrapped ring whose newer stretch ran into the older one (the history grew):
   * the older stretch moves on by an eighth of the history (at least `words`), the file growing
   * as needed. Its positions stay what they were (they count from `wrapEnd`, which moves with it).
   * Moving the newer stretch after the older one instead would copy less, but leave the front of
   * the file unused until the ring came round again: the file grew to nearly twice the history in
   * the warehouse benchmark.
   */
  #widen(words: number): void {
    // (Less than an eighth when the file would pass its reservation; growing throws VIEW_FULL
    // only when not even `words` fit.)
    const room = Math.floor(this.file.reserveBytes / WORD_BYTES) - this.wrapEnd;
    const shift = Math.max(words, Math.min(Math.ceil(this.byteLength / WORD_BYTES / WRAP_RATIO), room));
    const wrapEnd = this.wrapEnd + shift;
    if (wrapEnd > this.capacity) {
      this.file.grow(wrapEnd * WORD_BYTES);
      this.#remap();
    }
    // Blocks first: a full disk throws before anything moved.
    this.file.allocate(this.wrapEnd * WORD_BYTES, wrapEnd * WORD_BYTES);
    this.words.copyWithin(this.start + shift, this.start, this.wrapEnd);
    this.start += shift;
    this.wrapEnd = wrapEnd;
    this.persist();
  }

  /** Writes the positions to the header (done at event marks and on close). */
  persist(): void {
    this.#f64[H_DROPPED_F64] = this.dropped;
    this.#f64[H_START_F64] = this.start;
    this.#f64[H_END_F64] = this.end;
    this.#f64[H_WRAP_END_F64] = this.wrapEnd;
  }

  /**
   * Forgets the history before `mark`: the view can no longer be rewound past it. The words it
   * held are written over when the ring comes round to them (see {@link reserve}).
   */
  truncateBefore(mark: JournalMark): void {
    if (mark <= this.oldest) return;
    if (mark > this.position) {
      throw new NoatunError(ErrorCode.INTERNAL, `journal truncation past its end (${mark} > ${this.position})`);
    }
    // Past the older stretch of a wrapped ring: what is left is the newer one.
    if (this.wrapEnd !== 0 && mark >= this.dropped) this.wrapEnd = 0;
    this.start = this.physical(mark);
    if (this.#marksKnown) this.#forgetDroppedMarks();
    this.persist();
  }

  /**
   * The checksum (16 bytes, see {@link checksum}) of the kept entries and their positions (with
   * `wrapEnd` once wrapped: one stretch is checked as by version 5, so its seal stays valid).
   */
  computeChecksum(): Buffer {
    const header = this.#f64.buffer;
    const positions = Buffer.from(header, this.#f64.byteOffset + H_DROPPED_F64 * 8, 24);
    if (this.wrapEnd === 0) return checksum(Buffer.concat([positions, checksum(this.words.subarray(this.start, this.end))]));
    const wrapEnd = Buffer.from(header, this.#f64.byteOffset + H_WRAP_END_F64 * 8, 8);
    const bytes = (from: number, to: number) => Buffer.from(this.words.buffer, this.words.byteOffset + from * WORD_BYTES, (to - from) * WORD_BYTES);
    const entries = Buffer.concat([bytes(this.start, this.wrapEnd), bytes(HEADER_WORDS, this.end)]);
    return checksum(Buffer.concat([positions, wrapEnd, checksum(entries)]));
  }

  /** Stores the checksum of the kept entries in the header. */
  seal(): void {
    this.persist();
    new Uint8Array(this.words.buffer, H_CHECKSUM * WORD_BYTES, 16).set(this.computeChecksum());
  }

  /** True when the kept entries match the checksum stored by the last {@link seal}. */
  verify(): boolean {
    const stored = new Uint8Array(this.words.buffer, H_CHECKSUM * WORD_BYTES, 16);
    return Buffer.compare(stored, this.computeChecksum()) === 0;
  }

  /** Records that a mark for `ordinal` was written at logical `position` (see {@link findMark}). */
  noteMark(ordinal: number, position: JournalMark): void {
    if (!this.#marksKnown) return;
    // A mark written after a rewind is at or before the marks the rewind undid.
    this.forgetMarksFrom(position);
    if (this.#marksEnd === this.#markOrdinals.length) this.#growMarks();
    this.#markOrdinals[this.#marksEnd] = ordinal;
    this.#markPositions[this.#marksEnd] = position;
    this.#marksEnd++;
  }

  /** Forgets the marks at or after logical `position` (the journal was rewound to it). */
  forgetMarksFrom(position: JournalMark): void {
    while (this.#marksEnd > this.#marksFirst && this.#markPositions[this.#marksEnd - 1]! >= position) this.#marksEnd--;
  }

  /**
   * The logical position of the mark recorded for `ordinal`, or -1 when that mark is no longer
   * (or was never) in the journal. Searches from both ends at once: the cutoff asks for the
   * oldest events, a late event's rewind for recent ones.
   */
  findMark(ordinal: number): JournalMark | -1 {
    this.#readyMarks();
    const positions = this.#markPositions;
    const ordinals = this.#markOrdinals;
    let low = this.#marksFirst;
    let high = this.#marksEnd - 1;
    while (low <= high) {
      if (ordinals[high] === ordinal) return positions[high]! as JournalMark;
      if (ordinals[low] === ordinal) return positions[low]! as JournalMark;
      low++;
      high--;
    }
    return -1;
  }

  /**
   * The oldest kept mark at or after logical `position`, or -1 when there is none: where to cut
   * the history so that what stays starts with an event.
   */
  firstMarkFrom(position: number): JournalMark | -1 {
    this.#readyMarks();
    const positions = this.#markPositions;
    let low = this.#marksFirst;
    let high = this.#marksEnd;
    // Positions increase along the index: binary search.
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (positions[middle]! < position) low = middle + 1;
      else high = middle;
    }
    return low < this.#marksEnd ? (positions[low]! as JournalMark) : -1;
  }

  /** Builds the mark index by one backward scan of the kept entries. */
  #indexMarks(): void {
    const ordinals: number[] = [];
    const positions: number[] = [];
    // The newer stretch of a wrapped ring, then the older one.
    if (this.wrapEnd === 0 || this.#scanMarks(HEADER_WORDS, this.end, HEADER_WORDS, ordinals, positions)) {
      this.#scanMarks(this.start, this.wrapEnd === 0 ? this.end : this.wrapEnd, this.wrapEnd === 0 ? HEADER_WORDS : this.wrapEnd, ordinals, positions);
    }
    const n = ordinals.length;
    const capacity = Math.max(1024, 2 ** Math.ceil(Math.log2(n + 1)));
    this.#markOrdinals = new Uint32Array(capacity);
    this.#markPositions = new Float64Array(capacity);
    for (let i = 0; i < n; i++) {
      this.#markOrdinals[i] = ordinals[n - 1 - i]!;
      this.#markPositions[i] = positions[n - 1 - i]!;
    }
    this.#marksFirst = 0;
    this.#marksEnd = n;
    this.#marksKnown = true;
  }

  /**
   * Collects the marks of the entries in physical `[from, to)`, newest first, with their logical
   * positions (`base`: the physical word where that stretch's positions count from, see
   * {@link physical}). False when a damaged entry stopped the scan.
   */
  #scanMarks(from: number, to: number, base: number, ordinals: number[], positions: number[]): boolean {
    const j = this.words;
    let e = to;
    while (e > from) {
      const tag = j[e - 1]!;
      if (tag >= SHORT_SET) e -= 2;
      else if (tag >= SHORT_SET2) e -= 3;
      else if (tag >= TAKEN_ONE) e -= 1;
      else if (tag === JournalTag.MARK) {
        ordinals.push(j[e - 2]!);
        positions.push(e - 2 - base + this.dropped);
        e -= 2;
      } else if (tag === JournalTag.SET1) e -= 3;
      else if (tag === JournalTag.SET2) e -= 4;
      else if (tag === JournalTag.SETN) e -= j[e - 2]! + 3;
      else if (tag === JournalTag.TOP) e -= 2;
      else if (tag === JournalTag.ZERON) e -= 3;
      // A damaged entry: older marks cannot be reached (rewinding there would fail too), so
      // they are not indexed and asking for them finds none (the caller rebuilds instead).
      else return false;
    }
    return true;
  }

  /** Makes the index ready to search: built, and without the marks of truncated history. */
  #readyMarks(): void {
    if (!this.#marksKnown) this.#indexMarks();
    this.#forgetDroppedMarks();
  }

  /** Drops index entries of marks before the oldest kept entry (truncated history). */
  #forgetDroppedMarks(): void {
    const oldest = this.oldest;
    const positions = this.#markPositions;
    while (this.#marksFirst < this.#marksEnd && positions[this.#marksFirst]! < oldest) this.#marksFirst++;
  }

  #growMarks(): void {
    this.#forgetDroppedMarks();
    const live = this.#marksEnd - this.#marksFirst;
    const capacity = live * 2 > this.#markOrdinals.length ? this.#markOrdinals.length * 2 : this.#markOrdinals.length;
    const ordinals = new Uint32Array(Math.max(1024, capacity));
    const positions = new Float64Array(ordinals.length);
    ordinals.set(this.#markOrdinals.subarray(this.#marksFirst, this.#marksEnd));
    positions.set(this.#markPositions.subarray(this.#marksFirst, this.#marksEnd));
    this.#markOrdinals = ordinals;
    this.#markPositions = positions;
    this.#marksFirst = 0;
    this.#marksEnd = live;
  }

  /** Forgets all history (after a rebuild). */
  clear(): void {
    this.#marksFirst = 0;
    this.#marksEnd = 0;
    this.#marksKnown = true;
    this.dropped += this.end - HEADER_WORDS;
    this.start = HEADER_WORDS;
    this.end = HEADER_WORDS;
    this.wrapEnd = 0;
    // (The pages before the old start may have been given back at a close.)
    this.limit = HEADER_WORDS;
    this.persist();
  }

  /** Flushes the journal to disk. */
  sync(): void {
    this.persist();
    this.file.sync(0, Math.max(this.end, this.wrapEnd) * WORD_BYTES);
  }

  close(): void {
    if (this.file.closed) return;
    this.persist();
    this.#discardUnused();
    this.file.close();
    this.words = new Uint32Array(0);
  }

  /**
   * Gives the pages outside the kept history back to the file system: those before and after it,
   * or, once wrapped, between its two stretches and after the older one (the file keeps the size
   * of its largest history). They read as zeros afterwards; nothing reads them. Done on close,
   * not as history moves: a page given back costs a fault and a block allocation when it is
   * written again, 3–4% of the warehouse benchmark's write rate when done at every trim.
   */
  #discardUnused(): void {
    if (this.wrapEnd === 0) {
      this.file.discard(HEADER_WORDS * WORD_BYTES, this.start * WORD_BYTES);
      this.file.discard(this.end * WORD_BYTES);
    } else {
      this.file.discard(this.end * WORD_BYTES, this.start * WORD_BYTES);
      this.file.discard(this.wrapEnd * WORD_BYTES);
    }
  }

  #remap(): void {
    const buffer = this.file.buffer;
    // (Whole words: a file cut to a length between two is read up to the last whole word.)
    this.capacity = Math.floor(this.file.byteLength / WORD_BYTES);
    this.words = new Uint32Array(buffer, 0, this.capacity);
    this.#f64 = new Float64Array(buffer, 0, HEADER_WORDS / 2);
  }
}
