/**
 * The inbox: where events from other peers wait before the database stores them.
 *
 * `ingest` hands it a validated batch; the inbox sorts every event into one of:
 *
 * - **accepted** — new, not from the future, every parent present (stored, in this batch, or
 *   behind the cutoff, where parents count as present);
 * - **duplicate** — stored already, already accepted in this batch, or already waiting here
 *   (unless this copy's parents are all present and the waiting copy's are not: parents are not
 *   covered by the id hash, so the waiting copy may be a forgery naming parents that never come);
 * - **too new** — dated more than `maxClockSkewMs` after this peer's clock. Such an event would
 *   never become final, stay a head, and make every honest append rewind and re-apply it (and win
 *   every last-writer-wins); its sender offers it again once it is due;
 * - **parked** — a parent is missing: it waits, in memory, until the parent arrives, the parent
 *   falls behind the cutoff (then it counts as present), its time runs out, or its sender leaves;
 * - **refused** — parking is full (per sender or in total, by count or bytes); the sender offers it
 *   again later.
 *
 * Parking is O(1) per event: events by id, the ids waiting on each missing parent, and counts and
 * bytes per sender. Entries expire in arrival order, so expiry walks from the oldest.
 */
import { ErrorCode, NoatunError, refuseUnknownOptions } from '../errors.js';
import {
  DEFAULT_MAX_CLOCK_SKEW_MS,
  DEFAULT_MAX_PARKED_BYTES,
  DEFAULT_MAX_PARKED_BYTES_PER_SOURCE,
  DEFAULT_MAX_PARKED_EVENTS,
  DEFAULT_MAX_PARKED_EVENTS_PER_SOURCE,
  DEFAULT_PARKED_TTL_MS,
} from './constants.js';
import { detachEnvelope, type Envelope, envelopeSize, withParents } from './envelope.js';
import { compareIdBytes, MessageId } from './message-id.js';

/** Limits of the inbox (see the module comment). */
export interface InboxLimits {
  /**
   * How far ahead of this peer's clock an event may be dated.
   * @default 60000 (one minute)
   */
  readonly maxClockSkewMs?: number;
  /**
   * Events parked in total.
   * @default 100000
   */
  readonly maxParkedEvents?: number;
  /**
   * Bytes of envelopes parked in total.
   * @default 128 MiB
   */
  readonly maxParkedBytes?: number;
  /**
   * Events parked per sender.
   * @default 20000
   */
  readonly maxParkedEventsPerSource?: number;
  /**
   * Bytes of envelopes parked per sender.
   * @default 32 MiB
   */
  readonly maxParkedBytesPerSource?: number;
  /**
   * How long a parked event waits for its parent.
   * @default 600000 (ten minutes)
   */
  readonly parkedTtlMs?: number;
}

/** What the inbox needs of the database. */
export interface InboxHost {
  /** The cutoff now (ms): parents behind it count as present. */
  readonly cutoff: number;
  /** The clock (ms). */
  now(): number;
  /** Whether an event with these id bytes is stored. */
  isStored(id: Uint8Array): boolean;
  /**
   * The highest id stored (or otherwise known to {@link isStored}), or undefined when nothing is:
   * no id above it is stored, so a batch of new events skips the lookups.
   */
  highestStored(): Uint8Array | undefined;
}

/**
 * Whether 16-byte id `a` sorts after `b`: b undefined means nothing is stored (every id is above),
 * null that the highest is not known (none is).
 */
function isAbove(a: Uint8Array, b: Uint8Array | undefined | null): boolean {
  if (b === null) return false;
  return b === undefined || compareIdBytes(a, b) > 0;
}

/** How a batch was sorted. */
export interface Sorting {
  /** Events to store now, in id order. */
  readonly accepted: Envelope[];
  readonly duplicates: number;
  readonly parked: number;
  /** Parked events (from earlier batches) this batch let go. */
  readonly unparked: number;
  /** Dated too far ahead of this peer's clock. */
  readonly tooNew: number;
  /** Parking was full. */
  readonly refused: number;
}

/** The sender of events that came through no peer (a direct `ingest` call). */
export const LOCAL_SOURCE = '';

interface Parked {
  readonly envelope: Envelope;
  readonly key: string;
  readonly bytes: number;
  readonly source: string;
  readonly since: number;
  /** Key of the parent it waits for. */
  missing: string;
}

interface Usage {
  count: number;
  bytes: number;
}

/** Whether `sorted` (in id order) holds an event with id `bytes`: by bisection. */
function includesId(sorted: readonly Envelope[], bytes: Uint8Array): boolean {
  let high = sorted.length;
  if (high === 0) return false;
  // A parent is usually the event just before its child (the author's previous event).
  const order = compareIdBytes(sorted[high - 1]!.id.bytes, bytes);
  if (order <= 0) return order === 0;
  let low = 0;
  high--;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const order = compareIdBytes(sorted[middle]!.id.bytes, bytes);
    if (order === 0) return true;
    if (order < 0) low = middle + 1;
    else high = middle;
  }
  return false;
}

/** Whether `envelopes` are in strictly increasing id order. */
function inIdOrder(envelopes: readonly Envelope[]): boolean {
  for (let i = 1; i < envelopes.length; i++) {
    if (compareIdBytes(envelopes[i - 1]!.id.bytes, envelopes[i]!.id.bytes) >= 0) return false;
  }
  return true;
}

/** Every limit of the inbox (the compiler keeps this equal to {@link InboxLimits}'s). */
const INBOX_LIMIT_NAMES: Record<keyof InboxLimits, true> = {
  maxClockSkewMs: true,
  maxParkedEvents: true,
  maxParkedBytes: true,
  maxParkedEventsPerSource: true,
  maxParkedBytesPerSource: true,
  parkedTtlMs: true,
};

/**
 * The limits with their defaults filled in; `INVALID_ARGUMENT` for limits that are not an object,
 * a limit it does not know, or one that is not a positive number (`Database.open` asks before it
 * makes anything on disk).
 */
export function resolveInboxLimits(limits: InboxLimits | undefined): Required<InboxLimits> {
  if (limits !== undefined && (limits === null || typeof limits !== 'object')) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `inbox must be an object of limits, got ${limits === null ? 'null' : typeof limits}`);
  }
  const given = limits ?? {};
  // A misspelt limit (`maxParkedEvent`) left the default in force without a word.
  refuseUnknownOptions(given, INBOX_LIMIT_NAMES, 'inbox');
  return {
    maxClockSkewMs: positive(given.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS, 'maxClockSkewMs'),
    maxParkedEvents: positive(given.maxParkedEvents ?? DEFAULT_MAX_PARKED_EVENTS, 'maxParkedEvents'),
    maxParkedBytes: positive(given.maxParkedBytes ?? DEFAULT_MAX_PARKED_BYTES, 'maxParkedBytes'),
    maxParkedEventsPerSource: positive(given.maxParkedEventsPerSource ?? DEFAULT_MAX_PARKED_EVENTS_PER_SOURCE, 'maxParkedEventsPerSource'),
    maxParkedBytesPerSource: positive(given.maxParkedBytesPerSource ?? DEFAULT_MAX_PARKED_BYTES_PER_SOURCE, 'maxParkedBytesPerSource'),
    parkedTtlMs: positive(given.parkedTtlMs ?? DEFAULT_PARKED_TTL_MS, 'parkedTtlMs'),
  };
}

/** Events waiting for their parents, and the sorting of incoming batches. */
export class Inbox {
  readonly #host: InboxHost;
  readonly maxClockSkewMs: number;
  readonly #maxEvents: number;
  readonly #maxBytes: number;
  readonly #maxEventsPerSource: number;
  readonly #maxBytesPerSource: number;
  readonly #ttlMs: number;
  /** Parked events by id key, oldest first. */
  readonly #parked = new Map<string, Parked>();
  /** Ids waiting on each missing parent. */
  readonly #waiting = new Map<string, Set<string>>();
  readonly #sources = new Map<string, Usage>();
  #bytes = 0;
  /** {@link InboxHost.highestStored} as {@link sort} found it (null outside a sort: unknown). */
  #highest: Uint8Array | undefined | null = null;
  /** The cutoff at the last release of events waiting on parents behind it. */
  #releasedAt = 0;

  constructor(host: InboxHost, limits?: InboxLimits) {
    this.#host = host;
    const resolved = resolveInboxLimits(limits);
    this.maxClockSkewMs = resolved.maxClockSkewMs;
    this.#maxEvents = resolved.maxParkedEvents;
    this.#maxBytes = resolved.maxParkedBytes;
    this.#maxEventsPerSource = resolved.maxParkedEventsPerSource;
    this.#maxBytesPerSource = resolved.maxParkedBytesPerSource;
    this.#ttlMs = resolved.parkedTtlMs;
  }

  /** Events parked now. */
  get count(): number {
    return this.#parked.size;
  }

  /** Bytes of envelopes parked now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether an event dated `time` is too far ahead of the clock to accept now. */
  isTooNew(time: number): boolean {
    return time > this.#host.now() + this.maxClockSkewMs;
  }

  /**
   * Sorts a validated batch from `source` (see the module comment), together with parked events
   * that are now free: their missing parent fell behind the cutoff, or this batch brings it.
   */
  sort(batch: readonly Envelope[], source: string = LOCAL_SOURCE): Sorting {
    const host = this.#host;
    const cutoff = host.cutoff;
    const decoded: Envelope[] = [];
    // Released events keep their sender and their time: parked again (another parent is still
    // missing), they count against that sender's share and expire when they would have.
    // Released before the expired are dropped: an event whose parent fell behind the cutoff while
    // it waited longer than the limit was dropped, though its parent counted as present, and a peer
    // given the same events held another set until someone sent it again.
    const released = this.#releaseBehindCutoff();
    this.#expire();
    const origins = released.length === 0 ? undefined : new Map<Envelope, Parked>();
    for (const entry of released) {
      const envelope = finalWithoutParents(entry.envelope, cutoff);
      origins!.set(envelope, entry);
      decoded.push(envelope);
    }
    // (Indexed loops: see Database's #commit.)
    for (let i = 0; i < batch.length; i++) decoded.push(finalWithoutParents(batch[i]!, cutoff));
    // A copy or gossip sends its events in id order: a pass that finds them sorted saves the sort.
    if (!inIdOrder(decoded)) decoded.sort((a, b) => MessageId.compare(a.id, b.id));
    const accepted: Envelope[] = [];
    // Accepted events are found by bisection while they are in id order (this first pass), so a
    // batch needs no string key per event unless something is parked.
    const inBatch = (parent: MessageId) => includesId(accepted, parent.bytes);
    // An initial copy or gossip brings ids above everything stored: those need no lookup.
    const highest = host.highestStored();
    this.#highest = highest;
    // What isTooNew refuses, with the clock read once for the batch.
    const latest = host.now() + this.maxClockSkewMs;
    let duplicates = 0;
    let parked = 0;
    let tooNew = 0;
    let refused = 0;
    for (let i = 0; i < decoded.length; i++) {
      const envelope = decoded[i]!;
      const bytes = envelope.id.bytes;
      // Sorted, so an accepted twin is the last accepted event.
      const last = accepted.length === 0 ? undefined : accepted[accepted.length - 1]!;
      if ((last !== undefined && compareIdBytes(last.id.bytes, bytes) === 0) || (!isAbove(bytes, highest) && host.isStored(bytes))) {
        duplicates++;
        continue;
      }
      const waiting = this.#parked.size === 0 ? undefined : this.#parked.get(envelope.id.key);
      if (waiting !== undefined) {
        // The id hash does not cover the parents (they are dropped behind the cutoff), so a copy
        // from a hostile peer may name parents that never come. The waiting copy stays unless this
        // one is complete now: then this one is stored, and a forged copy cannot hold back the
        // true one for longer than one offer from an honest peer.
        if (this.#missingParent(envelope, inBatch) === undefined) {
          this.#drop(waiting);
          accepted.push(envelope);
        } else {
          duplicates++;
        }
        continue;
      }
      if (envelope.id.timestamp > latest) {
        tooNew++;
        continue;
      }
      const missing = this.#missingParent(envelope, inBatch);
      if (missing === undefined) {
        accepted.push(envelope);
      } else {
        // Counted for this batch only if it came with it.
        const origin = origins?.get(envelope);
        if (!this.#park(envelope, envelope.id.key, missing, origin ?? source)) refused++;
        else if (origin === undefined) parked++;
      }
    }
    // Parked events whose parents this batch brings can be stored too (cascading: each accepted
    // event may free others, which the loop reaches as they are appended). They join out of id
    // order, so from here the accepted events are found by key.
    let unparked = 0;
    if (this.#waiting.size !== 0) {
      const acceptedKeys = new Set<string>();
      for (const envelope of accepted) acceptedKeys.add(envelope.id.key);
      const byKey = (parent: MessageId) => acceptedKeys.has(parent.key);
      for (let i = 0; i < accepted.length; i++) {
        const parentKey = accepted[i]!.id.key;
        const waiting = this.#waiting.get(parentKey);
        if (waiting === undefined) continue;
        this.#waiting.delete(parentKey);
        for (const key of waiting) {
          const entry = this.#parked.get(key);
          if (entry === undefined) continue;
          const missing = this.#missingParent(entry.envelope, byKey);
          if (missing !== undefined) {
            this.#wait(entry, missing);
            continue;
          }
          this.#unpark(entry);
          accepted.push(entry.envelope);
          acceptedKeys.add(key);
          unparked++;
        }
      }
    }
    this.#highest = null;
    // Accepted in the order of the sorted batch, unless parked events were appended after it.
    if (unparked !== 0) accepted.sort((a, b) => MessageId.compare(a.id, b.id));
    return { accepted, duplicates, parked, unparked, tooNew, refused };
  }

  /** Drops everything parked from `source` (it left: it would have offered them again anyway). */
  forgetSource(source: string): void {
    if (!this.#sources.has(source)) return;
    for (const entry of this.#parked.values()) if (entry.source === source) this.#drop(entry);
  }

  /** A parent that is neither stored, nor accepted in this batch, nor behind the cutoff. */
  #missingParent(envelope: Envelope, inBatch: (parent: MessageId) => boolean): string | undefined {
    const cutoff = this.#host.cutoff;
    const parents = envelope.parents;
    for (let i = 0; i < parents.length; i++) {
      const parent = parents[i]!;
      if (parent.timestamp < cutoff) continue;
      if (inBatch(parent) || (!isAbove(parent.bytes, this.#highest) && this.#host.isStored(parent.bytes))) continue;
      return parent.key;
    }
    return undefined;
  }

  /**
   * Parks an event if the limits allow; false when they do not. `from` is the sender, or the entry
   * of an event released from parking whose sender and time it keeps.
   */
  #park(envelope: Envelope, key: string, missing: string, from: string | Parked): boolean {
    const source = typeof from === 'string' ? from : from.source;
    const since = typeof from === 'string' ? this.#host.now() : from.since;
    const bytes = envelopeSize(envelope);
    const usage = this.#sources.get(source) ?? { count: 0, bytes: 0 };
    if (
      this.#parked.size >= this.#maxEvents ||
      this.#bytes + bytes > this.#maxBytes ||
      usage.count >= this.#maxEventsPerSource ||
      usage.bytes + bytes > this.#maxBytesPerSource
    ) {
      return false;
    }
    // Parked for up to its TTL: in memory of its own (see detachEnvelope).
    const entry: Parked = { envelope: detachEnvelope(envelope), key, bytes, source, since, missing };
    this.#parked.set(key, entry);
    this.#wait(entry, missing);
    usage.count++;
    usage.bytes += bytes;
    this.#sources.set(source, usage);
    this.#bytes += bytes;
    return true;
  }

  #wait(entry: Parked, missing: string): void {
    entry.missing = missing;
    const waiting = this.#waiting.get(missing);
    if (waiting === undefined) this.#waiting.set(missing, new Set([entry.key]));
    else waiting.add(entry.key);
  }

  /** Removes an entry from the parked events and the per-sender usage (not from `#waiting`). */
  #unpark(entry: Parked): void {
    this.#parked.delete(entry.key);
    this.#bytes -= entry.bytes;
    const usage = this.#sources.get(entry.source)!;
    usage.count--;
    usage.bytes -= entry.bytes;
    if (usage.count === 0) this.#sources.delete(entry.source);
  }

  /** Removes an entry entirely. */
  #drop(entry: Parked): void {
    this.#unpark(entry);
    const waiting = this.#waiting.get(entry.missing);
    if (waiting !== undefined) {
      waiting.delete(entry.key);
      if (waiting.size === 0) this.#waiting.delete(entry.missing);
    }
  }

  /**
   * Drops entries parked longer than the time limit, walking from the oldest until one is not due.
   * An event parked again after a release keeps its time but goes to the end, so it may wait up to
   * one more limit: at most twice the limit in all, never longer.
   */
  #expire(): void {
    const horizon = this.#host.now() - this.#ttlMs;
    for (const entry of this.#parked.values()) {
      if (entry.since >= horizon) break;
      this.#drop(entry);
    }
  }

  /**
   * Takes out the events waiting on a parent that has fallen behind the cutoff (it counts as
   * present now); they are sorted again with the batch. The cutoff moves once a stride at most,
   * and only then is the list walked.
   */
  #releaseBehindCutoff(): Parked[] {
    const cutoff = this.#host.cutoff;
    const released: Parked[] = [];
    if (cutoff <= this.#releasedAt) return released;
    this.#releasedAt = cutoff;
    for (const [parentKey, waiting] of this.#waiting) {
      if (MessageId.adopt(Buffer.from(parentKey, 'latin1')).timestamp >= cutoff) continue;
      this.#waiting.delete(parentKey);
      for (const key of waiting) {
        const entry = this.#parked.get(key);
        if (entry === undefined) continue;
        this.#unpark(entry);
        released.push(entry);
      }
    }
    return released;
  }
}

/**
 * A final event has no parents: a peer whose cutoff lags ours (its clock is behind, within a stride
 * or two) still sends them; they carry no meaning here, so they are dropped.
 */
function finalWithoutParents(envelope: Envelope, cutoff: number): Envelope {
  return envelope.id.timestamp < cutoff && envelope.parents.length !== 0 ? withParents(envelope, []) : envelope;
}

function positive(value: number, name: string): number {
  if (!(Number.isFinite(value) && value > 0)) throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${name} must be a positive number`);
  return value;
}
