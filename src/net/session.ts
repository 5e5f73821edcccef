/**
 * One replication session with one peer, from `HELLO` to `END`, with every resource it can hold
 * bounded:
 *
 * - **Time.** It ends when it waits longer than the idle time for the peer's next frame, and at
 *   its deadline however busy (`TIMEOUT`: nobody is refused; what moved is kept).
 * - **Reconciliation.** Rounds are bounded by {@link maxReconcileRounds} of the sets' size, and
 *   bytes by {@link MAX_RECONCILE_BYTES}; so are the ids learned ({@link MAX_SESSION_IDS} each
 *   way) and the questions left open. On reaching a bound with something learned, this side ends
 *   the reconciliation (an empty `RECONCILE`): both sides exchange what they found, statuses
 *   still differ at `END`, and the next session continues. Reaching one with nothing learned, or
 *   a peer that defers without filling its message ({@link MIN_DEFER_MESSAGE_BYTES}), is a fault.
 * - **Queues.** Ids to send and to ask for are packed (16 bytes each) and bounded; a whole range
 *   (an initial copy) is read from the index a few hundred ids at a time. The peer may ask for
 *   {@link MAX_SESSION_IDS} ids at most, in increasing order.
 * - **Transfer.** Batches in flight are bounded by the window; an envelope larger than a batch
 *   goes in parts (`EVENT_PART`), each acknowledged, the whole envelope held against a byte
 *   budget shared by all sessions. So every envelope the engine accepts can be sent, and a large
 *   one never holds back the events after it.
 * - **End.** A side sends `END` (with its status) once everything it sends is acknowledged and
 *   everything it asked for is stored (or the peer's `END` came first): the two final statuses then
 *   include the whole transfer, and two peers that differed by a few events are synced after one
 *   session, not two.
 *
 * Errors thrown out of {@link SessionRun.run} are classified by the replicator (src/net/faults.ts):
 * a send that fails on our side is a `CLOSED` error, never the peer's fault.
 */
import { type CutoffState, compareCutoffs } from '../core/cutoff.js';
import type { WAITING_COUNT, WAITING_NEW } from '../core/database-contract.js';
import { DEFAULT_ENVELOPE_LIMITS, firstDamagedEnvelope, storedEnvelopeDamage } from '../core/envelope.js';
import { compareIdBytes, MessageId } from '../core/message-id.js';
import { ErrorCode, NoatunError } from '../errors.js';
import { FULL_COPY_WINDOW_MS, MAX_FULL_COPIES, MAX_RECONCILE_BYTES, MAX_SESSION_IDS, MIN_COPY_EVENTS, MIN_DEFER_MESSAGE_BYTES } from './constants.js';
import { LimitError, SessionTimeoutError } from './faults.js';
import { type FingerprintIndex, timeBound } from './fingerprint-index.js';
import {
  ackFrame,
  bytesFrame,
  decodeFrame,
  EVENT_PART_HEADER_BYTES,
  eventPartFrame,
  eventsFrame,
  eventsFrameStarts,
  type Frame,
  FrameType,
  MAX_IDS_PER_FRAME,
  ProtocolError,
  type Status,
  statusFrame,
  wantFrame,
} from './frames.js';
import { IdQueue, MergedIds, RangeCursor, SortedIds } from './id-queue.js';
import { MAX_FRAME_BYTES, type Session } from './link.js';
import type { PeerRecord } from './peer-table.js';
import { type ReconcileOptions, Reconciler } from './reconcile.js';
import { type ByteBudget, maxReconcileRounds } from './session-limits.js';

/**
 * Batches of a session whose commits may be in flight at once: while one waits for the disk, the
 * next is decoded and projected. More buys nothing (the projection is the limit, on one thread)
 * and would let a slow disk fall further behind.
 */
const MAX_INGESTS_IN_FLIGHT = 2;
/** Bytes of a session's first EVENTS frame (later ones fill `batchBytes`): it leaves at once. */
const FIRST_BATCH_BYTES = 32 * 1024;

/**
 * The largest envelope the engine accepts with its default limits, in wire form: version, id,
 * salt, parent count, the parents, payload size, payload (src/core/envelope.ts).
 */
export const DEFAULT_MAX_ENVELOPE_BYTES = 1 + 16 + 8 + 2 + DEFAULT_ENVELOPE_LIMITS.maxParents * 16 + 4 + DEFAULT_ENVELOPE_LIMITS.maxPayloadBytes;

/** What a stored event looks like to the replicator. */
export interface ReplicatedMessage {
  readonly id: MessageId;
  /** The envelope's wire form, as `ingest` accepts it. */
  readonly bytes: Uint8Array;
}

/** What `ingest` reports (a `Database`'s `IngestResult` has these and more). */
export interface ReplicatedIngestResult {
  /** Newly stored events. */
  readonly stored: number;
  /** Parked events (from earlier batches) stored because this batch brought their parents. */
  readonly unparked: number;
  /** Events waiting for their parents. */
  readonly parked: number;
  /**
   * Events refused for being dated too far ahead of our clock (an engine with a time window
   * reports them; the sender's clock is off, which is not a fault).
   */
  readonly future?: number;
  /** Events that wait in memory for their turn to be stored (see `ReplicatedDatabase`). */
  readonly deferred?: number;
}

/** Options of an ingest on behalf of a peer. */
export interface ReplicatedIngestOptions {
  /** The peer the batch came from, so the engine can bound what it keeps per peer (parking). */
  readonly peer?: string;
}

/** What the replicator needs of a database (every `Database` has it). */
export interface ReplicatedDatabase {
  ids(): Iterable<Uint8Array>;
  subscribe(listener: {
    stored?(events: readonly { readonly id: MessageId; readonly bytes: Uint8Array; readonly local: boolean }[]): void;
    removed?(ids: readonly Uint8Array[]): void;
  }): () => void;
  cutoffState(): CutoffState;
  readonly cutoffStrideMs: number;
  /**
   * Moves the cutoff to where the clock says it should be, or to `to`, a stride boundary at most
   * one stride past that (a peer one stride ahead: see the replicator's status comparison).
   */
  advanceCutoff(to?: number): void;
  ingest(batch: Iterable<Uint8Array>, options?: ReplicatedIngestOptions): Promise<ReplicatedIngestResult>;
  message(id: MessageId): ReplicatedMessage | undefined;
  /**
   * The largest envelope (wire form) the engine accepts. Without it, the engine's default limits
   * are assumed (`DEFAULT_MAX_ENVELOPE_BYTES`).
   */
  readonly maxEnvelopeBytes?: number;
  /** The peer went away: what the engine keeps on its behalf (parked events) may go. */
  peerLeft?(peerId: string): void;
  /** Whether the database is closed (then replication stops). */
  readonly closed?: boolean;
  /**
   * How many received events wait in memory for their turn (costly late work) before they are
   * stored. A replicator does not start a session while they wait.
   */
  [WAITING_COUNT]?(): number;
  /**
   * The ids of those that began to wait since the last call: a replicator counts them as held (in
   * its index), or every session until they are stored would ask the peer for them again.
   */
  [WAITING_NEW]?(): Iterable<Uint8Array>;
}

/** Settings of the sessions of one replicator. */
export interface SessionConfig {
  readonly batchBytes: number;
  readonly window: number;
  readonly reconcile: ReconcileOptions;
  readonly idleMs: number;
  readonly deadlineMs: number;
  readonly maxEnvelopeBytes: number;
}

/** What a session needs from the replicator running it. */
export interface SessionHost {
  readonly db: ReplicatedDatabase;
  readonly index: FingerprintIndex;
  readonly config: SessionConfig;
  /** Bytes of large envelopes held by all sessions (received or being sent). */
  readonly largeEvents: ByteBudget;
  /** Our status over the events at or after `lowerTime` (default: our cutoff). */
  status(lowerTime?: number): Status;
  /**
   * A stored event a peer asked for is damaged on disk (its bytes do not match its id): it was
   * not sent, as the peer would refuse it as forged. Ours to report, not the peer's fault.
   */
  damaged(id: MessageId, error: NoatunError): void;
  /** An ingest left events waiting to be stored: they count as held (see {@link ReplicatedDatabase}). */
  holdWaiting(): void;
}

/** How a session ended. */
export interface SessionResult {
  /** The peer's status at its `END`. */
  readonly final: Status;
  /** The reconciliation ended at a limit of ours before the differences were all found. */
  readonly cut: boolean;
}

/** Whether a status says its peer stores no event at all (nothing after its cutoff, none before). */
export function holdsNothing(status: Status): boolean {
  return status.count === 0 && status.cutoffHash.every((b) => b === 0) && status.previousHash.every((b) => b === 0);
}

/** A status's cutoff part. */
export function toCutoffState(status: Status): CutoffState {
  return { time: status.cutoffTime, hash: status.cutoffHash, previousTime: status.previousTime, previousHash: status.previousHash };
}

/** An envelope being received in parts. */
interface Assembly {
  readonly buffer: Uint8Array;
  filled: number;
}

/** An envelope being sent in parts. */
interface Outgoing {
  readonly bytes: Uint8Array;
  sent: number;
}

/** The state of one session. */
export class SessionRun {
  readonly #host: SessionHost;
  readonly #peer: PeerRecord;
  readonly #session: Session;
  readonly #initiator: boolean;
  readonly #frames: AsyncIterator<Uint8Array>;
  #sending: Promise<void> = Promise.resolve();
  #sendError: NoatunError | undefined;
  /** Acknowledgements go out in the order of the frames they acknowledge. */
  #acks: Promise<void> = Promise.resolve();
  /** Expected count of the `ACK` of each frame in flight, oldest first. */
  readonly #inFlight: number[] = [];
  #reconciled = false;
  #cut = false;
  /** What the reconciliation found: ids the peer lacks, and ids we lack. */
  readonly #have = new IdQueue();
  /**
   * `#have` once the reconciliation is over, in order: sent from there, and asked of us in vain.
   * Both sides learn every difference, so the peer asks for ids we send anyway: each is sent once.
   */
  #haveSorted: SortedIds | undefined;
  readonly #need = new IdQueue();
  /** The ids the peer asked for, in increasing order. */
  readonly #wanted = new IdQueue();
  #wantedTotal = 0;
  #lastWanted: Uint8Array | undefined;
  /** Everything to send, in increasing id order: found lacking, asked for, or a whole range. */
  readonly #toSend = new MergedIds();
  /** An envelope taken from the queue but not sent yet (it did not fit the batch, or waits for budget). */
  #held: ReplicatedMessage | undefined;
  #outgoing: Outgoing | undefined;
  #waitingForBudget = false;
  #incoming: Assembly | undefined;
  /** The first batch ingest refused (thrown by the session loop). */
  #ingestError: unknown;
  /** Ingests whose commits are not durable yet, oldest first (see {@link MAX_INGESTS_IN_FLIGHT}). */
  readonly #ingesting: Promise<unknown>[] = [];
  /** Our share of the peer's `expecting`: events we asked for in this session and still wait for. */
  #expecting = 0;
  #peerWantDone = false;
  #peerEnded = false;
  #endSent = false;
  #finished = false;
  /** EVENTS frames sent so far (the first is small: see {@link FIRST_BATCH_BYTES}). */
  #sentBatches = 0;
  /** A {@link #pump} is scheduled for the next turn. */
  #pumpScheduled = false;
  /** Since when we wait for the peer's next frame (undefined: not waiting). */
  #waitingSince: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  readonly #startedAt = Date.now();

  constructor(host: SessionHost, peer: PeerRecord, session: Session, initiator: boolean) {
    this.#host = host;
    this.#peer = peer;
    this.#session = session;
    this.#initiator = initiator;
    this.#frames = session[Symbol.asyncIterator]();
    this.#toSend.add(this.#wanted);
  }

  /** Queues a frame; a send that fails on our side ends the session as `CLOSED` (nobody's fault). */
  #send(frame: Uint8Array): void {
    this.#sending = this.#sending.then(
      () => this.#session.send(frame),
      () => {},
    );
    this.#sending.catch((error: unknown) => {
      this.#sendError ??= new NoatunError(ErrorCode.CLOSED, `sending to the peer failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    });
  }

  async #next(): Promise<Frame | undefined> {
    this.#waitingSince = Date.now();
    try {
      const result = await this.#frames.next();
      if (result.done) return undefined;
      return decodeFrame(result.value);
    } finally {
      this.#waitingSince = undefined;
    }
  }

  /** Watches the idle time and the deadline; aborting the session ends the read that waits. */
  #watch(): void {
    const { idleMs, deadlineMs } = this.#host.config;
    const check = (): void => {
      if (this.#finished) return;
      const now = Date.now();
      if (now - this.#startedAt >= deadlineMs) {
        this.#session.abort(new SessionTimeoutError(`the session ran past its deadline of ${deadlineMs} ms`));
        return;
      }
      if (this.#waitingSince !== undefined && now - this.#waitingSince >= idleMs) {
        this.#session.abort(new SessionTimeoutError(`the peer sent nothing for ${idleMs} ms`));
        return;
      }
      const idleLeft = this.#waitingSince === undefined ? idleMs : idleMs - (now - this.#waitingSince);
      this.#timer = setTimeout(check, Math.max(10, Math.min(idleLeft, deadlineMs - (now - this.#startedAt))));
      this.#timer.unref();
    };
    check();
  }

  /** Runs the session; returns the peer's final status. */
  async run(): Promise<SessionResult> {
    this.#watch();
    try {
      const final = await this.#exchange();
      return { final, cut: this.#cut };
    } catch (error) {
      await Promise.allSettled(this.#ingesting); // never leave a rejection unobserved
      throw error;
    } finally {
      this.#finished = true;
      clearTimeout(this.#timer);
      this.#expect(-this.#expecting); // whatever did not come will not come in this session
      if (this.#incoming !== undefined) this.#host.largeEvents.release(this.#incoming.buffer.length);
      if (this.#outgoing !== undefined) this.#host.largeEvents.release(this.#outgoing.bytes.length);
      this.#incoming = undefined;
      this.#outgoing = undefined;
    }
  }

  async #exchange(): Promise<Status> {
    const host = this.#host;
    const mine = host.status();
    this.#send(statusFrame(FrameType.HELLO, mine));
    const hello = await this.#next();
    if (hello === undefined) throw new NoatunError(ErrorCode.CLOSED, 'the peer closed the session');
    if (hello.type !== FrameType.HELLO) throw new ProtocolError(`expected HELLO, got frame type ${hello.type}`);
    // Both sides must compute the same lower bound from the same pair of HELLOs: ours as sent, not
    // our cutoff now, which may have moved while the peer's HELLO was on its way (the simulator's
    // seed 5007: the two sides reconciled different ranges and refused each other).
    const ours = toCutoffState(mine);
    const theirs = hello.status;
    const cutoffs = compareCutoffs(ours, toCutoffState(theirs), host.db.cutoffStrideMs);
    // All ids when the finalized pasts differ.
    const lower = cutoffs === 'differ' ? null : timeBound(Math.max(ours.time, theirs.cutoffTime));
    const reconciler = new Reconciler(host.index, { ...host.config.reconcile, range: [lower, null] });
    const maxRounds = maxReconcileRounds(host.index.count(lower, null) + theirs.count);
    let rounds = 0;
    let reconcileBytes = 0;
    if (holdsNothing(mine) || holdsNothing(theirs)) {
      // An empty side (a new peer's initial copy): both sides see it in the HELLOs and skip
      // reconciling, which would only list every id of the full side to it and back again as
      // WANTs (3.2 MB and five round trips for 100k events). The full side sends its whole range,
      // read from the index as it goes.
      if (holdsNothing(theirs)) this.#toSend.add(new RangeCursor(host.index, lower, null));
      else this.#expect(theirs.count); // an estimate for progress: events before their cutoff are not counted
      this.#afterReconcile();
    } else if (this.#initiator) this.#send(bytesFrame(FrameType.RECONCILE, reconciler.initiate()));
    let final: Status | undefined;
    for (;;) {
      if (this.#sendError !== undefined) throw this.#sendError;
      if (this.#ingestError !== undefined) throw this.#ingestError;
      let frame: Frame | undefined;
      try {
        frame = await this.#next();
      } catch (error) {
        // A refused batch aborts the session (below), which ends this read: report the batch.
        throw this.#ingestError ?? error;
      }
      if (this.#ingestError !== undefined) throw this.#ingestError;
      if (frame === undefined) {
        if (final !== undefined && this.#endSent) break;
        throw new NoatunError(ErrorCode.CLOSED, 'the peer closed the session early');
      }
      switch (frame.type) {
        case FrameType.RECONCILE: {
          if (this.#reconciled) throw new ProtocolError('RECONCILE after the reconciliation ended');
          if (frame.message.length === 0) {
            this.#afterReconcile();
            break;
          }
          rounds++;
          reconcileBytes += frame.message.length;
          if (rounds > maxRounds || reconcileBytes > MAX_RECONCILE_BYTES) {
            this.#endReconcile(`${rounds} reconciliation messages (${reconcileBytes} bytes)`);
            break;
          }
          // An honest side defers with a small message only to keep clear of a range we deferred.
          const weDeferred = reconciler.deferring;
          const step = reconciler.respond(frame.message);
          if (step.peerDeferred && !weDeferred && frame.message.length < MIN_DEFER_MESSAGE_BYTES) {
            throw new ProtocolError(`a reconciliation message of ${frame.message.length} bytes deferred the rest (under ${MIN_DEFER_MESSAGE_BYTES})`);
          }
          this.#learn(step.have, this.#have);
          this.#learn(step.need, this.#need);
          if (step.reply === null) {
            this.#send(bytesFrame(FrameType.RECONCILE, new Uint8Array(0)));
            this.#afterReconcile();
          } else if (this.#have.length >= MAX_SESSION_IDS || this.#need.length >= MAX_SESSION_IDS || reconciler.pending > MAX_SESSION_IDS) {
            this.#endReconcile(`${this.#have.length + this.#need.length} differences and ${reconciler.pending} open questions`);
          } else this.#send(bytesFrame(FrameType.RECONCILE, step.reply));
          break;
        }
        case FrameType.WANT:
          if (this.#peerWantDone) throw new ProtocolError('WANT after the last WANT');
          this.#takeWants(frame.ids);
          if (frame.ids.length < MAX_IDS_PER_FRAME) this.#peerWantDone = true;
          break;
        case FrameType.EVENTS:
          if (this.#incoming !== undefined) throw new ProtocolError('EVENTS inside an envelope sent in parts');
          // Never sent by an honest side; a peer that sent them every few seconds kept a session
          // (and its slot) open until the deadline, half an hour, at 5 bytes a frame.
          if (frame.envelopes.length === 0) throw new ProtocolError('an EVENTS frame without events');
          await this.#ingest(frame.envelopes, frame.envelopes.length);
          break;
        case FrameType.EVENT_PART:
          await this.#receivePart(frame);
          break;
        case FrameType.ACK: {
          const expected = this.#inFlight.shift();
          if (expected === undefined) throw new ProtocolError('ACK with nothing in flight');
          if (frame.count !== expected) throw new ProtocolError(`ACK of ${frame.count} events for a frame of ${expected}`);
          break;
        }
        case FrameType.END:
          if (final !== undefined) throw new ProtocolError('a second END');
          if (this.#incoming !== undefined) throw new ProtocolError('END inside an envelope sent in parts');
          // The status compared against ours must include every batch before END.
          await this.#settleIngests();
          final = frame.status;
          this.#peerEnded = true;
          break;
        default:
          throw new ProtocolError(`frame type ${frame.type} is not a session frame`);
      }
      this.#pump();
      if (final !== undefined && this.#endSent) break;
    }
    const { bytesSent, bytesReceived, messagesSent, messagesReceived } = reconciler.stats;
    this.#peer.reconcileBytes += bytesSent + bytesReceived;
    this.#peer.reconcileMessages += messagesSent + messagesReceived;
    await this.#sending;
    await this.#acks;
    if (this.#sendError !== undefined) throw this.#sendError;
    await this.#session.close();
    return final!;
  }

  /**
   * Takes `count` events to send from the peer's budget: {@link MAX_FULL_COPIES} copies of what
   * we hold (at least {@link MIN_COPY_EVENTS} events each) per {@link FULL_COPY_WINDOW_MS},
   * refilled evenly over the window. Over it, the session ends (`CLOSED`, nobody's fault: the
   * peer may ask again later).
   */
  #spend(count: number): void {
    const peer = this.#peer;
    const now = Date.now();
    const capacity = MAX_FULL_COPIES * Math.max(MIN_COPY_EVENTS, this.#host.index.count(null, null));
    const refilled = peer.copyBudgetAt === 0 ? capacity : peer.copyBudget + (capacity * (now - peer.copyBudgetAt)) / FULL_COPY_WINDOW_MS;
    const left = Math.min(capacity, refilled) - count;
    if (left < 0) {
      throw new NoatunError(
        ErrorCode.CLOSED,
        `the peer was sent ${MAX_FULL_COPIES} copies' worth of our events within ${FULL_COPY_WINDOW_MS / 60_000} minutes; it may ask again later`,
      );
    }
    peer.copyBudget = left;
    peer.copyBudgetAt = now;
  }

  /** Adds ids learned in reconciliation to a queue, up to the session's bound. */
  #learn(ids: readonly Uint8Array[], queue: IdQueue): void {
    for (const id of ids) {
      if (queue.length >= MAX_SESSION_IDS) {
        this.#cut = true;
        return;
      }
      queue.push(id);
    }
  }

  /**
   * Ends the reconciliation at a bound of ours: with something learned, both sides act on it and
   * the next session continues; with nothing learned the peer is keeping us busy for nothing.
   */
  #endReconcile(what: string): void {
    if (this.#have.length + this.#need.length === 0) throw new LimitError(`the reconciliation found nothing in ${what}`);
    this.#cut = true;
    this.#send(bytesFrame(FrameType.RECONCILE, new Uint8Array(0)));
    this.#afterReconcile();
  }

  /** Queues ids the peer asked for: increasing across the session, at most {@link MAX_SESSION_IDS}. */
  #takeWants(ids: readonly Uint8Array[]): void {
    this.#wantedTotal += ids.length;
    if (this.#wantedTotal > MAX_SESSION_IDS) throw new LimitError(`the peer asked for more than ${MAX_SESSION_IDS} events in one session`);
    for (const id of ids) {
      if (this.#lastWanted !== undefined && compareIdBytes(this.#lastWanted, id) >= 0) throw new ProtocolError('WANT ids are not increasing');
      this.#lastWanted = id;
      // (Merging the two queues caught only an id at the head of both: one the peer asked for
      // after we had sent it went out twice, 27% of an initial copy to a peer holding one event.)
      if (this.#haveSorted?.has(id)) continue;
      this.#wanted.push(id);
    }
  }

  /**
   * Ingests a batch (one frame's envelopes, or one envelope assembled from parts) and acknowledges
   * it once durable. The batch is applied now (ingest's synchronous part); its durable commit
   * overlaps the next batch's decoding and projection. Acknowledging after the commit also bounds
   * how far the sender runs ahead. Returns the oldest ingest in flight when there are
   * {@link MAX_INGESTS_IN_FLIGHT}, for the caller to wait for.
   */
  #ingest(envelopes: Uint8Array[], count: number, release?: () => void): Promise<unknown> | undefined {
    const peer = this.#peer;
    peer.received += count;
    const ingested = this.#host.db.ingest(envelopes, { peer: peer.peerId }).then((result) => {
      peer.stored += result.stored;
      if ((result.deferred ?? 0) > 0) this.#host.holdWaiting();
      this.#expect(-Math.min(count, this.#expecting));
      // The last event we asked for may be what our END waited on.
      if (this.#expecting === 0 && !this.#finished) {
        try {
          this.#pump();
        } catch (error) {
          this.#session.abort(error instanceof Error ? error : new Error(String(error)));
        }
      }
    });
    if (release !== undefined) void ingested.then(release, release);
    // Never rejects: a refused batch is reported through #ingestError.
    this.#acks = this.#acks
      .then(() => ingested)
      .then(() => this.#send(ackFrame(count)))
      .catch(() => {});
    // A refused batch (a forged or malformed envelope: the peer's fault) must end the session now,
    // not when its promise is next awaited: the loop may be waiting for a frame the peer never
    // sends (found by the security test once sessions with an empty side skipped reconciling).
    ingested.catch((error: unknown) => {
      this.#ingestError ??= error;
      this.#session.abort(error instanceof Error ? error : new Error(String(error)));
    });
    this.#ingesting.push(ingested);
    // (Not an async function, which would hold the batch while it waits: see Database.ingest.)
    return this.#ingesting.length >= MAX_INGESTS_IN_FLIGHT ? this.#ingesting.shift() : undefined;
  }

  /** Takes one piece of an envelope sent in parts; the last one is ingested. */
  async #receivePart(frame: Frame & { readonly type: typeof FrameType.EVENT_PART }): Promise<void> {
    let incoming = this.#incoming;
    if (incoming === undefined) {
      if (frame.offset !== 0) throw new ProtocolError(`the first part of an envelope at offset ${frame.offset}`);
      const limit = this.#host.config.maxEnvelopeBytes;
      if (frame.total > limit) throw new LimitError(`an envelope of ${frame.total} bytes (limit ${limit})`);
      await this.#reserve(frame.total);
      incoming = { buffer: new Uint8Array(frame.total), filled: 0 };
      this.#incoming = incoming;
    } else if (frame.total !== incoming.buffer.length || frame.offset !== incoming.filled) {
      throw new ProtocolError(`a part at ${frame.offset} of ${frame.total} bytes where ${incoming.filled} of ${incoming.buffer.length} were expected`);
    }
    incoming.buffer.set(frame.bytes, frame.offset);
    incoming.filled += frame.bytes.length;
    if (incoming.filled < incoming.buffer.length) {
      this.#acks = this.#acks.then(() => this.#send(ackFrame(0)));
      return;
    }
    this.#incoming = undefined;
    const size = incoming.buffer.length;
    await this.#ingest([incoming.buffer], 1, () => this.#host.largeEvents.release(size));
  }

  /** Waits for room in the large-envelope budget, at most the idle time (then ends, nobody's fault). */
  async #reserve(bytes: number): Promise<void> {
    const budget = this.#host.largeEvents;
    const until = Date.now() + this.#host.config.idleMs;
    while (!budget.tryTake(bytes)) {
      const left = until - Date.now();
      if (left <= 0 || this.#finished) throw new SessionTimeoutError(`no room for an envelope of ${bytes} bytes`);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([budget.whenReleased(), new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  }

  /** Waits for every ingest in flight; the first failure is thrown. */
  async #settleIngests(): Promise<void> {
    while (this.#ingesting.length !== 0) await this.#ingesting.shift();
  }

  /** Adds `delta` to this session's and the peer's count of events still expected. */
  #expect(delta: number): void {
    this.#expecting += delta;
    this.#peer.expecting += delta;
  }

  #afterReconcile(): void {
    this.#reconciled = true;
    const need = this.#need;
    this.#expect(need.length);
    // The ids go out in increasing order (WANT must be); reconciliation found them range by range.
    need.sortUnique();
    this.#have.sortUnique();
    // Sent only now: during the reconciliation the ids come range by range, not in order.
    this.#haveSorted = new SortedIds(this.#have);
    this.#toSend.add(this.#haveSorted);
    for (;;) {
      const ids: Uint8Array[] = [];
      while (ids.length < MAX_IDS_PER_FRAME && need.length > 0) ids.push(need.shift()!);
      // The last WANT holds fewer than the maximum (possibly none): it tells the peer we are done.
      this.#send(wantFrame(ids));
      if (ids.length < MAX_IDS_PER_FRAME) break;
    }
  }

  /** The next envelope to send, in id order, or undefined when nothing is left. */
  #nextMessage(): ReplicatedMessage | undefined {
    if (this.#held !== undefined) {
      const held = this.#held;
      this.#held = undefined;
      return held;
    }
    for (let id = this.#toSend.shift(); id !== undefined; id = this.#toSend.shift()) {
      const message = this.#host.db.message(MessageId.fromBytes(id));
      if (message === undefined) continue; // pruned or removed meanwhile
      // Over the envelope limit (stored before the engine refused such appends): every peer would
      // refuse it, and us with it. It stays here.
      if (message.bytes.length > this.#host.config.maxEnvelopeBytes) continue;
      return message;
    }
    return undefined;
  }

  /**
   * The `EVENTS` frame of `batch` (which it may shorten), its envelopes checked against their ids
   * first — what the peer does on receipt: a copy damaged on our disk would have the peer refuse
   * us for a while as a forger, at every session. A damaged one is left out and reported (ours to
   * mend, see SessionHost.damaged). Undefined when none is left.
   */
  #checkedFrame(batch: Uint8Array[]): Uint8Array | undefined {
    for (;;) {
      if (batch.length === 0) return undefined;
      const frame = eventsFrame(batch);
      const bad = firstDamagedEnvelope(
        frame,
        eventsFrameStarts(batch),
        batch.map((envelope) => envelope.length),
      );
      if (bad < 0) return frame;
      const [damaged] = batch.splice(bad, 1);
      const error = storedEnvelopeDamage(damaged!) ?? new NoatunError(ErrorCode.FORGED_ID, 'its id is not its content hash');
      this.#host.damaged(MessageId.fromBytes(damaged!.subarray(1, 17)), error);
    }
  }

  /** Runs {@link #pump} again on the next turn of the event loop (once, however often asked). */
  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      if (this.#finished) return;
      try {
        this.#pump();
      } catch (error) {
        this.#session.abort(error instanceof Error ? error : new Error(String(error)));
      }
    });
  }

  /** Sends batches and parts while the window allows; sends END once everything is sent and acknowledged. */
  #pump(): void {
    const { batchBytes, window } = this.#host.config;
    const peer = this.#peer;
    while (this.#inFlight.length < window && !this.#waitingForBudget) {
      if (this.#outgoing !== undefined) {
        this.#sendPart(this.#outgoing, batchBytes);
        continue;
      }
      const batch: Uint8Array[] = [];
      let bytes = 0;
      // The first batch is small, so that the peer has something to store at once.
      const limit = this.#sentBatches === 0 ? Math.min(batchBytes, FIRST_BATCH_BYTES) : batchBytes;
      while (batch.length < MAX_IDS_PER_FRAME && bytes < limit) {
        const message = this.#nextMessage();
        if (message === undefined) break;
        if (message.bytes.length > batchBytes) {
          // Too large for a batch: it goes in parts, after the batch so far (id order is kept).
          this.#held = message;
          break;
        }
        batch.push(message.bytes);
        bytes += message.bytes.length;
      }
      if (batch.length !== 0) {
        const frame = this.#checkedFrame(batch);
        if (frame === undefined) continue;
        this.#spend(batch.length);
        this.#send(frame);
        this.#inFlight.push(batch.length);
        peer.sent += batch.length;
        this.#sentBatches++;
        // Let the frame leave before reading the next batch: the peer starts on it meanwhile
        // (building the whole window at once held the first frame back by tens of ms).
        if (this.#inFlight.length < window) {
          this.#schedulePump();
          return;
        }
        continue;
      }
      const large = this.#held;
      if (large === undefined) break;
      if (!this.#host.largeEvents.tryTake(large.bytes.length)) {
        // Try again when a session gives budget back; the deadline still bounds the wait.
        this.#waitingForBudget = true;
        void this.#host.largeEvents
          .whenReleased()
          .then(() => {
            this.#waitingForBudget = false;
            if (!this.#finished) this.#pump();
          })
          .catch((error: unknown) => this.#session.abort(error instanceof Error ? error : new Error(String(error))));
        break;
      }
      this.#held = undefined;
      const damage = storedEnvelopeDamage(large.bytes);
      if (damage !== undefined) {
        this.#host.largeEvents.release(large.bytes.length);
        this.#host.damaged(large.id, damage);
        continue;
      }
      // (One event of the budget, however large: the budget counts events.)
      try {
        this.#spend(1);
      } catch (error) {
        this.#host.largeEvents.release(large.bytes.length);
        throw error;
      }
      this.#outgoing = { bytes: large.bytes, sent: 0 };
      peer.sent++;
    }
    if (
      !this.#endSent &&
      this.#reconciled &&
      this.#peerWantDone &&
      this.#held === undefined &&
      this.#outgoing === undefined &&
      this.#toSend.empty &&
      this.#inFlight.length === 0 &&
      // Our END carries our status: once what we asked for is stored, it is the one the peer's
      // END will match (sent earlier, it would not be, and the peer would sync again). If the
      // peer cannot send it all (pruned meanwhile), its END comes first.
      (this.#expecting === 0 || this.#peerEnded)
    ) {
      this.#endSent = true;
      this.#send(statusFrame(FrameType.END, this.#host.status()));
    }
  }

  /** Sends the next part of an envelope too large for a batch. */
  #sendPart(outgoing: Outgoing, batchBytes: number): void {
    const total = outgoing.bytes.length;
    const size = Math.min(batchBytes, MAX_FRAME_BYTES - EVENT_PART_HEADER_BYTES, total - outgoing.sent);
    this.#send(eventPartFrame(total, outgoing.sent, outgoing.bytes.subarray(outgoing.sent, outgoing.sent + size)));
    outgoing.sent += size;
    const last = outgoing.sent === total;
    this.#inFlight.push(last ? 1 : 0);
    if (last) {
      this.#outgoing = undefined;
      this.#host.largeEvents.release(total);
    }
  }
}
