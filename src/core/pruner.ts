/**
 * Decides which final events can be pruned, incrementally.
 *
 * An event becomes a *candidate* when it owns nothing (`uses` 0) and the cutoff has passed the
 * time its last datum was taken (see {@link EventBook}). A candidate can be pruned only together
 * with every stored event that read its data and, for a tombstone, every stored event whose data
 * it destroyed; the prunable set is the largest set of candidates closed under that rule.
 *
 * Everything about a candidate is final: its readers applied before its data was overwritten and
 * its victims before it, all before the cutoff, so no rewind changes them — unless an event that
 * arrived behind the cutoff makes events before it apply again: then the projector resets the
 * pruner, which reads the records afresh (see {@link Pruner.lastCutoff}). A candidate that is
 * blocked (by a reader or victim that is not a candidate) therefore stays blocked until one of
 * its blockers becomes a candidate. Each cutoff step only looks at the new candidates and at the
 * blocked ones they may release, never at the whole table.
 */
import { type EventBook, Rec } from './bookkeeping.js';
import { OrdinalCounts } from './ordinal-counts.js';

/**
 * A binary min-heap of (time, ordinal) pairs, in typed arrays: an open rebuilds it from every
 * record (a million pushes for a million events), and flat Float64/Uint32 storage makes that about
 * twice as fast as JS arrays of numbers. Ordinals are u32 (they live in u32 words of the view).
 */
class TimeHeap {
  #times = new Float64Array(1024);
  #ordinals = new Uint32Array(1024);
  #size = 0;

  get size(): number {
    return this.#size;
  }

  get topTime(): number {
    return this.#times[0]!;
  }

  push(time: number, ordinal: number): void {
    if (this.#size === this.#times.length) this.#grow();
    const times = this.#times;
    const ordinals = this.#ordinals;
    let i = this.#size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (times[parent]! <= time) break;
      times[i] = times[parent]!;
      ordinals[i] = ordinals[parent]!;
      i = parent;
    }
    times[i] = time;
    ordinals[i] = ordinal;
  }

  /** Removes the smallest entry and returns its ordinal (the heap must not be empty). */
  pop(): number {
    const top = this.#ordinals[0]!;
    const n = --this.#size;
    if (n === 0) return top;
    // The last entry moves to the root and sinks to its place.
    this.#times[0] = this.#times[n]!;
    this.#ordinals[0] = this.#ordinals[n]!;
    this.#siftDown(0);
    return top;
  }

  clear(): void {
    this.#size = 0;
  }

  /**
   * Replaces the contents with `count` pairs from the given arrays (which the heap takes over) and
   * restores the heap order bottom-up: O(n), where n pushes cost O(n log n).
   */
  load(times: Float64Array<ArrayBuffer>, ordinals: Uint32Array<ArrayBuffer>, count: number): void {
    this.#times = times;
    this.#ordinals = ordinals;
    this.#size = count;
    for (let i = (count >> 1) - 1; i >= 0; i--) this.#siftDown(i);
  }

  #siftDown(start: number): void {
    const times = this.#times;
    const ordinals = this.#ordinals;
    const n = this.#size;
    const time = times[start]!;
    const ordinal = ordinals[start]!;
    let i = start;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && times[right]! < times[left]! ? right : left;
      if (times[child]! >= time) break;
      times[i] = times[child]!;
      ordinals[i] = ordinals[child]!;
      i = child;
    }
    times[i] = time;
    ordinals[i] = ordinal;
  }

  #grow(): void {
    const times = new Float64Array(this.#times.length * 2);
    times.set(this.#times);
    this.#times = times;
    const ordinals = new Uint32Array(this.#ordinals.length * 2);
    ordinals.set(this.#ordinals);
    this.#ordinals = ordinals;
  }
}

const NONE: readonly number[] = [];

/** The incremental pruning decision (see the module comment). */
export class Pruner {
  readonly #book: EventBook;
  /** Events whose uses reached 0, by the time they did (may hold stale entries: re-checked). */
  readonly #zeroed = new TimeHeap();
  /** Blocked candidates. */
  readonly #pool = new OrdinalCounts();
  /** For a victim: the pooled tombstones that destroyed its data. */
  readonly #destroyers = new Map<number, number[]>();
  /** For a source: how many of its readers are pooled. */
  readonly #readersInPool = new OrdinalCounts();
  /**
   * Events whose last datum was taken by an event that had read it (a read-modify-write), by that
   * reader: one ordinal, or several. Such an event is blocked for as long as its reader is not a
   * candidate, so it waits here, off the heap and out of the pool, until the reader enters the
   * pool; then it goes to the heap (its time is before the reader's, so it follows at once). In a
   * chain of increments every link but the last is such an event: the warehouse benchmark's
   * 62,655 of 73,290 candidates, each of which cost the heap, the pool and a check (2 µs).
   */
  readonly #deferred = new Map<number, number | number[]>();
  /**
   * The records have not been read since the last {@link reset}. Reading them walks every record
   * (a million for a million stored events), so it waits until a cutoff step needs the candidates:
   * an open that only serves queries never pays for it.
   */
  #stale = true;

  constructor(book: EventBook) {
    this.#book = book;
  }

  /**
   * The cutoff of the last {@link collect}. What the pool knows of its candidates holds only while
   * no event before it is re-applied (see {@link Projector}): a rewind to before it resets.
   */
  lastCutoff = 0;

  /**
   * Called when an event's use count reaches 0 at `time`; `reader`: the event that took its last
   * datum, if it had read it (see {@link #deferred}), else 0.
   */
  noteZero(ordinal: number, time: number, reader = 0): void {
    // While stale, the records are read later and will show this zero themselves.
    if (this.#stale) return;
    if (reader === 0) {
      this.#zeroed.push(time, ordinal);
      return;
    }
    // (A rewind may note the same event again: a duplicate is skipped when it is popped.)
    const waiting = this.#deferred.get(reader);
    if (waiting === undefined) this.#deferred.set(reader, ordinal);
    else if (typeof waiting === 'number') this.#deferred.set(reader, [waiting, ordinal]);
    else waiting.push(ordinal);
  }

  /** `reader` entered the pool: the events waiting for it go to the heap (see {@link #deferred}). */
  #release(reader: number): void {
    const waiting = this.#deferred.get(reader);
    if (waiting === undefined) return;
    this.#deferred.delete(reader);
    if (typeof waiting === 'number') this.#requeue(waiting);
    else for (const ordinal of waiting) this.#requeue(ordinal);
  }

  #requeue(ordinal: number): void {
    const book = this.#book;
    const r = book.find(ordinal);
    // Gone, or it owns data again (a rewind gave it back): its next zero notes it anew.
    if (r === -1 || !book.dead(r)) return;
    this.#zeroed.push(book.effectTime(r), ordinal);
  }

  /** Forgets everything; the records are read again when next needed (after open or a rebuild). */
  reset(): void {
    this.lastCutoff = 0;
    this.#zeroed.clear();
    this.#pool.clear();
    this.#destroyers.clear();
    this.#readersInPool.clear();
    this.#deferred.clear();
    this.#stale = true;
  }

  /** Fills the heap with every record that owns nothing, in one pass. */
  #load(): void {
    this.#stale = false;
    const book = this.#book;
    const u32 = book.arena.u32;
    // At most one entry per record; the heap grows from there as later zeros arrive.
    const capacity = Math.max(1024, book.count);
    const times = new Float64Array(capacity);
    const ordinals = new Uint32Array(capacity);
    let count = 0;
    book.forEach((r) => {
      if (!book.dead(r)) return;
      times[count] = book.effectTime(r);
      ordinals[count++] = u32[r]!;
    });
    this.#zeroed.load(times, ordinals, count);
  }

  /**
   * Whether a pooled event cannot be freed by anything in the pool: a reader of its data, or an
   * event whose data it destroyed, is stored and not a candidate.
   */
  #hardBlocked(ordinal: number): boolean {
    const book = this.#book;
    const u32 = book.arena.u32;
    const r = book.find(ordinal);
    if (u32[r + Rec.READERS]! > this.#readersInPool.get(ordinal)) return true;
    for (let at = book.victimsAt(r), end = at + book.victimCount(r); at < end; at++) {
      const victim = u32[at]!;
      if (!this.#pool.has(victim) && book.find(victim) !== -1) return true;
    }
    return false;
  }

  /** The ordinals that can be pruned now that the cutoff is `cutoff`; they leave the pool. */
  collect(cutoff: number): number[] {
    if (this.#stale) this.#load();
    this.lastCutoff = cutoff;
    const book = this.#book;
    const u32 = book.arena.u32;
    const pool = this.#pool;
    const arrivals: number[] = [];
    while (this.#zeroed.size !== 0 && this.#zeroed.topTime < cutoff) {
      const ordinal = this.#zeroed.pop();
      if (pool.has(ordinal)) continue;
      const r = book.find(ordinal);
      if (r === -1 || !book.dead(r)) continue;
      if (book.effectTime(r) >= cutoff) {
        // Stale entry from before a rewind: the event lost its data again later.
        this.#zeroed.push(book.effectTime(r), ordinal);
        continue;
      }
      pool.add(ordinal, 1);
      this.#release(ordinal);
      for (let at = book.readsAt(r), end = at + book.readCount(r); at < end; at++) {
        const source = u32[at]!;
        this.#readersInPool.add(source, 1);
      }
      for (let at = book.victimsAt(r), end = at + book.victimCount(r); at < end; at++) {
        const victim = u32[at]!;
        const list = this.#destroyers.get(victim);
        if (list === undefined) this.#destroyers.set(victim, [ordinal]);
        else list.push(ordinal);
      }
      arrivals.push(ordinal);
    }
    if (arrivals.length === 0) return [];
    // The region: new candidates that may be free, and the pooled events they may free in turn
    // (sources they read, tombstones that destroyed their data), never entering an event that is
    // blocked from outside the pool — so a long blocked chain is not walked again on every step.
    const region = new Set<number>();
    const stack: number[] = [];
    for (const ordinal of arrivals) {
      if (!this.#hardBlocked(ordinal)) {
        region.add(ordinal);
        stack.push(ordinal);
      }
    }
    while (stack.length !== 0) {
      const ordinal = stack.pop()!;
      const r = book.find(ordinal);
      for (let at = book.readsAt(r), end = at + book.readCount(r); at < end; at++) {
        const source = u32[at]!;
        if (pool.has(source) && !region.has(source) && !this.#hardBlocked(source)) {
          region.add(source);
          stack.push(source);
        }
      }
      for (const destroyer of this.#destroyers.get(ordinal) ?? NONE) {
        if (pool.has(destroyer) && !region.has(destroyer) && !this.#hardBlocked(destroyer)) {
          region.add(destroyer);
          stack.push(destroyer);
        }
      }
    }
    // The largest subset of the region whose readers and victims are all inside it (or gone).
    const readersInside = new Map<number, number>();
    for (const ordinal of region) {
      const r = book.find(ordinal);
      for (let at = book.readsAt(r), end = at + book.readCount(r); at < end; at++) {
        const source = u32[at]!;
        readersInside.set(source, (readersInside.get(source) ?? 0) + 1);
      }
    }
    const work = [...region];
    while (work.length !== 0) {
      const ordinal = work.pop()!;
      if (!region.has(ordinal)) continue;
      const r = book.find(ordinal);
      let blocked = u32[r + Rec.READERS]! > (readersInside.get(ordinal) ?? 0);
      if (!blocked) {
        for (let at = book.victimsAt(r), end = at + book.victimCount(r); at < end; at++) {
          const victim = u32[at]!;
          if (!region.has(victim) && book.find(victim) !== -1) {
            blocked = true;
            break;
          }
        }
      }
      if (!blocked) continue;
      region.delete(ordinal);
      for (let at = book.readsAt(r), end = at + book.readCount(r); at < end; at++) {
        const source = u32[at]!;
        readersInside.set(source, readersInside.get(source)! - 1);
        if (region.has(source)) work.push(source);
      }
      for (const destroyer of this.#destroyers.get(ordinal) ?? NONE) if (region.has(destroyer)) work.push(destroyer);
    }
    for (const ordinal of region) {
      pool.delete(ordinal);
      this.#destroyers.delete(ordinal);
      this.#readersInPool.delete(ordinal);
      const r = book.find(ordinal);
      for (let at = book.readsAt(r), end = at + book.readCount(r); at < end; at++) {
        const source = u32[at]!;
        this.#readersInPool.add(source, -1);
      }
    }
    return [...region];
  }
}
