/**
 * The queue of costly late events and the budget that paces them. A received event behind the
 * cutoff that lands before applied events makes the view rewind through its whole window of undo
 * history, or be rebuilt from the log: a flood of old events could keep a peer doing nothing else.
 * So such a batch may take at most a share of the time (`DatabaseOptions.lateWorkShare`): after
 * one took t, the next may start t × (1 / share − 1) later. Until then the costly events, and
 * every event that needs one of them as a parent, wait here, in memory and bounded, and are stored
 * together at the next turn (one rewind or rebuild for all), or when the database closes.
 */
import { DEFAULT_MAX_LATE_BYTES, DEFAULT_MAX_LATE_EVENTS } from './constants.js';
import { detachEnvelope, type Envelope, envelopeSize } from './envelope.js';
import { MessageId } from './message-id.js';

/** What the queue needs of its database. */
export interface LateQueueHost {
  /** The cutoff now (ms): before it, an event is stored without its parents. */
  readonly cutoff: number;
  /** Whether an event with id bytes `key` would land before events already applied. */
  landsBeforeApplied(key: Uint8Array): boolean;
  /** Whether it would land before the undo history that the journal kept (a rebuild then). */
  landsBeforeHistory(key: Uint8Array): boolean;
  /** Whether the log stores the event with id bytes `key`. */
  isStored(key: Uint8Array): boolean;
  /** Stores (applies and queues for the log) a batch from other peers, in id order. */
  commit(envelopes: readonly Envelope[]): void;
  /** Whether a queued turn may still store anything (the database is open and not broken). */
  canStore(): boolean;
  /** Called after a turn that stored events from the timer: make them durable. */
  stored(): void;
}

/** Costly late events waiting for their turn, and the budget of turns (see the file's comment). */
export class LateQueue {
  readonly #host: LateQueueHost;
  /** See `DatabaseOptions.lateWorkShare`. */
  readonly #workShare: number;
  /** The waiting events by id key. */
  readonly #events = new Map<string, Envelope>();
  /** Ids of waiting events not yet handed out by {@link takeNew}; a part of {@link #events}. */
  #fresh: Uint8Array[] = [];
  #bytes = 0;
  /** The highest waiting id (undefined when nothing waits). */
  #highest: Uint8Array | undefined;
  /** When the next costly batch may be stored (ms of the real clock, `performance.now()`). */
  #nextTurnAt = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(host: LateQueueHost, workShare: number) {
    this.#host = host;
    this.#workShare = workShare;
  }

  /** How many events wait. */
  get size(): number {
    return this.#events.size;
  }

  /** Whether the event with id key `key` waits here. */
  has(key: string): boolean {
    return this.#events.size !== 0 && this.#events.has(key);
  }

  /** The highest waiting id, or undefined when nothing waits. */
  get highest(): Uint8Array | undefined {
    return this.#highest;
  }

  /** The ids of the events that began to wait since the last call (for the replicator). */
  takeNew(): Uint8Array[] {
    return this.#fresh.splice(0);
  }

  /** Whether the budget allows a costly batch now. */
  turnAllowed(): boolean {
    return performance.now() >= this.#nextTurnAt;
  }

  /**
   * Whether storing `envelope` is costly: it lands before applied events and is behind the cutoff
   * or before the kept undo history, so a rebuild is likely.
   */
  isCostly(envelope: Envelope): boolean {
    const key = envelope.id.bytes;
    if (!this.#host.landsBeforeApplied(key)) return false;
    return envelope.id.timestamp < this.#host.cutoff || this.#host.landsBeforeHistory(key);
  }

  /**
   * Splits accepted events into those stored now and those that wait for the budget: the costly
   * ones, and every event with a parent among those or already waiting, unless that parent is
   * behind the cutoff (where parents need not be stored). The inbox counts a waiting event as
   * stored, so it lets such children through; stored before their parent they would break the
   * log's rule that an event after the cutoff has its parents (a crash or close loses what waits,
   * and a fresh copy of the log could not store that child).
   */
  split(accepted: readonly Envelope[]): { now: Envelope[]; later: Envelope[] } {
    const costly = accepted.filter((envelope) => this.isCostly(envelope));
    if (costly.length === 0 && this.#events.size === 0) return { now: [...accepted], later: costly };
    const held = new Set(costly.map((envelope) => envelope.id.key));
    const queue = [...held];
    // The batch's events by parent (parents may come after their children in a batch), then
    // what waits spreads from parent to child.
    const cutoff = this.#host.cutoff;
    const children = new Map<string, Envelope[]>();
    for (const envelope of accepted) {
      for (const parent of envelope.parents) {
        if (parent.timestamp < cutoff) continue;
        if (this.#events.has(parent.key) && !held.has(envelope.id.key)) {
          held.add(envelope.id.key);
          queue.push(envelope.id.key);
        }
        const siblings = children.get(parent.key);
        if (siblings === undefined) children.set(parent.key, [envelope]);
        else siblings.push(envelope);
      }
    }
    for (let key = queue.pop(); key !== undefined; key = queue.pop()) {
      for (const child of children.get(key) ?? []) {
        if (held.has(child.id.key)) continue;
        held.add(child.id.key);
        queue.push(child.id.key);
      }
    }
    const now: Envelope[] = [];
    const later: Envelope[] = [];
    for (const envelope of accepted) (held.has(envelope.id.key) ? later : now).push(envelope);
    return { now, later };
  }

  /**
   * Queues all of `later` when there is room for all of them, and says whether it did. All wait
   * or none (their senders offer them again): a child must not wait for a parent that was refused.
   */
  deferAll(later: readonly Envelope[]): boolean {
    let bytes = 0;
    for (const envelope of later) bytes += envelopeSize(envelope);
    if (this.#events.size + later.length > DEFAULT_MAX_LATE_EVENTS || this.#bytes + bytes > DEFAULT_MAX_LATE_BYTES) return false;
    for (const envelope of later) this.defer(envelope);
    return true;
  }

  /**
   * Queues one event for the next turn. The caller made sure there is room (see {@link deferAll};
   * events put back after a refused turn were in the queue already).
   */
  defer(envelope: Envelope): void {
    const bytes = envelopeSize(envelope);
    const kept = detachEnvelope(envelope); // queued for long: in memory of its own
    this.#events.set(kept.id.key, kept);
    this.#fresh.push(kept.id.bytes);
    const id = kept.id.bytes;
    if (this.#highest === undefined || Buffer.compare(id, this.#highest) > 0) this.#highest = id;
    this.#bytes += bytes;
  }

  /** Empties the queue; returns the events the log does not store yet. */
  take(): Envelope[] {
    const late = [...this.#events.values()].filter((envelope) => !this.#host.isStored(envelope.id.bytes));
    this.#events.clear();
    this.#fresh = []; // (stored now: the replicator hears of them as stored)
    this.#bytes = 0;
    this.#highest = undefined;
    return late;
  }

  /**
   * Commits a batch from other peers; when it held costly events, the time it took moves the
   * budget's next allowed turn.
   */
  commitBudgeted(envelopes: readonly Envelope[]): void {
    const costly = envelopes.some((envelope) => this.isCostly(envelope));
    const started = performance.now();
    this.#host.commit(envelopes);
    if (costly) {
      const ended = performance.now();
      this.#nextTurnAt = ended + (ended - started) * (1 / this.#workShare - 1);
    }
  }

  /** Stores the waiting events once the budget allows (on a timer that does not hold the process). */
  schedule(): void {
    if (this.#timer !== undefined || !this.#host.canStore()) return;
    const wait = Math.max(0, this.#nextTurnAt - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#host.canStore() || this.#events.size === 0) return;
      // A costly batch stored meanwhile (released from parking, say) moved the next turn on.
      if (performance.now() < this.#nextTurnAt) {
        this.schedule();
        return;
      }
      if (this.storeNow()) this.#host.stored();
    }, wait);
    this.#timer.unref();
  }

  /** Stores the waiting events as one batch; false when there were none or it was refused. */
  storeNow(): boolean {
    const late = this.take();
    if (late.length === 0) return false;
    late.sort((a, b) => MessageId.compare(a.id, b.id));
    try {
      this.commitBudgeted(late);
      return true;
    } catch {
      // Refused as a batch (the view is full, say): their senders offer them again.
      return false;
    }
  }

  /** Cancels the scheduled turn (the database closes). */
  stop(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
