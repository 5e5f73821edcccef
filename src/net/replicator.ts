/**
 * The replicator: keeps a database's events in step with the peers of its swarm.
 *
 * - **The relay** (src/net/relay.ts). Events committed locally are pushed at once to every
 *   neighbour over the link's direct channel — those of one turn of the event loop together, in
 *   frames of up to `gossipEventBytes` (a larger event goes by session: the status changes
 *   instead). A peer that receives an event new to it offers its id to its other neighbours,
 *   which ask for it if they lack it. A peer that receives an event whose parents it lacks syncs
 *   with the neighbour it came from, unless they arrive first.
 * - **Status.** A status is a peer's cutoff with the hash of its finalized past, and the count and
 *   fingerprint of its events after the cutoff; a peer whose own status (over the same range) is
 *   equal knows it is in sync. Statuses go to neighbours (connected peers) only: every
 *   `statusIntervalMs` as a keepalive, and soon after ours changed. When new events were stored,
 *   the status is relayed through the swarm once (so peers that are not neighbours learn that we
 *   are in sync with them), and `syncedWith` a peer that is not a neighbour asks every peer for
 *   its status the same way. An idle swarm sends each peer's status to its neighbours only, so
 *   what a peer sends does not grow with the swarm (docs/REPLICATION.md).
 * - **Sessions** (src/net/session.ts). When statuses differ (or on connect), a session reconciles
 *   the two sets and each side sends what the other lacks. Equal final statuses mean synced;
 *   otherwise the peer `differs` (with the reason) and the next session waits a delay that
 *   doubles up to a cap until the two agree: a replicator never spins on a difference that
 *   does not go away (sets that legitimately differ, clocks that drift apart).
 * - **Faults** (src/net/faults.ts). Every handler (gossip, sessions, timers, link events) catches
 *   what it meets: a peer that breaks the protocol or a limit is refused for a while, a lost link
 *   is retried with a backoff, and our own failures are reported (`failure` event, `peers()`),
 *   never blamed on the peer and never thrown out of a handler.
 * - **Limits** (src/net/constants.ts): sessions in all and per peer, strangers among the connected
 *   peers, the size of every table and queue. **Links heal** (src/net/redial.ts): bootstrap peers
 *   and peers worth keeping are re-dialled after a disconnect.
 */
import { type CutoffComparison, compareCutoffs } from '../core/cutoff.js';
import { WAITING_COUNT, WAITING_NEW } from '../core/database-contract.js';
import { decodeEnvelope } from '../core/envelope.js';
import { ErrorCode, NoatunError, refuseUnknownOptions } from '../errors.js';
import { describeValue } from '../view/composite.js';
import { Backoff } from './backoff.js';
import { CONNECT_SESSION_GRACE_MS, MAX_GOSSIP_FRAME_BYTES, MAX_RELAY_COPIES, RELAY_COPY_WINDOW_MS } from './constants.js';
import { asNoatunError, describe, faultOf, LimitError } from './faults.js';
import { FingerprintIndex, timeBound } from './fingerprint-index.js';
import { decodeFrame, FrameType, ProtocolError, peerStatusFrame, type Status } from './frames.js';
import { GossipQueue } from './gossip-queue.js';
import type { Libp2pLinkOptions } from './libp2p-link.js';
import { type ConnectionDirection, type GossipVerdict, type Link, MAX_DIRECT_FRAME_BYTES, type Session } from './link.js';
import { type PeerInfo, type PeerRecord, PeerTable, peerInfo, type SyncWaiter } from './peer-table.js';
import { Redialer } from './redial.js';
import { Relay, relayFrameBytes } from './relay.js';
import { type ReplicatorOptions, type ResolvedReplicatorOptions, resolveReplicatorOptions } from './replicator-options.js';
import { DEFAULT_MAX_ENVELOPE_BYTES, type ReplicatedDatabase, type SessionHost, SessionRun, toCutoffState } from './session.js';
import { ByteBudget, SessionLimits } from './session-limits.js';

export type { PeerInfo, PeerState } from './peer-table.js';
export type { ReplicatorOptions } from './replicator-options.js';
export type { ReplicatedDatabase, ReplicatedIngestOptions, ReplicatedIngestResult, ReplicatedMessage } from './session.js';

/** Events of a replicator about a peer (detail: `{ peerId, reason? }`). */
export type ReplicatorEvent = CustomEvent<{ peerId: string; reason?: string }>;

/**
 * A bootstrap address that could not be dialled: nothing listens there, the peer refused us, or
 * it has another swarm key. Sent at the first failure, and again after the address had answered
 * and failed anew; the address is dialled again meanwhile.
 */
export type BootstrapUnreachable = CustomEvent<{ address: string; reason: string }>;

/** What the `failure` event reports: our own failure, while replicating with `peerId` if set. */
export interface ReplicatorFailure {
  readonly peerId?: string;
  readonly reason: string;
  readonly error: NoatunError;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Databases a replicator is running for. Two would each hold an index of the same log and answer
 * peers alike, at twice the cost, and the second's node would share its peer key.
 */
const replicating = new WeakSet<object>();

function refuseSecondReplicator(db: object): void {
  if (replicating.has(db)) {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, 'this database already has a running replicator: stop it first');
  }
}

/**
 * Keeps a database in sync with its swarm over a {@link Link}.
 *
 * Events: `peer:connect`, `peer:disconnect`, `peer:synced`, `peer:refused` (with the reason),
 * `peer:differs` (a session ended with statuses still different; with the reason),
 * `peer:clock-drift` (its cutoff is more than a stride from ours) — all {@link ReplicatorEvent};
 * `bootstrap:unreachable` ({@link BootstrapUnreachable}): a bootstrap address could not be
 * dialled (it is dialled again, with a backoff, until it answers); and `failure`
 * ({@link ReplicatorFailure}): something failed on our side.
 */
export class Replicator extends EventTarget {
  readonly #db: ReplicatedDatabase;
  readonly #link: Link;
  readonly #index: FingerprintIndex;
  readonly #peers: PeerTable;
  readonly #limits: SessionLimits;
  readonly #redialer: Redialer;
  /** Peers whose last session ended while events they sent waited to be stored (see {@link #afterLate}). */
  readonly #awaitingLate = new Set<string>();
  readonly #host: SessionHost;
  readonly #options: ResolvedReplicatorOptions;
  readonly #unsubscribe: () => void;
  readonly #timer: NodeJS.Timeout;
  /** The status publish waiting for the debounce, and whether it goes through the swarm. */
  #statusSoon: NodeJS.Timeout | undefined;
  /** Status after a change: to neighbours, and through the swarm (see #statusChanged). */
  readonly #neighbourStatus: Settle;
  readonly #swarmStatus: Settle;
  #statusRelay = false;
  #statusReplyWanted = false;
  /** When we last relayed our status through the swarm in reply to a request (ms), and the next. */
  #lastReplyAt = 0;
  #replyTimer: NodeJS.Timeout | undefined;
  /** The next request for far peers' statuses (see #askFarPeers). */
  #askTimer: NodeJS.Timeout | undefined;
  /** Sequence number of our status messages. */
  #statusSequence = 0;
  /** Local envelopes waiting for the end of this turn to be gossiped together. */
  #outgoing: Uint8Array[] = [];
  #outgoingBytes = 0;
  /** Pending `syncedWith` calls; see {@link Replicator.#holdOpen}. */
  #pendingWaits = 0;
  /** Gossiped envelopes waiting to be ingested. */
  readonly #gossipQueue = new GossipQueue();
  #gossipFlush: Promise<void> | undefined;
  readonly #sessions = new Set<Session>();
  /** How new events travel: pushed by their author, offered and pulled after (src/net/relay.ts). */
  readonly #relay: Relay;
  /** When the relay last brought us (or we published) a new event (ms). */
  #lastNewsAt = 0;
  #stopped = false;

  /**
   * Starts replicating `db` over `link` (a libp2p node, or an in-memory network in tests). Prefer
   * `Replicator.start` from `noatun/net` for a real node. Throws `INVALID_ARGUMENT` on an option
   * out of range.
   */
  constructor(db: ReplicatedDatabase, link: Link, options: ReplicatorOptions = {}) {
    super();
    this.#db = db;
    this.#link = link;
    // (The link's options too: `start` passes them all.)
    checkStartOptionNames(options, 'Replicator');
    const resolved = resolveReplicatorOptions(options);
    refuseSecondReplicator(db);
    this.#options = resolved;
    this.#index = FingerprintIndex.fromSorted(db.ids());
    this.#host = {
      db,
      index: this.#index,
      config: {
        batchBytes: resolved.batchBytes,
        window: resolved.window,
        reconcile: resolved.reconcile,
        idleMs: resolved.sessionIdleMs,
        deadlineMs: resolved.sessionDeadlineMs,
        maxEnvelopeBytes: db.maxEnvelopeBytes ?? DEFAULT_MAX_ENVELOPE_BYTES,
      },
      largeEvents: new ByteBudget(resolved.largeEventBytes),
      status: (lowerTime) => this.#status(lowerTime),
      damaged: (id, error) =>
        this.#report(
          new NoatunError(
            ErrorCode.CORRUPT_FILE,
            `stored event ${id} is damaged on disk (${error.message}): not sent. Its copy in the view is intact; db.compact() (a rebuild) drops it from the log, and peers that hold it send it again`,
            { cause: error },
          ),
          undefined,
        ),
      holdWaiting: () => this.#holdWaiting(),
    };
    const debounce = resolved.statusDebounceMs;
    this.#neighbourStatus = new Settle(debounce, 10 * debounce, () => this.#guard(() => this.#sendStatus(false, false)));
    this.#swarmStatus = new Settle(5 * debounce, 40 * debounce, () =>
      this.#guard(() => {
        // It reaches the neighbours too.
        this.#neighbourStatus.cancel();
        this.#sendStatus(true, false);
      }),
    );
    this.#relay = new Relay(
      {
        send: (peerId, frame) => {
          try {
            return link.sendDirect(peerId, frame);
          } catch {
            // The link's to say; a frame it cannot take is a frame lost.
            return false;
          }
        },
        holds: (id) => this.#index.has(id),
        sent: (peerId, count) => {
          const peer = this.#peers.get(peerId);
          if (peer !== undefined) peer.sent += count;
        },
      },
      { announceMs: resolved.relayAnnounceMs, wantMs: resolved.relayWantMs, frameBytes: Math.min(relayFrameBytes(resolved.gossipEventBytes), MAX_DIRECT_FRAME_BYTES) },
    );
    this.#limits = new SessionLimits(resolved.maxSessions, resolved.maxSessionsPerPeer);
    this.#peers = new PeerTable(() => new Backoff({ minMs: resolved.resyncMinMs, maxMs: resolved.resyncMaxMs }));
    this.#redialer = new Redialer(
      (address) => this.#dialTrusted(address),
      (peerId) => this.#peers.get(peerId)?.connected === true,
      resolved.redial,
      (address, error) => {
        const reason = error instanceof Error ? error.message : String(error);
        try {
          this.dispatchEvent(new CustomEvent('bootstrap:unreachable', { detail: { address, reason } }));
        } catch {
          // As for the peer events: a listener's failure does not stop the redials.
        }
      },
    );
    // Called inside the engine's commit: nothing may be thrown back into it.
    this.#unsubscribe = db.subscribe({
      stored: (events) =>
        this.#guard(() => {
          this.#index.expectInserts(events.length);
          for (let i = 0; i < events.length; i++) {
            const event = events[i]!;
            this.#index.insert(event.id.bytes);
            if (event.local) this.#publishEvent(event.bytes);
          }
          if (events.length !== 0) this.#statusChanged(true);
          if (this.#awaitingLate.size !== 0) this.#afterLate();
        }),
      removed: (ids) =>
        this.#guard(() => {
          for (const id of ids) this.#index.delete(id);
          if (ids.length !== 0) this.#statusChanged(false);
        }),
    });
    link.setGossipValidator((from, frame) => this.#validateGossip(from, frame));
    link.setAdmission((peerId, direction) => this.#admit(peerId, direction));
    link.onGossip((from, frame) => this.#guard(() => this.#onGossip(from, frame), from));
    link.onDirect({
      frame: (from, frame) => this.#guard(() => this.#onDirect(from, frame), from),
      fault: (from, error) => this.#guard(() => this.#refuse(from, error), from),
    });
    link.onPeer((event, peerId) => this.#guard(() => this.#onPeer(event, peerId), peerId));
    link.onSession((session) => void this.#run(session, false));
    this.#timer = setInterval(() => this.#guard(() => this.#tick()), resolved.statusIntervalMs);
    this.#timer.unref();
    for (const peerId of link.connectedPeers()) this.#guard(() => this.#onPeer('connect', peerId), peerId);
    for (const address of resolved.bootstrap) this.#redialer.addBootstrap(address);
    replicating.add(db);
  }

  /**
   * Starts a libp2p node (TCP, Noise, Yamux, Identify, Ping, gossipsub; bootstrap, opt-in mDNS,
   * optional private network and allow-list) and replicates `db` over it.
   *
   * @example
   * const node = await Replicator.start(db, { listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], topic: 'company' });
   * console.log(node.multiaddrs); // give one to the next peer's `bootstrap`
   */
  static async start(db: ReplicatedDatabase, options: Libp2pLinkOptions & ReplicatorOptions): Promise<Replicator> {
    // What can be refused is refused before the node starts: a node started for a replicator that
    // then refuses to be made listens on and keeps the process alive.
    checkStartOptionNames(options);
    resolveReplicatorOptions(options);
    if (db.closed === true) throw new NoatunError(ErrorCode.CLOSED, 'cannot replicate a closed database');
    refuseSecondReplicator(db);
    const { Libp2pLink } = await import('./libp2p-link.js');
    const link = await Libp2pLink.start(options);
    try {
      return new Replicator(db, link, options);
    } catch (error) {
      await link.stop().catch(() => {});
      throw error;
    }
  }

  /** Our peer id. */
  get peerId(): string {
    return this.#link.peerId;
  }

  /** The addresses we listen on, with `/p2p/<peerId>` (empty for in-memory links). */
  get multiaddrs(): string[] {
    return (this.#link as { multiaddrs?: string[] }).multiaddrs ?? [];
  }

  /**
   * Connects to the peer at `address` and resolves with its peer id; sync with it starts as with
   * any peer. `address` is a multiaddr for libp2p (`/p2p/<id>` optional: without it, whoever
   * answers is taken, its id authenticated by the handshake) or a peer id on the in-memory
   * network. The peer is remembered: it is re-dialled (at `address`) whenever it disconnects,
   * with a backoff doubling up to `redial.maxMs`, until it is refused or unreachable for an hour.
   * Rejects if nobody answers or the peer is refused (`CLOSED`, as once the node is stopped), or
   * `address` is not an address this node can dial (over libp2p: not TCP, or a `/p2p/` part that
   * is no peer id) or is this node's own (`INVALID_ARGUMENT`).
   *
   * @example
   * const peerId = await node.dial('/ip4/192.168.1.20/tcp/4001');
   * await node.syncedWith(peerId, { signal: AbortSignal.timeout(10_000) });
   */
  async dial(address: string): Promise<string> {
    if (this.#stopped) throw new NoatunError(ErrorCode.CLOSED, 'replicator stopped');
    const peerId = await this.#dialTrusted(address);
    this.#redialer.remember(peerId, address);
    return peerId;
  }

  /** Dials for a bootstrap address, a redial or a user: the peer is never counted as a stranger. */
  async #dialTrusted(address: string): Promise<string> {
    const peerId = await this.#link.dial(address);
    if (!this.#stopped) this.#peers.ensure(peerId).trusted = true;
    return peerId;
  }

  /**
   * What the relay (src/net/relay.ts) did: envelopes that reached us again though we had them
   * (`copies`), and ids asked of a second neighbour because the first did not send in time
   * (`retries`). For tests and diagnostics.
   */
  relayStats(): { copies: number; retries: number } {
    return { copies: this.#relay.copies, retries: this.#relay.retries };
  }

  /** Peers we know of, with their sync state (see {@link PeerInfo}). */
  peers(): PeerInfo[] {
    const now = Date.now();
    return [...this.#peers.values()].map((record) => peerInfo(record, now));
  }

  /**
   * Resolves once we and `peerId` hold the same events, as of a session with it that started after
   * the call (or, for a peer that is not a neighbour, its status asked for through the swarm):
   * what it held when the call was made, we hold then. Starts a sync with it at once. Rejects
   * with the signal's reason when `signal` aborts, and with `CLOSED` when the replicator stops
   * first.
   */
  syncedWith(peerId: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.#stopped) {
        reject(new NoatunError(ErrorCode.CLOSED, 'replicator stopped'));
        return;
      }
      // A call that could never settle is refused instead (it waited for its signal, or forever,
      // and the peer table kept an entry for whatever it was given).
      const wrong = this.#wrongSyncArguments(peerId, options);
      if (wrong !== undefined) {
        reject(wrong);
        return;
      }
      const signal = options.signal;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      // In sync with itself, always.
      if (peerId === this.peerId) {
        resolve();
        return;
      }
      const peer = this.#peers.ensure(peerId);
      const done = (error?: Error) => {
        signal?.removeEventListener('abort', onAbort);
        this.#holdOpen(-1);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = () => {
        peer.waiters = peer.waiters.filter((w) => w !== waiter);
        this.#holdOpen(-1);
        reject(signal!.reason);
      };
      const waiter: SyncWaiter = { settle: done, after: peer.sessionsStarted };
      signal?.addEventListener('abort', onAbort, { once: true });
      peer.waiters.push(waiter);
      this.#holdOpen(1);
      // Not a neighbour: its status comes through the swarm, when it is asked for.
      if (!peer.connected) this.#askFarPeers(250);
      // Asked for by the application: now, whatever the backoff says.
      this.#schedule(peer, 0, true);
    });
  }

  /** Why `syncedWith(peerId, options)` cannot be answered, or undefined. */
  #wrongSyncArguments(peerId: unknown, options: unknown): NoatunError | undefined {
    if (typeof peerId !== 'string' || peerId === '') {
      return new NoatunError(ErrorCode.INVALID_ARGUMENT, `syncedWith takes a peer id, got ${describeValue(peerId)}`);
    }
    try {
      this.#link.checkPeerId?.(peerId, 'syncedWith');
    } catch (error) {
      return asNoatunError(error);
    }
    if (options === null || typeof options !== 'object') {
      return new NoatunError(ErrorCode.INVALID_ARGUMENT, `syncedWith takes options { signal }, got ${describeValue(options)}`);
    }
    const signal = (options as { signal?: unknown }).signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      return new NoatunError(ErrorCode.INVALID_ARGUMENT, `syncedWith's signal must be an AbortSignal, got ${describeValue(signal)}`);
    }
    return undefined;
  }

  /**
   * Counts pending `syncedWith` calls. The status timer is unref'd so an idle replicator never
   * keeps the process alive, but while somebody awaits a sync it must: otherwise the event loop
   * may empty between two status rounds and the awaited promise would never settle.
   */
  #holdOpen(delta: number): void {
    this.#pendingWaits += delta;
    if (this.#pendingWaits > 0) this.#timer.ref();
    else this.#timer.unref();
  }

  /** Stops replicating (the database stays open); ends sessions and leaves the swarm. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    replicating.delete(this.#db);
    clearInterval(this.#timer);
    clearTimeout(this.#statusSoon);
    this.#neighbourStatus.cancel();
    this.#swarmStatus.cancel();
    clearTimeout(this.#replyTimer);
    clearTimeout(this.#askTimer);
    this.#outgoing = [];
    this.#relay.stop();
    this.#unsubscribe();
    this.#redialer.stop();
    const stopped = new NoatunError(ErrorCode.CLOSED, 'replicator stopped');
    for (const peer of this.#peers.values()) {
      clearTimeout(peer.timer);
      peer.timer = undefined;
      for (const waiter of peer.waiters.splice(0)) waiter.settle(stopped);
    }
    for (const session of this.#sessions) session.abort(new NoatunError(ErrorCode.CLOSED, 'replicator stopped'));
    await this.#gossipFlush;
    await this.#link.stop();
    // What `peers()` says from now on: nobody is connected (it went on showing the states of before).
    for (const peer of this.#peers.values()) {
      peer.connected = false;
      if (peer.state !== 'refused') peer.state = 'disconnected';
    }
  }

  // ---------------------------------------------------------------- faults

  /** Runs a handler; whatever it throws is classified, never thrown on (see src/net/faults.ts). */
  #guard(fn: () => void, peerId?: string): void {
    try {
      fn();
    } catch (error) {
      this.#failed(error, peerId);
    }
  }

  /** Deals with an error met outside a session (gossip, a timer, a link event). */
  #failed(error: unknown, peerId: string | undefined): void {
    if (this.#stopped) return;
    const fault = faultOf(error);
    if (fault === 'peer' && peerId !== undefined) this.#refuse(peerId, error);
    else if (this.#databaseClosed()) void this.stop().catch(() => {});
    else if (fault !== 'link') this.#report(error, peerId);
  }

  /**
   * Whether the database was closed under us (then replication ends): its `closed` flag when it
   * has one, else whether `advanceCutoff` (what the status timer calls anyway; nothing to do
   * unless a cutoff step is due) says so.
   */
  #databaseClosed(): boolean {
    if (this.#db.closed !== undefined) return this.#db.closed;
    try {
      this.#db.advanceCutoff();
      return false;
    } catch (error) {
      return (error as NoatunError).code === ErrorCode.CLOSED;
    }
  }

  /** Reports our own failure: the `failure` event, and the peer's `reason` in `peers()`. */
  #report(error: unknown, peerId: string | undefined): void {
    const reason = `local failure: ${describe(error)}`;
    if (peerId !== undefined) {
      const peer = this.#peers.get(peerId);
      if (peer !== undefined) peer.reason = reason;
    }
    const detail: ReplicatorFailure = peerId === undefined ? { reason, error: asNoatunError(error) } : { peerId, reason, error: asNoatunError(error) };
    try {
      this.dispatchEvent(new CustomEvent('failure', { detail }));
    } catch {
      // A listener that throws is the application's problem, not a reason to stop replicating.
    }
  }

  /** Refuses a peer that broke the protocol or a limit: disconnected and banned for `banMs`. */
  #refuse(peerId: string, error: unknown): void {
    if (this.#stopped) return;
    const peer = this.#peers.ensure(peerId);
    const already = this.#isRefused(peer);
    // A refused peer's later faults (its sessions failing as it is cut off) keep the first reason.
    const reason = already ? (peer.reason ?? describe(error)) : describe(error);
    peer.state = 'refused';
    peer.reason = reason;
    if (!already) peer.refusedUntil = Date.now() + this.#options.banMs;
    peer.trusted = false;
    clearTimeout(peer.timer);
    peer.timer = undefined;
    this.#redialer.forget(peerId);
    this.#limits.forget(peerId);
    this.#relay.removeNeighbour(peerId);
    if (!already) this.#emit('peer:refused', peerId, reason);
    void this.#link.disconnect(peerId, reason).catch(() => {});
  }

  #isRefused(peer: PeerRecord | undefined): boolean {
    return peer !== undefined && peer.state === 'refused' && peer.refusedUntil > Date.now();
  }

  // ---------------------------------------------------------------- status

  /** Our status over the events at or after `lowerTime` (default: our cutoff). */
  #status(lowerTime?: number): Status {
    const cutoff = this.#db.cutoffState();
    const index = this.#index;
    const lower = timeBound(lowerTime ?? cutoff.time);
    return {
      cutoffTime: cutoff.time,
      cutoffHash: cutoff.hash,
      previousTime: cutoff.previousTime,
      previousHash: cutoff.previousHash,
      count: index.count(lower, null),
      fingerprint: index.fingerprint(lower, null),
    };
  }

  /** Whether the peer's status matches ours over the same range; also how their pasts compare. */
  #compare(theirs: Status): { same: boolean; cutoffs: CutoffComparison } {
    let ours = this.#db.cutoffState();
    if (theirs.cutoffTime === ours.time + this.#db.cutoffStrideMs) {
      // The peer's clock crossed a stride boundary that ours has not yet (clocks a few seconds
      // apart do, every stride). Join its era: until ours crosses too, we would hold events it
      // has already pruned, and our statuses could not agree. The engine allows at most one
      // stride past its own clock, so a peer cannot push our cutoff further.
      try {
        this.#db.advanceCutoff(theirs.cutoffTime);
        ours = this.#db.cutoffState();
      } catch {
        // Our clock is further behind than a stride: the comparison reports the drift.
      }
    }
    const cutoffs = compareCutoffs(ours, toCutoffState(theirs), this.#db.cutoffStrideMs);
    const mine = this.#status(theirs.cutoffTime);
    return { same: cutoffs === 'same' && mine.count === theirs.count && equalBytes(mine.fingerprint, theirs.fingerprint), cutoffs };
  }

  /** The keepalive: our status to our neighbours (and the cutoff moved when due). */
  #tick(): void {
    if (this.#stopped) return;
    this.#db.advanceCutoff();
    // (Late events can also leave without a store of their own: stored meanwhile by another way.)
    if (this.#awaitingLate.size !== 0) this.#afterLate();
    // Somebody waits to be in sync with a peer that is not a neighbour: ask the swarm again (the
    // last request may have gone out before gossip reached anyone).
    if (this.#awaitingFarPeer()) this.#sendStatus(true, true);
    else this.#sendStatus(false, false);
  }

  /**
   * Asks every peer for its status (ours relayed through the swarm, reply wanted), and again after
   * `retryMs`, doubling up to the keepalive interval, while a `syncedWith` waits on a peer that is
   * not a neighbour: a request may go out before gossip reaches anyone (a fresh connection's
   * subscription takes a moment to arrive).
   */
  #askFarPeers(retryMs: number): void {
    this.#publishStatus({ relay: true, replyWanted: true });
    if (this.#askTimer !== undefined) clearTimeout(this.#askTimer);
    this.#askTimer = setTimeout(() => {
      this.#askTimer = undefined;
      if (!this.#stopped && this.#awaitingFarPeer()) this.#askFarPeers(Math.min(2 * retryMs, this.#options.statusIntervalMs));
    }, retryMs);
    this.#askTimer.unref();
  }

  /** Whether a `syncedWith` waits on a peer that is not connected. */
  #awaitingFarPeer(): boolean {
    if (this.#pendingWaits === 0) return false;
    for (const peer of this.#peers.values()) if (!peer.connected && peer.waiters.length !== 0) return true;
    return false;
  }

  /**
   * Our status changed: tell the neighbours once it settles (`statusDebounceMs` without a change, a
   * burst of commits sends one). After new events (`stored`) also through the swarm, so that peers
   * that are not neighbours learn we hold them — once the events have settled for five debounce
   * periods, so that a swarm busy replicating does not flood statuses at the pace of its commits.
   */
  #statusChanged(stored: boolean): void {
    if (this.#stopped) return;
    this.#neighbourStatus.poke();
    if (stored) this.#swarmStatus.poke();
  }

  /** Publishes our status after the debounce, merging requests (relayed if any asked for it). */
  #publishStatus(how: { relay: boolean; replyWanted: boolean }): void {
    if (this.#stopped) return;
    this.#statusRelay ||= how.relay;
    this.#statusReplyWanted ||= how.replyWanted;
    if (this.#statusSoon !== undefined) return;
    this.#statusSoon = setTimeout(() => {
      this.#statusSoon = undefined;
      const relay = this.#statusRelay;
      const replyWanted = this.#statusReplyWanted;
      this.#statusRelay = false;
      this.#statusReplyWanted = false;
      this.#guard(() => this.#sendStatus(relay, replyWanted));
    }, this.#options.statusDebounceMs);
    this.#statusSoon.unref();
  }

  /**
   * Sends our status: to every neighbour directly, and when `relay`, also through the swarm's
   * gossip (which hands it to a few neighbours itself: those get it directly only without `relay`).
   */
  #sendStatus(relay: boolean, replyWanted: boolean): void {
    if (this.#stopped) return;
    this.#statusSequence = (this.#statusSequence + 1) >>> 0;
    const frame = peerStatusFrame({ origin: this.peerId, sequence: this.#statusSequence, relay, replyWanted, status: this.#status() });
    const gossiped = relay ? new Set(this.#link.gossipPeers()) : undefined;
    if (relay) this.#link.publish(frame);
    for (const peerId of this.#link.connectedPeers()) {
      if (gossiped?.has(peerId) === true || this.#isRefused(this.#peers.get(peerId))) continue;
      this.#link.sendDirect(peerId, frame);
    }
  }

  /**
   * Queues a local event for the relay at the end of this turn, with the others committed
   * meanwhile (counted as sent to each neighbour it is pushed to).
   */
  #publishEvent(bytes: Uint8Array): void {
    if (bytes.length > this.#options.gossipEventBytes || relayFrameBytes(bytes.length) > MAX_DIRECT_FRAME_BYTES) {
      // Too large for gossip (which copies each message to every mesh peer and keeps it in its
      // cache): peers see our status change and fetch it in a session.
      this.#statusChanged(true);
      return;
    }
    if (this.#outgoingBytes + bytes.length > this.#options.gossipEventBytes) this.#flushOutgoing();
    if (this.#outgoing.length === 0) setImmediate(() => this.#guard(() => this.#flushOutgoing()));
    this.#outgoing.push(bytes);
    this.#outgoingBytes += bytes.length;
  }

  /** Pushes the queued local events to the neighbours (one `EVENT` frame, or `EVENTS` for several). */
  #flushOutgoing(): void {
    const outgoing = this.#outgoing;
    if (outgoing.length === 0 || this.#stopped) return;
    this.#outgoing = [];
    this.#outgoingBytes = 0;
    this.#lastNewsAt = Date.now();
    this.#relay.publish(outgoing);
  }

  // ---------------------------------------------------------------- peers

  #emit(type: string, peerId: string, reason?: string): void {
    try {
      this.dispatchEvent(new CustomEvent(type, { detail: reason === undefined ? { peerId } : { peerId, reason } }));
    } catch {
      // A listener that throws is the application's problem, not a reason to stop replicating.
    }
  }

  /**
   * Admission of a new connection (asked by the link). Outbound ones are ours to choose; inbound
   * ones from peers that are not trusted yet count against `maxStrangers`.
   */
  #admit(peerId: string, direction: ConnectionDirection): boolean {
    if (this.#stopped) return false;
    const known = this.#peers.get(peerId);
    if (this.#isRefused(known)) return false;
    if (direction === 'outbound' || known?.trusted === true) return true;
    const { admit, evict } = this.#peers.admitStranger(peerId, this.#options.maxStrangers, this.#options.strangerGraceMs);
    if (!admit) return false;
    this.#peers.ensure(peerId).admittedAt = Date.now();
    if (evict !== undefined) void this.#link.hangUp(evict).catch(() => {});
    return true;
  }

  #onPeer(event: 'connect' | 'disconnect', peerId: string): void {
    if (this.#stopped) return;
    const peer = this.#peers.ensure(peerId);
    // An admission holds a stranger's place only until its connection is up (or gone).
    peer.admittedAt = 0;
    if (event === 'disconnect') {
      this.#relay.removeNeighbour(peerId);
      peer.connected = false;
      clearTimeout(peer.timer);
      peer.timer = undefined;
      if (peer.state !== 'refused') peer.state = 'disconnected';
      this.#emit('peer:disconnect', peerId);
      this.#redialer.disconnected(peerId);
      this.#db.peerLeft?.(peerId);
      return;
    }
    // Already known as connected (found connected at start, then told again): nothing new.
    if (peer.connected) return;
    peer.connected = true;
    peer.connectedAt = Date.now();
    this.#peers.touch(peer);
    if (this.#isRefused(peer)) {
      // Connected before the refusal reached the link; hang up again.
      void this.#link.disconnect(peerId, peer.reason ?? 'refused').catch(() => {});
      return;
    }
    if (peer.state === 'refused') peer.reason = undefined;
    this.#relay.addNeighbour(peerId);
    if (peer.state !== 'synced' && peer.state !== 'differs' && peer.state !== 'clock-drift') peer.state = 'connected';
    this.#redialer.connected(peerId);
    this.#emit('peer:connect', peerId);
    // A new way into the swarm: ask again for the statuses of far peers somebody waits on.
    if (this.#awaitingFarPeer()) this.#askFarPeers(250);
    // One side starts: the one with the smaller id (the other answers).
    if (this.peerId < peerId) this.#schedule(peer, 0);
  }

  /**
   * The peer holds what we hold: as of the end of session number `session`, or of a status (no
   * `session`). Settles the `syncedWith` calls this answers (see {@link SyncWaiter}); those made
   * while the session ran wait for the next one, which starts now.
   */
  #markSynced(peer: PeerRecord, session?: number): void {
    const wasSynced = peer.state === 'synced';
    peer.state = 'synced';
    peer.reason = undefined;
    peer.retryAt = 0;
    peer.resync.reset();
    if (peer.waiters.length !== 0) {
      const answered = (waiter: SyncWaiter) => (session === undefined ? !peer.connected : waiter.after < session);
      const settled = peer.waiters.filter(answered);
      peer.waiters = peer.waiters.filter((waiter) => !answered(waiter));
      for (const waiter of settled) waiter.settle();
      if (peer.waiters.length !== 0 && session !== undefined) this.#schedule(peer, 0, true);
    }
    if (!wasSynced) this.#emit('peer:synced', peer.peerId);
  }

  /**
   * A session ended and the peer's status still differs from ours: report why, and sync again
   * after the next delay of its backoff (never at once: that would spin when the difference does
   * not go away).
   */
  #differs(peer: PeerRecord, cutoffs: CutoffComparison): void {
    this.#markDiffers(peer, cutoffs);
    this.#backOff(peer);
  }

  /** Sets the peer's state and reason for a difference (or clock drift), with the event on a change. */
  #markDiffers(peer: PeerRecord, cutoffs: CutoffComparison, why?: string): void {
    if (cutoffs === 'peer-ahead' || cutoffs === 'peer-behind') {
      const reason = why ?? `clock drift: its cutoff is more than a stride ${cutoffs === 'peer-ahead' ? 'ahead of' : 'behind'} ours`;
      const was = peer.state;
      peer.state = 'clock-drift';
      peer.reason = reason;
      if (was !== 'clock-drift') this.#emit('peer:clock-drift', peer.peerId, reason);
    } else {
      const reason = why ?? (cutoffs === 'differ' ? 'the finalized pasts differ (cutoff hashes)' : 'the events after the cutoff differ');
      const was = peer.state;
      peer.state = 'differs';
      peer.reason = reason;
      if (was !== 'differs') this.#emit('peer:differs', peer.peerId, reason);
    }
  }

  /** Delays the next sync with the peer by the next step of its backoff, and schedules it. */
  #backOff(peer: PeerRecord): void {
    peer.retryAt = Date.now() + peer.resync.next();
    this.#schedule(peer, peer.retryAt);
  }

  /**
   * Syncs with the peer at time `at` (ms; 0: now), or at the end of its backoff if later (unless
   * `now`), unless a sync with it is running or scheduled earlier.
   */
  #schedule(peer: PeerRecord, at: number, now = false): void {
    if (this.#stopped || this.#isRefused(peer)) return;
    const when = now ? Date.now() : Math.max(at, peer.retryAt, Date.now());
    if (peer.timer !== undefined) {
      // A sync for another reason (on connect, to go on after a cut session) does not wait on
      // one that was only for a status difference.
      if (!now && !peer.timerForStatus) return;
      clearTimeout(peer.timer);
    }
    peer.timerForStatus = false;
    this.#arm(peer, when);
  }

  /** Sets the peer's sync timer for `when` (ms); a timer for a status difference waits on while the relay brings news. */
  #arm(peer: PeerRecord, when: number): void {
    peer.timer = setTimeout(() => {
      peer.timer = undefined;
      const forStatus = peer.timerForStatus;
      if (forStatus) {
        // The relay still brings news: the difference is probably what is in flight. Wait until
        // it has been quiet for the delay, but never longer than ten delays in all.
        const delay = this.#options.statusSyncDelayMs;
        const until = Math.min(this.#lastNewsAt + delay, peer.statusSince + 10 * delay);
        if (until > Date.now() && !this.#stopped) {
          this.#arm(peer, until);
          return;
        }
        peer.timerForStatus = false;
      }
      this.#guard(() => this.#startSession(peer, forStatus), peer.peerId);
    }, Math.max(0, when - Date.now()));
    peer.timer.unref();
  }

  /**
   * Syncs with the peer after `statusSyncDelayMs`, and later while the relay still brings news (see
   * {@link PeerRecord.timerForStatus}), unless a sync is scheduled already or a status that agrees
   * comes first.
   */
  #scheduleForDifference(peer: PeerRecord): void {
    if (peer.timer !== undefined) return;
    this.#schedule(peer, Date.now() + this.#options.statusSyncDelayMs);
    if (peer.timer === undefined) return;
    peer.timerForStatus = true;
    peer.statusSince = Date.now();
  }

  /**
   * Counts the received events that wait in memory to be stored as held: in the index, so that
   * reconciliations (ours and the peers') do not ask for them again. The engine stores them once
   * their turn comes (they are inserted again then, which changes nothing).
   */
  #holdWaiting(): void {
    const waiting = this.#db[WAITING_NEW]?.();
    if (waiting === undefined) return;
    for (const id of waiting) this.#index.insert(id);
    this.#statusChanged(true);
  }

  /** Received events of ours that wait in memory to be stored (see {@link ReplicatedDatabase}). */
  #lateWaiting(): number {
    return this.#db[WAITING_COUNT]?.() ?? 0;
  }

  /** Once no received event waits any more: syncs with the peers whose sessions ended for that. */
  #afterLate(): void {
    if (this.#lateWaiting() > 0) return;
    const peers = [...this.#awaitingLate];
    this.#awaitingLate.clear();
    for (const peerId of peers) {
      const peer = this.#peers.get(peerId);
      if (peer?.connected) this.#schedule(peer, 0);
    }
  }

  /** Starts a session with the peer; `forStatus`: for a difference in its status (see {@link PeerRecord.timerForStatus}). */
  #startSession(peer: PeerRecord, forStatus = false): void {
    if (this.#stopped || peer.active > 0 || !peer.connected || this.#isRefused(peer)) return;
    // It synced with us once its late events are stored (see #afterLate).
    if (this.#awaitingLate.has(peer.peerId) && this.#lateWaiting() > 0) return;
    // The peer with the smaller id starts the first session on connect: ours would run beside it,
    // so it waits for that one (a sync for a status difference stays one: a status that agrees
    // still cancels it).
    const graceEnd = peer.connectedAt + CONNECT_SESSION_GRACE_MS;
    if (this.peerId > peer.peerId && peer.sessionsStarted === 0 && Date.now() < graceEnd) {
      peer.afterGrace = true;
      peer.timerForStatus = forStatus;
      this.#arm(peer, graceEnd);
      return;
    }
    if (peer.afterGrace) {
      peer.afterGrace = false;
      // Its session came and left us in sync, and nobody waits for another.
      if (peer.sessionsStarted > 0 && peer.state === 'synced' && peer.waiters.length === 0) return;
    }
    if (this.#limits.check(peer.peerId, !peer.trusted) !== undefined) {
      // Every session slot is taken: try again after a backoff step.
      this.#backOff(peer);
      return;
    }
    this.#link.openSession(peer.peerId).then(
      (session) => this.#run(session, true),
      (error: unknown) => this.#guard(() => this.#sessionFailed(peer, error), peer.peerId),
    );
  }

  // ---------------------------------------------------------------- gossip

  /**
   * The link's gossip validator: a frame that does not decode, is not a gossip frame, or carries
   * an envelope that is malformed or forged is rejected (so it is not relayed) and its author
   * refused.
   */
  #validateGossip(from: string, bytes: Uint8Array): GossipVerdict {
    if (this.#stopped) return 'ignore';
    // Dropped, but not as invalid: an honest peer that relays it must not be held to account.
    if (this.#isRefused(this.#peers.get(from))) return 'ignore';
    try {
      if (bytes.length > MAX_GOSSIP_FRAME_BYTES) throw new LimitError(`a gossip frame of ${bytes.length} bytes`);
      const frame = decodeFrame(bytes);
      if (frame.type === FrameType.EVENT) decodeEnvelope(frame.envelope);
      else if (frame.type === FrameType.EVENTS) for (const envelope of frame.envelopes) decodeEnvelope(envelope);
      else if (frame.type === FrameType.PEER_STATUS) {
        const { origin, relay } = frame.peerStatus;
        if (origin === this.peerId) return 'ignore';
        if (!relay) {
          // For neighbours only: handled here, and 'ignore' keeps gossip from relaying it.
          if (origin !== from) throw new ProtocolError(`a neighbour's status naming another peer (${origin})`);
          this.#guard(() => this.#onStatus(from, frame.peerStatus.status, frame.peerStatus.replyWanted), from);
          return 'ignore';
        }
      } else throw new ProtocolError(`frame type ${frame.type} is not a gossip frame`);
      return 'accept';
    } catch (error) {
      this.#failed(error, from);
      return 'reject';
    }
  }

  #onGossip(from: string, bytes: Uint8Array): void {
    if (this.#stopped) return;
    const peer = this.#peers.ensure(from);
    if (this.#isRefused(peer)) return;
    this.#peers.touch(peer);
    const frame = decodeFrame(bytes);
    if (frame.type === FrameType.PEER_STATUS) {
      const { origin, status, replyWanted } = frame.peerStatus;
      if (origin === this.peerId) return;
      // A neighbour's status comes from the neighbour itself; a copy relayed by another says
      // nothing new (and could be stale, or made up).
      if (origin !== from && this.#peers.get(origin)?.connected === true) {
        if (replyWanted) this.#reply();
        return;
      }
      this.#onStatus(origin, status, replyWanted);
    } else if (frame.type === FrameType.EVENT) {
      peer.received++;
      this.#queueGossip(from, frame.envelope);
    } else if (frame.type === FrameType.EVENTS) {
      peer.received += frame.envelopes.length;
      for (const envelope of frame.envelopes) this.#queueGossip(from, envelope);
    } else {
      throw new ProtocolError(`frame type ${frame.type} is not a gossip frame`);
    }
  }

  /**
   * A direct frame from a neighbour: the relay's frames, or its status. Anything else, or
   * anything malformed or forged, is the neighbour's fault (it is refused): direct frames are not
   * relayed, so the neighbour made it.
   */
  #onDirect(from: string, bytes: Uint8Array): void {
    if (this.#stopped) return;
    const peer = this.#peers.ensure(from);
    if (this.#isRefused(peer)) return;
    if (bytes.length > MAX_GOSSIP_FRAME_BYTES) throw new LimitError(`a direct frame of ${bytes.length} bytes`);
    const frame = decodeFrame(bytes);
    this.#peers.touch(peer);
    switch (frame.type) {
      case FrameType.EVENT:
      case FrameType.EVENTS: {
        const envelopes = frame.type === FrameType.EVENT ? [frame.envelope] : frame.envelopes;
        // A copy of an event we know is dropped by the relay unread: its hash is not worth checking
        // (a neighbour sending a held event over and over, 43 bytes a frame, stalled the event
        // loop for a second at a time while each copy was hashed).
        let known = 0;
        for (const envelope of envelopes) {
          if (this.#relay.knows(envelope)) known++;
          else decodeEnvelope(envelope);
        }
        if (known !== 0) this.#countCopies(peer, known);
        peer.received += envelopes.length;
        if (this.#relay.received(from, envelopes, (envelope) => this.#queueGossip(from, envelope)) !== 0) this.#lastNewsAt = Date.now();
        return;
      }
      case FrameType.IHAVE:
        this.#relay.offered(from, frame.ids);
        return;
      case FrameType.WANT:
        this.#relay.wanted(from, frame.ids);
        return;
      case FrameType.PEER_STATUS: {
        // Its own status (also when it goes through the swarm: gossip then carries the copies
        // that travel on).
        const { origin, status, replyWanted } = frame.peerStatus;
        if (origin !== from) throw new ProtocolError(`a direct status that is not the neighbour's own (${origin})`);
        this.#onStatus(from, status, replyWanted);
        return;
      }
      default:
        throw new ProtocolError(`frame type ${frame.type} is not a direct frame`);
    }
  }

  /**
   * A neighbour pushed `count` events we knew: more than {@link MAX_RELAY_COPIES} within
   * {@link RELAY_COPY_WINDOW_MS} is a fault. The relay sends a neighbour each event once (a copy
   * comes only when an asked-for event was late and asked of another); one that sent a held event
   * over and over in frames of 43 bytes cost Yamux a window update each, most of a core.
   */
  #countCopies(peer: PeerRecord, count: number): void {
    const now = Date.now();
    if (now - peer.copiesSince > RELAY_COPY_WINDOW_MS) {
      peer.copiesSince = now;
      peer.copies = 0;
    }
    peer.copies += count;
    if (peer.copies > MAX_RELAY_COPIES) {
      throw new LimitError(`${peer.copies} pushed events within ${RELAY_COPY_WINDOW_MS / 1000} s that we held already`);
    }
  }

  /** A peer's status (a neighbour's, or one relayed through the swarm): in sync, or sync. */
  #onStatus(peerId: string, status: Status, replyWanted: boolean): void {
    const peer = this.#peers.ensure(peerId);
    if (this.#isRefused(peer)) return;
    this.#peers.touch(peer);
    const { same, cutoffs } = this.#compare(status);
    if (same && this.#lateWaiting() > 0) {
      // The same events, some of ours not stored yet: synced once they are (see #run).
      this.#awaitingLate.add(peer.peerId);
    } else if (same) {
      this.#markSynced(peer);
      if (peer.timer !== undefined && peer.timerForStatus) {
        // The difference it was for went away (the relay brought what was in flight).
        clearTimeout(peer.timer);
        peer.timer = undefined;
      }
    } else if (peer.active === 0) {
      // Drift is reported at once; a mere difference waits for the session to tell. Either way
      // the session starts when the peer's backoff allows, which only sessions advance — and not
      // before `statusSyncDelayMs`: events in flight make statuses differ for a moment, and a
      // status that agrees meanwhile cancels it.
      if (cutoffs === 'peer-ahead' || cutoffs === 'peer-behind') this.#markDiffers(peer, cutoffs);
      this.#scheduleForDifference(peer);
    }
    if (replyWanted) this.#reply();
  }

  /**
   * Somebody asked every peer for its status: ours goes through the swarm — at most once per ten
   * debounce periods however many ask, and never dropped (a later request gets a later reply).
   */
  #reply(): void {
    if (this.#replyTimer !== undefined || this.#stopped) return;
    const window = 10 * this.#options.statusDebounceMs;
    const wait = Math.max(0, this.#lastReplyAt + window - Date.now());
    this.#replyTimer = setTimeout(() => {
      this.#replyTimer = undefined;
      this.#lastReplyAt = Date.now();
      this.#publishStatus({ relay: true, replyWanted: false });
    }, wait);
    this.#replyTimer.unref();
  }

  /** Queues an envelope from gossip or the relay for the next ingest (see {@link GossipQueue}); false if there is no room. */
  #queueGossip(from: string, envelope: Uint8Array): boolean {
    if (!this.#gossipQueue.push(from, envelope)) return false;
    this.#gossipFlush ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#ingestGossip());
    return true;
  }

  /** Ingests queued gossip, one batch per sender; never rejects. */
  async #ingestGossip(): Promise<void> {
    const batches = this.#gossipQueue.drain();
    this.#gossipFlush = undefined;
    for (const { from, envelopes } of batches) {
      if (this.#stopped) return;
      try {
        const result = await this.#db.ingest(envelopes, { peer: from });
        if ((result.deferred ?? 0) > 0) this.#holdWaiting();
        const peer = this.#peers.get(from);
        if (peer === undefined) continue;
        peer.stored += result.stored;
        // Missing parents: reconcile with the sender, which has them — unless they arrive by
        // another way first (the relay brings events of different authors by different paths).
        if (result.parked > 0) this.#scheduleForDifference(peer);
        if ((result.future ?? 0) > 0) this.#markDiffers(peer, 'peer-ahead', 'clock drift: it sends events dated ahead of our clock');
      } catch (error) {
        this.#failed(error, from);
      }
    }
  }

  // ---------------------------------------------------------------- sessions

  /** Runs one session (as initiator or responder) to the end. Never throws. */
  async #run(session: Session, initiator: boolean): Promise<void> {
    const peerId = session.peerId;
    try {
      const peer = this.#peers.ensure(peerId);
      if (this.#stopped || this.#isRefused(peer)) {
        session.abort(new NoatunError(ErrorCode.CLOSED, 'not accepting sessions from this peer'));
        return;
      }
      // (Counted as it opens: the peer is trusted once this session ends well.)
      const stranger = !peer.trusted;
      const over = this.#limits.check(peerId, stranger);
      if (over !== undefined) {
        session.abort(
          new NoatunError(ErrorCode.CLOSED, over === 'total' ? 'too many sessions' : over === 'peer' ? 'too many sessions with this peer' : 'too many sessions with peers not known yet'),
        );
        if (!initiator && over === 'peer' && this.#limits.strike(peerId)) {
          this.#refuse(peerId, new LimitError(`sessions over the limit of ${this.#options.maxSessionsPerPeer} at once, again and again`));
        }
        return;
      }
      this.#limits.open(peerId, stranger);
      peer.active++;
      const number = ++peer.sessionsStarted;
      this.#sessions.add(session);
      if (peer.state !== 'synced' && peer.state !== 'clock-drift') {
        peer.state = 'syncing';
        peer.reason = undefined;
      }
      const before = peer.stored + peer.sent;
      try {
        const result = await new SessionRun(this.#host, peer, session, initiator).run();
        peer.sessions++;
        this.#peers.touch(peer);
        peer.trusted = true;
        this.#redialer.remember(peerId);
        const { same, cutoffs } = this.#compare(result.final);
        if (this.#lateWaiting() > 0) {
          // Received events wait for their turn to be stored (costly late work). They count as
          // held in our status (see #holdWaiting), so a session now would bring nothing; but they
          // are not in the view yet, so this is not "synced" (syncedWith would resolve early).
          // Synced once they are stored (see #afterLate).
          this.#markDiffers(peer, cutoffs, 'received events wait for their turn to be stored');
          this.#awaitingLate.add(peer.peerId);
        } else if (same) this.#markSynced(peer, number);
        else if (result.cut && peer.stored + peer.sent > before) {
          // A bound of ours ended the reconciliation and events moved: more to do, go on now.
          peer.state = 'differs';
          peer.reason = 'more differences than one session carries';
          peer.resync.reset();
          peer.retryAt = 0;
          this.#schedule(peer, 0);
        } else this.#differs(peer, cutoffs);
      } catch (error) {
        session.abort(error instanceof Error ? error : new Error(String(error)));
        this.#sessionFailed(peer, error);
      } finally {
        this.#limits.close(peerId, stranger);
        peer.active--;
        this.#sessions.delete(session);
      }
    } catch (error) {
      this.#failed(error, peerId);
    }
  }

  /** A session ended early (or could not start): refuse, report, or retry after a backoff. */
  #sessionFailed(peer: PeerRecord, error: unknown): void {
    if (this.#stopped) return;
    const fault = faultOf(error);
    if (fault === 'peer') {
      this.#refuse(peer.peerId, error);
      return;
    }
    // Its sessions end as it is refused: the refusal is the news, not their end.
    if (this.#isRefused(peer)) return;
    if (this.#databaseClosed()) {
      void this.stop().catch(() => {});
      return;
    }
    if (fault === 'local') this.#report(error, peer.peerId);
    if (!peer.connected) {
      if (peer.state !== 'refused') peer.state = 'disconnected';
      return;
    }
    if (peer.state === 'syncing' || peer.state === 'connected') peer.state = 'differs';
    peer.reason = fault === 'local' ? `local failure: ${describe(error)}` : `session ended: ${describe(error)}`;
    this.#backOff(peer);
  }
}

/** Runs `fn` once calls to {@link poke} stop for `quietMs`, and at most `maxMs` after the first. */
class Settle {
  readonly #quietMs: number;
  readonly #maxMs: number;
  readonly #fn: () => void;
  #timer: NodeJS.Timeout | undefined;
  #first = 0;

  constructor(quietMs: number, maxMs: number, fn: () => void) {
    this.#quietMs = quietMs;
    this.#maxMs = maxMs;
    this.#fn = fn;
  }

  poke(): void {
    const now = Date.now();
    if (this.#timer === undefined) this.#first = now;
    else clearTimeout(this.#timer);
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#fn();
      },
      Math.min(this.#quietMs, Math.max(0, this.#first + this.#maxMs - now)),
    );
    this.#timer.unref();
  }

  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** Every option of {@link Replicator.start}: the link's and the replicator's (the compiler keeps the list whole). */
const START_OPTION_NAMES: Record<keyof (Libp2pLinkOptions & ReplicatorOptions), true> = {
  listen: true,
  bootstrap: true,
  mdns: true,
  topic: true,
  psk: true,
  allowPeers: true,
  privateKey: true,
  maxConnections: true,
  maxConnectionsPerAddress: true,
  maxPendingConnections: true,
  inboundConnectionsPerSecond: true,
  trustedNetworks: true,
  banMs: true,
  statusIntervalMs: true,
  statusDebounceMs: true,
  batchBytes: true,
  window: true,
  reconcile: true,
  relayAnnounceMs: true,
  relayWantMs: true,
  statusSyncDelayMs: true,
  gossipEventBytes: true,
  maxSessions: true,
  maxSessionsPerPeer: true,
  sessionIdleMs: true,
  sessionDeadlineMs: true,
  largeEventBytes: true,
  maxStrangers: true,
  strangerGraceMs: true,
  resync: true,
  redial: true,
};

/**
 * Refuses options that are not an object, and an option `Replicator.start` does not know: a
 * misspelt one (`bootsrap`) would be ignored without a word, and the peer would wait for nobody.
 */
function checkStartOptionNames(options: unknown, what = 'Replicator.start'): void {
  if (options === null || typeof options !== 'object') {
    throw new NoatunError(ErrorCode.INVALID_ARGUMENT, `${what} takes an options object, got ${options === null ? 'null' : typeof options}`);
  }
  refuseUnknownOptions(options, START_OPTION_NAMES, what);
}
