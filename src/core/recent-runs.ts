/**
 * The log's newest plain runs as they were written, kept in memory so that packing them (see
 * `run-pack.ts`) needs no read of LMDB: reading them back once the cutoff had passed them cost the
 * warehouse benchmark's writes about 5% (BENCHMARKS.md, run Q), as the pages were no longer in the
 * process's memory.
 *
 * It mirrors a stretch of the log: consecutive runs, in key order. Appended runs join at the end;
 * a run rewritten by a commit (an event inserted into it or removed from it) is replaced by the
 * runs the commit wrote in its place, which lie where it was. The caller keeps it a mirror; when
 * it grows past its byte limit the oldest runs are let go (the log then reads those).
 */
import { compareIdBytes } from './message-id.js';

/** A run as kept: its key (its first id) and its bytes. */
export interface RecentRun {
  readonly key: Buffer;
  readonly run: Buffer;
}

export class RecentRuns {
  /** Kept runs from index {@link #start} on (earlier slots are let go, and reused at compaction). */
  #runs: RecentRun[] = [];
  #start = 0;
  /** Bytes of the kept runs. */
  bytes = 0;
  readonly #limit: number;

  /** Keeps at most `limit` bytes of runs. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  get size(): number {
    return this.#runs.length - this.#start;
  }

  /** The oldest kept run, or undefined. */
  first(): RecentRun | undefined {
    return this.#runs[this.#start];
  }

  /** The kept runs, oldest first (do not change it while iterating). */
  *[Symbol.iterator](): Generator<RecentRun> {
    for (let i = this.#start; i < this.#runs.length; i++) yield this.#runs[i]!;
  }

  /** Keeps a run appended after every kept one. */
  append(key: Buffer, run: Buffer): void {
    this.#runs.push({ key, run });
    this.bytes += run.byteLength;
    while (this.bytes > this.#limit && this.size > 0) this.#dropFirst();
  }

  /** Lets go of the runs whose key is at or before `id` (the packed frontier moved past them). */
  dropThrough(id: Uint8Array): void {
    while (this.size > 0 && compareIdBytes(this.#runs[this.#start]!.key, id) <= 0) this.#dropFirst();
  }

  /**
   * Replaces the kept run `key`, if it is one, by `replacements` (in key order, all of them between
   * its neighbours: what a commit wrote in its place). Returns whether it was kept.
   */
  replace(key: Uint8Array, replacements: readonly RecentRun[]): boolean {
    let low = this.#start;
    let high = this.#runs.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareIdBytes(this.#runs[middle]!.key, key) < 0) low = middle + 1;
      else high = middle;
    }
    if (low === this.#runs.length || compareIdBytes(this.#runs[low]!.key, key) !== 0) return false;
    this.bytes -= this.#runs[low]!.run.byteLength;
    for (const { run } of replacements) this.bytes += run.byteLength;
    this.#runs.splice(low, 1, ...replacements);
    while (this.bytes > this.#limit && this.size > 0) this.#dropFirst();
    return true;
  }

  /** The last kept run whose key is at or before `key`, or undefined when none is. */
  floor(key: Uint8Array): RecentRun | undefined {
    let low = this.#start;
    let high = this.#runs.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (compareIdBytes(this.#runs[middle]!.key, key) <= 0) low = middle + 1;
      else high = middle;
    }
    return low === this.#start ? undefined : this.#runs[low - 1];
  }

  /** Lets go of everything. */
  clear(): void {
    this.#runs = [];
    this.#start = 0;
    this.bytes = 0;
  }

  #dropFirst(): void {
    this.bytes -= this.#runs[this.#start]!.run.byteLength;
    this.#runs[this.#start] = undefined as unknown as RecentRun;
    this.#start++;
    // Compact once half the array is let go (amortized O(1) per run).
    if (this.#start > 64 && this.#start * 2 > this.#runs.length) {
      this.#runs = this.#runs.slice(this.#start);
      this.#start = 0;
    }
  }
}
