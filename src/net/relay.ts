/**
 * The relay: how new events travel through the swarm, each envelope crossing each link at most
 * once.
 *
 * - **The author pushes.** A new local event goes at once to every neighbour (`EVENT`, or
 *   `EVENTS` for the events of one turn): one hop, no wait.
 * - **Everyone else offers, and neighbours pull.** A peer that receives an event new to it offers
 *   its id to its other neighbours (`IHAVE`; the ids of `announceMs` in one frame), except those
 *   that offered it first. A neighbour that lacks it asks the first peer that offered it
 *   (`WANT`), which sends it (`EVENTS`); if it does not come within `wantMs`, the next one that
 *   offered it is asked. An id asked of every offering neighbour in vain is given up: the
 *   statuses, which then differ, bring the event in a session.
 *
 * So a delivered event costs its envelope once, plus 16-byte ids on the links it did not take.
 * (Trees that push eagerly, such as Plumtree's, save the ids but build their tree from which
 * copy of an event arrives first; in a swarm where every peer writes and the processes share a
 * few cores, those decisions conflict, the tree breaks and mends over and over, and copies
 * multiply: measured in BENCHMARKS.md.) A hop costs `announceMs` and a round trip.
 *
 * This class is transport-free: it decides who gets what; the replicator validates, stores and
 * counts. Frames go over the link's direct channel, one neighbour at a time.
 */
import { idKey } from '../core/message-id.js';
import { ID_BYTES } from './fingerprint-index.js';
import { bytesFrame, eventsFrame, FrameType, idsFrame, MAX_IDS_PER_FRAME } from './frames.js';

/** What the relay needs from the replicator. */
export interface RelayHost {
  /** Sends a direct frame to a neighbour (best effort; never throws); false if it was dropped at once. */
  send(peerId: string, frame: Uint8Array): boolean;
  /** Whether we hold the event (stored). */
  holds(id: Uint8Array): boolean;
  /** `count` envelopes were sent to `peerId` (for its counters). */
  sent(peerId: string, count: number): void;
}

/** Options of a {@link Relay}. */
export interface RelayOptions {
  /** How long ids are collected before they are offered (ms). */
  readonly announceMs: number;
  /** How long an asked-for event may take before the next neighbour that offered it is asked (ms). */
  readonly wantMs: number;
  /** Most bytes of one frame of envelopes (with their lengths); larger envelopes are neither pushed nor offered. */
  readonly frameBytes: number;
}

/** Ids remembered as seen (received or published); the oldest are forgotten beyond it. */
export const MAX_SEEN_IDS = 65_536;
/** Ids asked for and not yet received; offers beyond it are ignored until some arrive. */
export const MAX_WANTED_IDS = 16_384;
/**
 * Ids first offered by one neighbour among those asked for: a neighbour that offers ids it never
 * sends cannot fill the table that honest offers need.
 */
export const MAX_WANTED_PER_NEIGHBOUR = 2048;
/** Neighbours remembered per wanted id (the ones to ask next, in turn). */
const MAX_OFFERS_PER_ID = 4;
/**
 * Envelopes received lately, kept to answer `WANT`s: a neighbour asks as soon as we offer (often
 * before we stored the event). A `WANT` is answered only for ids we offered to that neighbour, once
 * each, so a neighbour cannot make us send it the whole database (sessions do that, within their
 * limits) or the same envelope again and again.
 */
export const RECENT_ENVELOPE_BYTES = 8 * 1024 * 1024;

/** Bytes an `EVENTS` frame adds to its envelopes: the type and count, then a length per envelope. */
const EVENTS_HEADER_BYTES = 5;
const EVENTS_LENGTH_BYTES = 4;

/** The size of a relay frame that carries envelopes of up to `envelopeBytes` (one each). */
export function relayFrameBytes(envelopeBytes: number): number {
  return EVENTS_HEADER_BYTES + EVENTS_LENGTH_BYTES + envelopeBytes;
}

/** An id asked for and not yet received. */
interface Wanted {
  readonly id: Uint8Array;
  /** Neighbours that offered it (they hold it), in the order to ask them; the first counts it against its share. */
  readonly offeredBy: string[];
  readonly first: string;
  /** How many of them were asked. */
  asked: number;
  /** When to ask the next one (ms). */
  due: number;
}

/** The key of an id in maps. */
const keyOf = idKey;

/** The id of an envelope (version byte, then the 16-byte id; the replicator validated it). */
function idOf(envelope: Uint8Array): Uint8Array {
  return envelope.subarray(1, 1 + ID_BYTES);
}

/** See the module comment. */
export class Relay {
  readonly #host: RelayHost;
  readonly #options: RelayOptions;
  readonly #neighbours = new Set<string>();
  /** Ids seen lately, oldest first, with the neighbours that offered each to us (they need no offer back). */
  readonly #seen = new Map<string, string[] | undefined>();
  /** Envelopes received lately, by id key, oldest first, with the neighbours they were offered to (and not yet sent). */
  readonly #recent = new Map<string, { readonly envelope: Uint8Array; readonly offeredTo: string[] }>();
  #recentBytes = 0;
  /** Ids waiting to be offered, per neighbour. */
  readonly #offers = new Map<string, Uint8Array[]>();
  #offerTimer: NodeJS.Timeout | undefined;
  /** Ids to ask for at the end of this turn, per neighbour. */
  #asks = new Map<string, Uint8Array[]>();
  #askScheduled = false;
  /** Ids asked for, in the order of their next try, and how many each neighbour offered first. */
  readonly #wanted = new Map<string, Wanted>();
  readonly #wantedOf = new Map<string, number>();
  #wantTimer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** Envelopes received that we had already (for tests: the relay's waste). */
  copies = 0;
  /** Ids asked of a second neighbour because the first did not send in time. */
  retries = 0;

  constructor(host: RelayHost, options: RelayOptions) {
    this.#host = host;
    this.#options = options;
  }

  addNeighbour(peerId: string): void {
    this.#neighbours.add(peerId);
  }

  /** A neighbour left: nothing more to or from it (ids asked of it go to the next that offered them, in time). */
  removeNeighbour(peerId: string): void {
    this.#neighbours.delete(peerId);
    this.#offers.delete(peerId);
    this.#asks.delete(peerId);
    // (Its share of the wanted ids stays counted until they expire: a neighbour that leaves and
    // comes back gets no fresh share.)
    for (const wanted of this.#wanted.values()) {
      const at = wanted.offeredBy.indexOf(peerId);
      if (at < 0) continue;
      wanted.offeredBy.splice(at, 1);
      if (at < wanted.asked) wanted.asked--;
    }
  }

  /** New local events: pushed to every neighbour. */
  publish(envelopes: readonly Uint8Array[]): void {
    const fresh: Uint8Array[] = [];
    for (const envelope of envelopes) {
      if (relayFrameBytes(envelope.length) > this.#options.frameBytes) continue;
      const key = keyOf(idOf(envelope));
      if (this.#seen.has(key)) continue;
      this.#remember(key, undefined);
      fresh.push(envelope);
    }
    if (fresh.length === 0 || this.#stopped) return;
    for (const peerId of this.#neighbours) this.#sendEvents(peerId, fresh);
  }

  /**
   * Events from `from` (validated envelopes; pushed by their author, or sent because we asked):
   * each new one is handed to `accept` (the replicator queues it to be stored) and, if it was
   * taken, remembered as seen and offered to the other neighbours. (One it could not take is not
   * remembered: a later push or offer of it is not taken for a copy.) Returns how many were taken.
   */
  received(from: string, envelopes: readonly Uint8Array[], accept: (envelope: Uint8Array) => boolean): number {
    let taken = 0;
    for (const envelope of envelopes) {
      const id = idOf(envelope);
      const key = keyOf(id);
      const wanted = this.#wanted.get(key);
      if (wanted !== undefined) this.#unwant(key, wanted);
      if (this.#seen.has(key) || this.#host.holds(id)) {
        this.copies++;
        continue;
      }
      if (!accept(envelope)) continue;
      taken++;
      const offeredBy = wanted?.offeredBy;
      this.#remember(key, offeredBy);
      // A larger one reaches the others in sessions, as its author sends it.
      if (relayFrameBytes(envelope.length) > this.#options.frameBytes) continue;
      this.#keep(key, envelope);
      this.#offer(id, from, offeredBy);
    }
    return taken;
  }

  /**
   * Whether the envelope's event is held or already on its way in: {@link received} drops it then
   * (as a copy), so the caller need not check its content first.
   */
  knows(envelope: Uint8Array): boolean {
    if (envelope.length < 1 + ID_BYTES) return false;
    const id = idOf(envelope);
    return this.#seen.has(keyOf(id)) || this.#host.holds(id);
  }

  /** `from` offers ids: the ones we lack are asked of it (or of the next one that offers them, if it does not send in time). */
  offered(from: string, ids: readonly Uint8Array[]): void {
    if (!this.#neighbours.has(from)) return;
    for (const id of ids) {
      const key = keyOf(id);
      const wanted = this.#wanted.get(key);
      if (wanted !== undefined) {
        if (wanted.offeredBy.length < MAX_OFFERS_PER_ID && !wanted.offeredBy.includes(from)) wanted.offeredBy.push(from);
        continue;
      }
      if (this.#seen.has(key) || this.#host.holds(id)) {
        // Held already (or on its way in): no need to offer it back to this neighbour.
        this.#offeredBy(key, from);
        continue;
      }
      const share = this.#wantedOf.get(from) ?? 0;
      if (this.#wanted.size >= MAX_WANTED_IDS || share >= MAX_WANTED_PER_NEIGHBOUR) continue;
      this.#wantedOf.set(from, share + 1);
      const copy = id.slice();
      this.#wanted.set(key, { id: copy, offeredBy: [from], first: from, asked: 1, due: Date.now() + this.#options.wantMs });
      this.#ask(from, copy);
    }
    this.#armWant();
  }

  /** `from` asks for ids: those we offered it lately are sent, once each (see {@link RECENT_ENVELOPE_BYTES}). */
  wanted(from: string, ids: readonly Uint8Array[]): void {
    if (!this.#neighbours.has(from)) return;
    const envelopes: Uint8Array[] = [];
    for (const id of ids) {
      const recent = this.#recent.get(keyOf(id));
      const at = recent?.offeredTo.indexOf(from) ?? -1;
      if (at < 0) continue;
      recent!.offeredTo.splice(at, 1);
      envelopes.push(recent!.envelope);
    }
    this.#sendEvents(from, envelopes);
  }

  /** Stops the timers; nothing is sent after. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#offerTimer);
    clearTimeout(this.#wantTimer);
    this.#offers.clear();
    this.#asks.clear();
    this.#wanted.clear();
    this.#wantedOf.clear();
    this.#recent.clear();
  }

  /** Drops an id from the wanted ones (received, or given up). */
  #unwant(key: string, wanted: Wanted): void {
    this.#wanted.delete(key);
    const share = (this.#wantedOf.get(wanted.first) ?? 1) - 1;
    if (share > 0) this.#wantedOf.set(wanted.first, share);
    else this.#wantedOf.delete(wanted.first);
  }

  #remember(key: string, offeredBy: string[] | undefined): void {
    this.#seen.delete(key);
    this.#seen.set(key, offeredBy);
    if (this.#seen.size > MAX_SEEN_IDS) this.#seen.delete(this.#seen.keys().next().value!);
  }

  /** Notes that `peerId` has the event (it offered it): it gets no offer of it from us. */
  #offeredBy(key: string, peerId: string): void {
    const offeredBy = this.#seen.get(key);
    if (offeredBy === undefined) {
      if (this.#seen.has(key)) this.#seen.set(key, [peerId]);
    } else if (offeredBy.length < MAX_OFFERS_PER_ID && !offeredBy.includes(peerId)) offeredBy.push(peerId);
  }

  /** Keeps a copy (a view would keep the whole frame it came in alive) to answer `WANT`s. */
  #keep(key: string, envelope: Uint8Array): void {
    this.#recent.set(key, { envelope: envelope.slice(), offeredTo: [] });
    this.#recentBytes += envelope.length;
    while (this.#recentBytes > RECENT_ENVELOPE_BYTES) {
      const [oldest, entry] = this.#recent.entries().next().value!;
      this.#recent.delete(oldest);
      this.#recentBytes -= entry.envelope.length;
    }
  }

  /** Queues an offer of `id` to every neighbour but `from` and those that offered it to us. */
  #offer(id: Uint8Array, from: string, offeredBy: readonly string[] | undefined): void {
    if (this.#stopped) return;
    for (const peerId of this.#neighbours) {
      if (peerId === from || offeredBy?.includes(peerId) === true) continue;
      let offers = this.#offers.get(peerId);
      if (offers === undefined) this.#offers.set(peerId, (offers = []));
      offers.push(id);
      if (offers.length >= MAX_IDS_PER_FRAME) this.#offerTo(peerId);
    }
    if (this.#offerTimer === undefined && this.#offers.size !== 0) {
      this.#offerTimer = setTimeout(() => {
        this.#offerTimer = undefined;
        for (const peerId of [...this.#offers.keys()]) this.#offerTo(peerId);
      }, this.#options.announceMs);
      this.#offerTimer.unref();
    }
  }

  #offerTo(peerId: string): void {
    const ids = this.#offers.get(peerId);
    this.#offers.delete(peerId);
    if (ids === undefined || ids.length === 0 || this.#stopped || !this.#neighbours.has(peerId)) return;
    // Offered meanwhile by that neighbour itself: it has them. Those offered may be asked for once.
    const still: Uint8Array[] = [];
    for (const id of ids) {
      const key = keyOf(id);
      if (this.#seen.get(key)?.includes(peerId) === true) continue;
      const recent = this.#recent.get(key);
      if (recent === undefined) continue;
      recent.offeredTo.push(peerId);
      still.push(id);
    }
    if (still.length !== 0) this.#host.send(peerId, idsFrame(FrameType.IHAVE, still));
  }

  /** Asks `peerId` for `id` at the end of this turn, with the other ids asked of it meanwhile. */
  #ask(peerId: string, id: Uint8Array): void {
    let asks = this.#asks.get(peerId);
    if (asks === undefined) this.#asks.set(peerId, (asks = []));
    asks.push(id);
    if (this.#askScheduled) return;
    this.#askScheduled = true;
    setImmediate(() => {
      this.#askScheduled = false;
      if (this.#stopped) return;
      for (const [to, ids] of this.#asks) {
        for (let at = 0; at < ids.length; at += MAX_IDS_PER_FRAME) this.#host.send(to, idsFrame(FrameType.WANT, ids.slice(at, at + MAX_IDS_PER_FRAME)));
      }
      // A new map, not clear() (see GossipQueue.drain).
      this.#asks = new Map();
    });
  }

  /** Sends envelopes to one neighbour, in frames of at most `frameBytes`; stops when the link drops one. */
  #sendEvents(peerId: string, envelopes: readonly Uint8Array[]): void {
    if (envelopes.length === 0 || this.#stopped) return;
    let batch: Uint8Array[] = [];
    let bytes = EVENTS_HEADER_BYTES;
    const flush = (): boolean => {
      if (batch.length === 0) return true;
      const sent = this.#host.send(peerId, batch.length === 1 ? bytesFrame(FrameType.EVENT, batch[0]!) : eventsFrame(batch));
      if (sent) this.#host.sent(peerId, batch.length);
      batch = [];
      bytes = EVENTS_HEADER_BYTES;
      return sent;
    };
    for (const envelope of envelopes) {
      const size = EVENTS_LENGTH_BYTES + envelope.length;
      if (relayFrameBytes(envelope.length) > this.#options.frameBytes) continue;
      if (bytes + size > this.#options.frameBytes || batch.length >= MAX_IDS_PER_FRAME) {
        if (!flush()) return;
      }
      batch.push(envelope);
      bytes += size;
    }
    flush();
  }

  #armWant(): void {
    if (this.#wantTimer !== undefined || this.#wanted.size === 0 || this.#stopped) return;
    const first = this.#wanted.values().next().value!;
    this.#wantTimer = setTimeout(() => {
      this.#wantTimer = undefined;
      this.#wantDue();
    }, Math.max(0, first.due - Date.now()));
    this.#wantTimer.unref();
  }

  /** Asks again, of the next neighbour that offered it, for each id whose time is up; gives up on the rest. */
  #wantDue(): void {
    if (this.#stopped) return;
    const now = Date.now();
    const again: [string, Wanted][] = [];
    for (const [key, wanted] of this.#wanted) {
      if (wanted.due > now) break;
      const next = wanted.offeredBy[wanted.asked];
      if (next === undefined || this.#seen.has(key) || this.#host.holds(wanted.id)) {
        // Arrived meanwhile, or asked of every neighbour that offered it in vain: a session brings it.
        this.#unwant(key, wanted);
        continue;
      }
      this.#wanted.delete(key);
      this.retries++;
      this.#ask(next, wanted.id);
      again.push([key, { ...wanted, asked: wanted.asked + 1, due: now + this.#options.wantMs }]);
    }
    // Their next try is later than any left.
    for (const [key, wanted] of again) this.#wanted.set(key, wanted);
    this.#armWant();
  }
}
