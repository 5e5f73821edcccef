/**
 * The event log's overlay: the writes queued or being committed, by id, which reads see before
 * LMDB does (see `EventLog`). Most writes are appends — a local transaction, a copy from a peer,
 * gossip — whose ids are each above every id queued before: those go to a sorted array, found by
 * binary search, without the string key and the map entry that cost 80–110 ns an event. The
 * others (removals, ids below one queued already) go to a map by the id's latin1 string.
 */
import { compareIdBytes, idKey } from './message-id.js';

/** What an overlay entry must have: its id, and the number of the commit it goes in. */
export interface OverlayItem {
  readonly key: Uint8Array;
  /** The commit (counted by the log) that writes it: see {@link LogOverlay.release}. */
  readonly commit: number;
}

/** The queued and committing entries of a log, at most one per id (the latest). */
export class LogOverlay<T extends OverlayItem> {
  /** Entries in increasing id order, none of whose ids is in {@link #byName}. */
  #sorted: T[] = [];
  /** The other entries, by {@link idKey}. */
  #byName = new Map<string, T>();
  /** The highest id in {@link #byName} ever since it was last emptied (undefined before any). */
  #highestNamed: Uint8Array | undefined;

  /** Number of ids with an entry. */
  get size(): number {
    return this.#sorted.length + this.#byName.size;
  }

  /** The entry of this id, or undefined. */
  get(key: Uint8Array): T | undefined {
    if (this.#byName.size !== 0) {
      const named = this.#byName.get(idKey(key));
      if (named !== undefined) return named;
    }
    const i = this.#indexOf(key);
    return i < 0 ? undefined : this.#sorted[i];
  }

  /** Makes `entry` the entry of its id; returns the one it replaces, if any. */
  set(entry: T): T | undefined {
    const key = entry.key;
    const sorted = this.#sorted;
    const n = sorted.length;
    // An append: above every id in the array, and above every id the map may hold (so its id is
    // in neither, and the array stays sorted).
    if ((n === 0 || compareIdBytes(key, sorted[n - 1]!.key) > 0) && (this.#highestNamed === undefined || compareIdBytes(key, this.#highestNamed) > 0)) {
      sorted.push(entry);
      return undefined;
    }
    const i = this.#indexOf(key);
    if (i >= 0) {
      const prior = sorted[i]!;
      sorted[i] = entry;
      return prior;
    }
    const name = idKey(key);
    const prior = this.#byName.get(name);
    this.#byName.set(name, entry);
    if (this.#highestNamed === undefined || compareIdBytes(key, this.#highestNamed) > 0) this.#highestNamed = key;
    return prior;
  }

  /**
   * Whether an entry's id lies in [`from`, `to`) (`to` undefined: no upper bound). A binary search
   * of the sorted entries and a look at the others: packing asks this for every pack it makes, and
   * walking {@link values} cost an iterator step per queued entry (a transaction's worth, with a
   * commit in flight).
   */
  hasIn(from: Uint8Array, to: Uint8Array | undefined): boolean {
    for (const entry of this.#byName.values()) {
      if (compareIdBytes(entry.key, from) >= 0 && (to === undefined || compareIdBytes(entry.key, to) < 0)) return true;
    }
    const sorted = this.#sorted;
    // The first entry at or after `from`.
    let low = 0;
    let high = sorted.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (compareIdBytes(sorted[mid]!.key, from) < 0) low = mid + 1;
      else high = mid;
    }
    return low < sorted.length && (to === undefined || compareIdBytes(sorted[low]!.key, to) < 0);
  }

  /**
   * The highest id among the entries that `counts` accepts, or undefined. The sorted entries are
   * walked from the top, so the usual answer (the last append) takes one step; the log asks this
   * for every batch it is sent (`EventLog.lastKey`), while a copy's commits are in flight, and a
   * walk of every entry cost a step per queued event.
   */
  highest(counts: (entry: T) => boolean): Uint8Array | undefined {
    let last: Uint8Array | undefined;
    const sorted = this.#sorted;
    for (let i = sorted.length - 1; i >= 0; i--) {
      if (counts(sorted[i]!)) {
        last = sorted[i]!.key;
        break;
      }
    }
    for (const entry of this.#byName.values()) {
      if (counts(entry) && (last === undefined || compareIdBytes(entry.key, last) > 0)) last = entry.key;
    }
    return last;
  }

  /** Every entry, in no particular order. */
  *values(): Generator<T> {
    yield* this.#byName.values();
    yield* this.#sorted;
  }

  /**
   * Drops every entry. New containers, not emptied ones: V8's `Map.clear()` gives the map a new
   * table and leaves the old one with its entries (for iterators). Once that table is in the old
   * generation it is garbage only a major collection finds, and minor ones keep what its slots
   * point to alive: with clear(), 7–8 MB survived each scavenge of the warehouse's writes, 1.3–1.6
   * MB with a new map (BENCHMARKS.md, run T).
   */
  clear(): void {
    this.#sorted = [];
    this.#byName = new Map();
    this.#highestNamed = undefined;
  }

  /**
   * Drops the entries of commit `commit`, `entries`, that are still their ids' entries (a later
   * write to the same id keeps its own).
   */
  release(commit: number, entries: readonly T[]): void {
    const byName = this.#byName;
    if (byName.size !== 0) {
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!;
        const name = idKey(entry.key);
        if (byName.get(name) === entry) byName.delete(name);
      }
      if (byName.size === 0) this.#highestNamed = undefined;
    }
    const sorted = this.#sorted;
    let kept = 0;
    for (let i = 0; i < sorted.length; i++) {
      const entry = sorted[i]!;
      if (entry.commit !== commit) sorted[kept++] = entry;
    }
    sorted.length = kept;
  }

  /** Where `key` is in the sorted array, or -1. */
  #indexOf(key: Uint8Array): number {
    const sorted = this.#sorted;
    let low = 0;
    let high = sorted.length - 1;
    if (high < 0 || compareIdBytes(key, sorted[0]!.key) < 0 || compareIdBytes(key, sorted[high]!.key) > 0) return -1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      const order = compareIdBytes(sorted[mid]!.key, key);
      if (order === 0) return mid;
      if (order < 0) low = mid + 1;
      else high = mid - 1;
    }
    return -1;
  }
}
