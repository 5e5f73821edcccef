/**
 * Gossiped envelopes waiting to be ingested, grouped by sender, within bounds: a sender gossiping
 * faster than the database ingests cannot grow the queue past {@link MAX_GOSSIP_QUEUE_EVENTS} of
 * its own or {@link MAX_GOSSIP_QUEUE_BYTES} in all. What does not fit is dropped: gossip is
 * best-effort, and the next comparison of statuses fetches it in a session.
 */
import { MAX_GOSSIP_QUEUE_BYTES, MAX_GOSSIP_QUEUE_EVENTS } from './constants.js';

/** The envelopes of one sender. */
export interface GossipBatch {
  readonly from: string;
  readonly envelopes: Uint8Array[];
}

/** The queue; see the module comment. */
export class GossipQueue {
  #batches = new Map<string, Uint8Array[]>();
  #bytes = 0;
  /** Envelopes dropped for lack of room. */
  dropped = 0;

  /** Queues a copy of `envelope` from `from`; false (and dropped) when it does not fit. */
  push(from: string, envelope: Uint8Array): boolean {
    const batch = this.#batches.get(from);
    if ((batch?.length ?? 0) >= MAX_GOSSIP_QUEUE_EVENTS || this.#bytes + envelope.length > MAX_GOSSIP_QUEUE_BYTES) {
      this.dropped++;
      return false;
    }
    if (batch === undefined) this.#batches.set(from, [envelope.slice()]);
    else batch.push(envelope.slice());
    this.#bytes += envelope.length;
    return true;
  }

  /** Takes everything queued, one batch per sender. */
  drain(): GossipBatch[] {
    const batches = [...this.#batches].map(([from, envelopes]) => ({ from, envelopes }));
    // A new map, not clear(): the table clear() leaves behind keeps the envelopes alive through
    // minor collections once it is in the old generation (see EventLog's overlay).
    this.#batches = new Map();
    this.#bytes = 0;
    return batches;
  }
}
