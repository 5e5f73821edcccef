/**
 * The finalized past of a database: the cutoff (the time before which the past is final), the
 * hashes of the ids stored before it and before the stride before it (what peers compare, see
 * `cutoff.ts`), the hold on pruning after events arrived behind the cutoff, and the ids pruned
 * lately. The Database decides when the cutoff moves and what is pruned; this keeps the state
 * right and saved in the log's metadata, in the same transaction as the events that change it.
 */
import { CUTOFF_HASH_BYTES, type CutoffState, cutoffStrideMs, equalBytes, nominalCutoff, xorInto } from './cutoff.js';
import type { EventLog } from './log.js';
import { MetaShape } from './meta-shape.js';
import { idFloor, idKey, idTimestamp, MAX_TIMESTAMP, type MessageId } from './message-id.js';

const META_CUTOFF = 'cutoff';
/** [hash, previous hash, the stride the previous era was taken with] (the stride since 5 Dec 2026). */
const META_CUTOFF_HASHES = 'cutoffHashes';
const META_PRUNE_HOLD = 'pruneHold';
/**
 * Late events remembered as having held pruning here (see {@link Finality.heldFor}); beyond it
 * the oldest are forgotten, and such an event, stored again, holds pruning once more (a cost).
 */
const MAX_HOLDERS = 65_536;
/** The shape of {@link META_CUTOFF_HASHES} (see `meta-shape.ts`). */
const CUTOFF_HASHES: MetaShape<[Uint8Array, Uint8Array, number?]> = {
  is: (value: unknown): value is [Uint8Array, Uint8Array, number?] =>
    Array.isArray(value) &&
    (value.length === 2 || (value.length === 3 && typeof value[2] === 'number')) &&
    value[0] instanceof Uint8Array &&
    value[0].byteLength === CUTOFF_HASH_BYTES &&
    value[1] instanceof Uint8Array &&
    value[1].byteLength === CUTOFF_HASH_BYTES,
  what: `two hashes of ${CUTOFF_HASH_BYTES} bytes and a stride`,
};

/** The finalized past of one database (see the module comment). */
export class Finality {
  /** The cutoff interval in ms (whole minutes are what count; see `nominalCutoff`). */
  readonly intervalMs: number;
  /** The stride the cutoff moves by: a tenth of the interval in whole minutes, at least one. */
  readonly strideMs: number;
  readonly #log: EventLog;
  readonly #now: () => number;
  #time: number;
  readonly #hash = new Uint8Array(CUTOFF_HASH_BYTES);
  readonly #previousHash = new Uint8Array(CUTOFF_HASH_BYTES);
  /**
   * The time until which pruning is held: the cutoff must pass it first. Set to now when events
   * arrived from another peer behind the cutoff (see {@link hold}). 0: no hold.
   */
  #holdUntil: number;
  /**
   * Ids pruned lately (latin1 key → when), in the order they were pruned. Kept for as long as a
   * hold lasts, in memory (see {@link #forgetPrunedBefore}).
   */
  readonly #recentlyPruned = new Map<string, number>();
  /**
   * Ids of late events that started or joined a hold here (latin1 keys, oldest first, at most
   * {@link MAX_HOLDERS}), in memory: stored again later (this peer pruned it, forgot that, and a
   * peer offers it again), such an event starts no second hold (see {@link heldFor}).
   */
  readonly #holders = new Set<string>();

  /** Reads the cutoff, its hashes and the hold from the log's metadata. */
  constructor(log: EventLog, intervalMs: number, now: () => number) {
    this.#log = log;
    this.#now = now;
    this.intervalMs = intervalMs;
    this.strideMs = cutoffStrideMs(intervalMs);
    this.#time = log.getMeta(META_CUTOFF, MetaShape.time) ?? 0;
    this.#holdUntil = log.getMeta(META_PRUNE_HOLD, MetaShape.time) ?? 0;
    const hashes = log.getMeta(META_CUTOFF_HASHES, CUTOFF_HASHES);
    if (hashes !== undefined) {
      this.#hash.set(hashes[0]);
      this.#previousHash.set(hashes[1]);
      // The cutoff interval changed since (or is not known): the previous era starts one stride of
      // the new interval before the cutoff, and its hash must be taken there.
      if (hashes[2] !== this.strideMs && this.#time !== 0) this.#retakePreviousHash();
    }
  }

  /**
   * Starts the log's per-stride hashes, which the cutoff moves by (see `EventLog.trackStrides`),
   * before anything (a rebuild's discards included) writes to the log. Without pruning the cutoff
   * stands still and they are not kept: the saved ones are marked stale instead, since the events
   * of this session would be missing from them.
   */
  static trackStrides(log: EventLog, intervalMs: number, autoPrune: boolean): void {
    if (autoPrune) log.trackStrides(cutoffStrideMs(intervalMs), log.getMeta(META_CUTOFF, MetaShape.time) ?? 0);
    else log.forgetStrides();
  }

  /** The cutoff time in ms (0 before any cutoff). */
  get time(): number {
    return this.#time;
  }

  /**
   * Where the clock says the cutoff should be now (see `nominalCutoff`), at most {@link lastCutoff}
   * (a clock past the ids' 48 bits of ms: such a database can ingest and read, not append).
   */
  nominal(): number {
    return Math.min(nominalCutoff(this.#now(), this.intervalMs), this.lastCutoff);
  }

  /** The latest cutoff there can be: the last stride boundary an id's 48-bit timestamp reaches. */
  get lastCutoff(): number {
    return Math.floor(MAX_TIMESTAMP / this.strideMs) * this.strideMs;
  }

  /** The cutoff and the hashes of the finalized past, for comparing with another peer. */
  state(): CutoffState {
    return {
      time: this.#time,
      hash: this.#hash.slice(),
      previousTime: Math.max(0, this.#time - this.strideMs),
      previousHash: this.#previousHash.slice(),
    };
  }

  /**
   * An event is being stored. Behind the cutoff it is final at once: its id joins the hashes now
   * (ahead of it, the log's stride hashes count it until the cutoff passes). True when it is final.
   */
  stored(id: MessageId): boolean {
    const time = id.timestamp;
    if (time >= this.#time) return false;
    xorInto(this.#hash, id.bytes);
    if (time < this.#time - this.strideMs) xorInto(this.#previousHash, id.bytes);
    return true;
  }

  /** An event left the log: if it was before the cutoff, its id leaves the hashes. */
  gone(id: Uint8Array): void {
    const time = idTimestamp(id);
    if (time < this.#time) xorInto(this.#hash, id);
    if (time < this.#time - this.strideMs) xorInto(this.#previousHash, id);
  }

  /** Queues the hashes for the next commit (after {@link stored} or {@link gone}). */
  save(): void {
    this.#log.setMeta(META_CUTOFF_HASHES, [this.#hash.slice(), this.#previousHash.slice(), this.strideMs]);
  }

  /**
   * Moves the cutoff forward to `to`: the ids of [old cutoff, `to`) join the hash, the previous
   * era's hash is taken for `to - stride` directly (so it is right however many strides the cutoff
   * jumps), and ids pruned longer ago than a hold lasts are forgotten. Saved with the next commit.
   */
  moveTo(to: number): void {
    const from = this.#time;
    // The log keeps the XOR of each stride's ids from the cutoff on (see EventLog.trackStrides).
    xorInto(this.#hash, this.#log.strideHashBefore(to));
    this.#previousHash.set(this.#hash);
    if (from <= to - this.strideMs) xorInto(this.#previousHash, this.#log.strideHash(to - this.strideMs));
    this.#log.dropStridesBefore(to);
    this.#time = to;
    this.#log.setMeta(META_CUTOFF, to);
    // The old cutoff lay inside the previous era (the cutoff interval changed since, and with it
    // the stride): the ids of that era before the old cutoff are not in the log's stride hash.
    if (from > to - this.strideMs) this.#retakePreviousHash();
    this.save();
    this.#forgetPrunedBefore(this.#now());
  }

  /**
   * Takes the hashes afresh from the ids the log stores, and saves them if they differ from the
   * saved ones; true then. For a rebuild, which reads the whole log anyway: versions before
   * 7 Dec 2026 saved the hashes a commit after the events stored behind the cutoff that changed
   * them, and a process killed in between kept hashes that no later open mended.
   */
  retake(): boolean {
    const hash = new Uint8Array(CUTOFF_HASH_BYTES);
    const previousHash = new Uint8Array(CUTOFF_HASH_BYTES);
    const previousTime = this.#time - this.strideMs;
    for (const key of this.#log.keys()) {
      const time = idTimestamp(key);
      if (time >= this.#time) break;
      xorInto(hash, key);
      if (time < previousTime) xorInto(previousHash, key);
    }
    if (equalBytes(hash, this.#hash) && equalBytes(previousHash, this.#previousHash)) return false;
    this.#hash.set(hash);
    this.#previousHash.set(previousHash);
    this.save();
    return true;
  }

  /** The previous-era hash from the cutoff hash and the ids of the stride before the cutoff. */
  #retakePreviousHash(): void {
    this.#previousHash.set(this.#hash);
    for (const key of this.#log.keys(idFloor(this.#time - this.strideMs))) {
      if (idTimestamp(key) >= this.#time) break;
      xorInto(this.#previousHash, key);
    }
    this.save();
  }

  /**
   * Events from another peer were stored behind the cutoff: pruning waits until the cutoff passes
   * now. Behind the cutoff the past is final, so a pruning decision there assumes everything before
   * the cutoff is known; events arriving late break that assumption, and more may follow (a delete
   * before the insert it deletes, a reader after the value it read was overwritten). Holding off
   * for one cutoff interval lets late events that travel together all arrive before anything they
   * concern is pruned, so the result does not depend on their order or batching.
   */
  hold(): void {
    const now = this.#now();
    if (now <= this.#holdUntil) return;
    this.#holdUntil = now;
    this.#log.setMeta(META_PRUNE_HOLD, now);
  }

  /**
   * Whether the late event with this id key (behind the cutoff, from another peer, not pruned
   * here lately) held pruning here before: then storing it again starts no hold. Each peer that
   * receives an event late holds pruning for it, and a peer it reached late can offer it back
   * after this peer pruned it and forgot that: three peers passed one such event around for ever,
   * each storing it with a new hold, pruning it when that ended, and offering it to the next.
   * Stored again without a hold, it is pruned at the next cutoff step if nothing needs it, and kept
   * if something does (the peer offering it holds it for good: what a late event is stored for).
   */
  heldFor(key: string): boolean {
    return this.#holders.has(key);
  }

  /** The late event with this id key held pruning here (see {@link heldFor}). */
  noteHeld(key: string): void {
    if (this.#holders.has(key)) return;
    this.#holders.add(key);
    if (this.#holders.size > MAX_HOLDERS) {
      for (const oldest of this.#holders) {
        this.#holders.delete(oldest);
        break;
      }
    }
  }

  /** Whether pruning is held now. */
  get held(): boolean {
    return this.#time <= this.#holdUntil;
  }

  /** The time the cutoff must pass before pruning resumes (see {@link hold}). */
  get holdUntil(): number {
    return this.#holdUntil;
  }

  /** Events were pruned: their ids leave the hashes and are remembered for as long as a hold lasts. */
  pruned(ids: readonly Uint8Array[]): void {
    const now = this.#now();
    for (const id of ids) {
      this.gone(id);
      // Deleted first, so that the map stays in time order (an id stored again and pruned again
      // moves to the end) and #forgetPrunedBefore can stop at the first recent one.
      const key = idKey(id);
      this.#recentlyPruned.delete(key);
      this.#recentlyPruned.set(key, now);
    }
    this.save();
  }

  /** Whether the event with this id key was pruned here lately (see {@link pruned}). */
  prunedLately(key: string): boolean {
    return this.#recentlyPruned.has(key);
  }

  /**
   * Forgets ids pruned longer ago than a hold lasts (an interval and two strides): a peer that
   * still offers one after that is not in a hold that outlasts ours, but holds the event for good
   * (it was away while we pruned it): storing it again then lets the two agree.
   */
  #forgetPrunedBefore(now: number): void {
    const horizon = now - (this.intervalMs + 2 * this.strideMs);
    for (const [key, time] of this.#recentlyPruned) {
      if (time >= horizon) break;
      this.#recentlyPruned.delete(key);
    }
  }
}
