/**
 * The id queues of a session, kept compact and lazy so that a session's memory does not grow with
 * the database: ids live packed in chunks of one `Uint8Array` (16 bytes an id, not an object
 * each), and a full range of the index is read a few hundred ids at a time, never listed at once.
 */
import { type FingerprintIndex, ID_BYTES, type IdBound } from './fingerprint-index.js';

/** Ids per chunk of an {@link IdQueue}: 64 KiB. */
const CHUNK_IDS = 4096;

/** Ids read from the index at a time by a {@link RangeCursor}. */
const CURSOR_STEP = 256;

/** Compares two 16-byte ids stored at offsets of two buffers. */
function compareAt(a: Uint8Array, at: number, b: Uint8Array, bt: number): number {
  for (let i = 0; i < ID_BYTES; i++) {
    const d = a[at + i]! - b[bt + i]!;
    if (d !== 0) return d;
  }
  return 0;
}

/** A first-in first-out queue of ids, packed. */
export class IdQueue {
  readonly #chunks: Uint8Array[] = [];
  /** Index of the first id in the first chunk. */
  #head = 0;
  /** Ids in the last chunk. */
  #tail = CHUNK_IDS;
  #length = 0;

  /** Ids queued. */
  get length(): number {
    return this.#length;
  }

  /** Queues a copy of `id`. */
  push(id: Uint8Array): void {
    if (this.#tail === CHUNK_IDS) {
      this.#chunks.push(new Uint8Array(CHUNK_IDS * ID_BYTES));
      this.#tail = 0;
    }
    this.#chunks[this.#chunks.length - 1]!.set(id, this.#tail * ID_BYTES);
    this.#tail++;
    this.#length++;
  }

  /** The first id (a view, valid until the next `shift`), or undefined when empty. */
  peek(): Uint8Array | undefined {
    if (this.#length === 0) return undefined;
    return this.#chunks[0]!.subarray(this.#head * ID_BYTES, (this.#head + 1) * ID_BYTES);
  }

  /** Removes and returns the first id (a copy), or undefined when empty. */
  shift(): Uint8Array | undefined {
    const id = this.peek()?.slice();
    if (id === undefined) return undefined;
    this.#head++;
    this.#length--;
    if (this.#head === CHUNK_IDS || this.#length === 0) {
      this.#chunks.shift();
      this.#head = 0;
      if (this.#chunks.length === 0) this.#tail = CHUNK_IDS;
    }
    return id;
  }

  /** Sorts the queued ids in increasing order and drops duplicates. */
  sortUnique(): void {
    const ids: Uint8Array[] = [];
    for (let id = this.shift(); id !== undefined; id = this.shift()) ids.push(id);
    ids.sort((a, b) => compareAt(a, 0, b, 0));
    let previous: Uint8Array | undefined;
    for (const id of ids) {
      if (previous === undefined || compareAt(previous, 0, id, 0) !== 0) this.push(id);
      previous = id;
    }
  }
}

/**
 * Ids in increasing order, each once, packed in one buffer: taken in order like a queue, and still
 * searchable after they were taken (a session's `have`: an id the peer asks for that is in it was
 * sent already, or will be, and is not sent twice).
 */
export class SortedIds implements IdSource {
  readonly #ids: Uint8Array;
  readonly #count: number;
  #at = 0;

  /** Takes every id of `queue`, which must be sorted and free of duplicates (see `sortUnique`). */
  constructor(queue: IdQueue) {
    this.#count = queue.length;
    this.#ids = new Uint8Array(this.#count * ID_BYTES);
    for (let i = 0; i < this.#count; i++) {
      this.#ids.set(queue.peek()!, i * ID_BYTES);
      queue.shift();
    }
  }

  /** Ids not taken yet. */
  get length(): number {
    return this.#count - this.#at;
  }

  peek(): Uint8Array | undefined {
    if (this.#at === this.#count) return undefined;
    return this.#ids.subarray(this.#at * ID_BYTES, (this.#at + 1) * ID_BYTES);
  }

  shift(): Uint8Array | undefined {
    const id = this.peek()?.slice();
    if (id !== undefined) this.#at++;
    return id;
  }

  /** Whether `id` is one of the ids, taken or not (binary search). */
  has(id: Uint8Array): boolean {
    let low = 0;
    let high = this.#count;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const order = compareAt(this.#ids, middle * ID_BYTES, id, 0);
      if (order === 0) return true;
      if (order < 0) low = middle + 1;
      else high = middle;
    }
    return false;
  }
}

/** The id after `id` (as a 128-bit number), or undefined after the largest id. */
export function successor(id: Uint8Array): Uint8Array | undefined {
  const next = id.slice();
  for (let i = ID_BYTES - 1; i >= 0; i--) {
    if (next[i] !== 0xff) {
      next[i]!++;
      return next;
    }
    next[i] = 0;
  }
  return undefined;
}

/**
 * The ids of `[lower, upper)` in the index, read lazily in increasing order. The index may change
 * between reads (events arrive by gossip): each read starts after the last id returned, so an id
 * inserted behind the cursor is not seen and none is returned twice.
 */
export class RangeCursor {
  readonly #index: FingerprintIndex;
  readonly #upper: IdBound;
  #from: IdBound;
  #done = false;
  #buffer: Uint8Array[] = [];
  #at = 0;

  constructor(index: FingerprintIndex, lower: IdBound, upper: IdBound) {
    this.#index = index;
    this.#from = lower;
    this.#upper = upper;
  }

  /** The next id without taking it, or undefined at the end. */
  peek(): Uint8Array | undefined {
    if (this.#at === this.#buffer.length) this.#fill();
    return this.#buffer[this.#at];
  }

  /** Takes the next id, or undefined at the end. */
  shift(): Uint8Array | undefined {
    const id = this.peek();
    if (id !== undefined) this.#at++;
    return id;
  }

  #fill(): void {
    this.#buffer = [];
    this.#at = 0;
    if (this.#done) return;
    // Taken in one synchronous step: the index may not change while its generator runs.
    for (const id of this.#index.ids(this.#from, this.#upper, CURSOR_STEP)) this.#buffer.push(id);
    const last = this.#buffer[this.#buffer.length - 1];
    if (this.#buffer.length < CURSOR_STEP || last === undefined) this.#done = true;
    else {
      const next = successor(last);
      if (next === undefined) this.#done = true;
      else this.#from = next;
    }
  }
}

/** Something ids can be taken from in increasing order. */
export interface IdSource {
  peek(): Uint8Array | undefined;
  shift(): Uint8Array | undefined;
}

/**
 * Ids from several increasing sources, in increasing order overall, each id once (the ids a
 * session sends: what reconciliation found the peer lacks, what it asked for, or a whole range).
 */
export class MergedIds {
  readonly #sources: IdSource[] = [];

  /** Adds a source (its ids must come in increasing order). */
  add(source: IdSource): void {
    this.#sources.push(source);
  }

  /** Takes the smallest next id of all sources, or undefined when all are empty. */
  shift(): Uint8Array | undefined {
    let best: IdSource | undefined;
    let bestId: Uint8Array | undefined;
    for (const source of this.#sources) {
      const id = source.peek();
      if (id === undefined) continue;
      if (bestId === undefined || compareAt(id, 0, bestId, 0) < 0) {
        best = source;
        bestId = id;
      }
    }
    if (best === undefined || bestId === undefined) return undefined;
    const taken = best.shift()!;
    // The same id in another source (asked for and also found lacking) is sent once.
    for (const source of this.#sources) {
      const id = source.peek();
      if (id !== undefined && compareAt(id, 0, taken, 0) === 0) source.shift();
    }
    return taken;
  }

  /** Whether every source is empty. */
  get empty(): boolean {
    return this.#sources.every((source) => source.peek() === undefined);
  }
}
